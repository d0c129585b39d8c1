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
  mgr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                         meta=ocp.args.JsonSave(meta)), force=True)


def read_meta(mgr: ocp.CheckpointManager, step: int) -> Dict[str, Any]:
  try:
    return mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']
  except Exception as e:  # Orbax raises many types for unreadable files
    raise CheckpointError(f'cannot read checkpoint {step} in {mgr.directory}: {type(e).__name__}: '
                          f'{e}'.split('\n')[0])


def restore(mgr: ocp.CheckpointManager, abstract_state: Any, meta: Dict[str, Any],
            step: Optional[int] = None) -> Tuple[Any, Dict[str, Any]]:
  """The state at `step` (default latest); raises CheckpointError if its model differs from `meta`'s."""
  step = mgr.latest_step() if step is None else step
  where = mgr.directory
  saved_meta = read_meta(mgr, step)
  for key in ('model', 'num_classes', 'image_shape'):
    if key in meta and saved_meta.get(key) != meta[key]:
      raise CheckpointError(f'checkpoint {step} in {where} was written for {key}={saved_meta.get(key)}, '
                            f'but the config gives {key}={meta[key]}; use another --workdir or the old config')
  try:
    state = mgr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))['state']
  except Exception as e:
    raise CheckpointError(f'cannot restore checkpoint {step} in {where}: {type(e).__name__}: {e}'.split('\n')[0])
  return state, saved_meta
