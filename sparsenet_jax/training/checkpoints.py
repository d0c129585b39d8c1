"""Orbax checkpoints of the whole train state, in the canonical (unrolled) layout, plus a JSON `meta`.

Orbax writes each step into a temporary directory and renames it when complete, so a process killed in
the middle of a save leaves no checkpoint that `latest_step` would pick up. The state is stored in the
unrolled layout whatever the run's `scan`/`scan_chunk`/`remat`, so a run may change them between
restarts; `meta` records the model's architecture (`ModelSpec.architecture()`), which a restore must
match, and the layout the state was written in (older checkpoints may hold a scanned one).
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple

import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import orbax.checkpoint as ocp

from sparsenet_jax.model import layout
from sparsenet_jax.model.spec import ModelSpec
from sparsenet_jax.training import record



class CheckpointError(RuntimeError):
  """A checkpoint that cannot be used for this run; the message is one line."""


def manager(workdir: str, keep: int = 3, read_only: bool = False) -> ocp.CheckpointManager:
  directory = os.path.abspath(os.path.join(workdir, record.CHECKPOINTS))
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=not read_only, read_only=read_only,
                                         cleanup_tmp_directories=not read_only)
  return ocp.CheckpointManager(directory, options=options, item_names=('state', 'meta'))


def _first_line(e: Exception) -> str:
  return (str(e).strip().splitlines() or [''])[0]


def saved_spec(meta: Dict[str, Any]) -> ModelSpec:
  """The model a checkpoint holds, in the layout its state was written in.

  Checkpoints before the canonical layout kept `scan`/`scan_chunk`/`remat` (and `num_classes` beside
  the model); both spellings are read.
  """
  model = dict(meta.get('model') or {})
  if 'num_classes' not in model and 'num_classes' in meta:
    model['num_classes'] = meta['num_classes']
  model.update(meta.get('layout') or {})
  try:
    return ModelSpec.from_json(model)
  except (TypeError, ValueError) as e:
    raise CheckpointError(f'the checkpoint describes a model this version cannot build: {e}') from None


def convert(state: Any, src: ModelSpec, dst: ModelSpec, mesh) -> Any:
  """The train state (params, batch_stats and the optimiser's params-shaped moments) from the layout
  of `src` to that of `dst`, replicated over `mesh`; the same object when the layouts agree."""
  if all(getattr(src, f) == getattr(dst, f) for f in ('scan', 'scan_chunk')) or (not src.scan and not dst.scan):
    return state

  def one(tree, like):
    return layout.map_param_trees(
        lambda t: layout.to_scanned(dst, layout.to_unrolled(src, {'t': t}))['t'], tree, like)

  def move(s):
    return s.replace(params=one(s.params, s.params), batch_stats=one(s.batch_stats, s.batch_stats),
                     opt_state=one(s.opt_state, s.params))
  return jax.jit(move, out_shardings=NamedSharding(mesh, P()))(state)


def save(mgr: ocp.CheckpointManager, step: int, state: Any, spec: ModelSpec, meta: Dict[str, Any],
         mesh) -> None:
  """Starts an (asynchronous) save in the canonical layout; a failure of this or the previous save is
  a CheckpointError."""
  canonical = spec.canonical()
  state = convert(state, spec, canonical, mesh)
  meta = {**meta, 'model': spec.architecture(), 'layout': {'scan': canonical.scan}}
  try:
    mgr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                           meta=ocp.args.JsonSave(meta)), force=True)
  except Exception as e:
    raise CheckpointError(f'saving checkpoint {step} in {mgr.directory} failed ({type(e).__name__}: '
                          f'{_first_line(e)}); earlier complete checkpoints are intact') from e


def wait(mgr: ocp.CheckpointManager) -> None:
  """Blocks until pending saves are on disk; a failed background save is a CheckpointError."""
  try:
    mgr.wait_until_finished()
  except Exception as e:
    raise CheckpointError(f'a checkpoint save in {mgr.directory} failed ({type(e).__name__}: '
                          f'{_first_line(e)}); earlier complete checkpoints are intact') from e


def read_meta(mgr: ocp.CheckpointManager, step: int) -> Dict[str, Any]:
  try:
    return mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']
  except Exception as e:  # Orbax raises many types for unreadable files
    raise CheckpointError(f'cannot read checkpoint {step} in {mgr.directory}: {type(e).__name__}: '
                          f'{_first_line(e)}') from e


def check_architecture(saved: ModelSpec, wanted: ModelSpec, step: int, where: str) -> None:
  """Refuses a checkpoint of another model, naming every architecture field that differs."""
  diffs = saved.differences(wanted)
  if diffs:
    was = ', '.join(f'{k}={a}' for k, (a, _) in diffs.items())
    now = ', '.join(f'{k}={b}' for k, (_, b) in diffs.items())
    raise CheckpointError(f'checkpoint {step} in {where} was written for {was}, but the config gives {now}; '
                          'use another --workdir or the old config')


def check_image_shape(meta: Dict[str, Any], image_shape, step: int, where: str) -> None:
  saved = list(meta.get('image_shape') or [])
  if saved != list(image_shape):
    raise CheckpointError(f'checkpoint {step} in {where} was written for image_shape={saved}, but the data '
                          f'has image_shape={list(image_shape)}; use another --workdir or the old data')


def restore(mgr: ocp.CheckpointManager, abstract_state_for, spec: ModelSpec, image_shape, mesh,
            step: Optional[int] = None) -> Tuple[Any, Dict[str, Any]]:
  """The train state at `step` (default latest) in the layout of `spec`.

  `abstract_state_for(spec)` gives the abstract train state of a spec (shapes and shardings). Raises
  CheckpointError if the checkpoint's architecture or image shape differs from `spec`'s.
  """
  step = mgr.latest_step() if step is None else step
  where = mgr.directory
  meta = read_meta(mgr, step)
  stored = saved_spec(meta)
  check_architecture(stored, spec, step, where)
  check_image_shape(meta, image_shape, step, where)
  stored = spec.replace(scan=stored.scan, scan_chunk=stored.scan_chunk)
  try:
    state = mgr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state_for(stored))))['state']
  except Exception as e:
    raise CheckpointError(f'cannot restore checkpoint {step} in {where}: {type(e).__name__}: '
                          f'{_first_line(e)}') from e
  return convert(state, stored, spec, mesh), meta
