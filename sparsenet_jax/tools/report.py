"""The reproduction report: every run under a root, grouped across seeds, beside the paper's Table 2.

A run is a directory with `config.json` (and, once it has started, `run.json`, `metrics.jsonl` and
checkpoints). Runs that agree on what decides their result (`record.identity`, the rule a resume obeys
too) but for the seed form one group, a row of the table: the final-epoch test error of its finished
runs as mean ± sample std, the paper's number when the group is a Table 2 cell trained as the paper
did, params and FLOPs (docs/model.md section 3) of the model its run description names. Runs with no
`"final": true` row yet are shown as in progress, with their latest evaluation. The workdir files are
read through `record`; facts of data a run has not described yet come from the data registry.
"""
from __future__ import annotations

import functools
import json
import os
import re
import sys
import types
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from sparsenet_jax.model import presets
from sparsenet_jax.model.spec import ModelSpec
from sparsenet_jax.training import recipes
from sparsenet_jax.training import record
# counting and network (JAX) are imported where a cost is computed: reading runs and grouping them, and
# `launch/sweep.py` checking its flags, need no JAX.

_DATASET_ORDER = ('cifar10', 'cifar100', 'svhn')


class Run(NamedTuple):
  workdir: str
  name: str  # relative to the report's root
  config: Dict[str, Any]  # config.json flattened to dotted keys ('model.growth_rate'), the model resolved
  rows: List[Dict[str, Any]]  # metrics.jsonl
  starts: Tuple[Dict[str, Any], ...] = ()  # starts.jsonl: each start's step and config changes
  description: Optional[record.Description] = None  # run.json: None before the run started
  identity: Dict[str, Any] = {}  # record.identity: what decides the run's result


class Group(NamedTuple):
  """Runs that differ only in seed (and in fields that do not change the result)."""
  dataset: str  # with the data file or folder when it is not a named dataset
  model: str  # preset name and the hyperparameters changed from it
  length: str  # planned training length: '280 epochs' or '30 steps'
  config: Dict[str, Any]  # the first run's flat config
  runs: Tuple[Run, ...]


class Row(NamedTuple):
  """One line of the table."""
  group: Group
  errors: Tuple[float, ...]  # final test error (%) of each finished run
  in_progress: Tuple[Tuple[float, Optional[float]], ...]  # (epoch reached, latest error %) per run
  paper: Optional[float]
  params: Optional[int]
  flops: Optional[int]
  top5_errors: Tuple[float, ...] = ()  # final top-5 error (%) of the finished runs whose eval counts it

  @property
  def mean(self) -> Optional[float]:
    return float(np.mean(self.errors)) if self.errors else None

  @property
  def std(self) -> Optional[float]:
    return sample_std(self.errors) if len(self.errors) > 1 else None


def sample_std(values: Sequence[float]) -> float:
  """The spread over seeds (ddof=1); 0 for a single run."""
  return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


# ----------------------------------------------------------------------------------------------------
# Finding and reading runs.


def normalize(config: Mapping[str, Any], description: Optional[record.Description] = None) -> Dict[str, Any]:
  """The flat config with its model spelled one way: the preset name plus the resolved architecture (the
  default near as its value, no layout fields, the data's class count), however the config wrote it."""
  flat = record.flatten(config)
  out = {k: v for k, v in flat.items() if not k.startswith('model.')}
  out.update({k: v for k, v in record.identity(config, description).items() if k.startswith('model.')})
  return out


def read_run(workdir: str, name: str) -> Run:
  """errors.RecordError (a ValueError) naming the file of the record that cannot be used and why."""
  config = record.read_config(workdir)
  description = record.read_description(workdir)
  return Run(workdir, name, normalize(config, description), record.raw_rows(workdir),
             tuple(record.starts(workdir)), description, record.identity(config, description))


def find_runs(root: str, warn: Callable[[str], None] = lambda line: print(line, file=sys.stderr)
              ) -> List[Run]:
  """Every readable run under `root` (itself included), in name order; one `warn` line per run skipped."""
  found = []
  for workdir in record.find_runs(root):
    name = os.path.relpath(workdir, root)
    try:
      found.append(read_run(workdir, os.path.basename(os.path.abspath(root)) if name == '.' else name))
    except (OSError, ValueError) as e:  # errors.RecordError naming the file, or a file gone since
      warn(f'skipped {workdir}: {" ".join(str(e).split())}')
  return found


def changed_starts(run: Run) -> List[str]:
  """'from step N: field a -> b, ...' for each start of `run` that changed its config."""
  return [f'from step {s.get("from_step")}: ' + ', '.join(f'{k} {a} -> {b}' for k, (a, b) in s['changes'].items())
          for s in run.starts if s.get('changes')]


final_row = record.final


def eval_rows(rows: Sequence[Mapping[str, Any]]) -> List[Mapping[str, Any]]:
  """Evaluations made during training, one per step (a resumed run's repeated steps: the last)."""
  return record.select(list(rows), 'eval')


