"""The scanned steady state, remat and bf16 compute the same function as the plain unrolled fp32 model.

Variables come from `eval_shape` filled with random numbers: an eager `init` costs more than the checks.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sparsenet_jax.model import connectivity
from sparsenet_jax.model import counting
from sparsenet_jax.model import kernels
from sparsenet_jax.model import layout
from sparsenet_jax.model import network
from sparsenet_jax.model import presets
from sparsenet_jax.model.spec import ModelSpec

TINY = dict(growth_rate=4, blocks=(7,), path=3, num_classes=5)  # layers 5-7 are capped
VARIANTS = {
    'bc_attention_two_blocks': dict(blocks=(5, 4), bottleneck=True, attention='paper'),
    'basic_near0': dict(near=0),  # no window: capped layers read only the far groups
    'se_all_near': dict(near=5, attention='se'),  # near = path + 2: no far prefix
    'capped_from_layer1': dict(stem_features=32),  # 8 input groups > path + 2: the whole block scans
    # DenseNet: every layer grows; chunks of 4 padded layers, a lone last layer, an input of 2.5 groups
    'log_grow_then_unrolled': dict(connectivity='log', blocks=(9,)),  # no steady state: unrolled after 3
    'chunk1_steady_only': dict(blocks=(9,), path=6, scan_chunk=1),  # growing layers stay unrolled
    'chunk3': dict(blocks=(9,), path=6, scan_chunk=3, bottleneck=True),  # runs 1-3, 4-6, 7 alone
    'densenet_growing_chunks': dict(blocks=(9, 5), path=None, bottleneck=True, compression='half',
                                    stem_features=10),
}


def _batch():
  x = jax.random.normal(jax.random.key(0), (3, 16, 16, 3))
  return x, jnp.arange(3) % 5


def _variables(model, x):
  """Random weights and BN statistics (positive variances) in `model`'s layout."""
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
  leaves, treedef = jax.tree.flatten_with_path(shapes)
  rng = np.random.default_rng(0)
  values = [rng.uniform(0.5, 1.5, s.shape) if jax.tree_util.keystr(p).endswith("'var']")
            else rng.normal(0, 0.3, s.shape) for p, s in leaves]
  return jax.tree.unflatten(treedef, [jnp.asarray(v, jnp.float32) for v in values])


def _train_step(model, x, y):
  def loss(params, batch_stats):
    logits, updates = model.apply({'params': params, 'batch_stats': batch_stats}, x, train=True,
                                  mutable=['batch_stats'])
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), (logits, updates)
  return jax.jit(jax.value_and_grad(loss, has_aux=True))


def _close(a, b, rtol=1e-4, atol=1e-5):
  jax.tree.map(lambda u, v: np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=rtol, atol=atol),
               a, b)


def _forward(model, x):
  return jax.jit(lambda v: model.apply(v, x, train=True, mutable=['batch_stats']))


@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_scan_matches_unrolled(variant):
  """Logits and BN statistics of a training forward pass; the wiring of the carry is what can go wrong."""
  hp = {**TINY, **VARIANTS[variant]}
  unrolled, scanned = network.make(**hp), network.make(**hp, scan=True)
  x, _ = _batch()
  v = _variables(unrolled, x)
  vs = layout.to_scanned(scanned.spec, v)
  assert jax.tree.structure(vs) == jax.tree.structure(jax.eval_shape(lambda: scanned.init(jax.random.key(0), x)))
  assert any(k.endswith('_steady') or '_grow' in k for k in vs['params'])
  logits, updates = _forward(unrolled, x)(v)
  logits_s, updates_s = _forward(scanned, x)(vs)
  _close(logits, logits_s)
  _close(updates, layout.to_unrolled(scanned.spec, updates_s))


