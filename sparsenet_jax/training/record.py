"""A run's record in its workdir: `config.json`, `metrics.jsonl`, the final row and the run's status.

The one module that knows these files; training writes through it, the report and sweeps read through
it. Pure Python (no JAX), so reading a thousand runs costs nothing.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Mapping, Optional

CONFIG = 'config.json'
METRICS = 'metrics.jsonl'
CHECKPOINTS = 'checkpoints'


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
  except FileNotFoundError:
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
