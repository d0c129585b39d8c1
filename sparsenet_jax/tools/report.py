"""The reproduction report: every run under a root, grouped across seeds, beside the paper's Table 2.

A run is a directory with `config.json` (and, once it has started, `metrics.jsonl` and checkpoints).
Runs whose configs agree on everything that changes the result (the seed, logging, checkpointing and
the layout switches `scan`/`scan_chunk`/`remat` do not) form one group, a row of the table: the final-epoch test
error of its finished runs as mean ± sample std, the paper's number when the group is a Table 2 cell
trained as the paper did, params and FLOPs (SPEC section 3). Runs with no `"final": true` row yet are
shown as in progress, with their latest evaluation.

`load_run` gives the trained model of one run, for prediction and export.
"""
from __future__ import annotations

import functools
import json
import os
import re
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp

from sparsenet_jax.training import checkpoints
from sparsenet_jax.model import counting
from sparsenet_jax.tools import export
from sparsenet_jax.training import metrics
from sparsenet_jax.model import network
from sparsenet_jax.tools import plots
from sparsenet_jax.model import presets

# SPEC section 5, the paper's Table 2: final-epoch test error (%) per preset and dataset.
PAPER_ERRORS: Dict[str, Dict[str, float]] = {
    'densenet_bc_100': {'cifar10': 4.51, 'cifar100': 22.27, 'svhn': 1.76},
    'densenet_bc_250': {'cifar10': 3.62, 'cifar100': 17.60, 'svhn': 1.74},
    'densenet_bc_190': {'cifar10': 3.46, 'cifar100': 17.18},
    'sparsenet_bc_v1': {'cifar10': 4.34, 'cifar100': 22.18, 'svhn': 2.0},
    'sparsenet_bc_v2': {'cifar10': 3.93, 'cifar100': 19.27, 'svhn': 1.85},
    'sparsenet_bc_v3': {'cifar10': 3.56, 'cifar100': 17.75, 'svhn': 1.75},
    'sparsenet_abc_v1': {'cifar10': 4.25, 'cifar100': 21.59, 'svhn': 1.98},
    'sparsenet_abc_v2': {'cifar10': 3.75, 'cifar100': 19.54, 'svhn': 1.89},
    'sparsenet_abc_v3': {'cifar10': 3.40, 'cifar100': 17.53, 'svhn': 1.69},
    'sparsenet_abc_v4': {'cifar10': 3.24, 'cifar100': 16.98},
}
# SPEC section 4: the paper's training length; shorter runs are compared, but flagged.
PAPER_EPOCHS = {'cifar10': 280.0, 'cifar100': 280.0, 'svhn': 40.0}
# Image shape and classes of datasets whose shape is fixed, for runs without a checkpoint yet.
KNOWN_DATA = {'cifar10': ((32, 32, 3), 10), 'cifar100': ((32, 32, 3), 100), 'svhn': ((32, 32, 3), 10),
              'digits': ((8, 8, 1), 10)}
# Config fields that leave the trained model's error unchanged: not part of a group's identity.
NEUTRAL_FIELDS = ('seed', 'log_every_steps', 'eval_every_epochs', 'checkpoint_every_epochs',
                  'keep_checkpoints', 'eval_batch_size', 'max_device_dataset_bytes', 'dataset.data_dir',
                  'dataset.download', 'dataset.mirror',
                  'model.scan', 'model.scan_chunk', 'model.remat')
# The model fields that are the data's, not the architecture's, or only its memory layout.
_NOT_ARCHITECTURE = ('name', 'num_classes', 'scan', 'scan_chunk', 'remat')
_DATASET_ORDER = ('cifar10', 'cifar100', 'svhn')


class Run(NamedTuple):
  workdir: str
  name: str  # relative to the report's root
  config: Dict[str, Any]  # config.json flattened to dotted keys ('model.growth_rate')
  rows: List[Dict[str, Any]]  # metrics.jsonl


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


