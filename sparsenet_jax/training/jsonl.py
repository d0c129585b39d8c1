"""JSON-lines files (a run's metrics.jsonl and starts.jsonl): read line by line, appended on a fresh line.

A process killed in the middle of a write leaves a cut last line, and a disk, a copy or a hand edit can
damage any line. `read` skips every line that is not a JSON object its caller accepts, with one warning
line per file naming the file, the lines and why (once per process for the same damage), and keeps the
others. `append` ends a cut last line first, so a new row never glues onto a fragment and the next
reader loses only the fragment. What a row must hold is the caller's rule (`record` owns the files).
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, Dict, List, Mapping, Optional, Set, Tuple

from sparsenet_jax.errors import RecordError

Check = Callable[[Dict[str, Any]], Optional[str]]  # a row -> what is wrong with it, or None
_WARNED: Set[Tuple[str, Tuple[Tuple[int, str], ...]]] = set()
_SHOWN = 3  # damaged lines named in a warning; the rest are counted


def _warn(line: str) -> None:
  print(line, file=sys.stderr, flush=True)


def read(path: str, check: Optional[Check] = None, warn: Callable[[str], None] = _warn) -> List[Dict[str, Any]]:
  """Every row of `path` that is a JSON object `check` accepts, in file order; [] when there is no file.
  RecordError (naming the file) when it is there but cannot be read at all (a directory, no permission)."""
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except (FileNotFoundError, NotADirectoryError):
    return []
  except OSError as e:
    raise RecordError(f'cannot read {path}: {e.strerror or e}') from None
  rows, damaged = [], []
  lines = data.split(b'\n')
  for number, raw in enumerate(lines, 1):
    if not raw.strip():
      continue
    problem, row = _parse(raw, cut=number == len(lines))
    if problem is None and check is not None:
      problem = check(row)
    if problem is None:
      rows.append(row)
    else:
      damaged.append((number, problem))
  if damaged:
    key = (os.path.abspath(path), tuple(damaged))
    if key not in _WARNED:
      _WARNED.add(key)
      shown = '; '.join(f'line {n}: {why}' for n, why in damaged[:_SHOWN])
      more = f'; and {len(damaged) - _SHOWN} more' if len(damaged) > _SHOWN else ''
      warn(f'warning: {path}: skipped {len(damaged)} damaged line{"s" if len(damaged) > 1 else ""} '
           f'({shown}{more}); the other rows are used')
  return rows


def _parse(raw: bytes, cut: bool) -> Tuple[Optional[str], Any]:
  """(None, the row) or (what is wrong, None); `cut`: the file's last line, without its end of line."""
  try:
    text = raw.decode('utf-8')
  except UnicodeDecodeError as e:
    return f'byte 0x{raw[e.start]:02x} at column {e.start + 1} is not UTF-8 text', None
  try:
    row = json.loads(text)
  except ValueError:
    return ('cut short (no end of line): a write that did not finish' if cut else 'not JSON'), None
  if not isinstance(row, dict):
    return f'a JSON {type(row).__name__}, not an object', None
  return None, row


def append(path: str, row: Mapping[str, Any]) -> None:
  """Appends `row` as one line; a last line without its end of line (a cut write) is ended first."""
  line = (json.dumps(dict(row)) + '\n').encode()
  with open(path, 'a+b') as f:
    f.seek(0, os.SEEK_END)
    if f.tell():
      f.seek(-1, os.SEEK_END)
      if f.read(1) != b'\n':
        line = b'\n' + line
    f.write(line)
