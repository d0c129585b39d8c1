"""The report: grouping across seeds, the paper's numbers, plots; on sweep-shaped runs and real runs."""
import importlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, override
from configs import default
from configs import cifar10_npz as cifar10_npz_config
from configs import digits as digits_config
from sparsenet_jax.tools import report
from sparsenet_jax.tools import report_page
from sparsenet_jax.tools import sweeps
from sparsenet_jax.training import train


def set_fields(config, **overrides):
  """Dotted overrides as the command line gives them: set_fields(c, **{'model.near': 4})."""
  return override(config, overrides)


def write_run(directory, config, eval_errors, final=True, steps_per_epoch=100):
  """A run as training leaves it: config.json, and metrics.jsonl with a train and an eval row per
  (epoch, error %) pair, the last one marked final when the run finished."""
  os.makedirs(directory)
  with open(os.path.join(directory, 'config.json'), 'w') as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  with open(os.path.join(directory, 'metrics.jsonl'), 'w') as f:
    for i, (epoch, error) in enumerate(eval_errors):
      step = int(epoch * steps_per_epoch)
      f.write(json.dumps({'step': step, 'epoch': epoch, 'train_loss': 2.0 / (1 + epoch),
                          'learning_rate': 0.1, 'train_accuracy': 0.5}) + '\n')
      row = {'step': step, 'epoch': epoch, 'eval_error': error / 100, 'eval_accuracy': 1 - error / 100}
      if final and i == len(eval_errors) - 1:
        row['final'] = True
      f.write(json.dumps(row) + '\n')


def sweep_configs(sweep_file):
  """(run name, config) of every run of a sweep file, configured as launch/sweep.py would."""
  for run in sweeps.load(os.path.join(ROOT, sweep_file)):
    path, _, arg = run.config.partition(':')
    module = importlib.import_module(path[:-len('.py')].replace('/', '.'))
    yield run.name, set_fields(module.get_config(arg or None), **run.overrides)


def no_cost(group):
  del group
  return None


def test_table_groups_seeds_and_puts_the_papers_number_beside_matching_rows(tmp_path):
  def bc_v1(**o):
    return set_fields(default.paper_config('cifar10', 'sparsenet_bc_v1'), **o)
  write_run(tmp_path / 'c10_bc_v1_seed0', bc_v1(seed=0), [(150, 6.0), (280, 4.2)])
  write_run(tmp_path / 'c10_bc_v1_seed1', bc_v1(seed=1), [(150, 6.5), (280, 4.6)])
  write_run(tmp_path / 'c10_bc_v1_seed2', bc_v1(seed=2), [(100, 8.0)], final=False)
  write_run(tmp_path / 'c10_bc_v1_k12', bc_v1(**{'model.growth_rate': 12}), [(280, 5.0)])
  write_run(tmp_path / 'c10_bc_v1_short', bc_v1(num_epochs=10.0), [(10, 20.0)])
  write_run(tmp_path / 'c10_abc_v1_val', set_fields(default.paper_config('cifar10', 'sparsenet_abc_v1'),
                                                    **{'dataset.validation_size': 5000}), [(280, 5.5)])
  write_run(tmp_path / 'nested' / 'c100_densenet', default.paper_config('cifar100', 'densenet_bc_100'),
            [(280, 23.0)])
  scanned = bc_v1(seed=3, **{'model.scan': True, 'eval_batch_size': 1000})  # same model, same group
  write_run(tmp_path / 'c10_bc_v1_seed3_scan', scanned, [(280, 4.0)])

  rows = report.tabulate(report.group_runs(report.find_runs(str(tmp_path))), no_cost)
  assert [(r.group.dataset, r.group.model, r.group.length, len(r.errors), len(r.in_progress), r.paper)
          for r in rows] == [
      ('cifar10', 'sparsenet_bc_v1', '10 epochs', 1, 0, 4.34),
      ('cifar10', 'sparsenet_bc_v1', '280 epochs', 3, 1, 4.34),
      ('cifar10', 'sparsenet_bc_v1 (growth_rate=12)', '280 epochs', 1, 0, None),
      ('cifar10 (validation 5000)', 'sparsenet_abc_v1', '280 epochs', 1, 0, None),
      ('cifar100', 'densenet_bc_100', '280 epochs', 1, 0, 22.27),
  ]
  assert rows[1].mean == pytest.approx(4.2667, abs=1e-4) and rows[1].std == pytest.approx(0.3055, abs=1e-4)

  table = report.table_markdown(rows).splitlines()
  assert table[2] == '| cifar10 | sparsenet_bc_v1 | 10 epochs | 1 | 20.00 | 4.34 | +15.66† | - | - |'
  assert table[3] == ('| cifar10 | sparsenet_bc_v1 | 280 epochs | 3 + 1 in progress (epoch 100: 8.00) | '
                      '4.27 ± 0.31 | 4.34 | -0.07 | - | - |')
  assert table[6] == '| cifar100 | densenet_bc_100 | 280 epochs | 1 | 23.00 | 22.27 | +0.73 | - | - |'


