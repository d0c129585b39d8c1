"""One XLA device per CPU core (training/cpu_devices.py): when the split is made, and that a run split over
two host devices ends where the one-device run ends."""
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import ROOT, TEST_XLA_FLAGS
from sparsenet_jax.training import cpu_devices
from test_train import params_of, tiny_config

MAIN = os.path.join(ROOT, 'launch', 'main.py')


class _FakeJax:
  """Records the config updates `split` makes instead of touching this process's (started) backend."""

  def __init__(self):
    self.updates = {}
    self.config = self

  def update(self, name, value):
    self.updates[name] = value


def test_device_count_is_at_most_one_per_core_and_divides_every_batch():
  assert cpu_devices.device_count(2, (64, 200)) == 2
  assert cpu_devices.device_count(4, (64, 200)) == 4
  assert cpu_devices.device_count(3, (64, 500)) == 2  # 3 divides neither
  assert cpu_devices.device_count(8, (64, 100)) == 4
  assert cpu_devices.device_count(2, (63,)) == 1
  assert cpu_devices.device_count(1, (64,)) == 1


def test_split_asks_for_one_device_per_core_unless_the_user_chose(monkeypatch):
  monkeypatch.setattr(cpu_devices, 'cores', lambda: 2)
  monkeypatch.setattr(cpu_devices, '_SPLIT', None)
  fake = _FakeJax()
  assert cpu_devices.split(fake, (64, 200), environ={'XLA_FLAGS': TEST_XLA_FLAGS}) == 2
  assert fake.updates == {'jax_num_cpu_devices': 2}
  for environ, multi in [({'XLA_FLAGS': f'{TEST_XLA_FLAGS} {cpu_devices.COUNT_FLAG}=1'}, False),
                         ({'JAX_NUM_CPU_DEVICES': '3'}, False), ({}, True)]:
    fake = _FakeJax()
    assert cpu_devices.split(fake, (64,), multi_process=multi, environ=environ) == 1
    assert fake.updates == {}


def test_a_small_train_step_stays_on_one_device(monkeypatch):
  """The split costs an all-reduce per BatchNorm layer and step: a step whose layers have little to
  normalise on each device is left on one device, and says so; a large or unknown one is split."""
  monkeypatch.setattr(cpu_devices, 'cores', lambda: 2)
  monkeypatch.setattr(cpu_devices, '_SPLIT', None)
  monkeypatch.setattr(cpu_devices, '_SMALL', None)
  environ = {'XLA_FLAGS': TEST_XLA_FLAGS}
  small = 2 * cpu_devices.MIN_SYNC_BYTES - 1  # just under the threshold once halved
  fake = _FakeJax()
  assert cpu_devices.split(fake, (64,), environ=environ, sync=small) == 1 and fake.updates == {}
  assert 'one device: the train step is small' in cpu_devices.describe()
  assert f'{cpu_devices.COUNT_FLAG}=2' in cpu_devices.describe()
  for sync in (2 * cpu_devices.MIN_SYNC_BYTES, None):
    fake = _FakeJax()
    assert cpu_devices.split(fake, (64,), environ=environ, sync=sync) == 2
    assert fake.updates == {'jax_num_cpu_devices': 2}


def test_sync_bytes_of_the_configs_put_the_quick_start_on_one_device_and_cifar_bc_on_every_core():
  """Pure arithmetic on the plan: the digits config's train step is far below the threshold; the CIFAR
  DenseNet-BC and SparseNet-bc configs (batch 64) are above it with two devices; SparseNet-abc-V1's many
  attention BatchNorms on 1x1 maps bring it below (measured a tie: BENCHMARKS.md)."""
  from configs import cifar10_densenet_bc
  from configs import cifar10_v1
  from configs import digits
  from sparsenet_jax.model import network
  from sparsenet_jax.model import presets
  per_device = {name: cpu_devices.config_sync_bytes(config) / 2 for name, config in [
      ('digits', digits.get_config()), ('densenet_bc', cifar10_densenet_bc.get_config()),
      ('bc_v1', cifar10_v1.get_config('variant=bc')), ('abc_v1', cifar10_v1.get_config())]}
  assert per_device['digits'] < cpu_devices.MIN_SYNC_BYTES / 8
  assert per_device['densenet_bc'] > per_device['bc_v1'] > cpu_devices.MIN_SYNC_BYTES > per_device['abc_v1']
  spec = presets.get('densenet_bc_100')
  assert cpu_devices.sync_bytes(spec, (32, 32), 64) == network.feature_map_elements(spec, (32, 32)) * 64 * 4 // 99
  assert cpu_devices.sync_bytes(spec.replace(dtype='bfloat16'), (32, 32), 64) * 2 <= \
      cpu_devices.sync_bytes(spec, (32, 32), 64)
  assert not cpu_devices.active()  # this process's 4 devices are the tests' own (conftest.py), not a split


def _main(workdir, cores, config):
  """launch/main.py in a process that sees `cores` cores and sets no device count of its own."""
  overrides = [f'--config.{k}={v}' for k, v in config.items()]
  code = ('import runpy, sys; from sparsenet_jax.training import cpu_devices; '
          f'cpu_devices.cores = lambda: {cores}; cpu_devices.MIN_SYNC_BYTES = 0; '  # split the tiny model
          f'sys.argv = {[MAIN, "--config=configs/digits.py", f"--workdir={workdir}", *overrides]!r}; '
          'runpy.run_path(sys.argv[0], run_name="__main__")')
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS=TEST_XLA_FLAGS)
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, cwd=ROOT,
                       timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  return out.stderr


@pytest.mark.slow
def test_a_run_split_over_two_cpu_devices_equals_the_one_device_run(tmp_path):
  """Per-device BatchNorm is the config's default: the split must synchronise it to equal one device.

  The one-device run names the synchronised form (`sync_batch_norm=True`): on one device it is the same
  function as the default, and from one state both forms' gradients agree to 1e-8, but XLA compiles them
  in another order and the runs part by 1e-7 within three steps; at step 4 the digits' gradient is that
  sensitive (1.9e-3 in the stem kernel's gradient between two states 1e-7 apart, measured), so the
  default would move the stem 3.6e-4 from the synchronised run."""
  fields = {'model.growth_rate': 4, 'model.blocks': '(2,3)', 'model.path': 2, 'num_train_steps': 4,
            'eval_every_epochs': 1, 'checkpoint_every_epochs': 1}
  one = _main(tmp_path / 'one', 1, {**fields, 'sync_batch_norm': True})
  two = _main(tmp_path / 'two', 2, fields)
  assert 'split over 2 host devices' in two and 'split over' not in one
  config = tiny_config(num_train_steps=4)
  a, b = params_of(tmp_path / 'one', config), params_of(tmp_path / 'two', config)
  for x, y in zip(jax.tree.leaves((a.params, a.batch_stats)), jax.tree.leaves((b.params, b.batch_stats))):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=1e-5)
