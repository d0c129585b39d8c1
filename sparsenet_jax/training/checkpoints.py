"""Orbax checkpoints of the whole train state, in the canonical (unrolled) layout, plus a JSON `meta`.

Orbax writes each step into a temporary directory and renames it when complete, so a process killed in
the middle of a save leaves no checkpoint that `latest_step` would pick up. The state is stored in the
unrolled layout whatever the run's `scan`/`scan_chunk`/`remat`, so a run may change them between
restarts; `meta` records the model's architecture (`ModelSpec.architecture()`), which a restore must
match, and the layout the state was written in (older checkpoints may hold a scanned one).

Integrity: `meta['digests']` holds a SHA-256 of every array of the saved (canonical) state, computed
from the arrays in memory as they are handed to Orbax. Every restore recomputes them on what it read; a
checkpoint whose bytes changed on disk (or that cannot be read at all) is passed over for the newest one
that verifies, with one warning line; if none verifies the restore fails and nothing is deleted.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

import jax
from jax.experimental import multihost_utils
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import orbax.checkpoint as ocp

from sparsenet_jax.errors import CheckpointError, IntegrityError
from sparsenet_jax.model import layout
from sparsenet_jax.model.spec import ModelSpec
from sparsenet_jax.training import record


FAILED = 'checkpoints_failed'  # where training moves checkpoints that fail verification (never deleted)


def directory(workdir: str) -> str:
  """WORKDIR/checkpoints, absolute; CheckpointError when something other than a directory is there (Orbax
  would fail on it in many lines, or start the run again from step 0)."""
  path = os.path.abspath(os.path.join(workdir, record.CHECKPOINTS))
  if os.path.lexists(path) and not os.path.isdir(path):
    kind = 'a link to nothing' if os.path.islink(path) else 'a file'
    raise CheckpointError(f'{path} is {kind}, not a directory of checkpoints: move it aside (put the '
                          'checkpoints back there to resume)')
  return path


def manager(workdir: str, keep: int = 3, read_only: bool = False) -> ocp.CheckpointManager:
  directory_ = directory(workdir)
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=not read_only, read_only=read_only,
                                         cleanup_tmp_directories=not read_only)
  return ocp.CheckpointManager(directory_, options=options, item_names=('state', 'meta'))


def present(workdir: str) -> bool:
  """Whether WORKDIR/checkpoints exists, as process 0 sees it, on every process of a run: the others may
  already see the directory process 0's CheckpointManager creates, and Orbax's managers are collective
  (each one's barriers must be entered by all processes or none)."""
  found = os.path.isdir(directory(workdir))
  if jax.process_count() > 1:
    found = bool(multihost_utils.broadcast_one_to_all(np.int32(found)))
  return found


def saved_steps(workdir: str) -> List[int]:
  """The complete checkpoints' steps in WORKDIR/checkpoints, oldest first; nothing is created. Called by
  every process of a run together (see `present`)."""
  if not present(workdir):
    return []
  mgr = manager(workdir, read_only=True)
  try:
    return sorted(mgr.all_steps())
  finally:
    mgr.close()


def first_line(e: Exception) -> str:
  """The whole message on one line (Orbax and TensorStore messages span lines; none is cut)."""
  text = ' '.join(str(e).split()).split(' See full TensorStore details')[0]
  text = re.sub(r" ?\[tensorstore_spec(\[\d+\])?='.*?'\]", '', text)  # JSON specs of the store
  return re.sub(r'(Error opening "\w+" driver: )+', '', text)


def _name(path) -> str:
  parts = []
  for k in path:
    parts.append(str(getattr(k, 'name', getattr(k, 'key', getattr(k, 'idx', k)))))
  return '/'.join(parts)


def _host_array(x) -> np.ndarray:
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    x = x.addressable_data(0)  # replicated: every process holds the whole array
  return np.ascontiguousarray(np.asarray(x))


def digests(tree: Any) -> Dict[str, str]:
  """SHA-256 of every array leaf (its dtype, shape and bytes), keyed by its path ('params/...')."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    a = _host_array(leaf)
    h = hashlib.sha256(f'{a.dtype.str}{a.shape}'.encode())
    h.update(a.tobytes())
    out[_name(path)] = h.hexdigest()
  return out


def verify(tree: Any, meta: Dict[str, Any]) -> None:
  """Raises IntegrityError if a restored array differs from the digest saved with it. Checkpoints
  written before digests existed have none and pass."""
  saved = meta.get('digests')
  if not saved:
    return
  for name, digest in digests(tree).items():
    if name not in saved:
      raise IntegrityError(f'{name} has no digest')
    if saved[name] != digest:
      raise IntegrityError(f'{name} differs from its digest')


def newest_verified(mgr: ocp.CheckpointManager, load: Callable[[int], Any], step: Optional[int] = None,
                    warn: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)
                    ) -> Tuple[Any, int, List[int]]:
  """(load(s), s, the newer steps that failed) for the newest step s whose `load` raises no
  IntegrityError; `step` restricts the search to that one. One warning line when a newer one failed;
  CheckpointError (one line) when none verifies."""
  candidates = [step] if step is not None else sorted(mgr.all_steps(), reverse=True)
  if not candidates:
    raise CheckpointError(f'no complete checkpoint in {mgr.directory}: train first')
  failed = []
  for s in candidates:
    try:
      result = load(s)
    except IntegrityError as e:
      failed.append((s, str(e)))
      continue
    if failed:
      names = ', '.join(str(f) for f, _ in failed)
      why = '; '.join(f'{f}: {m}' for f, m in failed)
      warn(f'warning: checkpoint{"s" if len(failed) > 1 else ""} {names} in {mgr.directory} failed '
           f'verification ({why}); using checkpoint {s}, the newest that verifies')
    return result, s, [f for f, _ in failed]
  why = '; '.join(f'{f}: {m}' for f, m in failed)
  raise CheckpointError(f'no checkpoint in {mgr.directory} verifies ({why}); nothing was deleted')


def set_aside(mgr: ocp.CheckpointManager, workdir: str, bad: List[int]) -> None:
  """Moves checkpoints that failed verification to WORKDIR/checkpoints_failed/<step> (process 0), so
  that training neither overwrites nor rotates on them; nothing is deleted."""
  if not bad:
    return
  if jax.process_index() == 0:
    dest = os.path.join(workdir, FAILED)
    os.makedirs(dest, exist_ok=True)
    for s in bad:
      target = os.path.join(dest, str(s))
      n = 1
      while os.path.exists(target):
        target, n = os.path.join(dest, f'{s}.{n}'), n + 1
      shutil.move(os.path.join(str(mgr.directory), str(s)), target)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('sparsenet_set_aside')
  mgr.reload()


def saved_spec(meta: Dict[str, Any]) -> ModelSpec:
  """The model a checkpoint holds, in the layout its state was written in.

  The meta embeds the run's description (`record.Description`); checkpoints before the canonical layout
  kept `scan`/`scan_chunk`/`remat` in `layout` (and `num_classes` beside the model): both are read.
  """
  try:
    return record.Description.from_json(meta).spec.replace(**(meta.get('layout') or {}))
  except (TypeError, ValueError) as e:
    raise CheckpointError(f'the checkpoint describes a model this version cannot build: {e}') from None


def convert(state: Any, src: ModelSpec, dst: ModelSpec, mesh) -> Any:
  """The train state (params, batch_stats and the optimiser's params-shaped moments) from the layout
  of `src` to that of `dst`, replicated over `mesh`; the same object when the layouts agree."""
  def shape(spec):  # what decides the variables' layout
    return (spec.scan, spec.scan_chunk) if spec.scan else None
  if shape(src) == shape(dst):
    return state

  def one(tree, like):
    return layout.map_param_trees(
        lambda t: layout.to_scanned(dst, layout.to_unrolled(src, {'t': t}))['t'], tree, like)

  def move(s):
    return s.replace(params=one(s.params, s.params), batch_stats=one(s.batch_stats, s.batch_stats),
                     opt_state=one(s.opt_state, s.params))
  return jax.jit(move, out_shardings=NamedSharding(mesh, P()))(state)


def save(mgr: ocp.CheckpointManager, step: int, state: Any, spec: ModelSpec, description: record.Description,
         extra: Dict[str, Any], mesh) -> None:
  """Starts an (asynchronous) save in the canonical layout, the run's description and `extra` in its
  meta; a failure of this or the previous save is a CheckpointError."""
  canonical = spec.canonical()
  state = convert(state, spec, canonical, mesh)
  meta = {**description.to_json(), **extra, 'layout': {'scan': canonical.scan}, 'digests': digests(state)}
  try:
    mgr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                           meta=ocp.args.JsonSave(meta)), force=True)
  except Exception as e:
    raise CheckpointError(f'saving checkpoint {step} in {mgr.directory} failed ({type(e).__name__}: '
                          f'{first_line(e)}); earlier complete checkpoints are intact') from e


def wait(mgr: ocp.CheckpointManager) -> None:
  """Blocks until pending saves are on disk; a failed background save is a CheckpointError."""
  try:
    mgr.wait_until_finished()
  except Exception as e:
    raise CheckpointError(f'a checkpoint save in {mgr.directory} failed ({type(e).__name__}: '
                          f'{first_line(e)}); earlier complete checkpoints are intact') from e


def read_meta(mgr: ocp.CheckpointManager, step: int) -> Dict[str, Any]:
  try:
    return mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']
  except Exception as e:  # Orbax raises many types for unreadable files
    raise IntegrityError(f'meta unreadable: {type(e).__name__}: {first_line(e)}') from None


def check_architecture(saved: ModelSpec, wanted: ModelSpec, what: str,
                       advice: str = 'use another --workdir or the old config', error=CheckpointError) -> None:
  """Refuses weights of another model (`what`: 'checkpoint 30 in DIR'), naming every architecture field
  that differs, as `error` (a CheckpointError when resuming, a ConfigError for config.init_from)."""
  diffs = saved.differences(wanted)
  if diffs:
    was = ', '.join(f'{k}={a}' for k, (a, _) in diffs.items())
    now = ', '.join(f'{k}={b}' for k, (_, b) in diffs.items())
    raise error(f'{what} was written for {was}, but the config gives {now}; {advice}')


def check_image_shape(meta: Dict[str, Any], image_shape, step: int, where: str) -> None:
  saved = list(meta.get('image_shape') or [])
  if saved != list(image_shape):
    raise CheckpointError(f'checkpoint {step} in {where} was written for image_shape={saved}, but the data '
                          f'has image_shape={list(image_shape)}; use another --workdir or the old data')


class Restored(NamedTuple):
  tree: Any  # what `abstract_for` asked for, as stored; None when it is None
  meta: Dict[str, Any]  # the checkpoint's meta: the run's description (record.Description) and more
  stored: ModelSpec  # the model in the layout `tree` was written in
  step: int
  failed: List[int]  # newer steps that failed verification


def restore_checkpoint(mgr: ocp.CheckpointManager,
                       abstract_for: Optional[Callable[[ModelSpec, record.Description], Any]] = None, *,
                       expect: Optional[Callable[[record.Description], ModelSpec]] = None,
                       image_shape=None, partial: bool = False, step: Optional[int] = None) -> Restored:
  """The one way a checkpoint is read: resuming training and `restore.restore_run` (eval, predict,
  export) both come here. The newest step that verifies (or `step`): its meta, the one architecture
  check (against `expect(description)`, when given) and image-shape check, the arrays
  `abstract_for(stored spec, description)` describes (with `partial`, a sub-tree of the state such as
  the variables),
  verified against their digests; an unreadable or damaged step is passed over for an older one."""
  where = mgr.directory

  def load(s):
    meta = read_meta(mgr, s)
    stored = saved_spec(meta)
    description = record.Description.from_json(meta)
    if expect is not None:
      check_architecture(stored, expect(description), f'checkpoint {s} in {where}')
    if image_shape is not None:
      check_image_shape(meta, image_shape, s, where)
    if abstract_for is None:
      return None, meta, stored
    abstract = abstract_for(stored, description)
    if partial:
      args = ocp.args.PyTreeRestore(item=abstract, partial_restore=True,
                                    restore_args=ocp.checkpoint_utils.construct_restore_args(abstract))
    else:
      args = ocp.args.StandardRestore(abstract)
    try:
      tree = mgr.restore(s, args=ocp.args.Composite(state=args))['state']
    except Exception as e:  # Orbax raises many types for unreadable files
      raise IntegrityError(f'unreadable: {type(e).__name__}: {first_line(e)}') from None
    verify(tree, meta)
    return tree, meta, stored

  (tree, meta, stored), s, failed = newest_verified(mgr, load, step)
  return Restored(tree, dict(meta, step=s), stored, s, failed)


def restore(mgr: ocp.CheckpointManager, abstract_state_for, spec: ModelSpec, image_shape, mesh,
            step: Optional[int] = None) -> Tuple[Any, Dict[str, Any], List[int]]:
  """Training's resume through `restore_checkpoint`: (train state in the layout of `spec`, meta, newer
  steps that failed verification). `abstract_state_for(spec)` gives the abstract train state of a spec
  (shapes and shardings). CheckpointError if the architecture or image shape differs from `spec`'s."""
  def as_stored(stored):  # this run's model in the layout the checkpoint was written in
    return spec.replace(scan=stored.scan, scan_chunk=stored.scan_chunk)
  r = restore_checkpoint(mgr, lambda stored, _: abstract_state_for(as_stored(stored)), expect=lambda _: spec,
                         image_shape=image_shape, step=step)
  return convert(r.tree, as_stored(r.stored), spec, mesh), r.meta, r.failed
