"""The report's Figs. 1 and 3 on sweep-shaped runs (fabricated metrics, the sweeps' real configs)."""
import json

from sparsenet_jax.tools import report
from sparsenet_jax.tools import report_page
from test_report import assert_pngs, sweep_configs, write_run


def _add_train_error(directory, error):
  """The final row as training now writes it: with the training error in eval mode."""
  path = directory / 'metrics.jsonl'
  rows = [json.loads(line) for line in open(path)]
  rows[-1]['final_train_error'] = error / 100
  path.write_text(''.join(json.dumps(r) + '\n' for r in rows))


def test_fig1_draws_test_and_train_error_against_connections(tmp_path):
  root = tmp_path / 'sweep'
  for i, (name, config) in enumerate(sweep_configs('configs/sweeps/fig1.py:connections=(2,22)')):
    write_run(root / name, config, [(150, 12.0), (300, 8.0 - i)])
    _add_train_error(root / name, 1.0 + i)
  groups = report.group_runs(report.find_runs(str(root)))
  family, = report_page.connection_families(groups)
  rows = report.tabulate(groups, lambda g: None)
  points = report_page.connection_points(family, rows)
  assert [(p.label, p.connections) for p in points] == [('2', 2), ('22', 22), ('dense', 24)]
  assert [p.train for p in points] == [1.0, 2.0, 3.0]
  assert report_page.families(groups, 'near') == []  # not mistaken for Fig. 10
  out = tmp_path / 'out'
  text = open(report_page.write(str(root), str(out))).read()
  assert 'paper Fig. 1' in text
  assert_pngs(out, text)


def test_fig3_draws_the_three_networks(tmp_path):
  root = tmp_path / 'sweep'
  for i, (name, config) in enumerate(sweep_configs('configs/sweeps/fig3.py')):
    write_run(root / name, config, [(150, 12.0 - i), (300, 6.0 - i)])
  groups = report.group_runs(report.find_runs(str(root)))
  family, = report_page.fig3_families(groups)
  assert [n for n, _ in family] == ['densenet_40', 'sparsenet_L40_k16_path12', 'sparsenet_L64_k12_path12']
  assert report_page.connection_families(groups) == []  # three networks, not one connection sweep
  out = tmp_path / 'out'
  text = open(report_page.write(str(root), str(out))).read()
  assert 'paper Fig. 3' in text
  assert_pngs(out, text)
