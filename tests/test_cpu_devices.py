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
  assert not cpu_devices.active()  # this process's 4 devices are the tests' own (conftest.py), not a split


def _main(workdir, cores, config):
  """launch/main.py in a process that sees `cores` cores and sets no device count of its own."""
  overrides = [f'--config.{k}={v}' for k, v in config.items()]
  code = ('import runpy, sys; from sparsenet_jax.training import cpu_devices; '
          f'cpu_devices.cores = lambda: {cores}; '
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
