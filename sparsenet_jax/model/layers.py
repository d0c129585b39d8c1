"""The building blocks of SparseNet and DenseNet (docs/model.md section 2), as Flax linen modules.

Every module takes `train` to switch BatchNorm between batch statistics and running averages,
and `dtype` for the compute precision (parameters and BatchNorm statistics stay float32).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import flax.linen as nn
import jax.numpy as jnp

from sparsenet_jax.model.spec import TRANSITION_POOL

# He-normal with fan-out, the init of the authors' code and of torchvision's DenseNet.
conv_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')
# "We initialize parameters as He does" (the paper) for the dense layers too: He normal with fan-in,
# truncated (variance 2 / fan_in), the default of the authors' tensorpack FullyConnected (docs/model.md
# section 6, reading 12). Biases start at zero.
dense_init = nn.initializers.variance_scaling(2.0, 'fan_in', 'truncated_normal')


class Norm(nn.Module):
  """BatchNorm with the paper's constants; `axis_name` makes the statistics cross-device (sync BN)."""
  momentum: float = 0.9
  epsilon: float = 1e-3
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    return nn.BatchNorm(use_running_average=not train, momentum=self.momentum, epsilon=self.epsilon,
                        axis_name=self.axis_name if train else None, dtype=self.dtype, name='bn')(x)


class _Base(nn.Module):
  """Shared hyperparameters of the convolutional modules."""
  conv_bias: bool = True
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-3
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  conv_cls: Any = nn.Conv  # or kernels.ForwardVJPConv: same parameters, another backward pass
  dropout: float = 0.0  # after every conv of a layer and a transition, while training (DenseNet's)

  def norm(self, name):
    return Norm(self.bn_momentum, self.bn_epsilon, self.axis_name, self.dtype, name=name)

  def drop(self, x, train: bool):
    """Dropout (rng stream 'dropout') after a conv while training; nothing at rate 0."""
    return nn.Dropout(self.dropout, deterministic=not train)(x) if self.dropout else x

  def conv(self, features, size, name):
    return self.conv_cls(features, (size, size), padding='SAME', use_bias=self.conv_bias,
                kernel_init=conv_init, dtype=self.dtype, name=name)


def join(x: Union[Any, Sequence[Any]]):
  """The layer input from its groups.

  Layers concatenate their own input so that under remat the concatenation is recomputed too:
  only the groups, which later layers keep anyway, are stored for the backward pass.
  """
  if isinstance(x, (list, tuple)):
    return x[0] if len(x) == 1 else jnp.concatenate(x, axis=-1)
  return x


class BasicLayer(_Base):
  """BN-ReLU-3x3 conv to `growth_rate` channels; `x` is an array or a sequence of groups."""
  growth_rate: int = 12

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.relu(self.norm('bn1')(join(x), train))
    return self.drop(self.conv(self.growth_rate, 3, 'conv1')(x), train)


class BottleneckLayer(_Base):
  """BN-ReLU-1x1 conv (4k)-BN-ReLU-3x3 conv (k), the "b" of DenseNet-BC; `x` as in BasicLayer."""
  growth_rate: int = 12
  width: int = 4

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.relu(self.norm('bn1')(join(x), train))
    x = self.drop(self.conv(self.width * self.growth_rate, 1, 'conv1')(x), train)
    x = nn.relu(self.norm('bn2')(x, train))
    return self.drop(self.conv(self.growth_rate, 3, 'conv2')(x), train)


class Attention(_Base):
  """The paper's attention on a layer's output h: h + h * s, s computed from GAP(h)."""

  @nn.compact
  def __call__(self, h, train: bool):
    k = h.shape[-1]
    g = jnp.mean(h, axis=(1, 2), keepdims=True)
    a = self.conv(k, 1, 'conv1')(nn.relu(self.norm('bn1')(g, train)))
    s = jnp.concatenate([a, g], axis=-1)
    s = nn.sigmoid(self.conv(k, 1, 'conv2')(nn.relu(self.norm('bn2')(s, train))))
    return h + h * s


class SqueezeExcite(nn.Module):
  """The SE comparator of the paper's Fig. 7: h * sigmoid(FC_k(ReLU(FC_{k/r}(GAP(h)))))."""
  reduction: int = 8
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, h, train: bool):
    del train
    k = h.shape[-1]
    s = jnp.mean(h, axis=(1, 2))
    s = nn.relu(nn.Dense(max(1, k // self.reduction), kernel_init=dense_init, dtype=self.dtype, name='fc1')(s))
    s = nn.sigmoid(nn.Dense(k, kernel_init=dense_init, dtype=self.dtype, name='fc2')(s))
    return h * s[:, None, None, :]


class Transition(_Base):
  """BN-ReLU-1x1 conv to `features` channels, then 2x2 average pooling (stride 2: spec.TRANSITION_POOL).

  With `pool_first` the pooling runs before the 1x1 conv, on a quarter of the pixels: both are linear
  and act on different axes (the bias is the same everywhere), so the result is the same function, to
  float rounding. Not while dropout sits between them (training with a rate above 0)."""
  features: int = 0
  pool_first: bool = False

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.relu(self.norm('bn')(x, train))
    if self.pool_first and not (train and self.dropout):
      return self.conv(self.features, 1, 'conv')(self.pool(x))
    return self.pool(self.drop(self.conv(self.features, 1, 'conv')(x), train))

  @staticmethod
  def pool(x):
    return nn.avg_pool(x, (TRANSITION_POOL,) * 2, strides=(TRANSITION_POOL,) * 2)


def transition_features(compression: str, width: int, groups: int, growth_rate: int) -> int:
  """Output channels of a transition that reads `groups` groups, `width` channels in all.

  'sparsenet': 2k + floor((g - 1) / 2) * k (SparseNet-bc/abc); 'half': floor(width / 2) (DenseNet-BC);
  'none': width (basic SparseNet and DenseNet).
  """
  if compression == 'sparsenet':
    return 2 * growth_rate + (groups - 1) // 2 * growth_rate
  if compression == 'half':
    return width // 2
  if compression == 'none':
    return width
  raise ValueError(f'compression must be sparsenet, half or none, got {compression!r}')
