"""A trained model back from a workdir, for eval mode, predict and export: `restore_run`.

Only the checkpoint's meta and its variables are read, never the optimiser state, so neither the
config nor an optimiser is needed: the checkpoint says what was trained. The reading itself is
`checkpoints.restore_checkpoint`, the chain training resumes through too.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, Optional, Tuple

import jax

from sparsenet_jax.model import counting
from sparsenet_jax.model import layout
from sparsenet_jax.model import network
from sparsenet_jax.model.spec import ModelSpec
from sparsenet_jax.training import checkpoints
from sparsenet_jax.training import record


def restore_run(workdir: str, expect: Optional[Callable[[record.Description], ModelSpec]] = None
                ) -> Tuple[network.SparseNet, Dict[str, Any], Dict[str, Any]]:
  """(model, {'params', 'batch_stats'}, meta) of the newest checkpoint that verifies.

  The model is unrolled (the canonical layout) on one device; `meta` is the run's description
  (`record.Description.to_json()`) with the checkpoint's `step`. `expect(description)` refuses a
  checkpoint of another architecture (layout fields may differ). Raises checkpoints.CheckpointError with
  a one-line message.
  """
  if not os.path.isdir(checkpoints.directory(workdir)):  # CheckpointError when a file is there
    raise checkpoints.CheckpointError(f'no checkpoints in {workdir}: train first (--mode=train)')
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])

  def variables_of(stored: ModelSpec, description: record.Description):
    shapes = counting.abstract_variables(network.make(stored), tuple(description.image_shape))
    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), shapes)
    return {k: shapes.get(k, {}) for k in ('params', 'batch_stats')}

  mgr = checkpoints.manager(workdir, read_only=True)
  try:
    r = checkpoints.restore_checkpoint(mgr, variables_of, expect=expect, partial=True)
  finally:
    mgr.close()
  return network.make(r.stored.canonical()), layout.to_unrolled(r.stored, dict(r.tree)), r.meta