@pytest.mark.slow
@pytest.mark.parametrize('variant', ['bc_attention_two_blocks', 'densenet_growing_chunks'])
def test_scan_gradients_match_unrolled(variant):
  hp = {**TINY, **VARIANTS[variant]}
  unrolled, scanned = network.make(**hp), network.make(**hp, scan=True)
  x, y = _batch()
  v = _variables(unrolled, x)
  vs = layout.to_scanned(scanned.spec, v)
  (loss, _), grads = _train_step(unrolled, x, y)(v['params'], v['batch_stats'])
  (loss_s, _), grads_s = _train_step(scanned, x, y)(vs['params'], vs['batch_stats'])
  _close(loss, loss_s)
  # float32 sums in another order through two blocks of convolutions: rounding, not wiring. Rounding is
  # relative to the magnitudes summed, so the bound is too: 1e-3 of each leaf's largest entry (a wiring
  # error is of the order of the entries themselves).
  jax.tree.map(lambda u, v: np.testing.assert_allclose(v, u, rtol=0, atol=1e-3 * float(np.abs(u).max()) + 1e-5),
               jax.tree.map(np.asarray, grads),
               jax.tree.map(np.asarray, layout.to_unrolled(scanned.spec, {'params': grads_s})['params']))


def test_growing_layers_scan_in_chunks_with_unpadded_variables():
  """block1: layers 1-4 and 5-7 growing (two chunks), 8+ capped; variables keep the unrolled shapes."""
  hp = dict(TINY, blocks=(9,), path=6, bottleneck=True)
  x, _ = _batch()
  unrolled, scanned = network.make(**hp), network.make(**hp, scan=True)
  v = jax.eval_shape(lambda: scanned.init(jax.random.key(0), x))
  assert {k for k in v['params'] if k.startswith('block1')} == {'block1_grow1', 'block1_grow5', 'block1_steady'}
  assert v['params']['block1_grow5']['block1_layer7']['conv1']['kernel'].shape == (1, 1, 32, 16)
  assert counting.param_count(scanned) == counting.param_count(unrolled)


def test_scan_in_eval_mode_uses_the_running_statistics():
  hp = {**TINY, 'bottleneck': True}
  unrolled, scanned = network.make(**hp), network.make(**hp, scan=True)
  x, _ = _batch()
  v = _variables(unrolled, x)
  _close(jax.jit(unrolled.apply)(v, x), jax.jit(scanned.apply)(layout.to_scanned(scanned.spec, v), x))


def test_layouts_round_trip_exactly():
  model = network.make(**TINY, bottleneck=True, attention='paper')
  v = _variables(model, _batch()[0])
  scanned = model.spec.replace(scan=True)
  back = layout.to_unrolled(scanned, layout.to_scanned(scanned, v))
  assert jax.tree.structure(back) == jax.tree.structure(v)
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(v)))


@pytest.mark.parametrize('name', [n for n in presets.names() if n.endswith('_v1')] + ['sparsenet_abc_v4'])
def test_scan_keeps_parameter_counts(name):
  assert counting.param_count(presets.build(name, scan=True)) == counting.param_count(presets.build(name))


def test_a_scanned_model_counts_the_flops_of_every_layer():
  """FLOPs are counted per layer call, and a scan traces its body once: the count is the unrolled one."""
  assert counting.flops(network.make(**TINY, scan=True)) == counting.flops(network.make(**TINY)) > 0


@pytest.mark.parametrize('hp', [dict(blocks=(4,), path=None, bottleneck=True, compression='half'),
                                dict(blocks=(6,), bottleneck=True, scan=True)], ids=['densenet', 'scanned'])
def test_remat_gives_the_same_loss_and_gradients(hp):
  hp = {**TINY, **hp}
  x, y = _batch()
  plain = network.make(**hp)
  v = _variables(plain, x)
  (loss, _), grads = _train_step(plain, x, y)(v['params'], v['batch_stats'])
  (loss_r, _), grads_r = _train_step(network.make(**hp, remat=True), x, y)(v['params'], v['batch_stats'])
  _close(loss, loss_r)
  _close(grads, grads_r)


