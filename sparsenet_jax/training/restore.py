"""A trained model back from a workdir, for eval mode, predict and export: `restore_run`; and the weights a
new run starts from (`config.init_from`: a workdir or an exported file): `pretrained`.

Only the checkpoint's meta and its variables are read, never the optimiser state, so neither the
config nor an optimiser is needed: the checkpoint says what was trained. The reading itself is
`checkpoints.restore_checkpoint`, the chain training resumes through too; an exported file is read by
`export.load_exported`, the reader predict uses (the one import of `tools` from `training`).
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, Optional, Tuple

import jax

from sparsenet_jax.errors import ConfigError
from sparsenet_jax.model import counting
from sparsenet_jax.model import layout
from sparsenet_jax.model import network
from sparsenet_jax.model.spec import ModelSpec
from sparsenet_jax.tools import export
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


def pretrained(source: str, spec: ModelSpec) -> Tuple[Dict[str, Any], Optional[str]]:
  """({'params', 'batch_stats'} canonical, a note or None): the weights `config.init_from` names, for a
  new run of `spec`.

  `source` is a workdir (its newest checkpoint that verifies) or a file `launch/export.py` or
  `launch/convert_torchvision.py` wrote. The architecture must be `spec`'s but for the class count
  (ConfigError naming every field that differs; layout fields may differ); with another class count
  the classifier is left out, to start fresh, and the note says so in one line.
  """
  if os.path.isdir(source):
    model, variables, meta = restore_run(source)
  elif os.path.isfile(source):
    model, variables, meta = export.load_exported(source)
  else:
    raise ConfigError(f'config.init_from={source}: no such exported file or workdir')
  stored = model.spec
  checkpoints.check_architecture(stored, spec.canonical().replace(num_classes=stored.num_classes),
                                 f'config.init_from={source} (step {meta.get("step")})',
                                 advice='fine-tuning keeps the architecture (only num_classes may differ)',
                                 error=ConfigError)
  if stored.num_classes == spec.num_classes:
    return variables, None
  params = {k: v for k, v in variables['params'].items() if k != 'classifier'}
  note = (f'init_from {source}: {stored.num_classes} classes there, {spec.num_classes} here: a new classifier, '
          'every other weight from there')
  return {'params': params, 'batch_stats': variables.get('batch_stats', {})}, note