def flatten(tree: Mapping[str, Any], prefix: str = '') -> Dict[str, Any]:
  """{'model': {'path': 14}} -> {'model.path': 14}; lists become tuples so values compare and hash."""
  out = {}
  for key, value in tree.items():
    if isinstance(value, Mapping):
      out.update(flatten(value, f'{prefix}{key}.'))
    else:
      out[prefix + key] = tuple(value) if isinstance(value, list) else value
  return out


def normalize(config: Dict[str, Any]) -> Dict[str, Any]:
  """Spells one model one way: near=None is path // 2 (SPEC section 1)."""
  config = dict(config)
  if config.get('model.near') is None and config.get('model.path') is not None:
    config['model.near'] = config['model.path'] // 2
  return config


def read_run(workdir: str, name: str) -> Run:
  with open(os.path.join(workdir, 'config.json')) as f:
    config = normalize(flatten(json.load(f)))
  return Run(workdir, name, config, metrics.read(workdir))


def find_runs(root: str) -> List[Run]:
  """Every directory under `root` (itself included) holding a config.json, in name order."""
  if not os.path.isdir(root):
    raise ValueError(f'no such directory: {root}')
  found = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = sorted(d for d in dirnames if not d.startswith('.'))
    if 'config.json' in filenames:
      dirnames[:] = []  # a run's checkpoints hold no runs
      name = os.path.relpath(dirpath, root)
      found.append(read_run(dirpath, os.path.basename(os.path.abspath(root)) if name == '.' else name))
  return found


def final_row(rows: Sequence[Mapping[str, Any]]) -> Optional[Mapping[str, Any]]:
  finals = [r for r in rows if r.get('final')]
  return finals[-1] if finals else None


def eval_rows(rows: Sequence[Mapping[str, Any]]) -> List[Mapping[str, Any]]:
  """Evaluations made during training, one per step (a resumed run's repeated steps: the last)."""
  by_step = {r['step']: r for r in rows if 'eval_error' in r and r.get('mode') != 'eval'}
  return [by_step[s] for s in sorted(by_step)]


def train_rows(rows: Sequence[Mapping[str, Any]]) -> List[Mapping[str, Any]]:
  by_step = {r['step']: r for r in rows if 'train_loss' in r}
  return [by_step[s] for s in sorted(by_step)]


# ----------------------------------------------------------------------------------------------------
# Grouping, and what the paper says about a group.


def model_overrides(config: Mapping[str, Any]) -> Dict[str, Any]:
  """The architecture's hyperparameters that differ from its preset's, in the network's field order."""
  try:
    preset = presets.hyperparameters(config['model.name'])
  except ValueError:  # a preset this version of the code no longer has
    return {}
  path = config.get('model.path')
  if preset.get('near') is None and path is not None:
    preset['near'] = path // 2  # the default for the run's path, spelled as normalize() does
  return {field: config[f'model.{field}'] for field in network.HYPERPARAMETERS
          if field not in _NOT_ARCHITECTURE and field in preset and f'model.{field}' in config
          and config[f'model.{field}'] != preset[field]}


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


def group_key(config: Mapping[str, Any]) -> str:
  return json.dumps({k: v for k, v in config.items() if k not in NEUTRAL_FIELDS}, sort_keys=True,
                    default=str)


def paper_error(config: Mapping[str, Any]) -> Optional[float]:
  """The paper's Table 2 number for this config: its preset unchanged on a Table 2 test set."""
  if config.get('dataset.validation_size') or model_overrides(config):
    return None
  return PAPER_ERRORS.get(config['model.name'], {}).get(config['dataset.name'])


def short_of_paper(config: Mapping[str, Any]) -> bool:
  """Trained for fewer epochs than the paper's recipe (SPEC section 4)."""
  epochs = planned_epochs(config)
  return epochs is None or epochs < PAPER_EPOCHS.get(config['dataset.name'], 0)


def _natural(text: str) -> Tuple[Any, ...]:
  """Numbers in `text` compare as numbers: near=4 before near=10."""
  return tuple(int(part) if part.isdigit() else part for part in re.split(r'(\d+)', text))