def train_rows(rows: Sequence[Mapping[str, Any]]) -> List[Mapping[str, Any]]:
  return record.select(list(rows), 'train')


# ----------------------------------------------------------------------------------------------------
# Grouping, and what the paper says about a group.


def row_spec(config: Mapping[str, Any]) -> Optional[ModelSpec]:
  """The model of a normalized config (the preset's class count where the data's is unknown), or None
  for a model this version cannot build."""
  model = {k[len('model.'):]: v for k, v in config.items() if k.startswith('model.') and k != 'model.name'}
  if model.get('num_classes') is None:
    model.pop('num_classes', None)
  try:
    return ModelSpec.from_json(model)
  except (TypeError, ValueError):
    return None


def model_overrides(config: Mapping[str, Any]) -> Dict[str, Any]:
  """The architecture fields that differ from the config's preset, in the spec's field order."""
  spec = row_spec(config)
  if spec is None or config.get('model.name') not in presets.PRESETS:
    return {}
  changed = presets.changed_fields(spec, config['model.name'])
  changed.pop('num_classes', None)  # the data's, not the architecture's choice
  return {k: tuple(v) if isinstance(v, list) else v for k, v in changed.items()}


def _value_text(value: Any) -> str:
  return '-'.join(str(v) for v in value) if isinstance(value, tuple) else str(value)


def model_label(config: Mapping[str, Any]) -> str:
  overrides = model_overrides(config)
  text = ', '.join(f'{k}={_value_text(v)}' for k, v in overrides.items())
  return config['model.name'] + (f' ({text})' if text else '')


def dataset_label(config: Mapping[str, Any]) -> str:
  name = config['dataset.name']
  source = {'npz': config.get('dataset.train_path'), 'image_folder': config.get('dataset.root')}.get(name)
  label = f'{name}:{os.path.basename(os.path.normpath(source))}' if source else name
  if config.get('dataset.validation_size'):
    label += f' (validation {config["dataset.validation_size"]})'
  return label


def planned_epochs(config: Mapping[str, Any]) -> Optional[float]:
  """The configured length in epochs; None when a step count overrides it."""
  return None if (config.get('num_train_steps') or 0) > 0 else float(config['num_epochs'])


def length_label(config: Mapping[str, Any]) -> str:
  epochs = planned_epochs(config)
  if epochs is None:
    return f'{config["num_train_steps"]} steps'
  return f'{epochs:g} epoch' + ('' if epochs == 1 else 's')


def group_fields(run: Run) -> Dict[str, Any]:
  """What a group's runs share: the run's identity (the rule a resume obeys) less the seed."""
  return {k: v for k, v in run.identity.items() if k not in record.REPLICATE}


def group_key(fields: Mapping[str, Any]) -> str:
  """`fields` (a group's, or some of them) as one comparable string."""
  return json.dumps(dict(fields), sort_keys=True, default=str)


def paper_error(config: Mapping[str, Any]) -> Optional[float]:
  """The paper's Table 2 number for this config: its preset unchanged on a Table 2 test set."""
  if config.get('dataset.validation_size') or model_overrides(config):
    return None
  return presets.paper_error(config['model.name'], config['dataset.name'])


def short_of_paper(config: Mapping[str, Any]) -> bool:
  """Trained for fewer epochs than the paper's recipe (docs/model.md section 4)."""
  epochs = planned_epochs(config)
  return epochs is None or epochs < (recipes.paper_epochs(config['dataset.name']) or 0)


def _natural(text: str) -> Tuple[Any, ...]:
  """Numbers in `text` compare as numbers: near=4 before near=10."""
  return tuple(int(part) if part.isdigit() else part for part in re.split(r'(\d+)', text))


def _model_order() -> List[str]:
  """Table 2's order: the presets the paper reports, DenseNet first, then every other preset."""
  names = presets.names()
  return sorted(names, key=lambda n: (not presets.PRESETS[n].paper_errors,
                                      presets.get(n).connectivity != 'dense', names.index(n)))


def _sort_key(group: Group):
  name = group.config['dataset.name']
  order = _model_order()
  model = group.config['model.name']
  return (_DATASET_ORDER.index(name) if name in _DATASET_ORDER else len(_DATASET_ORDER), group.dataset,
          order.index(model) if model in order else len(order), _natural(group.model),
          planned_epochs(group.config) or 0.0, group.config.get('num_train_steps') or 0)


