"""Presets against the paper's Table 1 and 3, shapes of every preset, and real passes of the small ones."""
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sparsenet_jax.model import connectivity
from sparsenet_jax.model import counting
from sparsenet_jax.model import layers
from sparsenet_jax.model import network
from sparsenet_jax.model import presets
from sparsenet_jax.model import spec as spec_lib
from sparsenet_jax.model.spec import ModelSpec

GOLDEN_PARAMS = {  # docs/model.md section 3, exact
    'sparsenet_v1': 1_197_194,
    'sparsenet_bc_v1': 828_442,
    'sparsenet_abc_v1': 860_698,
    'densenet_bc_100': 769_162,
    'densenet_bc_250': 15_324_406,
    'densenet_bc_190': 25_624_430,
}


@functools.lru_cache(maxsize=None)
def preset_params(name):
  """Counted once per preset for the three tests below (an abstract init of densenet_bc_250 takes seconds)."""
  return counting.param_count(presets.build(name))


@pytest.mark.parametrize('name,expected', sorted(GOLDEN_PARAMS.items()))
def test_golden_parameter_counts(name, expected):
  assert preset_params(name) == expected


@pytest.mark.parametrize('name', [n for n in presets.names() if n.startswith('sparsenet') and presets.paper_params(n)])
def test_sparsenet_presets_within_half_a_percent_of_table_1(name):
  params = preset_params(name)
  assert abs(params / presets.paper_params(name) - 1) <= 0.005


@pytest.mark.parametrize('name', [n for n in presets.names() if n.startswith('densenet')])
def test_densenet_presets_match_the_printed_figure(name):
  # The DenseNet papers print 0.8M, 1.0M: one decimal, so agreement is at that precision.
  params = preset_params(name)
  paper = presets.paper_params(name)
  assert round(params / 1e6, 1) == pytest.approx(round(paper / 1e6, 1))  # torchvision's: exact


@pytest.mark.parametrize('blocks,paper', [((8, 12, 16), 578e6), ((12, 12, 12), 849e6)])
def test_flops_match_table_3(blocks, paper):
  f = counting.flops(presets.build('sparsenet_v1', blocks=blocks))
  assert abs(f / paper - 1) <= 0.015


def test_flops_ratio_densenet_bc_190_over_sparsenet_abc_v3():
  ratio = counting.flops(presets.build('densenet_bc_190')) / counting.flops(presets.build('sparsenet_abc_v3'))
  assert ratio == pytest.approx(3.55, abs=0.01)


def test_flops_of_a_single_conv_by_hand():
  # stem 3x3x3x32 at 32x32 + head dense: checks the counting rule itself on a 1-layer net.
  model = presets.build('sparsenet_v1', blocks=(1,), growth_rate=16)
  expected = 2 * 32 * 32 * (3 * 3 * 3 * 32) + 2 * 32 * 32 * (3 * 3 * 32 * 16) + 2 * 48 * 10
  assert counting.flops(model) == expected


@pytest.mark.parametrize('name', presets.names())
def test_every_preset_output_shape(name):
  model = presets.build(name, num_classes=100)
  x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
  # init runs the forward pass: one abstract trace gives the variables and the logits
  out, variables = jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x, train=False), x)
  assert out.shape == (2, 100) and out.dtype == jnp.float32
  # the plan's count of BatchNorm layers (the CPU split's rule reads it) is the network's
  means = [path for path, _ in jax.tree_util.tree_flatten_with_path(variables['batch_stats'])[0]
           if path[-1].key == 'mean']
  assert len(means) == network.norm_layers(model.spec)


# The paper's two layer kinds at full depth: the plain layer (V1) and bottleneck + compression +
# attention (ABC-V1, a superset of BC-V1's code path). Dense connectivity's gradients are checked on a
# small DenseNet in test_scan.py; every preset's shapes above. Compiling these two is most of the cost.
@pytest.mark.slow
@pytest.mark.parametrize('name', ['sparsenet_v1', 'sparsenet_abc_v1'])
def test_forward_and_backward_pass(name):
  model = presets.build(name)
  x = jax.random.normal(jax.random.key(0), (4, 16, 16, 3))  # two transitions: 16 -> 8 -> 4
  y = jnp.arange(4) % 10
  variables = jax.jit(lambda x: model.init(jax.random.key(1), x, train=False))(x)  # eager init: minutes

  def loss_fn(params):
    logits, updates = model.apply({**variables, 'params': params}, x, train=True, mutable=['batch_stats'])
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), updates

  (loss, updates), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(variables['params'])
  assert np.isfinite(float(loss))
  norms = [float(jnp.linalg.norm(g)) for g in jax.tree.leaves(grads)]
  assert all(np.isfinite(norms)) and sum(n > 0 for n in norms) > 0.9 * len(norms)
  assert jax.tree.structure(updates['batch_stats']) == jax.tree.structure(variables['batch_stats'])


def test_se_comparator_size():
  base = counting.param_count(presets.build('sparsenet_v1'))
  se = counting.param_count(presets.build('sparsenet_v1', attention='se'))
  k, layers_ = 16, 36
  assert se - base == layers_ * ((k * 2 + 2) + (2 * k + k))  # FC k->k/8 and FC k/8->k, with biases