def _sort_key(group: Group):
  name = group.config['dataset.name']
  order = list(PAPER_ERRORS)
  model = group.config['model.name']
  return (_DATASET_ORDER.index(name) if name in _DATASET_ORDER else len(_DATASET_ORDER), group.dataset,
          order.index(model) if model in order else len(order), _natural(group.model),
          planned_epochs(group.config) or 0.0, group.config.get('num_train_steps') or 0)


def group_runs(runs: Sequence[Run]) -> List[Group]:
  """Runs with the same config but for NEUTRAL_FIELDS, in the paper's order, then by name.

  Groups that would read alike (same data, model and length) get the fields that tell them apart.
  """
  by_key: Dict[str, List[Run]] = {}
  for run in runs:
    by_key.setdefault(group_key(run.config), []).append(run)
  groups = [Group(dataset_label(rs[0].config), model_label(rs[0].config), length_label(rs[0].config),
                  rs[0].config, tuple(rs)) for rs in by_key.values()]
  alike: Dict[Tuple[str, str, str], List[int]] = {}
  for i, g in enumerate(groups):
    alike.setdefault((g.dataset, g.model, g.length), []).append(i)
  for members in alike.values():
    if len(members) < 2:
      continue
    keys = sorted({k for i in members for k in groups[i].config} - set(NEUTRAL_FIELDS))
    differ = [k for k in keys if len({repr(groups[i].config.get(k)) for i in members}) > 1]
    for i in members:
      extra = ', '.join(f'{k}={_value_text(groups[i].config.get(k))}' for k in differ)
      groups[i] = groups[i]._replace(model=f'{groups[i].model} [{extra}]')
  return sorted(groups, key=_sort_key)


# ----------------------------------------------------------------------------------------------------
# Numbers per group.


@functools.lru_cache(maxsize=None)
def _cost(hyperparameters: str, image_shape: Tuple[int, ...]) -> Tuple[int, int]:
  model = network.make(**json.loads(hyperparameters))
  summary = counting.summarize(model, image_shape, with_xla=False)
  return summary['params'], summary['flops']


def _latest_meta(workdir: str) -> Optional[Dict[str, Any]]:
  if not os.path.isdir(os.path.join(workdir, 'checkpoints')):
    return None
  mgr = checkpoints.manager(workdir, read_only=True)
  step = mgr.latest_step()
  return None if step is None else checkpoints.read_meta(mgr, step)


def cost(group: Group) -> Optional[Tuple[int, int]]:
  """(params, FLOPs per image) of the group's model: from a checkpoint's record of what was trained,
  else from the config when the dataset's image shape is fixed; None if neither says."""
  for run in group.runs:
    meta = _latest_meta(run.workdir)
    if meta is not None:
      return _cost(json.dumps(meta['model'], sort_keys=True), tuple(meta['image_shape']))
  config = group.config
  if config['dataset.name'] not in KNOWN_DATA:
    return None
  image_shape, num_classes = KNOWN_DATA[config['dataset.name']]
  hp = {k[len('model.'):]: v for k, v in config.items() if k.startswith('model.') and k != 'model.name'}
  hp['num_classes'] = hp['num_classes'] or num_classes
  try:
    hp = presets.hyperparameters(config['model.name'], **hp)
  except ValueError:  # a config from another version of the code
    return None
  return _cost(json.dumps(hp, sort_keys=True), image_shape)


def tabulate(groups: Sequence[Group], cost_fn: Callable[[Group], Optional[Tuple[int, int]]] = cost
             ) -> List[Row]:
  """The table's rows; `cost_fn` gives (params, FLOPs) or None (a test can skip the counting)."""
  rows = []
  for group in groups:
    errors, in_progress = [], []
    for run in group.runs:
      final = final_row(run.rows)
      if final is not None:
        errors.append(100 * final['eval_error'])
        continue
      evals = eval_rows(run.rows)
      trained = train_rows(run.rows)
      epoch = max([r['epoch'] for r in evals + trained], default=0.0)
      in_progress.append((epoch, 100 * evals[-1]['eval_error'] if evals else None))
    params, flops = cost_fn(group) or (None, None)
    rows.append(Row(group, tuple(errors), tuple(in_progress), paper_error(group.config), params, flops))
  return rows


