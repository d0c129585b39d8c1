"""The one way to get a trained model back from a workdir: eval mode, predict, export and the report use it.

Only the checkpoint's `meta` and its variables are read, never the optimiser state, so neither the
config nor an optimiser is needed: the checkpoint says what was trained.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import jax
import orbax.checkpoint as ocp

from sparsenet_jax.model import counting
from sparsenet_jax.model import layout
from sparsenet_jax.model import network
from sparsenet_jax.model.spec import ModelSpec
from sparsenet_jax.training import checkpoints
from sparsenet_jax.training import record


def restore_run(workdir: str, *, expect: Optional[ModelSpec] = None, with_variables: bool = True,
                step: Optional[int] = None) -> Tuple[network.SparseNet, Optional[Dict[str, Any]], Dict[str, Any]]:
  """(model, {'params', 'batch_stats'} or None, meta) of the newest checkpoint that verifies (or of `step`).

  The model is unrolled (the canonical layout) on one device. `expect` refuses a checkpoint of another
  architecture (layout fields may differ); `with_variables=False` reads only the meta. `meta` gains the
  checkpoint's `step`. Raises checkpoints.CheckpointError with a one-line message.
  """
  if not record.has_checkpoints(workdir):
    raise checkpoints.CheckpointError(f'no checkpoints in {workdir}: train first (--mode=train)')
  mgr = checkpoints.manager(workdir, read_only=True)
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])

  def load(s):
    meta = dict(checkpoints.read_meta(mgr, s), step=s)
    stored = checkpoints.saved_spec(meta)
    if expect is not None:
      checkpoints.check_architecture(stored, expect, s, mgr.directory)
    if not with_variables:
      return stored, None, meta
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                            counting.abstract_variables(network.make(stored), tuple(meta['image_shape'])))
    abstract = {k: abstract.get(k, {}) for k in ('params', 'batch_stats')}
    args = ocp.args.PyTreeRestore(item=abstract, partial_restore=True,
                                  restore_args=ocp.checkpoint_utils.construct_restore_args(abstract))
    try:
      variables = mgr.restore(s, args=ocp.args.Composite(state=args))['state']
    except Exception as e:  # Orbax raises many types for unreadable files
      raise checkpoints.IntegrityError(f'unreadable: {type(e).__name__}: {checkpoints.first_line(e)}') from None
    checkpoints.verify(variables, meta)
    return stored, dict(variables), meta

  try:
    (stored, variables, meta), _, _ = checkpoints.newest_verified(mgr, load, step)
  finally:
    mgr.close()
  model = network.make(stored.canonical())
  return model, None if variables is None else layout.to_unrolled(stored, variables), meta