def test_two_seeds_give_mean_and_sample_std(tmp_path):
  for seed, error in enumerate((4.2, 4.6)):
    write_run(tmp_path / f's{seed}', set_fields(default.paper_config('svhn', 'sparsenet_abc_v3'), seed=seed),
              [(40, error)])
  row, = report.tabulate(report.group_runs(report.find_runs(str(tmp_path))), no_cost)
  line = report.table_markdown([row]).splitlines()[2]
  assert line.startswith('| svhn | sparsenet_abc_v3 | 40 epochs | 2 | 4.40 ± 0.28 | 1.69 | +2.71 |')


def test_groups_that_read_alike_say_what_tells_them_apart(tmp_path):
  base = default.paper_config('cifar10', 'sparsenet_bc_v1')
  write_run(tmp_path / 'a', base, [(280, 4.0)])
  write_run(tmp_path / 'b', set_fields(default.paper_config('cifar10', 'sparsenet_bc_v1'), batch_size=128),
            [(280, 4.5)])
  models = [g.model for g in report.group_runs(report.find_runs(str(tmp_path)))]
  assert sorted(models) == ['sparsenet_bc_v1 [batch_size=128]', 'sparsenet_bc_v1 [batch_size=64]']


def test_params_and_flops_of_a_table2_cell_before_any_checkpoint(tmp_path):
  write_run(tmp_path / 'run', default.paper_config('cifar10', 'sparsenet_bc_v1'), [(1, 80.0)], final=False)
  group, = report.group_runs(report.find_runs(str(tmp_path)))
  params, flops = report.cost(group)
  assert params == 828_442  # docs/model.md section 3
  assert flops > 100e6


@pytest.mark.parametrize('sweep_file,field,labels,figure', [
    ('configs/sweeps/fig7.py', 'attention', ['none', 'paper', 'se'], 'paper Fig. 7'),
    ('configs/sweeps/fig10.py:seeds=2', 'near', ['14-0', '10-4', '7-7', '4-10', '0-14'], 'paper Fig. 10'),
])
def test_paper_figure_sweeps_get_their_plot(tmp_path, sweep_file, field, labels, figure):
  root = tmp_path / 'sweep'
  for i, (name, config) in enumerate(sweep_configs(sweep_file)):
    write_run(root / name, config, [(150, 10.0 + i), (280, 5.0 + i % 3)])
  groups = report.group_runs(report.find_runs(str(root)))
  family, = report_page.families(groups, field)
  assert len(family) == len(labels)
  if field == 'near':
    assert [report_page.far_near(g.config) for g in family] == labels
    assert all(len(g.runs) == 2 for g in family)
  else:
    assert [str(g.config['model.attention']).lower() for g in family] == labels

  out = tmp_path / 'out'
  text = open(report_page.write(str(root), str(out))).read()
  assert figure in text
  assert_pngs(out, text)


def assert_pngs(out, text):
  """Every PNG in `out` is embedded in the report, opens as an image of non-trivial size, and
  every image the report embeds exists."""
  pngs = sorted(f for f in os.listdir(out) if f.endswith('.png'))
  embedded = sorted(line[line.index('](') + 2:-1] for line in text.splitlines() if line.startswith('!['))
  assert pngs and pngs == embedded
  for png in pngs:
    with Image.open(out / png) as image:
      image.verify()
    with Image.open(out / png) as image:
      assert image.format == 'PNG' and image.size[0] >= 400 and image.size[1] >= 250, (png, image.size)
      assert np.asarray(image.convert('L')).std() > 5  # something is drawn


