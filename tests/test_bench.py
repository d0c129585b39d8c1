"""launch/bench.py runs end to end and reports its keys: a smoke test, timings belong in BENCHMARKS.md."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

KEYS = {'model', 'batch_size', 'devices', 'mode', 'images_per_sec', 'step_ms_median', 'compile_seconds',
        'flops_per_image', 'achieved_gflops', 'peak_memory_bytes', 'params'}


def run_bench(*args):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  out = subprocess.run([sys.executable, os.path.join(ROOT, 'launch', 'bench.py'), '--model=sparsenet_bc_v1',
                        '--blocks=1,2,1', '--batch_size=2', '--image_size=8', '--steps=1', '--json',
                        '--compilation_cache_dir=', *args],
                       capture_output=True, text=True, env=env, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  return [json.loads(line) for line in out.stdout.splitlines()]


@pytest.mark.parametrize('args', [(), ('--mode=eval', '--precision=bf16', '--remat', '--scan')],
                         ids=['train', 'eval_bf16_remat_scan'])
def test_bench_reports_every_key(args):
  (row,) = run_bench(*args)
  assert KEYS <= set(row)
  assert row['images_per_sec'] > 0 and row['peak_memory_bytes'] > 0 and row['params'] > 0
  assert row['flops_per_image'] > 0 and row['compile_seconds'] > 0


def test_bad_model_is_a_clear_error():
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  out = subprocess.run([sys.executable, os.path.join(ROOT, 'launch', 'bench.py'), '--model=resnet50'],
                       capture_output=True, text=True, env=env, timeout=120)
  assert out.returncode == 2 and 'unknown model' in out.stderr


def test_round_robin_times_every_row_with_its_own_options():
  rows = run_bench('--model=sparsenet_bc_v1,sparsenet_bc_v1:scan:remat', '--mode=train,eval', '--rounds=2')
  assert [(r['scan'], r['remat'], r['mode']) for r in rows] == [
      (False, False, 'train'), (False, False, 'eval'), (True, True, 'train'), (True, True, 'eval')]
  assert all(r['steps'] == 2 and KEYS <= set(r) for r in rows)


def test_bad_option_is_a_clear_error():
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  out = subprocess.run([sys.executable, os.path.join(ROOT, 'launch', 'bench.py'), '--model=sparsenet_bc_v1:fast'],
                       capture_output=True, text=True, env=env, timeout=120)
  assert out.returncode == 2 and "unknown option(s) ['fast']" in out.stderr