# ----------------------------------------------------------------------------------------------------
# Families of groups that one of the paper's figures compares.


def families(groups: Sequence[Group], field: str) -> List[List[Group]]:
  """Sets of >= 2 groups alike in everything but `model.<field>` (Fig. 7: attention, Fig. 10: near)."""
  key_field = f'model.{field}'
  by_rest: Dict[str, List[Group]] = {}
  for g in groups:
    rest = {k: v for k, v in g.config.items() if k != key_field}
    by_rest.setdefault(group_key(rest), []).append(g)
  return [sorted(members, key=lambda g: (g.config[key_field] is not None, g.config[key_field]))
          for members in by_rest.values()
          if len({repr(g.config[key_field]) for g in members}) > 1]


def mean_eval_curve(group: Group) -> Tuple[List[float], List[float], List[float]]:
  """(epochs, mean test error %, sample std) over the group's runs, at every evaluated epoch."""
  by_epoch: Dict[float, List[float]] = {}
  for run in group.runs:
    for r in eval_rows(run.rows):
      by_epoch.setdefault(round(r['epoch'], 6), []).append(100 * r['eval_error'])
  epochs = sorted(by_epoch)
  return (epochs, [float(np.mean(by_epoch[e])) for e in epochs], [sample_std(by_epoch[e]) for e in epochs])


def far_near(config: Mapping[str, Any]) -> str:
  """The paper's Fig. 10 label: '14-0' keeps the 14 farthest, '0-14' the 14 nearest connections."""
  return f'{config["model.path"] - config["model.near"]}-{config["model.near"]}'


def run_curves(run: Run) -> plots.Curves:
  trained, evals = train_rows(run.rows), eval_rows(run.rows)
  return plots.Curves(label=run.name, train_epoch=[r['epoch'] for r in trained],
                      train_loss=[float(r['train_loss']) for r in trained],  # 'nan' is written as text
                      learning_rate=[r['learning_rate'] for r in trained],
                      eval_epoch=[r['epoch'] for r in evals],
                      eval_error=[100 * r['eval_error'] for r in evals])


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
    paper = '-' if row.paper is None else f'{row.paper:.2f}'
    diff = '-'
    if row.paper is not None and row.mean is not None:
      diff = f'{row.mean - row.paper:+.2f}' + ('†' if short_of_paper(g.config) else '')
    lines.append(f'| {g.dataset} | {g.model} | {g.length} | {runs} | {error} | {paper} | {diff} | '
                 f'{_count(row.params, 1e6, 3)} | {_count(row.flops, 1e6, 1)} |')
  return '\n'.join(lines)


def _slug(text: str) -> str:
  return re.sub(r'[^A-Za-z0-9.]+', '-', text)[:60].strip('-')


