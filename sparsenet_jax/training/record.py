"""A run's record in its workdir: `config.json`, `run.json`, `metrics.jsonl`, `starts.jsonl`, the final row
and the run's status.

`run.json` is the run's description (`Description`): the model the config resolved to and the facts of
the data it trains on (fingerprint, shape, classes, statistics, sizes), written at every start; the
checkpoints embed the same description. Everything that reads a run (resume, eval, report, sweeps,
export, predict) reads it instead of re-deriving it from the config.

`starts.jsonl` has one line per start of the run (`from_step`, and the config fields that changed since
the previous start, `{field: [before, after]}`): `config.json` is the latest start's config, and the
starts say what ran before. What decides a run's result is one rule, `identity`: the config without
the `NEUTRAL` fields (the model's layout fields, by their kind in `ModelSpec`, and the named cadence and
data-location fields), the model as its resolved architecture, and the data's content fingerprint. A
resume may change only fields outside it or extend training (`LENGTH`); the report groups runs by it,
less the seed.

The one module that knows these files; training writes through it, the report and sweeps read through
it. Pure Python (no JAX), so reading a thousand runs costs nothing.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

from sparsenet_jax.errors import DriftError
from sparsenet_jax.model import presets
from sparsenet_jax.model import spec as spec_lib

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


@dataclasses.dataclass(frozen=True)
class Description:
  """What a run trains, resolved once at its start: the model and the facts of its data.

  JSON-ready and flat, so a checkpoint's meta embeds it as it is (`to_json`), and an exported model's
  header carries the fields that inference needs.
  """
  preset: Optional[str]
  model: Dict[str, Any]  # ModelSpec.architecture() of the resolved model
  dataset: str
  fingerprint: Optional[str]  # of the pixels and labels trained and evaluated on (datasets.Dataset)
  image_shape: List[int]
  num_classes: int
  class_names: List[str]
  mean: List[float]  # normalisation, per channel, 0..255 pixel units
  std: List[float]
  augment: Optional[str]
  train_size: Optional[int]
  steps_per_epoch: Optional[int]

  @property
  def spec(self) -> spec_lib.ModelSpec:
    """The trained model, unrolled (the canonical layout)."""
    return spec_lib.ModelSpec.from_json(self.model)

  def to_json(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, data: Mapping[str, Any]) -> 'Description':
    """From `to_json` output, a checkpoint's meta (extra keys ignored) or an exported file's header;
    fields that older files lack are None. ValueError if it describes no model."""
    if not isinstance(data, Mapping) or not isinstance(data.get('model'), Mapping):
      raise ValueError('it holds no model description')
    model = dict(data['model'])
    if 'num_classes' not in model and 'num_classes' in data:  # checkpoints before the canonical layout
      model['num_classes'] = data['num_classes']
    values = {f.name: data.get(f.name) for f in dataclasses.fields(cls)}
    values['model'] = model
    values['num_classes'] = model.get('num_classes')
    for name in ('image_shape', 'class_names', 'mean', 'std'):
      values[name] = list(values[name] or [])
    return cls(**values)


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
  except (OSError, ValueError) as e:
    raise DriftError(f'cannot read the recorded {config_path(workdir)} ({e}); use another --workdir') from None
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
  ValueError naming the file if it is there but unreadable."""
  path = os.path.join(workdir, DESCRIPTION)
  try:
    with open(path) as f:
      return Description.from_json(json.load(f))
  except (FileNotFoundError, NotADirectoryError):
    return None
  except (OSError, ValueError, TypeError) as e:
    raise ValueError(f'cannot read the run description {path}: {" ".join(str(e).split())}') from None


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


def _write_atomically(path: str, text: str) -> None:
  """A kill never leaves half a file."""
  tmp = f'{path}.tmp{os.getpid()}'
  with open(tmp, 'w') as f:
    f.write(text)
  os.replace(tmp, path)


def write_config(workdir: str, config_json: str) -> None:
  _write_atomically(config_path(workdir), config_json)


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