# ----------------------------------------------------------------------------------------------------
# Real runs: two digits seeds, an unfinished third, and CIFAR-10 images from an npz file.


def tiny(config, **overrides):
  """A very small SparseNet-bc: a few seconds per run."""
  return set_fields(config, **{'model.growth_rate': 4, 'model.blocks': (2, 3), 'model.path': 2,
                               'learning_rates': (0.1, 0.01), 'lr_boundaries_epochs': (1.0,),
                               'log_every_steps': 5, 'eval_every_epochs': 1, 'checkpoint_every_epochs': 1,
                               **overrides})


@pytest.fixture(scope='module')
def real_runs(tmp_path_factory):
  root = tmp_path_factory.mktemp('runs')
  finals = {}
  for seed in (0, 1):
    config = tiny(digits_config.get_config(), num_epochs=2.0, seed=seed)
    finals[seed] = train.train_and_evaluate(config, str(root / f'digits_seed{seed}'))

  # An unfinished run: seed 2, stopped before its final evaluation.
  shutil.copytree(root / 'digits_seed0', root / 'digits_seed2')
  with open(root / 'digits_seed0' / 'config.json') as f:
    config = json.load(f)
  with open(root / 'digits_seed2' / 'config.json', 'w') as f:
    json.dump({**config, 'seed': 2}, f)
  with open(root / 'digits_seed0' / 'metrics.jsonl') as f:
    rows = [json.loads(line) for line in f]
  with open(root / 'digits_seed2' / 'metrics.jsonl', 'w') as f:
    f.writelines(json.dumps(r) + '\n' for r in rows if not r.get('final'))

  # CIFAR-10-shaped: 448 training and 128 test images of class-coloured noise, one epoch.
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 10, 576)
  colours = rng.integers(40, 216, (10, 3))
  images = np.clip(colours[labels][:, None, None, :] + rng.normal(0, 40, (576, 32, 32, 3)), 0, 255).astype(np.uint8)
  np.savez(root / 'c10_train.npz', image=images[:448], label=labels[:448])
  np.savez(root / 'c10_test.npz', image=images[448:], label=labels[448:])
  config = tiny(cifar10_npz_config.get_config(), num_epochs=1.0, **{
      'dataset.train_path': str(root / 'c10_train.npz'), 'dataset.test_path': str(root / 'c10_test.npz'),
      'dataset.validation_size': 0})
  finals['c10'] = train.train_and_evaluate(config, str(root / 'c10_npz'))
  return root, finals


@pytest.mark.slow
def test_report_of_real_runs(real_runs, tmp_path):
  root, finals = real_runs
  out = tmp_path / 'report'
  result = subprocess.run([sys.executable, 'launch/report.py', f'--workdir={root}', f'--out={out}'],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == str(out / 'report.md')
  text = (out / 'report.md').read_text()
  table = [line for line in text.splitlines() if line.startswith('| ') and not line.startswith('| dataset')]
  assert len(table) == 2

  errors = [100 * finals[s]['eval_error'] for s in (0, 1)]
  unfinished = [json.loads(line) for line in open(root / 'digits_seed2' / 'metrics.jsonl')]
  latest = [r for r in unfinished if 'eval_error' in r][-1]
  digits, = [line for line in table if line.startswith('| digits |')]
  cells = [c.strip() for c in digits.strip('|').split('|')]
  assert cells[:6] == ['digits', 'sparsenet_bc_v1 (growth_rate=4, blocks=2-3, path=2)', '2 epochs',
                       f'2 + 1 in progress (epoch 2: {100 * latest["eval_error"]:.2f})',
                       f'{np.mean(errors):.2f} ± {np.std(errors, ddof=1):.2f}', '-']
  assert cells[7] == '0.005'  # params (M), from the checkpoint's record of the model

  c10, = [line for line in table if line.startswith('| npz:c10_train.npz |')]
  cells = [c.strip() for c in c10.strip('|').split('|')]
  assert cells[2:6] == ['1 epoch', '1', f'{100 * finals["c10"]["eval_error"]:.2f}', '-']
  assert_pngs(out, text)


def test_report_cli_rejects_a_root_without_runs(tmp_path):
  for workdir in (tmp_path, tmp_path / 'missing'):
    result = subprocess.run([sys.executable, 'launch/report.py', f'--workdir={workdir}'], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ''
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith('error: ')
