"""The ImageNet stem and the ImageNet presets: DenseNet-121/169/201/161 exact to torchvision, the SparseNet
ImageNet presets at their budgets. Big models are only traced (`jax.eval_shape`); a tiny ImageNet-stem model
runs at 64 px."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsenet_jax.model import counting
from sparsenet_jax.model import network
from sparsenet_jax.model import presets
from sparsenet_jax.model.spec import ModelSpec

# torchvision's `DenseNet121_Weights.IMAGENET1K_V1.meta` (and 169, 201, 161): 'num_params' exactly, '_ops'
# (GMACs at 224 x 224, rounded to 3 decimals by torchvision); our FLOPs are 2 x MACs (docs/model.md section 3).
TORCHVISION = {
    'densenet_121': (7_978_856, 2.834),
    'densenet_169': (14_149_480, 3.36),
    'densenet_201': (20_013_928, 4.291),
    'densenet_161': (28_681_000, 7.728),
}


@pytest.mark.parametrize('name', sorted(TORCHVISION))
def test_densenet_parameter_counts_and_macs_equal_torchvisions(name):
  params, gmacs = TORCHVISION[name]
  cost = counting.summarize(presets.build(name), (224, 224, 3), with_xla=False)
  assert cost['params'] == params
  assert round(cost['flops'] / 2e9, 3) == pytest.approx(gmacs)  # the stem's strides and padding show here
  assert presets.paper_params(name) == params


def test_the_imagenet_stem_quarters_the_resolution_and_has_its_batch_norm():
  model = presets.build('densenet_121')
  variables = counting.abstract_variables(model, (224, 224, 3))
  assert variables['params']['stem']['kernel'].shape == (7, 7, 3, 64)
  assert 'bias' not in variables['params']['stem']  # torchvision's conv0 has none
  assert variables['batch_stats']['stem_bn']['bn']['mean'].shape == (64,)
  assert variables['params']['classifier']['bias'].shape == (1000,)
  seen = {}

  def record(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.method_name == '__call__' and getattr(context.module, 'name', None) == 'block1_layer1':
      groups = args[0]  # the block input cut into k-channel groups
      seen['block1_input'] = (*groups[0].shape[:3], sum(g.shape[-1] for g in groups))
    return out
  counting.abstract_variables(model, (224, 224, 3), record)
  assert seen['block1_input'] == (1, 56, 56, 64)  # 224 -> 112 (7x7/2 conv) -> 56 (3x3/2 max pool)


def test_the_imagenet_stem_is_spelled_with_its_relu():
  assert ModelSpec(stem='imagenet', stem_relu=False).stem_relu is True
  assert ModelSpec(stem='cifar', stem_relu=False).stem_relu is False
  with pytest.raises(ValueError, match="stem must be one of 'cifar', 'imagenet', got 'mnist'"):
    ModelSpec(stem='mnist')


def test_an_old_spec_without_the_field_reads_back_as_the_cifar_stem():
  old = presets.get('sparsenet_bc_v1').architecture()
  del old['stem']
  assert ModelSpec.from_json(old) == presets.get('sparsenet_bc_v1')


def test_a_tiny_imagenet_stem_model_trains_and_evaluates_at_64_px():
  model = network.make(presets.get('densenet_121', growth_rate=4, blocks=(1, 1, 1, 1), num_classes=3))
  x = jax.random.normal(jax.random.key(0), (2, 64, 64, 3))
  variables = model.init(jax.random.key(1), x, train=False)
  logits, updates = model.apply(variables, x, train=True, mutable=['batch_stats'])
  assert logits.shape == (2, 3) and bool(jnp.isfinite(logits).all())
  moved = updates['batch_stats']['stem_bn']['bn']['mean']
  assert not np.allclose(moved, variables['batch_stats']['stem_bn']['bn']['mean'])  # the stem's BN trains
  assert model.apply(variables, x, train=False).shape == (2, 3)
