"""Dropout (DenseNet's, on data without augmentation): a model field whose rng comes from the train state."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import default
from sparsenet_jax.model import counting
from sparsenet_jax.model import network
from sparsenet_jax.model import presets
from sparsenet_jax.training import steps

TINY = dict(growth_rate=4, blocks=(3, 3), path=2, bottleneck=True, compression='half', num_classes=5)


def test_rate_is_validated_and_leaves_counts_alone():
  with pytest.raises(ValueError, match='dropout'):
    network.make(**TINY, dropout=1.0)
  assert all(presets.get(n).dropout == 0.0 for n in presets.names())
  assert counting.param_count(network.make(**TINY, dropout=0.2)) == counting.param_count(network.make(**TINY))


def test_densenet_recipe_sets_dropout_only_without_augmentation():
  assert default.densenet_config('svhn', None).model.dropout == 0.2
  assert default.densenet_config('cifar10', None).model.dropout is None  # the preset's 0
  c10 = default.densenet_config('cifar100', 'model=densenet_bc_190')
  assert (c10.num_epochs, tuple(c10.lr_boundaries_epochs), c10.batch_size) == (300.0, (150.0, 225.0), 64)


@pytest.mark.slow
def test_train_mode_drops_eval_mode_does_not():
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
  plain, dropped = network.make(**TINY), network.make(**TINY, dropout=0.5)
  v = jax.jit(lambda x: plain.init(jax.random.key(1), x))(x)  # jitted: eager passes compile op by op
  evaluate = jax.jit(lambda model, v: model.apply(v, x), static_argnums=0)
  np.testing.assert_array_equal(evaluate(plain, v), evaluate(dropped, v))
  train = jax.jit(lambda key: dropped.apply(v, x, train=True, mutable=['batch_stats'], rngs={'dropout': key})[0])
  assert not np.allclose(train(jax.random.key(2)), train(jax.random.key(3)))
  scanned = network.make(**TINY, dropout=0.5, scan=True, remat=True)  # scans and remat carry the stream
  vs = jax.jit(lambda x: scanned.init(jax.random.key(1), x))(x)
  grads = jax.jit(jax.grad(lambda p: scanned.apply({**vs, 'params': p}, x, train=True, mutable=['batch_stats'],
                                                   rngs={'dropout': jax.random.key(2)})[0].sum()))(vs['params'])
  assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))


def test_train_step_dropout_is_a_function_of_state_and_step():
  """The same state and batch give the same update (resume is exact); the mask changes with the step."""
  model = network.make(**TINY, dropout=0.5)
  tx = optax.sgd(0.1)
  mesh = steps.make_mesh()
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (8, 8, 8, 3), dtype=np.uint8)
  labels = rng.integers(0, 5, 8).astype(np.int32)
  step = steps.make_train_step(model, tx, lambda s: 0.1, mesh, (0., 0., 0.), (255., 255., 255.), 'none')
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  batch = (jax.device_put(images, sharding), jax.device_put(labels, sharding))

  initial = steps.create_train_state(0, model, tx, (8, 8, 3), mesh)

  def run(at_step):  # the step donates its state: each call gets a copy
    state = jax.tree.map(jnp.copy, initial).replace(step=jnp.asarray(at_step, jnp.int32))
    return step(state, *batch)[1]['train_loss']
  assert float(run(0)) == float(run(0))
  assert float(run(0)) != float(run(1))
