"""The report page, `report.md`: the table of `report` and the paper's figures drawn from its groups.

Fig. 1 (error against connections per layer: test, and training error in eval mode from the final
row), Fig. 3 (DenseNet-40 against `presets.FIG3`'s wider and deeper SparseNets), Fig. 7 (attention) and
Fig. 10 (where to drop connections) compare groups that differ in their connections or one model
field; Figs. 8 and 9 place every finished group by parameters and FLOPs; every group gets its training
curves.
"""
from __future__ import annotations

import os
import re
import sys
from typing import Any, Callable, Dict, List, Mapping, Sequence, Tuple

import numpy as np

from sparsenet_jax.model import presets
from sparsenet_jax.tools import plots
from sparsenet_jax.tools import report
from sparsenet_jax.tools.report import Group, Row, Run, eval_rows, group_key, sample_std, train_rows

def families(groups: Sequence[Group], field: str) -> List[List[Group]]:
  """Sets of >= 2 groups alike in everything but `model.<field>` (Fig. 7: attention, Fig. 10: near)."""
  key_field = f'model.{field}'
  by_rest: Dict[str, List[Group]] = {}
  for g in groups:
    rest = {k: v for k, v in report.group_fields(g.runs[0]).items() if k != key_field}
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


def connection_families(groups: Sequence[Group]) -> List[List[Group]]:
  """Fig. 1: sets of >= 2 groups alike but in their connections per layer, each with the default near
  (`path // 2`) or dense; at least one sparse. (Fig. 10's near variations are not members.)"""
  keys = ('model.path', 'model.near', 'model.connectivity')
  by_rest: Dict[str, List[Group]] = {}
  for g in groups:
    c = g.config
    dense = c.get('model.connectivity') == 'dense'
    if not dense and not (c.get('model.connectivity') == 'sparsenet' and c.get('model.near') == c['model.path'] // 2):
      continue
    fields = report.group_fields(g.runs[0])
    by_rest.setdefault(group_key({k: v for k, v in fields.items() if k not in keys}), []).append(g)
  return [sorted(m, key=lambda g: (g.config['model.path'] is None, g.config['model.path'] or 0))
          for m in by_rest.values()
          if len(m) > 1 and any(g.config.get('model.connectivity') == 'sparsenet' for g in m)]


def connection_points(family: Sequence[Group], rows: Sequence[Row]) -> List[plots.ConnectionPoint]:
  """Fig. 1's points: final test error and training error (eval mode) per connections, mean and std
  over seeds; the dense group sits two steps right of the widest sparse one."""
  paths = [g.config['model.path'] for g in family if g.config['model.path'] is not None]
  points = []
  for g in family:
    row = next((r for r in rows if r.group is g), None)
    if row is None or row.mean is None:
      continue
    train = [100 * f['final_train_error'] for f in (report.final_row(r.rows) for r in g.runs)
             if f and f.get('final_train_error') is not None]
    path = g.config['model.path']
    x = path if path is not None else max(paths, default=0) + 2
    points.append(plots.ConnectionPoint(x, str(path) if path is not None else 'dense', row.mean,
                                        row.std or 0.0, float(np.mean(train)) if train else None,
                                        sample_std(train)))
  return points


def fig3_families(groups: Sequence[Group]) -> List[List[Tuple[str, Group]]]:
  """Fig. 3: DenseNet-40 groups whose changes from the preset are exactly one of `presets.FIG3`'s
  networks, alike in everything else (data, recipe, length); at least two of the three."""
  names = {tuple(sorted(fields.items())): name for name, fields in presets.FIG3.items()}
  by_rest: Dict[str, List[Tuple[str, Group]]] = {}
  for g in groups:
    if g.config.get('model.name') != 'densenet_40':
      continue
    changed = report.model_overrides(g.config)
    changed.pop('near', None)  # the default near that comes with a path
    if changed.get('connectivity') == 'sparsenet':
      changed.pop('connectivity')
    name = names.get(tuple(sorted(changed.items())))
    if name:
      rest = {k: v for k, v in report.group_fields(g.runs[0]).items() if not k.startswith('model.')}
      by_rest.setdefault(group_key(rest), []).append((name, g))
  order = list(presets.FIG3)
  return [sorted(m, key=lambda ng: order.index(ng[0])) for m in by_rest.values() if len(m) > 1]


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


def _slug(text: str) -> str:
  return re.sub(r'[^A-Za-z0-9.]+', '-', text)[:60].strip('-')


def draw_all(groups: Sequence[Group], rows: Sequence[Row], figure: Callable[..., None]) -> None:
  """Calls `figure(title, filename, draw)` for every figure the runs can make, in reading order."""
  points = [plots.Point(r.group.dataset, f'{r.group.model}, {r.group.length}', r.params, r.flops, r.mean,
                        r.std or 0.0, r.paper)
            for r in rows if r.mean is not None and r.params is not None]
  if points:
    figure('Test error vs parameters (paper Fig. 8)', 'error_vs_params.png',
           lambda f: plots.error_vs_cost(points, 'params', f))
    figure('Test error vs FLOPs (paper Fig. 9)', 'error_vs_flops.png',
           lambda f: plots.error_vs_cost(points, 'flops', f))
  for i, family in enumerate(connection_families(groups)):
    points = connection_points(family, rows)
    if len(points) > 1:
      name = f'{family[0].dataset}, {family[0].config["model.name"]}, {family[0].length}'
      figure(f'Error against connections per layer: {name} (paper Fig. 1)', f'connections_{i + 1}.png',
             lambda f, p=points, t=name: plots.error_vs_connections(p, t, f))
  for i, family in enumerate(fig3_families(groups)):
    curves = [(f'{n} (k={g.config["model.growth_rate"]}, L={sum(g.config["model.blocks"]) + 4})',
               *mean_eval_curve(g)) for n, g in family]  # L: stem, block layers, 2 transitions, classifier
    name = f'{family[0][1].dataset}, {family[0][1].length}'
    figure(f'DenseNet-40 against a wider and a deeper SparseNet: {name} (paper Fig. 3)', f'fig3_{i + 1}.png',
           lambda f, c=curves, t=name: plots.attention_curves(c, t, f, legend='network'))
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
  for i, row in enumerate(rows):
    g = row.group
    filename = f'curves_{i + 1}_{_slug(g.dataset + "_" + g.model + "_" + g.length)}.png'
    figure(f'Training curves: {g.dataset}: {g.model}, {g.length}', filename,
           lambda f, g=g: plots.training_curves([run_curves(r) for r in g.runs], f'{g.dataset}: {g.model}', f),
           level='###')


def write(root: str, out: str) -> str:
  """Writes out/report.md and its PNGs for every run under `root`; returns the report's path."""
  skipped: List[str] = []
  runs = report.find_runs(root, warn=skipped.append)
  if not runs:  # one line: the run skipped, when it was the only one
    raise ValueError(skipped[0] if len(skipped) == 1 else f'no runs under {root} (a run is a directory with '
                     'config.json)' + (f'; {len(skipped)} skipped, e.g. {skipped[0]}' if skipped else ''))
  for line in skipped:
    print(line, file=sys.stderr)
  os.makedirs(out, exist_ok=True)
  groups = report.group_runs(runs)
  rows = report.tabulate(groups)
  finished = sum(len(r.errors) for r in rows)
  lines = [f'# SparseNet results: {os.path.abspath(root)}', '',
           f'{len(runs)} runs in {len(rows)} groups, {finished} finished. Test error: the final-epoch '
           'error of finished runs, mean ± sample std over seeds. Paper: Table 2 of Liu & Zeng (2018), '
           'shown for unchanged presets on CIFAR-10/100 and SVHN test sets. † trained for fewer epochs '
           'than the paper (280 on CIFAR, 40 on SVHN). Params and FLOPs (2 x multiply-accumulates per '
           'image) as docs/model.md section 3 defines them.', '', report.table_markdown(rows), '']

  resumed = [(run.name, line) for run in runs for line in report.changed_starts(run)]
  if resumed:
    lines.extend(['## Runs resumed with a changed config', '',
                  *[f'- `{name}` {line}' for name, line in resumed], ''])

  def figure(title: str, filename: str, draw: Callable[[str], None], level: str = '##') -> None:
    draw(os.path.join(out, filename))
    lines.extend([f'{level} {title}', '', f'![{title}]({filename})', ''])

  draw_all(groups, rows, figure)
  path = os.path.join(out, 'report.md')
  with open(path, 'w') as f:
    f.write('\n'.join(lines))
  return path
