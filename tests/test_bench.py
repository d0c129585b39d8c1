"""launch/bench.py times the training code's own steps and reports its keys: a smoke test, timings belong in
BENCHMARKS.md."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, TEST_XLA_FLAGS, cpu_env

KEYS = {'model', 'batch_size', 'devices', 'mode', 'images_per_sec', 'step_ms_median', 'compile_seconds',
        'flops_per_image', 'achieved_gflops', 'peak_memory_bytes', 'params', 'conv_impl', 'remat_impl'}
BENCH = os.path.join(ROOT, 'launch', 'bench.py')
ENV = cpu_env(devices=4)
TINY = ('--model=sparsenet_bc_v1', '--blocks=1,2,1', '--batch_size=4', '--image_size=8', '--json',
        '--nocold_compile')  # the tests' shared compilation cache (conftest.py)
# After a driver's set-up: bench.py (argv[1]) run as __main__, its flags after it; a clean exit goes on.
AS_MAIN = r'''
sys.argv = sys.argv[1:]
try:
  runpy.run_path(sys.argv[0], run_name='__main__')
except SystemExit as e:
  if e.code:
    raise
'''
# Runs bench.py as __main__ with steps.make_train_step / make_eval_step wrapped, so that every step it
# lowers is known to come from them; the last stdout line lists them.
SPY = r'''
import json, runpy, sys
from sparsenet_jax.training import steps
lowered = []
def spy(factory):
  def make(*args, **kwargs):
    step = factory(*args, **kwargs)
    class Spied:
      def lower(self, *a, **k):
        lowered.append(factory.__name__)
        return step.lower(*a, **k)
    return Spied()
  return make
steps.make_train_step = spy(steps.make_train_step)
steps.make_eval_step = spy(steps.make_eval_step)
''' + AS_MAIN + "print(json.dumps({'lowered': lowered}))\n"


def run_bench(*args):
  """(rows, names of the steps factories whose steps were lowered), for the tiny model with `args`."""
  steps = () if any(a.startswith('--rounds') for a in args) else ('--steps=1',)  # --rounds replaces --steps
  out = subprocess.run([sys.executable, '-c', SPY, BENCH, *TINY, *steps, *args], capture_output=True, text=True,
                       env=ENV, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  *rows, spied = [json.loads(line) for line in out.stdout.splitlines()]
  return rows, spied['lowered']


@pytest.mark.slow
@pytest.mark.parametrize('args,step', [((), 'make_train_step'),
                                       (('--mode=eval', '--precision=bf16', '--remat', '--scan'),
                                        'make_eval_step')], ids=['train', 'eval_bf16_remat_scan'])
def test_bench_times_the_training_codes_step_and_reports_every_key(args, step):
  (row,), lowered = run_bench(*args)
  assert lowered == [step]  # bench has no step of its own: it compiles and times steps.<step>'s
  assert KEYS <= set(row)
  assert row['devices'] == 4 and row['optimizer'] == 'sgd'
  assert row['images_per_sec'] > 0 and row['peak_memory_bytes'] > 0 and row['params'] > 0
  assert row['flops_per_image'] > 0 and row['compile_seconds'] > 0
  assert row['final_loss'] > 0


@pytest.mark.slow
def test_round_robin_times_every_row_with_its_own_options():
  rows, lowered = run_bench('--model=sparsenet_bc_v1:xla,sparsenet_bc_v1:scan:tied', '--mode=train,eval',
                            '--rounds=2')
  assert [(r['scan'], r['remat'], r['conv_impl'], r['remat_impl'], r['mode']) for r in rows] == [
      (False, False, 'xla', 'auto', 'train'), (False, False, 'xla', 'auto', 'eval'),
      (True, True, 'auto', 'tied', 'train'), (True, True, 'auto', 'tied', 'eval')]
  assert rows[0]['conv_kernel'] == 'xla' and rows[2]['remat_kernel'] == 'tied'
  assert all(r['steps'] == 2 and KEYS <= set(r) for r in rows)
  assert lowered == ['make_train_step', 'make_eval_step'] * 2


@pytest.mark.slow
def test_turns_runs_one_step_per_line_of_input_and_answers_each_at_once():
  out = subprocess.run([sys.executable, BENCH, *TINY, '--mode=train,eval', '--turns'], input='train\neval\ntrain\n',
                       capture_output=True, text=True, env=ENV, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  ready, *answers, train, evaluation = [json.loads(line) for line in out.stdout.splitlines()]
  assert ready == {'ready': True}
  assert [a['mode'] for a in answers] == ['train', 'eval', 'train'] and all(a['seconds'] > 0 for a in answers)
  assert (train['mode'], train['steps'], evaluation['mode'], evaluation['steps']) == ('train', 2, 'eval', 1)
  assert train['step_ms_min'] == round(min(answers[0]['seconds'], answers[2]['seconds']) * 1e3, 2)

  bad = subprocess.run([sys.executable, BENCH, *TINY, '--mode=train', '--turns'], input='eval\n',
                       capture_output=True, text=True, env=ENV, timeout=300)
  assert bad.returncode == 2 and "standard input named 'eval'; this run has train" in bad.stderr, bad.stderr[-2000:]
  assert bad.stderr.strip().count('\n') == 0


@pytest.mark.parametrize('args,message', [
    (('--model=resnet50',), 'unknown model'),
    (('--model=sparsenet_bc_v1:fast',), "unknown option(s) ['fast']"),
    (('--model=sparsenet_bc_v1:xla:fwdvjp',), 'conflicting options'),
    (('--batch_size=0',), '--batch_size must be >= 1, got 0'),
    (('--batch_size=6',), 'not divisible by the 4 devices'),
    (('--steps=-1',), '--steps must be >= 0, got -1'),
    (('--rounds=0',), '--rounds must be >= 1, got 0'),
    (('--mode=predict',), '--mode takes train, eval'),
    (('--turns', '--rounds=2'), '--turns replaces --steps, --rounds'),
    (('--turns', '--model=densenet_bc_100,sparsenet_bc_v1'), '--turns times one model'),
], ids=['model', 'option', 'conflict', 'batch', 'indivisible_batch', 'steps', 'rounds', 'mode', 'turns_rounds',
        'turns_models'])
def test_bad_argument_is_one_line_and_exit_2(args, message):
  out = subprocess.run([sys.executable, BENCH, *args], capture_output=True, text=True, env=ENV, timeout=120)
  assert out.returncode == 2 and message in out.stderr, out.stderr[-2000:]
  assert out.stderr.strip().count('\n') == 0 and not out.stdout  # nothing compiled, nothing printed


# Runs bench.py as __main__ on a 2-core view of this CPU, recording the BatchNorm axis of each train
# step's model; the last stdout line lists them.
SPLIT = r'''
import json, runpy, sys
from sparsenet_jax.training import cpu_devices, steps
cpu_devices.cores = lambda: 2
axes, make = [], steps.make_train_step
def spy(model, *args, **kwargs):
  axes.append(model.spec.axis_name)
  return make(model, *args, **kwargs)
steps.make_train_step = spy
''' + AS_MAIN + "print(json.dumps({'axes': axes}))\n"


@pytest.mark.slow
def test_bench_splits_the_cpu_as_training_does_and_synchronises_its_batchnorm():
  """With no device count set: the tiny model's train step is too small to gain from one device per core,
  so it stays on one, as a training run would; `--cpu_split=always` splits it, and the train step's
  BatchNorm is then synchronised across the devices, as training's is (not per device)."""
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS=TEST_XLA_FLAGS)
  env.pop('JAX_NUM_CPU_DEVICES', None)
  for extra, devices, axis in [((), 1, None), (('--cpu_split=always',), 2, 'data')]:
    out = subprocess.run([sys.executable, '-c', SPLIT, BENCH, *TINY, '--steps=1', *extra], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    *rows, spied = [json.loads(line) for line in out.stdout.splitlines()]
    assert [row['devices'] for row in rows] == [devices] and spied['axes'] == [axis]
