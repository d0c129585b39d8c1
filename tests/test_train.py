"""End to end on real data: the step's data parallelism, resume, eval mode and the metrics a run leaves."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ROOT, SHARED_DATA, build, cpu_env, override
from configs import default
from configs import digits as digits_config
from sparsenet_jax.data import datasets
from sparsenet_jax.model import network
from sparsenet_jax.training import checkpoints
from sparsenet_jax.training import steps
from sparsenet_jax.training import train

CIFAR_NPZ = os.path.join(SHARED_DATA, 'cifar10_train_10k.npz')


def tiny_config(**overrides):
  """Digits with a very small SparseNet-bc: seconds per run."""
  config = digits_config.get_config()
  config.model.growth_rate = 4
  config.model.blocks = (2, 3)
  config.model.path = 2
  config.num_epochs = 2.0
  config.learning_rates = (0.1, 0.01)
  config.lr_boundaries_epochs = (1.0,)
  config.log_every_steps = 5
  config.eval_every_epochs = 1
  config.checkpoint_every_epochs = 1
  return override(config, overrides)


def params_of(workdir, config):
  """The train state of the run's latest checkpoint, in the layout `config` asks for."""
  data = datasets.load(config.dataset)
  mesh = steps.make_mesh()
  model, tx, _ = build(config, data.num_classes, len(data.train) // config.batch_size)
  shape = data.train.images.shape[1:]
  mgr = checkpoints.manager(str(workdir), read_only=True)
  state, _, _ = checkpoints.restore(
      mgr, lambda s: steps.create_train_state(0, network.make(s), tx, shape, mesh, abstract=True),
      model.spec, shape, mesh)
  return state


@pytest.mark.slow
def test_one_step_config_leaves_a_complete_workdir(tmp_path):
  config = tiny_config(num_train_steps=1)
  final = train.train_and_evaluate(config, str(tmp_path))
  assert final['final'] and final['num_examples'] == 297
  assert json.load(open(tmp_path / 'config.json'))['model']['growth_rate'] == 4
  rows = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  train_rows = [r for r in rows if 'train_loss' in r]
  assert {'step', 'epoch', 'train_loss', 'train_accuracy', 'learning_rate', 'images_per_sec'} <= set(train_rows[0])
  assert {'step', 'epoch', 'eval_loss', 'eval_accuracy', 'eval_error'} <= set(rows[-1])
  assert os.listdir(tmp_path / 'checkpoints') == ['1']
  assert any(f.startswith('events') for f in os.listdir(tmp_path / 'tensorboard'))


@pytest.fixture(scope='module')
def straight_run(tmp_path_factory):
  """Two epochs of the tiny config, never stopped: the run that resumed runs must equal."""
  workdir = tmp_path_factory.mktemp('straight')
  return workdir, train.train_and_evaluate(tiny_config(), str(workdir))


@pytest.mark.slow
def test_digits_learns_and_resume_is_the_same_run(tmp_path, straight_run):
  straight = tiny_config()
  a, final = straight_run
  assert final['eval_accuracy'] > 0.3  # 10 classes: chance is 0.1

  half = tiny_config(num_train_steps=23)  # one epoch, then "stopped"
  train.train_and_evaluate(half, str(tmp_path / 'b'))
  resumed = train.train_and_evaluate(straight, str(tmp_path / 'b'), extend=True)  # a finished run, longer
  assert resumed['step'] == final['step'] == 46
  a, b = params_of(a, straight), params_of(tmp_path / 'b', straight)
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=1e-6)
  assert resumed['eval_accuracy'] == pytest.approx(final['eval_accuracy'])


@pytest.mark.slow
@pytest.mark.parametrize('first,then', [
    ({}, {'model.scan': True, 'model.scan_chunk': 2, 'model.remat': True}),
    ({'model.scan': True, 'model.scan_chunk': 2, 'model.remat': True}, {})],
    ids=['unrolled_then_scanned_chunk2_remat', 'scanned_chunk2_remat_then_unrolled'])
def test_resume_in_another_layout_continues_the_same_run(tmp_path, straight_run, first, then):
  """Layout fields (scan, scan_chunk, remat) are how the run computes, not what: a restart may change
  them and the run ends where the run that never changed ends, up to float32 rounding."""
  _, final = straight_run
  train.train_and_evaluate(tiny_config(num_train_steps=23, **first), str(tmp_path))
  resumed = train.train_and_evaluate(tiny_config(**then), str(tmp_path), extend=True)
  assert resumed['step'] == final['step']
  assert resumed['eval_loss'] == pytest.approx(final['eval_loss'], rel=2e-3)
  assert abs(resumed['eval_accuracy'] - final['eval_accuracy']) <= 2 / 297
  assert json.load(open(tmp_path / 'config.json'))['model']['scan'] == then.get('model.scan')


@pytest.mark.slow
def test_log_connectivity_trains_scanned(tmp_path):
  """A pattern beyond the paper, chosen on the command line of any config: it trains, scanned."""
  config = tiny_config(num_train_steps=3, **{'model.connectivity': 'log', 'model.path': None, 'model.scan': True})
  final = train.train_and_evaluate(config, str(tmp_path))
  assert final['step'] == 3 and np.isfinite(final['eval_loss'])
  meta = json.load(open(next((tmp_path / 'checkpoints' / '3' / 'meta').glob('*'))))
  assert meta['model']['connectivity'] == 'log' and meta['model']['path'] is None