def group_runs(runs: Sequence[Run]) -> List[Group]:
  """Runs with the same `group_fields`, in the paper's order, then by name.

  Groups that would read alike (same data, model and length) get the fields that tell them apart.
  """
  by_key: Dict[str, List[Run]] = {}
  for run in runs:
    by_key.setdefault(group_key(group_fields(run)), []).append(run)
  groups = [Group(dataset_label(rs[0].config), model_label(rs[0].config), length_label(rs[0].config),
                  rs[0].config, tuple(rs)) for rs in by_key.values()]
  alike: Dict[Tuple[str, str, str], List[int]] = {}
  for i, g in enumerate(groups):
    alike.setdefault((g.dataset, g.model, g.length), []).append(i)
  for members in alike.values():
    if len(members) < 2:
      continue
    fields = [group_fields(groups[i].runs[0]) for i in members]
    keys = sorted({k for f in fields for k in f})
    differ = [k for k in keys if len({repr(f.get(k)) for f in fields}) > 1]
    for i, f in zip(members, fields):
      extra = ', '.join(f'{k}={_value_text(f.get(k))}' for k in differ)
      groups[i] = groups[i]._replace(model=f'{groups[i].model} [{extra}]')
  return sorted(groups, key=_sort_key)


# ----------------------------------------------------------------------------------------------------
# Numbers per group.


@functools.lru_cache(maxsize=None)
def _cost(spec: ModelSpec, image_shape: Tuple[int, ...]) -> Tuple[int, int]:
  from sparsenet_jax.model import counting, network  # pylint: disable=import-outside-toplevel
  summary = counting.summarize(network.make(spec.canonical()), image_shape, with_xla=False)
  return summary['params'], summary['flops']


def cost(group: Group) -> Optional[Tuple[int, int]]:
  """(params, FLOPs per image) of the group's model: the model and image shape a run's description
  names, else the config's model on the data registry's facts; None if neither says."""
  from sparsenet_jax.data import datasets  # pylint: disable=import-outside-toplevel
  for run in group.runs:
    if run.description is not None:
      return _cost(run.description.spec, tuple(run.description.image_shape))
  config = group.config
  dataset = types.SimpleNamespace(**{k[len('dataset.'):]: v for k, v in config.items() if k.startswith('dataset.')})
  try:
    facts = datasets.facts(dataset)
  except datasets.DataError:
    return None
  spec = row_spec(config)
  if spec is None or facts.image_shape is None:
    return None
  if config.get('model.num_classes') is None and facts.num_classes:
    spec = spec.replace(num_classes=facts.num_classes)
  return _cost(spec, tuple(facts.image_shape))


def tabulate(groups: Sequence[Group], cost_fn: Callable[[Group], Optional[Tuple[int, int]]] = cost
             ) -> List[Row]:
  """The table's rows; `cost_fn` gives (params, FLOPs) or None (a test can skip the counting)."""
  rows = []
  for group in groups:
    errors, in_progress, top5 = [], [], []
    for run in group.runs:
      final = final_row(run.rows)
      if final is not None:
        errors.append(100 * final['eval_error'])
        if final.get('eval_top5_error') is not None:  # models of 100 classes or more (ImageNet)
          top5.append(100 * final['eval_top5_error'])
        continue
      evals = eval_rows(run.rows)
      trained = train_rows(run.rows)
      epoch = max([r['epoch'] for r in evals + trained], default=0.0)
      in_progress.append((epoch, 100 * evals[-1]['eval_error'] if evals else None))
    params, flops = cost_fn(group) or (None, None)
    rows.append(Row(group, tuple(errors), tuple(in_progress), paper_error(group.config), params, flops,
                    tuple(top5)))
  return rows


# ----------------------------------------------------------------------------------------------------
# Rendering.


def _count(n: Optional[int], unit: float, digits: int) -> str:
  return '-' if n is None else f'{n / unit:,.{digits}f}'


def table_markdown(rows: Sequence[Row]) -> str:
  lines = ['| dataset | model | length | runs | test error % | paper % | diff | params (M) | MFLOPs |',
           '|---|---|---:|---|---:|---:|---:|---:|---:|']
  for row in rows:
    g = row.group
    runs = str(len(row.errors))
    if row.in_progress:
      latest = ', '.join(f'epoch {e:.4g}' + (f': {err:.2f}' if err is not None else '')
                         for e, err in row.in_progress)
      runs += f' + {len(row.in_progress)} in progress ({latest})'
    error = '-' if row.mean is None else f'{row.mean:.2f}'
    if row.std is not None:
      error += f' ± {row.std:.2f}'
    if row.top5_errors:
      error += f' (top-5 {np.mean(row.top5_errors):.2f})'
    paper = '-' if row.paper is None else f'{row.paper:.2f}'
    diff = '-'
    if row.paper is not None and row.mean is not None:
      diff = f'{row.mean - row.paper:+.2f}' + ('†' if short_of_paper(g.config) else '')
    lines.append(f'| {g.dataset} | {g.model} | {g.length} | {runs} | {error} | {paper} | {diff} | '
                 f'{_count(row.params, 1e6, 3)} | {_count(row.flops, 1e6, 1)} |')
  return '\n'.join(lines)
