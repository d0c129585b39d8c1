"""kernels.conv2d and kernels.conv1x1 write their own backward passes: they must equal autodiff's of
nn.Conv; ForwardVJPConv and MatmulConv must equal nn.Conv and refuse what they do not support; `auto` picks
by backend."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from sparsenet_jax.model import kernels
from sparsenet_jax.model import layers
from sparsenet_jax.model.spec import ModelSpec


def reference_conv(x, kernel, pad):
  return lax.conv_general_dilated(x, kernel, (1, 1), ((pad, pad), (pad, pad)),
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


@pytest.mark.parametrize('size,shape,features', [(3, (2, 8, 8, 5), 7), (1, (3, 6, 5, 4), 9),
                                                 (3, (1, 4, 7, 3), 2)])
def test_conv2d_gradients_equal_autodiff(size, shape, features):
  kx, kk, kd = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, shape)
  kernel = jax.random.normal(kk, (size, size, shape[-1], features))
  dy = jax.random.normal(kd, (*shape[:-1], features))
  pad = (size - 1) // 2

  def loss(f):
    return lambda x, k: jnp.sum(f(x, k, pad) * dy)

  np.testing.assert_allclose(kernels.conv2d(x, kernel, pad), reference_conv(x, kernel, pad), rtol=1e-5,
                             atol=1e-5)
  ours = jax.grad(loss(kernels.conv2d), argnums=(0, 1))(x, kernel)
  theirs = jax.grad(loss(reference_conv), argnums=(0, 1))(x, kernel)
  for a, b in zip(ours, theirs):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


# The 1x1 convolutions of the presets: densenet_bc_100's bottlenecks (24..216 -> 48 channels) and
# transitions (216 -> 108), sparsenet_bc_v1's bottlenecks (-> 64), at the three blocks' resolutions.
MODEL_1X1 = [((2, 32, 32, 24), 48), ((2, 32, 32, 216), 48), ((2, 32, 32, 216), 108), ((2, 16, 16, 120), 48),
             ((2, 8, 8, 304), 64), ((2, 8, 8, 456), 48)]


@pytest.mark.parametrize('dtype,tol', [('float32', 2e-5), ('float64', 1e-12)])
@pytest.mark.parametrize('shape,features', MODEL_1X1)
def test_conv1x1_values_and_gradients_equal_nn_conv(shape, features, dtype, tol):
  """Forward, input gradient and kernel gradient of MatmulConv's 1x1 path against nn.Conv's autodiff."""
  with jax.enable_x64(dtype == 'float64'):
    kx, kd, kp = jax.random.split(jax.random.key(3), 3)
    x = jax.random.normal(kx, shape, dtype)
    dy = jax.random.normal(kd, (*shape[:-1], features), dtype)
    flax_conv = nn.Conv(features, (1, 1), padding='SAME', use_bias=False, dtype=dtype, param_dtype=dtype)
    params = flax_conv.init(kp, x)
    ours = kernels.MatmulConv(features, (1, 1), padding='SAME', use_bias=False, dtype=dtype, param_dtype=dtype)

    def grads(module):
      return jax.value_and_grad(lambda p, x: jnp.sum(module.apply(p, x) * dy), argnums=(0, 1))(params, x)

    (value, (dp, dx)), (ref_value, (ref_dp, ref_dx)) = grads(ours), grads(flax_conv)
    assert dx.dtype == ref_dx.dtype == jnp.dtype(dtype)
    scale = np.sqrt(shape[-1])  # sums of C products of unit normals: absolute rounding grows like sqrt(C)
    np.testing.assert_allclose(ours.apply(params, x), flax_conv.apply(params, x), rtol=tol, atol=tol * scale)
    np.testing.assert_allclose(dx, ref_dx, rtol=tol, atol=tol * np.sqrt(features))
    pixels = np.sqrt(np.prod(shape[:-1]))
    np.testing.assert_allclose(dp['params']['kernel'], ref_dp['params']['kernel'], rtol=tol, atol=tol * pixels)
    np.testing.assert_allclose(value, ref_value, rtol=tol)


def test_conv_module_equals_nn_conv_with_the_same_parameters():
  x = jax.random.normal(jax.random.key(1), (2, 8, 8, 6))
  ours = kernels.ForwardVJPConv(5, (3, 3), padding='SAME', use_bias=True)
  flax_conv = nn.Conv(5, (3, 3), padding='SAME', use_bias=True)
  variables = flax_conv.init(jax.random.key(2), x)
  assert jax.tree.structure(ours.init(jax.random.key(2), x)) == jax.tree.structure(variables)
  np.testing.assert_allclose(ours.apply(variables, x), flax_conv.apply(variables, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('kwargs', [dict(strides=(2, 2)), dict(padding='VALID'), dict(kernel_dilation=2),
                                    dict(feature_group_count=2), dict(kernel_size=(2, 2))])
@pytest.mark.parametrize('cls', [kernels.ForwardVJPConv, kernels.MatmulConv])
def test_forward_vjp_conv_refuses_what_it_does_not_support(kwargs, cls):
  x = jnp.zeros((1, 8, 8, 4))
  conv = cls(4, **{'kernel_size': (3, 3), 'padding': 'SAME', **kwargs})
  with pytest.raises(ValueError, match='ForwardVJPConv supports'):
    conv.init(jax.random.key(0), x)


def test_auto_picks_the_cpu_kernels_on_cpu_and_flax_elsewhere(monkeypatch):
  assert kernels.conv_module('auto') is kernels.MatmulConv  # the tests run on XLA:CPU
  assert kernels.remat_impl('auto') == 'tied'
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  assert kernels.conv_module('auto') is nn.Conv
  assert kernels.remat_impl('auto') == 'checkpoint'
  assert kernels.conv_module('forward_vjp') is kernels.ForwardVJPConv  # explicit choices stand
  assert kernels.conv_module('matmul') is kernels.MatmulConv
  assert kernels.compiler_options('auto', 'eval') == {}  # XLA:CPU's Eigen choice stays on the CPU
  assert not kernels.pool_first(ModelSpec())  # the paper's conv-then-pool transitions stay there
  monkeypatch.undo()
  assert kernels.compiler_options('auto', 'eval') != {}
  assert kernels.compiler_options('auto', 'train') == kernels.compiler_options('matmul', 'eval') == {}
  assert kernels.pool_first(ModelSpec()) and not kernels.pool_first(ModelSpec(conv_impl='forward_vjp'))


def test_the_eval_steps_compiler_options_compute_the_same_convolutions():
  """XLA:CPU's eval step is compiled with Eigen's convolutions and matmuls: the same values as YNNPACK's."""
  x = jax.random.normal(jax.random.key(4), (2, 16, 16, 48))
  kernels_ = [jax.random.normal(jax.random.key(5), (3, 3, 48, 12)), jax.random.normal(jax.random.key(6), (1, 1, 48, 8))]
  options = kernels.compiler_options('auto', 'eval')
  for kernel in kernels_:
    f = functools.partial(kernels.MatmulConv.convolve, None, pad=(kernel.shape[0] - 1) // 2)
    eigen = jax.jit(f, compiler_options=options)(x, kernel)
    np.testing.assert_allclose(eigen, jax.jit(f)(x, kernel), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize('dtype,tol', [('float32', 2e-5), ('float64', 1e-12)])
@pytest.mark.parametrize('shape,dropout', [((2, 32, 32, 216), 0.0), ((2, 9, 7, 24), 0.0), ((2, 8, 8, 24), 0.3)])
def test_a_transition_pooling_first_computes_the_same(shape, dropout, dtype, tol):
  """`Transition(pool_first=True)` (XLA:CPU's order) against the paper's conv-then-pool, on the same
  variables: outputs, BatchNorm statistics, parameter and input gradients, in training and evaluation
  (odd sizes drop the same last row and column). With dropout the training pass is the paper's order."""
  with jax.enable_x64(dtype == 'float64'):
    x = jax.random.normal(jax.random.key(7), shape, dtype)
    make = functools.partial(layers.Transition, features=shape[-1] // 2, conv_cls=kernels.MatmulConv,
                             dropout=dropout, dtype=dtype)
    ours, paper = make(pool_first=True), make(pool_first=False)
    variables = paper.init(jax.random.key(8), x, train=False)
    assert jax.tree.structure(ours.init(jax.random.key(8), x, train=False)) == jax.tree.structure(variables)
    rngs = {'dropout': jax.random.key(9)}
    for train in (True, False):
      def run(module, p, x):
        out, new = module.apply({**variables, 'params': p}, x, train=train, mutable=['batch_stats'], rngs=rngs)
        return jnp.sum(out * jnp.cos(out)), (out, new)
      (_, (out, stats)), grads = jax.value_and_grad(functools.partial(run, ours), (0, 1), has_aux=True)(
          variables['params'], x)
      (_, (ref, ref_stats)), ref_grads = jax.value_and_grad(functools.partial(run, paper), (0, 1), has_aux=True)(
          variables['params'], x)
      assert out.shape == ref.shape == (shape[0], shape[1] // 2, shape[2] // 2, shape[-1] // 2)
      if train and dropout:
        np.testing.assert_array_equal(out, ref)  # dropout between them: the paper's order, exactly
      for a, b in zip(jax.tree.leaves((out, stats, grads)), jax.tree.leaves((ref, ref_stats, ref_grads))):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * np.sqrt(shape[-1]))
