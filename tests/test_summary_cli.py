"""launch/summary.py as a user runs it."""
import json
import os
import subprocess
import sys

import pytest

from PIL import Image

from conftest import ROOT, cpu_env
from sparsenet_jax.model import presets


def run(*args):
  return subprocess.run([sys.executable, os.path.join(ROOT, 'launch', 'summary.py'), *args],
                        capture_output=True, text=True, env=cpu_env(), timeout=300)


# summary.py with one more preset, registered as a user would, with no paper numbers (they are optional).
NO_PAPER = ('import runpy, sys; from sparsenet_jax.model import presets; '
            'presets.register("tiny_nopaper", presets.get("sparsenet_bc_v1", growth_rate=4, blocks=(1, 1), path=2)); '
            'sys.argv = ["summary.py", *sys.argv[1:]]; '
            f'runpy.run_path({os.path.join(ROOT, "launch", "summary.py")!r}, run_name="__main__")')


def run_with_a_preset_without_paper_numbers(*args):
  return subprocess.run([sys.executable, '-c', NO_PAPER, *args], capture_output=True, text=True, env=cpu_env(),
                        timeout=600)  # --model=all traces 23 presets, six of them ImageNet-size


@pytest.mark.slow
def test_all_presets_as_json():
  """Every preset, and one without the paper's numbers (a preset is one `register` call)."""
  r = run_with_a_preset_without_paper_numbers('--model=all', '--json')
  assert r.returncode == 0, r.stderr
  rows = [json.loads(line) for line in r.stdout.splitlines()]
  assert len(rows) == len(presets.names()) + 1
  by_name = {row['model']: row for row in rows}
  assert by_name['sparsenet_abc_v1']['params'] == 860_698
  assert by_name['densenet_121']['params'] == 7_978_856  # the ImageNet presets at 224, 1000 classes
  assert by_name.pop('tiny_nopaper')['paper_params'] is None
  for name, row in by_name.items():
    assert {'model', 'params', 'flops', 'paper_params', 'xla_flops'} <= set(row)
    assert row['flops'] > 0 and row['paper_params'] == presets.paper_params(name)


def test_a_preset_without_paper_numbers_prints_a_dash():
  r = run_with_a_preset_without_paper_numbers('--model=tiny_nopaper')
  assert r.returncode == 0, r.stderr
  line, = [line for line in r.stdout.splitlines() if line.startswith('| tiny_nopaper |')]
  cells = [c.strip() for c in line.split('|')[1:-1]]
  assert cells[2] == '-' and cells[3] == '-'  # paper params, diff


def test_draw_writes_a_png_and_overrides_apply(tmp_path):
  out = tmp_path / 'connections.png'
  r = run('--model=sparsenet_v1', '--blocks=12,12,12', '--path=6', '--near=2', f'--draw={out}')
  assert r.returncode == 0, r.stderr
  assert '| sparsenet_v1 |' in r.stdout
  with Image.open(out) as im:
    assert im.format == 'PNG' and im.size[0] > 400 and im.size[1] > 200


def test_bad_input_is_one_line_and_exit_2():
  r = run('--model=sparsenet_v1', '--near=99')
  assert r.returncode == 2
  assert r.stdout == ''
  assert r.stderr.strip().splitlines()[-1] == 'error: near must be in [0, 16], got 99'


def test_scan_says_which_layers_of_each_block_run_scanned():
  r = run('--model=sparsenet_bc_v1', '--connectivity=log', '--scan')
  assert r.returncode == 0, r.stderr
  lines = r.stdout.splitlines()
  assert lines[0] == ('sparsenet_bc_v1 block 1 (8 layers, 33 connections): scanned (growing) 1-3; '
                      'unrolled 4-8')  # the log pattern's later rows have no prefix + window
  r = run('--model=sparsenet_bc_v1', '--scan')
  assert r.stdout.splitlines()[2].endswith('scanned (growing) 5-8; scanned (far 9 + near 7) 9-16')


def test_image_size_must_be_positive():
  r = run('--model=sparsenet_v1', '--image_size=0')
  assert r.returncode == 2 and r.stdout == ''
  assert r.stderr.strip().splitlines()[-1] == 'error: --image_size must be >= 1, got 0'