def test_the_optimiser_is_chosen_by_name_from_the_config(tmp_path):
  from sparsenet_jax.training import config_validation
  config = tiny_config(num_train_steps=2, **{'optimizer.name': 'adamw'})
  with pytest.raises(config_validation.ConfigError, match="optax.adamw does not take"):
    config_validation.validate(config, 4)  # SGD's momentum is not adamw's
  config.optimizer.kwargs = {'b1': 0.9, 'b2': 0.99}
  config_validation.validate(config, 4)
  assert train.train_and_evaluate(config, str(tmp_path))['step'] == 2
  config.optimizer.name = 'no_such_optimizer'
  with pytest.raises(config_validation.ConfigError, match="optax has no optimiser 'no_such_optimizer'"):
    config_validation.validate(config, 4)


def _one_step(config, mesh, images, labels):
  data = datasets.load(config.dataset)
  model, tx, schedule = build(config, 10, 23, axis_name='data' if config.sync_batch_norm else None)
  state = steps.create_train_state(0, model, tx, (8, 8, 1), mesh)
  step = steps.make_train_step(model, tx, schedule, mesh, data.mean, data.std, 'cifar')
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  state, metrics = step(state, jax.device_put(images, sharding), jax.device_put(labels, sharding))
  return state, metrics


@pytest.mark.slow
def test_four_devices_with_sync_bn_equal_one_device():
  assert jax.device_count() == 4
  config = tiny_config(sync_batch_norm=True)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (64, 8, 8, 1), dtype=np.uint8)
  labels = rng.integers(0, 10, 64).astype(np.int32)
  one = jax.make_mesh((1,), ('data',), devices=jax.devices()[:1],
                      axis_types=(jax.sharding.AxisType.Auto,))
  s1, m1 = _one_step(config, one, images, labels)
  s4, m4 = _one_step(config, steps.make_mesh(), images, labels)
  for x, y in zip(jax.tree.leaves((s1.params, s1.batch_stats)), jax.tree.leaves((s4.params, s4.batch_stats))):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=1e-5)
  assert float(m1['train_loss']) == pytest.approx(float(m4['train_loss']), abs=1e-5)

  # Per-device statistics (the paper's setting) run too, and really differ from the global ones.
  config = tiny_config(sync_batch_norm=False)
  sp, mp = _one_step(config, steps.make_mesh(), images, labels)
  assert np.isfinite(float(mp['train_loss']))
  diffs = [float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(sp.params), jax.tree.leaves(s4.params))]
  assert max(diffs) > 1e-6


def test_eval_mode_prints_and_appends_a_row(tmp_path):
  config = tiny_config(num_train_steps=10)
  train.train_and_evaluate(config, str(tmp_path))
  row = train.evaluate(config, str(tmp_path))
  assert row['step'] == 10 and row['num_examples'] == 297 and 0 <= row['eval_accuracy'] <= 1
  last = json.loads(open(tmp_path / 'metrics.jsonl').read().splitlines()[-1])
  assert last['mode'] == 'eval' and last['eval_accuracy'] == row['eval_accuracy']


def test_eval_counts_every_example_once():
  """297 examples with eval batch 64 on 4 devices: 4 full batches + a padded one."""
  config = tiny_config()
  data = datasets.load(config.dataset)
  mesh = steps.make_mesh()
  model, tx, _ = build(config, 10, 23)
  state = steps.variables(steps.create_train_state(0, model, tx, (8, 8, 1), mesh))
  step = steps.make_eval_step(model, mesh, data.mean, data.std)
  padded = steps.evaluate_split(step, state, data.test, mesh, 64)
  whole = steps.evaluate_split(step, state, data.test, mesh, 300)
  assert padded['num_examples'] == whole['num_examples'] == 297
  assert padded['eval_accuracy'] == pytest.approx(whole['eval_accuracy'])
  assert padded['eval_loss'] == pytest.approx(whole['eval_loss'], rel=1e-5)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(CIFAR_NPZ), reason=f'the real CIFAR-10 file {CIFAR_NPZ} is absent '
                    '(it sits beside the repository on the project machines, not in a clone)')
def test_real_cifar10_npz_learns(tmp_path):
  """One epoch of a small SparseNet-bc on 4,000 real CIFAR-10 images, 1,000 held out."""
  data = np.load(CIFAR_NPZ)
  np.savez(tmp_path / 'c10.npz', image=data['image'][:5000], label=data['label'][:5000])
  config = default.get_config()
  config.model = default.model_config('sparsenet_bc_v1')
  config.model.growth_rate = 8
  config.model.blocks = (3, 3, 3)
  config.model.path = 3
  config.dataset.name = 'npz'
  config.dataset.train_path = str(tmp_path / 'c10.npz')
  config.dataset.validation_size = 1000
  config.num_epochs = 1.0  # 0.38 after one epoch (0.53 after two)
  config.learning_rates = (0.1,)
  config.lr_boundaries_epochs = ()
  config.log_every_steps = 20
  final = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert final['num_examples'] == 1000
  assert final['eval_accuracy'] > 0.25  # chance is 0.10


def test_main_cli_bad_config_is_one_line(tmp_path):
  r = subprocess.run([sys.executable, os.path.join(ROOT, 'launch', 'main.py'),
                      '--config=' + os.path.join(ROOT, 'configs', 'digits.py'), f'--workdir={tmp_path}',
                      '--config.batch_size=0'], capture_output=True, text=True, env=cpu_env(), timeout=300)
  assert r.returncode == 2
  assert r.stderr.strip().splitlines()[-1] == 'config error: config.batch_size must be a positive integer, got 0'
  assert not os.path.exists(tmp_path / 'metrics.jsonl')
