"""A run's record in its workdir: `config.json`, `metrics.jsonl`, `starts.jsonl`, the final row and the
run's status.

`starts.jsonl` has one line per start of the run (`from_step`, and the config fields that changed since
the previous start, `{field: [before, after]}`): `config.json` is the latest start's config, and the
starts say what ran before. A resume may change only fields that do not change the result (layout,
logging and checkpoint cadence) or extend training (`RESUMABLE`); any other change is refused.

The one module that knows these files; training writes through it, the report and sweeps read through
it. Pure Python (no JAX), so reading a thousand runs costs nothing.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

from sparsenet_jax.errors import DriftError

CONFIG = 'config.json'
METRICS = 'metrics.jsonl'
CHECKPOINTS = 'checkpoints'
STARTS = 'starts.jsonl'

# Fields a resume may change without changing what the run computes (the layout is converted on
# restore; the rest only says when things are written or how evaluation is batched).
FREE = ('model.scan', 'model.scan_chunk', 'model.remat', 'model.conv_impl', 'model.remat_impl',
        'log_every_steps', 'eval_every_epochs', 'checkpoint_every_epochs', 'keep_checkpoints',
        'eval_batch_size', 'max_device_dataset_bytes')
# Fields that make a run longer: allowed on resume (the schedule only if the old one is a prefix of the
# new), and on a finished run only when asked (`--extend`).
LENGTH = ('num_epochs', 'num_train_steps', 'learning_rates', 'lr_boundaries_epochs')
RESUMABLE = FREE + LENGTH


def flatten(tree: Mapping[str, Any], prefix: str = '') -> Dict[str, Any]:
  """{'model': {'growth_rate': 12}} -> {'model.growth_rate': 12}."""
  out = {}
  for key, value in tree.items():
    if isinstance(value, Mapping) and value:
      out.update(flatten(value, f'{prefix}{key}.'))
    else:
      out[f'{prefix}{key}'] = value
  return out


def changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> Dict[str, Tuple[Any, Any]]:
  """{field: (before, after)} of every dotted field that differs (absent: None)."""
  a, b = flatten(before), flatten(after)
  return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _prefix(old: Any, new: Any) -> bool:
  old, new = list(old or []), list(new or [])
  return new[:len(old)] == old


def check_resume(workdir: str, config: Mapping[str, Any], extend: bool = False) -> Dict[str, Tuple[Any, Any]]:
  """The changes from the recorded config.json that this start may make (empty for a new run or the
  same config); DriftError naming the field and both values for any other."""
  try:
    recorded = read_config(workdir)
  except (FileNotFoundError, NotADirectoryError):  # a new run (or no workdir at all: found later)
    return {}
  except (OSError, ValueError) as e:
    raise DriftError(f'cannot read the recorded {config_path(workdir)} ({e}); use another --workdir') from None
  diff = changes(recorded, config)
  for field, (was, now) in diff.items():
    if field not in RESUMABLE or (field in ('learning_rates', 'lr_boundaries_epochs') and not _prefix(was, now)):
      raise DriftError(f'{workdir} was started with {field}={was!r}, this command gives {field}={now!r}: '
                       'a resumed run must keep every field that changes its result; use another --workdir '
                       'or the recorded value')
  longer = [f for f in diff if f in LENGTH]
  if longer and status(workdir) == 'done' and not extend:
    f = longer[0]
    raise DriftError(f'{workdir} is finished ({f}={diff[f][0]!r}); this command gives {f}={diff[f][1]!r}: '
                     'add --extend to train it further, or use another --workdir')
  return diff


def append_start(workdir: str, from_step: int, diff: Mapping[str, Tuple[Any, Any]]) -> None:
  with open(os.path.join(workdir, STARTS), 'a') as f:
    f.write(json.dumps({'time': time.strftime('%Y-%m-%dT%H:%M:%S'), 'from_step': from_step,
                        'changes': {k: list(v) for k, v in diff.items()}}) + '\n')


def starts(workdir: str) -> List[Dict[str, Any]]:
  """Every recorded start, oldest first (none for runs older than the record of starts)."""
  out = []
  try:
    with open(os.path.join(workdir, STARTS)) as f:
      for line in f:
        try:
          out.append(json.loads(line))
        except ValueError:
          continue
  except FileNotFoundError:
    pass
  return out


def config_path(workdir: str) -> str:
  return os.path.join(workdir, CONFIG)


def metrics_path(workdir: str) -> str:
  return os.path.join(workdir, METRICS)


def write_config(workdir: str, config_json: str) -> None:
  """Writes config.json atomically (a kill never leaves half a file)."""
  path = config_path(workdir)
  tmp = f'{path}.tmp{os.getpid()}'
  with open(tmp, 'w') as f:
    f.write(config_json)
  os.replace(tmp, path)


def read_config(workdir: str) -> Dict[str, Any]:
  """config.json as a nested dict; OSError or ValueError if it is missing or unreadable."""
  with open(config_path(workdir)) as f:
    config = json.load(f)
  if not isinstance(config, dict):
    raise ValueError(f'{config_path(workdir)} does not hold a JSON object')
  return config


def append_row(workdir: str, row: Mapping[str, Any]) -> None:
  with open(metrics_path(workdir), 'a') as f:
    f.write(json.dumps(dict(row)) + '\n')


def raw_rows(workdir: str) -> List[Dict[str, Any]]:
  """Every row of metrics.jsonl in file order (a torn last line from a killed process is skipped)."""
  rows = []
  try:
    with open(metrics_path(workdir)) as f:
      for line in f:
        try:
          row = json.loads(line)
        except ValueError:
          continue
        if isinstance(row, dict):
          rows.append(row)
  except (FileNotFoundError, NotADirectoryError):
    pass
  return rows


def _kind(row: Mapping[str, Any]) -> str:
  if row.get('mode') == 'eval':
    return 'eval_mode'
  return 'eval' if 'eval_error' in row or 'eval_accuracy' in row else 'train'


def select(rows: List[Dict[str, Any]], kind: str) -> List[Dict[str, Any]]:
  """The rows of one kind ('train', 'eval' during training, 'eval_mode') in step order, the last row of
  each step kept: a resumed run writes again the steps after its last checkpoint."""
  by_step = {row.get('step'): row for row in rows if _kind(row) == kind}
  return [by_step[s] for s in sorted(by_step, key=lambda s: s or 0)]


def final(rows: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
  """The final evaluation of a finished run (`"final": true`), or None."""
  finals = [r for r in rows if r.get('final') is True]
  return finals[-1] if finals else None


def final_row(workdir: str) -> Optional[Dict[str, Any]]:
  return final(raw_rows(workdir))


def status(workdir: str) -> str:
  """'done' (finished), 'partial' (started: the same command resumes it) or 'new'."""
  if final_row(workdir) is not None:
    return 'done'
  return 'partial' if os.path.isdir(workdir) else 'new'


def has_checkpoints(workdir: str) -> bool:
  return os.path.isdir(os.path.join(workdir, CHECKPOINTS))


def find_runs(root: str) -> List[str]:
  """Every directory under `root` (itself included) holding a config.json, in name order."""
  if not os.path.isdir(root):
    raise ValueError(f'no such directory: {root}')
  found = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = sorted(d for d in dirnames if not d.startswith('.'))
    if CONFIG in filenames:
      dirnames[:] = []  # a run's checkpoints hold no runs
      found.append(dirpath)
  return found