def test_attention_keeps_shape_and_adds_a_residual():
  h = jax.random.normal(jax.random.key(0), (2, 8, 8, 16))
  att = layers.Attention()
  v = att.init(jax.random.key(1), h, train=False)
  out = att.apply(v, h, train=False)
  assert out.shape == h.shape
  # s = sigmoid(...) is in (0, 1): out = h (1 + s) keeps h's sign and at most doubles it.
  ratio = np.asarray(out / h)
  assert np.all((ratio > 1) & (ratio < 2))


def test_transition_rules():
  assert layers.transition_features('sparsenet', 160, 10, 16) == 96  # 2k + 4k
  assert layers.transition_features('half', 300, 25, 12) == 150
  assert layers.transition_features('none', 300, 25, 12) == 300


def test_plans_of_v1_bc():
  plans = presets.build('sparsenet_bc_v1').plans()
  assert [p.input_width for p in plans] == [32, 96, 144]
  assert [p.transition_width for p in plans] == [96, 144, None]
  assert [connectivity.num_connections([p.output_row], p.input_width, 16) for p in plans] == [10, 16, 16]
  assert [p.output_width for p in plans] == [160, 256, 256]


@pytest.mark.parametrize('overrides,field', [
    (dict(growth_rate=0), 'growth_rate'),
    (dict(blocks=()), 'blocks'),
    (dict(blocks=(4, -1)), 'blocks'),
    (dict(path=-2), 'path'),
    (dict(near=40), 'near'),
    (dict(attention='cbam'), 'attention'),
    (dict(compression='quarter'), 'compression'),
    (dict(num_classes=0), 'num_classes'),
    (dict(scan_chunk=0), 'scan_chunk'),
    (dict(depth=100), 'depth'),
    (dict(connectivity='ring'), 'connectivity'),
])
def test_bad_hyperparameters_raise_clear_errors(overrides, field):
  with pytest.raises(ValueError, match=field):
    presets.build('sparsenet_bc_v1', **overrides)


def test_unknown_preset():
  with pytest.raises(ValueError, match='unknown model'):
    presets.build('resnet50')


def test_network_make_is_the_validated_constructor():
  assert network.make(growth_rate=8, blocks=[2, 2], path=3).spec.blocks == (2, 2)


def test_spec_round_trips_through_json_and_splits_its_fields_by_kind():
  spec = presets.get('sparsenet_abc_v1', scan=True, near=3, remat=True)
  assert ModelSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
  assert set(spec.architecture()) == {f for f in spec_lib.FIELDS if spec_lib.KIND[f] == 'architecture'}
  assert not {'scan', 'scan_chunk', 'remat', 'conv_impl', 'remat_impl', 'dtype'} & set(spec.architecture())
  assert spec.architecture() == presets.get('sparsenet_abc_v1', near=3).architecture()


def test_one_model_has_one_spelling():
  assert presets.get('sparsenet_v1').near == 7  # the default near is stored as its value
  assert presets.get('sparsenet_v1', path=10).near == 5  # and follows a new path
  assert presets.get('sparsenet_v1', path=None) == presets.get('sparsenet_v1', connectivity='dense')
  assert presets.get('densenet_40', path=12).connectivity == 'sparsenet'  # a path makes DenseNet sparse
  log = presets.get('sparsenet_v1', connectivity='log')
  assert (log.path, log.near) == (None, None)  # the log pattern has neither


def _smallest_map(spec, size):
  """The height and width of what the head pools over, traced (no compile) on size x size images."""
  model = network.make(spec)
  x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.key(0), x)
  _, state = jax.eval_shape(functools.partial(model.apply, capture_intermediates=True, mutable=['intermediates']),
                            variables, x)
  last = [k for k in state['intermediates'] if k.startswith('transition')]
  return state['intermediates'][last[-1]]['__call__'][0].shape[1:3] if last else (size, size)


@pytest.mark.parametrize('name,blocks,smallest', [
    ('densenet_40', None, 4), ('sparsenet_abc_v1', None, 4), ('sparsenet_bc_v1', (1, 1, 1, 1, 1, 1), 32),
    ('densenet_bc_100', (2, 2), 2), ('sparsenet_v1', (3,), 1)])
def test_min_image_size_is_the_smallest_input_that_leaves_the_head_a_pixel(name, blocks, smallest):
  """spec.min_image_size against the traced network: the last transition leaves at least 1x1 at that
  size and 0x0 below it (which lowers, then fails inside XLA); check_image_size refuses exactly those."""
  spec = presets.get(name, growth_rate=4, **({'blocks': blocks} if blocks else {}))
  assert spec_lib.min_image_size(spec) == smallest
  assert min(_smallest_map(spec, smallest)) >= 1
  spec_lib.check_image_size(spec, (smallest, smallest + 5, 3))
  if smallest > 1:
    assert min(_smallest_map(spec, smallest - 1)) == 0
    with pytest.raises(ValueError, match=f'at least {smallest}x{smallest} \\(spec.min_image_size\\)'):
      spec_lib.check_image_size(spec, (smallest + 5, smallest - 1, 3))
