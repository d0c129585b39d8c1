"""Orbax checkpoints of the whole train state, plus a small JSON record of what was trained.

Orbax writes each step into a temporary directory and renames it when complete, so a process killed in
the middle of a save leaves no checkpoint that `latest_step` would pick up. The JSON `meta` item lets a
restore say precisely why a checkpoint does not fit the configured model.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple

import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
  """A checkpoint that cannot be used for this run; the message is one line."""


def manager(workdir: str, keep: int = 3, read_only: bool = False) -> ocp.CheckpointManager:
  directory = os.path.abspath(os.path.join(workdir, 'checkpoints'))
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=not read_only, read_only=read_only,
                                         cleanup_tmp_directories=not read_only)
  return ocp.CheckpointManager(directory, options=options, item_names=('state', 'meta'))


def save(mgr: ocp.CheckpointManager, step: int, state: Any, meta: Dict[str, Any]) -> None:
  """Starts an (asynchronous) save; a failure of this or the previous save is a CheckpointError."""
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


def _flatten(meta: Dict[str, Any], keys_from: Dict[str, Any]) -> Dict[str, Any]:
  """The fields a checkpoint must agree on: model hyperparameters (flattened), classes, image shape."""
  out = {}
  for key in ('model', 'num_classes', 'image_shape'):
    if key not in keys_from:
      continue
    value = meta.get(key)
    if key == 'model':
      out.update({k: (value or {}).get(k) for k in keys_from['model'] if k != 'num_classes'})
    else:
      out[key] = value
  return out


def _first_line(e: Exception) -> str:
  return (str(e).strip().splitlines() or [''])[0]


def read_meta(mgr: ocp.CheckpointManager, step: int) -> Dict[str, Any]:
  try:
    return mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']
  except Exception as e:  # Orbax raises many types for unreadable files
    raise CheckpointError(f'cannot read checkpoint {step} in {mgr.directory}: {type(e).__name__}: '
                          f'{_first_line(e)}') from e


def restore(mgr: ocp.CheckpointManager, abstract_state: Any, meta: Dict[str, Any],
            step: Optional[int] = None) -> Tuple[Any, Dict[str, Any]]:
  """The state at `step` (default latest); raises CheckpointError if its model differs from `meta`'s."""
  step = mgr.latest_step() if step is None else step
  where = mgr.directory
  saved_meta = read_meta(mgr, step)
  saved, wanted = _flatten(saved_meta, meta), _flatten(meta, meta)
  diffs = [k for k in wanted if saved.get(k) != wanted[k]]
  if diffs:
    was = ', '.join(f'{k}={saved.get(k)}' for k in diffs)
    now = ', '.join(f'{k}={wanted[k]}' for k in diffs)
    raise CheckpointError(f'checkpoint {step} in {where} was written for {was}, but the config gives {now}; '
                          'use another --workdir or the old config')
  try:
    state = mgr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))['state']
  except Exception as e:
    raise CheckpointError(f'cannot restore checkpoint {step} in {where}: {type(e).__name__}: '
                          f'{_first_line(e)}') from e
  return state, saved_meta
