"""A run's record in its workdir: `config.json`, `run.json`, `metrics.jsonl`, `starts.jsonl`, the final row
and the run's status.

`run.json` is the run's description (`description.Description`, also `record.Description`): the model
the config resolved to and the facts of the data it trains on, written at every start.

`starts.jsonl` has one line per start of the run (`from_step`, and the config fields that changed since
the previous start, `{field: [before, after]}`): `config.json` is the latest start's config, and the
starts say what ran before. What decides a run's result is one rule, `identity`: the config without
the `NEUTRAL` fields (the model's layout fields, by their kind in `ModelSpec`, and the named cadence and
data-location fields), the model as its resolved architecture, and the data's content fingerprint. A
resume may change only fields outside it or extend training (`LENGTH`); the report groups runs by it,
less the seed.

The one module that knows these files; training writes through it, the report and sweeps read through
it. Each is checked as it is read: a file that cannot be used is a RecordError naming it and what is wrong;
a damaged line of a JSON-lines file (`jsonl`) is skipped with a warning, a row that lacks what its readers
need (`row_problem`, `start_problem`) too. Pure Python (no JAX), so reading a thousand runs costs nothing.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

from sparsenet_jax.errors import DriftError, RecordError
from sparsenet_jax.model import presets
from sparsenet_jax.model import spec as spec_lib
from sparsenet_jax.training import jsonl
from sparsenet_jax.training.description import Description, is_integer, is_number  # noqa: F401 (a name of record)

CONFIG = 'config.json'
DESCRIPTION = 'run.json'
METRICS = 'metrics.jsonl'
CHECKPOINTS = 'checkpoints'
STARTS = 'starts.jsonl'

# Fields that never change what a run computes. The model's layout fields (converted on restore) come
# from the spec's field kinds; the rest say when things are written, how evaluation is batched and
# where the data is read from (its content is checked by fingerprint instead).
LAYOUT = tuple(f'model.{f}' for f in spec_lib.FIELDS if spec_lib.KIND[f] == spec_lib.LAYOUT)
CADENCE = ('log_every_steps', 'eval_every_epochs', 'checkpoint_every_epochs', 'keep_checkpoints',
           'eval_batch_size', 'max_device_dataset_bytes', 'dataset.num_workers')
DATA_LOCATION = ('dataset.data_dir', 'dataset.download', 'dataset.mirror', 'dataset.train_path',
                 'dataset.test_path', 'dataset.root')
NEUTRAL = LAYOUT + CADENCE + DATA_LOCATION
# Fields that make a run longer: allowed on resume (the schedule only if the old one is a prefix of the
# new), and on a finished run only when asked (`--extend`).
LENGTH = ('num_epochs', 'num_train_steps', 'learning_rates', 'lr_boundaries_epochs')
RESUMABLE = NEUTRAL + LENGTH
# Runs that differ only in these (and in NEUTRAL fields) repeat one experiment: one row of the report.
REPLICATE = ('seed',)
_FILES = ('dataset.train_path', 'dataset.test_path', 'dataset.root')  # where a file's content is read


def identity(config: Mapping[str, Any], description: Optional[Description] = None) -> Dict[str, Any]:
  """What decides a run's result, as dotted fields: the config without the NEUTRAL fields, the model
  as its resolved architecture (one spelling however the config wrote it, the class count the data's),
  and the data's fingerprint when one is recorded (else which files the data was read from)."""
  flat = flatten(config)
  out = {k: v for k, v in flat.items() if k not in NEUTRAL and not k.startswith('model.')}
  out['model.name'] = flat.get('model.name')
  try:
    spec = presets.from_config(config, description.num_classes if description else None)
    out.update({f'model.{k}': tuple(v) if isinstance(v, list) else v for k, v in spec.architecture().items()})
    if description is None:
      out['model.num_classes'] = flat.get('model.num_classes')  # the data's, unknown here
  except (KeyError, TypeError, ValueError):  # a config this version cannot build: compared as written
    out.update({k: v for k, v in flat.items() if k.startswith('model.') and k not in NEUTRAL})
  if description is not None and description.fingerprint:
    out['data.fingerprint'] = description.fingerprint
  else:
    out.update({k: flat[k] for k in _FILES if flat.get(k) is not None})
  return out


def flatten(tree: Mapping[str, Any], prefix: str = '') -> Dict[str, Any]:
  """{'model': {'blocks': [8, 12]}} -> {'model.blocks': (8, 12)}: lists become tuples, so values
  compare and hash alike whether they came from JSON or from a config."""
  out = {}
  for key, value in tree.items():
    if isinstance(value, Mapping) and value:
      out.update(flatten(value, f'{prefix}{key}.'))
    else:
      out[f'{prefix}{key}'] = tuple(value) if isinstance(value, list) else value
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
  same config); DriftError naming the field and both values for any change of the run's `identity`
  other than a longer run."""
  try:
    recorded = read_config(workdir)
  except (FileNotFoundError, NotADirectoryError):  # a new run (or no workdir at all: found later)
    return {}
  description = read_description(workdir)
  was_id, now_id = identity(recorded, description), identity(config, description)
  for field in sorted(set(was_id) | set(now_id)):
    was, now = was_id.get(field), now_id.get(field)
    if was == now:
      continue
    if field not in LENGTH or (field in ('learning_rates', 'lr_boundaries_epochs') and not _prefix(was, now)):
      raise DriftError(f'{workdir} was started with {field}={was!r}, this command gives {field}={now!r}: '
                       'a resumed run must keep every field that changes its result; use another --workdir '
                       'or the recorded value')
  diff = changes(recorded, config)
  longer = [f for f in diff if f in LENGTH]
  if longer and status(workdir) == 'done' and not extend:
    f = longer[0]
    raise DriftError(f'{workdir} is finished ({f}={diff[f][0]!r}); this command gives {f}={diff[f][1]!r}: '
                     'add --extend to train it further, or use another --workdir')
  return diff


def check_data(workdir: str, description: Description) -> None:
  """Refuses to resume a run on data whose content differs from what it was trained on (a moved copy
  of the same data has the same fingerprint and continues)."""
  recorded = read_description(workdir)
  if recorded is None or not recorded.fingerprint or recorded.fingerprint == description.fingerprint:
    return
  raise DriftError(f'{workdir} was trained on {recorded.dataset} data with fingerprint {recorded.fingerprint}, '
                   f'but the data this command reads ({description.dataset}) has fingerprint '
                   f'{description.fingerprint}: a resumed run must read the same data; use another --workdir')


def write_description(workdir: str, description: Description) -> None:
  _write_atomically(os.path.join(workdir, DESCRIPTION), json.dumps(description.to_json(), indent=2) + '\n')


def read_description(workdir: str) -> Optional[Description]:
  """The run's description, or None for a run that has none (not started, or older than run.json).
  RecordError naming the file and what is wrong if it is there but unusable (`Description.problem`)."""
  path = os.path.join(workdir, DESCRIPTION)
  data = _read_json(path, _REWRITTEN)
  if data is None:
    return None
  if not isinstance(data, dict):
    raise RecordError(f'{path} holds a JSON {type(data).__name__}, not a run description; {_REWRITTEN}')
  try:
    description = Description.from_json(data)
    problem = description.problem()
  except (TypeError, ValueError) as e:
    problem = str(e)
  if problem:
    raise RecordError(f'{path} is damaged: {problem}; {_REWRITTEN}')
  return description


_REWRITTEN = 'delete it, and the next start of the run writes it again'
_RESTORE = 'restore it from a copy, or start the run again in another workdir'


def _read_json(path: str, advice: str) -> Any:
  """The JSON value in `path`, None if there is no file; RecordError naming it, what is wrong and
  `advice` if it cannot be read."""
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except (FileNotFoundError, NotADirectoryError):
    return None
  except OSError as e:
    raise RecordError(f'cannot read {path}: {e.strerror or e}; {advice}') from None
  try:
    return json.loads(data.decode('utf-8'))
  except UnicodeDecodeError as e:
    raise RecordError(f'{path} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); '
                      f'{advice}') from None
  except ValueError as e:
    what = 'empty' if not data.strip() else f'not JSON ({e})'
    raise RecordError(f'{path} is {what}; {advice}') from None


def append_start(workdir: str, from_step: int, diff: Mapping[str, Tuple[Any, Any]]) -> None:
  jsonl.append(os.path.join(workdir, STARTS), {'time': time.strftime('%Y-%m-%dT%H:%M:%S'), 'from_step': from_step,
                                              'changes': {k: list(v) for k, v in diff.items()}})


def start_problem(row: Mapping[str, Any]) -> Optional[str]:
  """What makes a line of starts.jsonl unusable: a step that is not a count, changes not {field: [a, b]}."""
  if not is_integer(row.get('from_step'), 0):
    return f'from_step must be an integer >= 0, got {row.get("from_step")!r}'
  changes = row.get('changes', {})
  if not isinstance(changes, dict) or not all(isinstance(v, list) and len(v) == 2 for v in changes.values()):
    return 'changes must map each field to [before, after]'
  return None


def starts(workdir: str) -> List[Dict[str, Any]]:
  """Every recorded start, oldest first (none for runs older than the record of starts); damaged lines
  are skipped with a warning."""
  return jsonl.read(os.path.join(workdir, STARTS), start_problem)


def config_path(workdir: str) -> str:
  return os.path.join(workdir, CONFIG)


def metrics_path(workdir: str) -> str:
  return os.path.join(workdir, METRICS)


def _write_atomically(path: str, text: str) -> None:
  """A kill never leaves half a file."""
  tmp = f'{path}.tmp{os.getpid()}'
  with open(tmp, 'w') as f:
    f.write(text)
  os.replace(tmp, path)


def write_config(workdir: str, config_json: str) -> None:
  _write_atomically(config_path(workdir), config_json)


# The fields of config.json its readers (a resume, the report, sweeps) rely on: (field, a test, what it must
# be, required); the others are compared as written.
_CONFIG_FIELDS = (('model.name', lambda v: isinstance(v, str), 'a preset name', True),
                  ('dataset.name', lambda v: isinstance(v, str), 'a dataset name', True),
                  ('num_epochs', is_number, 'a number', True),
                  ('num_train_steps', is_integer, 'an integer', False),
                  ('seed', is_integer, 'an integer', False))


def read_config(workdir: str) -> Dict[str, Any]:
  """config.json as a nested dict; FileNotFoundError (or NotADirectoryError) if there is none, RecordError
  naming the file and the field if it is there but unusable."""
  path = config_path(workdir)
  config = _read_json(path, _RESTORE)
  if config is None:
    raise FileNotFoundError(2, 'No such file', path)
  if not isinstance(config, dict):
    raise RecordError(f'{path} holds a JSON {type(config).__name__}, not a config object; {_RESTORE}')
  flat = flatten(config)
  for field, test, what, required in _CONFIG_FIELDS:
    if (field in flat or required) and not test(flat.get(field)):
      shown = f'has {flat[field]!r}' if field in flat else 'lacks it'
      raise RecordError(f'{path}: {field} must be {what}, the file {shown}; {_RESTORE}')
  return config


def append_row(workdir: str, row: Mapping[str, Any]) -> None:
  jsonl.append(metrics_path(workdir), row)


# Numbers a metrics row may hold, as the readers use them; non-finite values are written as strings.
_ROW_NUMBERS = ('epoch', 'train_loss', 'train_accuracy', 'learning_rate', 'eval_loss', 'eval_accuracy',
                'eval_error', 'final_train_error', 'final_train_loss')


def row_problem(row: Mapping[str, Any]) -> Optional[str]:
  """What makes a metrics row unusable to its readers, or None: every row has an integer `step` >= 0 and
  a number `epoch`, an evaluation both `eval_error` and `eval_accuracy`, `final` is true or false."""
  if not is_integer(row.get('step'), 0):
    return f'step must be an integer >= 0, got {row.get("step")!r}'
  for key in ('epoch', 'eval_error', 'eval_accuracy') if _kind(row) != 'train' else ('epoch',):
    if key not in row:
      return f'it lacks {key}'
  for key in _ROW_NUMBERS:
    if key in row and not is_number(row[key]):
      return f'{key} must be a number, got {row[key]!r}'
  if 'final' in row and not isinstance(row['final'], bool):
    return f'final must be true or false, got {row["final"]!r}'
  return None


def raw_rows(workdir: str) -> List[Dict[str, Any]]:
  """Every usable row of metrics.jsonl in file order; a cut or damaged line (a killed process's last
  write, a damaged disk) is skipped with a warning (`jsonl.read`)."""
  return jsonl.read(metrics_path(workdir), row_problem)


def _kind(row: Mapping[str, Any]) -> str:
  if row.get('mode') == 'eval':
    return 'eval_mode'
  return 'eval' if 'eval_error' in row or 'eval_accuracy' in row or 'final' in row else 'train'


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


def progress(workdir: str, first_save: int, checkpoints_removed: bool) -> Optional[str]:
  """Where the record shows that the run had a checkpoint, or None: a start from a step > 0, a training
  row past the first step the schedule saves (`first_save`), or any training row when the checkpoints
  directory itself is gone (a run killed before its first save has rows but never had a checkpoint)."""
  resumed = [s['from_step'] for s in starts(workdir) if s['from_step'] > 0]
  if resumed:
    return f'{os.path.join(workdir, STARTS)} records a start from step {max(resumed)}'
  last = max((r['step'] for r in raw_rows(workdir) if _kind(r) != 'eval_mode'), default=0)
  if last > first_save or (checkpoints_removed and last > 0):
    return f'{metrics_path(workdir)} records training up to step {last}'
  return None


def start_over(workdir: str) -> List[str]:
  """Moves the record's files aside (FILE -> FILE.before_restartN, N the first unused), so that the
  run starts as a new one; nothing is deleted. The names moved to."""
  files = (CONFIG, DESCRIPTION, METRICS, STARTS)
  n = 1
  while any(os.path.lexists(os.path.join(workdir, f'{f}.before_restart{n}')) for f in files):
    n += 1
  moved = []
  for f in files:
    path = os.path.join(workdir, f)
    if os.path.lexists(path):
      os.replace(path, f'{path}.before_restart{n}')
      moved.append(f'{path}.before_restart{n}')
  return moved


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