def write(root: str, out: str) -> str:
  """Writes out/report.md and its PNGs for every run under `root`; returns the report's path."""
  runs = find_runs(root)
  if not runs:
    raise ValueError(f'no runs under {root} (a run is a directory with config.json)')
  os.makedirs(out, exist_ok=True)
  groups = group_runs(runs)
  rows = tabulate(groups)
  finished = sum(len(r.errors) for r in rows)
  lines = [f'# SparseNet results: {os.path.abspath(root)}', '',
           f'{len(runs)} runs in {len(rows)} groups, {finished} finished. Test error: the final-epoch '
           'error of finished runs, mean ± sample std over seeds. Paper: Table 2 of Liu & Zeng (2018), '
           'shown for unchanged presets on CIFAR-10/100 and SVHN test sets. † trained for fewer epochs '
           'than the paper (280 on CIFAR, 40 on SVHN). Params and FLOPs (2 x multiply-accumulates per '
           'image) as SPEC section 3 defines them.', '', table_markdown(rows), '']

  def figure(title: str, filename: str, draw: Callable[[str], None]) -> None:
    draw(os.path.join(out, filename))
    lines.extend([f'## {title}', '', f'![{title}]({filename})', ''])

  points = [plots.Point(r.group.dataset, f'{r.group.model}, {r.group.length}', r.params, r.flops, r.mean,
                        r.std or 0.0, r.paper)
            for r in rows if r.mean is not None and r.params is not None]
  if points:
    figure('Test error vs parameters (paper Fig. 8)', 'error_vs_params.png',
           lambda f: plots.error_vs_cost(points, 'params', f))
    figure('Test error vs FLOPs (paper Fig. 9)', 'error_vs_flops.png',
           lambda f: plots.error_vs_cost(points, 'flops', f))
  for i, family in enumerate(families(groups, 'attention')):
    curves = [(str(g.config['model.attention']).lower(), *mean_eval_curve(g)) for g in family]
    name = f'{family[0].dataset}, {family[0].config["model.name"]}, {family[0].length}'
    figure(f'Attention: {name} (paper Fig. 7)', f'attention_{i + 1}.png',
           lambda f, c=curves, t=name: plots.attention_curves(c, t, f))
  for i, family in enumerate(families(groups, 'near')):
    bars = [(far_near(g.config), r.mean, r.std or 0.0) for g in family
            for r in rows if r.group is g and r.mean is not None]
    if bars:
      name = f'{family[0].dataset}, {family[0].config["model.name"]}, {family[0].length}'
      figure(f'Where to drop connections: {name} (paper Fig. 10)', f'drop_position_{i + 1}.png',
             lambda f, b=bars, t=name: plots.drop_position(b, t, f))
  lines.extend(['## Training curves', ''])
  for i, row in enumerate(rows):
    g = row.group
    filename = f'curves_{i + 1}_{_slug(g.dataset + "_" + g.model + "_" + g.length)}.png'
    plots.training_curves([run_curves(r) for r in g.runs], f'{g.dataset}: {g.model}',
                          os.path.join(out, filename))
    lines.extend([f'### {g.dataset}: {g.model}, {g.length}', '', f'![curves]({filename})', ''])
  path = os.path.join(out, 'report.md')
  with open(path, 'w') as f:
    f.write('\n'.join(lines))
  return path


# ----------------------------------------------------------------------------------------------------
# A run's trained model.


def load_run(workdir: str) -> Tuple[network.SparseNet, Dict[str, Any], Dict[str, Any]]:
  """(model, {'params', 'batch_stats'}, meta) from the run's latest checkpoint, on one device.

  Only the variables are read, not the optimiser state, so neither the config nor the training code
  is needed: the checkpoint's meta says what was trained. `meta` gains the checkpoint's `step`.
  """
  if not os.path.isdir(os.path.join(workdir, 'checkpoints')):
    raise checkpoints.CheckpointError(f'no checkpoints in {workdir}: train first')
  mgr = checkpoints.manager(workdir, read_only=True)
  step = mgr.latest_step()
  if step is None:
    raise checkpoints.CheckpointError(f'no complete checkpoint in {workdir}/checkpoints: train first')
  meta = dict(checkpoints.read_meta(mgr, step), step=step)
  model = network.make(**meta['model'])
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                          export.variable_shapes(model, meta['image_shape']))
  args = ocp.args.PyTreeRestore(item=abstract, partial_restore=True,
                                restore_args=ocp.checkpoint_utils.construct_restore_args(abstract))
  try:
    variables = mgr.restore(step, args=ocp.args.Composite(state=args))['state']
  except Exception as e:  # Orbax raises many types for unreadable files
    raise checkpoints.CheckpointError(f'cannot restore checkpoint {step} in {mgr.directory}: '
                                      f'{type(e).__name__}: {e}'.split('\n')[0])
  return model, dict(variables), meta
