"""Sweeps: grid helpers, sweep files, run states, and the real trainer on two digits runs (the scheduler
and the SLURM script: tests/test_sweep_scheduler.py; Fig. 11's budget: tests/test_budget.py)."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT
from sparsenet_jax.tools import sweeps
from sparsenet_jax.training import record


def sweep_cli(*args, timeout=600):
  return subprocess.run([sys.executable, os.path.join(ROOT, 'launch', 'sweep.py'), *args],
                        capture_output=True, text=True, timeout=timeout, cwd=ROOT)


# Grid helpers and sweep files.

def test_product_zip_and_seeds():
  assert sweeps.seeds(2) == [{'seed': 0}, {'seed': 1}]
  assert sweeps.product({'model.near': [0, 4]}, sweeps.seeds(2)) == [
      {'model.near': 0, 'seed': 0}, {'model.near': 0, 'seed': 1},
      {'model.near': 4, 'seed': 0}, {'model.near': 4, 'seed': 1}]
  assert sweeps.product(a=[1, 2], b=['x']) == [{'a': 1, 'b': 'x'}, {'a': 2, 'b': 'x'}]
  assert sweeps.zip_({'model.growth_rate': [12, 24], 'model.path': [7, 14]}) == [
      {'model.growth_rate': 12, 'model.path': 7}, {'model.growth_rate': 24, 'model.path': 14}]
  assert sweeps.product(sweeps.zip_(a=[1, 2], b=[3, 4]), c=[5]) == [
      {'a': 1, 'b': 3, 'c': 5}, {'a': 2, 'b': 4, 'c': 5}]
  assert sweeps.product() == [{}]
  with pytest.raises(ValueError, match='equal lengths'):
    sweeps.zip_(a=[1, 2], b=[3])
  with pytest.raises(ValueError, match='set twice'):
    sweeps.product(sweeps.seeds(1), seed=[3])
  for bad in (0, -1, True, 1.5):
    with pytest.raises(ValueError, match='seeds'):
      sweeps.seeds(bad)


def test_runs_are_named_after_their_grid_point():
  grid = sweeps.product({'model.blocks': [(8, 12, 16)], 'model.attention': [None, 'se']}, sweeps.seeds(1))
  runs = sweeps.runs('v1', 'configs/cifar10_v1.py:variant=basic', grid, {'num_epochs': 1})
  assert [r.name for r in runs] == ['v1_blocks8-12-16_attentionnone_seed0',
                                    'v1_blocks8-12-16_attentionse_seed0']
  assert runs[1].overrides == {'num_epochs': 1, 'model.blocks': (8, 12, 16), 'model.attention': 'se',
                               'seed': 0}
  assert sweeps.command(runs[1], '/w/v1', python='python') == [
      'python', 'launch/main.py', '--config=configs/cifar10_v1.py:variant=basic', '--workdir=/w/v1',
      '--config.num_epochs=1', '--config.model.blocks=(8,12,16)', '--config.model.attention=se',
      '--config.seed=0']


def write_sweep(tmp_path, body, name='my_sweep.py'):
  path = tmp_path / name
  path.write_text('from sparsenet_jax.tools import sweeps\n\n' + textwrap.dedent(body))
  return str(path)


def test_load_passes_parameters_as_literals(tmp_path):
  path = write_sweep(tmp_path, '''
      def get_sweep(seeds=1, tag='a', blocks=(1, 2)):
        return sweeps.runs(f'{tag}_{len(blocks)}', 'configs/digits.py', sweeps.seeds(seeds))
      ''')
  assert [r.name for r in sweeps.load(path)] == ['a_2_seed0']
  assert [r.name for r in sweeps.load(f'{path}:seeds=2,tag=b,blocks=(1,2,3)')] == ['b_3_seed0', 'b_3_seed1']
  with pytest.raises(ValueError, match='unexpected keyword'):
    sweeps.load(f'{path}:sedes=2')
  with pytest.raises(ValueError, match='key=value'):
    sweeps.load(f'{path}:2')
  with pytest.raises(ValueError, match='no sweep file'):
    sweeps.load(str(tmp_path / 'missing.py'))


@pytest.mark.parametrize('body, message', [
    ('x = 1\n', 'defines no get_sweep'),
    ('def get_sweep():\n  return []\n', 'non-empty list'),
    ('def get_sweep():\n  return sweeps.runs("a", "c.py") * 2\n', "'a' appears twice"),
    ('def get_sweep():\n  return sweeps.runs("../up", "c.py")\n', 'not a safe directory name'),
])
def test_load_rejects_bad_sweeps(tmp_path, body, message):
  with pytest.raises(ValueError, match=message):
    sweeps.load(write_sweep(tmp_path, body))


# Paper Table 2 (docs/model.md section 5): the cells with a number, per dataset (C10, C100, SVHN).
TABLE2 = {
    'densenet_bc_100': (4.51, 22.27, 1.76),
    'densenet_bc_250': (3.62, 17.60, 1.74),
    'densenet_bc_190': (3.46, 17.18, None),
    'bc_v1': (4.34, 22.18, 2.0),
    'bc_v2': (3.93, 19.27, 1.85),
    'bc_v3': (3.56, 17.75, 1.75),
    'abc_v1': (4.25, 21.59, 1.98),
    'abc_v2': (3.75, 19.54, 1.89),
    'abc_v3': (3.40, 17.53, 1.69),
    'abc_v4': (3.24, 16.98, None),
}


@pytest.mark.slow
def test_table2_dry_run_lists_every_cell(tmp_path):
  cells = {f'{dataset}_{row}' for row, errors in TABLE2.items()
           for dataset, error in zip(('cifar10', 'cifar100', 'svhn'), errors) if error is not None}
  assert len(cells) == 28
  r = sweep_cli('--sweep=configs/sweeps/table2.py:seeds=2', f'--workdir={tmp_path}', '--dry_run')
  assert r.returncode == 0, r.stderr
  commands = [line for line in r.stdout.splitlines() if not line.startswith('#')]
  assert len(commands) == 56
  workdirs = {line.split('--workdir=')[1].split()[0] for line in commands}
  assert workdirs == {str(tmp_path / f'{cell}_seed{s}') for cell in cells for s in (0, 1)}
  assert (f'--config=configs/svhn_v2.py:variant=bc --workdir={tmp_path}/svhn_bc_v2_seed1 '
          '--config.seed=1') in r.stdout
  assert ('--config=configs/cifar100_densenet_bc.py:model=densenet_bc_190 '
          f'--workdir={tmp_path}/cifar100_densenet_bc_190_seed0') in r.stdout
  assert all(line.endswith('# new') for line in commands)


@pytest.mark.parametrize('sweep, count, needle', [
    ('table3', 2, "'--config.model.blocks=(12,12,12)'"),
    ('fig7', 3, '--config.model.attention=se'),
    ('fig10', 5, '--config.model.near=14'),
    ('digits', 2, '--config.num_epochs=1'),
])
def test_paper_sweeps_dry_run(tmp_path, sweep, count, needle):
  r = sweep_cli(f'--sweep=configs/sweeps/{sweep}.py', f'--workdir={tmp_path}', '--dry_run')
  assert r.returncode == 0, r.stderr
  commands = [line for line in r.stdout.splitlines() if not line.startswith('#')]
  assert len(commands) == count and needle in r.stdout
  assert all('variant=basic' in line for line in commands) or sweep == 'digits'


@pytest.mark.parametrize('args, message', [
    (['--sweep=configs/sweeps/nope.py'], "no sweep file 'configs/sweeps/nope.py'"),
    (['--sweep=configs/sweeps/table2.py:seed=2'], "unexpected keyword argument 'seed'"),
    (['--sweep=configs/sweeps/table2.py', '--only=svhn_('], 'is not a regular expression'),
    (['--sweep=configs/sweeps/table2.py', '--only=imagenet'], 'matches none of the 28 runs'),
    (['--sweep=configs/sweeps/table2.py', '--devices_per_run=0'], '--devices_per_run must be >= 1, got 0'),
    (['--sweep=configs/sweeps/table2.py', 'extra'], 'usage error: unexpected argument: extra (see --help)'),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
  r = sweep_cli(*args, f'--workdir={tmp_path / "root"}')
  assert r.returncode == 2
  assert r.stdout == ''
  assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith(('error: ', 'usage error: '))
  assert message in r.stderr
  assert not (tmp_path / 'root').exists()


def test_only_selects_runs(tmp_path):
  r = sweep_cli('--sweep=configs/sweeps/table2.py', f'--workdir={tmp_path}', '--dry_run', '--only=^svhn_abc')
  assert r.returncode == 0, r.stderr
  assert [line.split('--workdir=')[1].split()[0].rsplit('/', 1)[1] for line in r.stdout.splitlines()[1:]] == [
      'svhn_abc_v1_seed0', 'svhn_abc_v2_seed0', 'svhn_abc_v3_seed0']


# Run states.

# A finished run's last row as training writes it (a row without step, epoch or both eval fields is damaged).
FINAL = {'step': 20, 'epoch': 2.0, 'eval_error': 0.05, 'eval_accuracy': 0.95, 'final': True}


def write_metrics(workdir, rows, tail=''):
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'metrics.jsonl'), 'w') as f:
    f.write(''.join(json.dumps(row) + '\n' for row in rows) + tail)


def test_status_of_fake_workdirs(tmp_path):
  assert record.status(str(tmp_path / 'never')) == 'new'
  empty = tmp_path / 'empty'
  empty.mkdir()
  assert record.status(str(empty)) == 'partial'
  train_row = {'step': 10, 'epoch': 1.0, 'train_loss': 1.0}
  evaluation = {'step': 10, 'epoch': 1.0, 'eval_error': 0.5, 'eval_accuracy': 0.5}
  write_metrics(tmp_path / 'running', [train_row, evaluation], tail='{"step": 2')
  assert record.status(str(tmp_path / 'running')) == 'partial'
  final = {'step': 20, 'epoch': 2.0, 'eval_error': 0.25, 'eval_accuracy': 0.75, 'final': True}
  write_metrics(tmp_path / 'done', [train_row, final], tail='{"st')
  assert record.status(str(tmp_path / 'done')) == 'done'
  assert record.final_row(str(tmp_path / 'done')) == final
  write_metrics(tmp_path / 'not_final', [dict(final, final=False)])
  assert record.status(str(tmp_path / 'not_final')) == 'partial'


def test_dry_run_reports_states(tmp_path):
  write_metrics(tmp_path / 'table3' / 'cifar10_v1_blocks8-12-16_seed0', [FINAL])
  (tmp_path / 'table3' / 'cifar10_v1_blocks12-12-12_seed0').mkdir()
  r = sweep_cli('--sweep=configs/sweeps/table3.py', f'--workdir={tmp_path / "table3"}', '--dry_run')
  assert r.returncode == 0, r.stderr
  lines = r.stdout.splitlines()
  assert '(1 done, 1 partial, 0 new)' in lines[0]
  assert lines[1].endswith('# done') and lines[2].endswith('# partial')


# Accelerator slots.

def test_slots_share_gpus_and_cpus():
  gpus = ['0', '1', '2', '3']
  assert sweeps.slots(1, None, gpus) == [{'CUDA_VISIBLE_DEVICES': g} for g in gpus]
  assert sweeps.slots(2, None, gpus) == [{'CUDA_VISIBLE_DEVICES': '0,1'}, {'CUDA_VISIBLE_DEVICES': '2,3'}]
  assert sweeps.slots(3, None, gpus) == [{'CUDA_VISIBLE_DEVICES': '0,1,2'}]
  assert sweeps.slots(1, 2, gpus) == [{'CUDA_VISIBLE_DEVICES': '0'}, {'CUDA_VISIBLE_DEVICES': '1'}]
  with pytest.raises(ValueError, match='only 4 GPU'):
    sweeps.slots(5, None, gpus)
  cpu = sweeps.slots(1, 3, [], '--xla_dump_to=/tmp/x --xla_force_host_platform_device_count=4')
  assert cpu == [{'XLA_FLAGS': '--xla_dump_to=/tmp/x --xla_force_host_platform_device_count=1'}] * 3
  assert sweeps.slots(2, None, []) == [{'XLA_FLAGS': '--xla_force_host_platform_device_count=2'}]
  with pytest.raises(ValueError, match='max_parallel'):
    sweeps.slots(1, 0, [])


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch):
  monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '2,3')
  assert sweeps.visible_gpus() == ['2', '3']
  monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '')
  assert sweeps.visible_gpus() == []
  monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '1,-1,2')
  assert sweeps.visible_gpus() == ['1']


# The local scheduler, on a fake trainer.

@pytest.mark.slow
def test_fig11_sweep_keeps_models_near_1m(tmp_path):
  r = sweep_cli('--sweep=configs/sweeps/fig11.py:layers=28', f'--workdir={tmp_path}', '--dry_run')
  assert r.returncode == 0, r.stderr
  names = [line.split('--workdir=')[1].split()[0].rsplit('/', 1)[1] for line in r.stdout.splitlines()[1:]]
  assert [n.split('_path')[0] for n in names] == [f'cifar10_L28_k{k}' for k in (18, 20, 22, 24, 26)]
  for line in r.stdout.splitlines()[1:]:
    assert "'--config.model.blocks=(8,8,8)'" in line and '--config.model.path=' in line


# The real trainer: two digits runs at once on CPU, then skipped.

@pytest.mark.slow
def test_digits_sweep_runs_concurrently_then_skips(tmp_path):
  args = ('--sweep=configs/sweeps/digits.py', f'--workdir={tmp_path}', '--max_parallel=2')
  r = sweep_cli(*args)
  assert r.returncode == 0, r.stdout + r.stderr
  events = [line.split()[0] for line in r.stdout.splitlines()[1:5]]
  assert events == ['start', 'start', 'ok', 'ok'], r.stdout
  for seed in (0, 1):
    workdir = tmp_path / f'digits_num_epochs1_seed{seed}'
    config = json.loads((workdir / 'config.json').read_text())
    assert config['seed'] == seed and config['num_epochs'] == 1
    assert record.final_row(str(workdir))['eval_accuracy'] > 0.3
  metrics = {p: p.read_text() for p in tmp_path.glob('*/metrics.jsonl')}

  again = sweep_cli(*args)
  assert again.returncode == 0, again.stdout + again.stderr
  assert again.stdout.count('finished before') == 2 and 'start' not in again.stdout
  assert {p: p.read_text() for p in tmp_path.glob('*/metrics.jsonl')} == metrics
