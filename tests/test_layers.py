"""layers.conv2d writes its own backward pass: it must equal autodiff's, and Conv must equal nn.Conv."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from sparsenet_jax.model import layers


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

  np.testing.assert_allclose(layers.conv2d(x, kernel, pad), reference_conv(x, kernel, pad), rtol=1e-5,
                             atol=1e-5)
  ours = jax.grad(loss(layers.conv2d), argnums=(0, 1))(x, kernel)
  theirs = jax.grad(loss(reference_conv), argnums=(0, 1))(x, kernel)
  for a, b in zip(ours, theirs):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_conv_module_equals_nn_conv_with_the_same_parameters():
  x = jax.random.normal(jax.random.key(1), (2, 8, 8, 6))
  ours = layers.Conv(5, (3, 3), padding='SAME', use_bias=True)
  flax_conv = nn.Conv(5, (3, 3), padding='SAME', use_bias=True)
  variables = flax_conv.init(jax.random.key(2), x)
  assert jax.tree.structure(ours.init(jax.random.key(2), x)) == jax.tree.structure(variables)
  np.testing.assert_allclose(ours.apply(variables, x), flax_conv.apply(variables, x), rtol=1e-5, atol=1e-5)