@pytest.mark.slow
def test_remat_cuts_the_compiled_peak_memory_of_a_dense_block():
  """XLA's own memory analysis of the train step (no timing): remat must free the concatenations.

  With `nn.remat` XLA:CPU recomputed as early as the forward pass and the ratio was 1.02; now ~0.5.
  """
  hp = dict(growth_rate=4, blocks=(16,), path=None, bottleneck=True, compression='half', num_classes=5)
  x = jax.random.normal(jax.random.key(0), (16, 16, 16, 3))
  y = jnp.arange(16) % 5

  def peak(model):
    v = jax.eval_shape(lambda: model.init(jax.random.key(0), x[:1]))
    m = jax.jit(_train_step(model, x, y)).lower(v['params'], v['batch_stats']).compile().memory_analysis()
    return m.temp_size_in_bytes
  plain, remat = peak(network.make(**hp)), peak(network.make(**hp, remat=True))
  assert remat < 0.7 * plain, (plain, remat)


def test_bf16_computes_in_bf16_and_keeps_fp32_state():
  hp = {**TINY, 'blocks': (6,), 'bottleneck': True, 'attention': 'paper'}
  x, y = _batch()
  bf16, fp32 = network.make(**hp, dtype='bfloat16'), network.make(**hp)
  v = _variables(bf16, x)
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(jax.eval_shape(lambda: bf16.init(jax.random.key(0), x))))
  (loss, (logits, updates)), grads = jax.eval_shape(_train_step(bf16, x, y), v['params'], v['batch_stats'])
  assert logits.dtype == jnp.float32 and loss.dtype == jnp.float32
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves((grads, updates)))
  assert 'bf16[3,16,16,4]' in str(jax.make_jaxpr(lambda v: bf16.apply(v, x))(v))  # a layer's output

  def loss_fn(model):
    logits, _ = model.apply(v, x, train=True, mutable=['batch_stats'])
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
  assert float(jax.jit(loss_fn, static_argnums=0)(bf16)) == pytest.approx(
      float(jax.jit(loss_fn, static_argnums=0)(fp32)), rel=2e-2)


def test_log_connectivity_counts_its_parameters_and_scans_where_its_rows_allow():
  k, classes = 4, 5
  spec = ModelSpec(growth_rate=k, blocks=(9,), connectivity='log', num_classes=classes)
  plan = network.make(spec).plans()[0]
  expected = 3 * 3 * 3 * 2 * k + 2 * k  # stem conv and bias
  expected += sum(2 * w + 3 * 3 * w * k + k for w in map(connectivity.width, plan.rows))  # BN, conv
  expected += 2 * plan.output_width + plan.output_width * classes + classes  # head BN, classifier
  assert counting.param_count(network.make(spec)) == expected
  assert counting.param_count(network.make(spec, scan=True)) == expected
  kinds = [s.kind for s in network.block_schedule(plan, spec.replace(scan=True))]
  assert kinds == ['grow'] + ['layer'] * 6  # rows 1-3 read everything; the rest have no window


@pytest.mark.parametrize('variant', ['bc_attention_two_blocks', 'se_all_near', 'densenet_growing_chunks'])
def test_one_buffer_equals_the_pieces(variant, monkeypatch):
  """XLA:CPU's kernels keep a block's features in one buffer (`kernels.one_buffer`): the same logits, BN
  statistics and gradients as the pieces layout, with dropout's masks too (the same module names)."""
  hp = {**TINY, **VARIANTS[variant], 'conv_impl': 'matmul', 'dropout': 0.3}
  model = network.make(**hp)
  assert kernels.one_buffer(model.spec)
  assert not kernels.one_buffer(model.spec.replace(remat=True))
  assert not kernels.one_buffer(model.spec.replace(conv_impl='xla'))
  x, y = _batch()
  v = _variables(model, x)

  def run():
    def loss(params):
      logits, updates = model.apply({**v, 'params': params}, x, train=True, mutable=['batch_stats'],
                                    rngs={'dropout': jax.random.key(7)})
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), (logits, updates)
    (value, aux), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(v['params'])
    return value, aux, grads, jax.jit(lambda v: model.apply(v, x))(v)

  buffered = run()
  monkeypatch.setattr(kernels, 'one_buffer', lambda spec: False)
  _close(buffered, run(), rtol=1e-5, atol=1e-6)
