"""Kernels chosen per backend: the convolution and the recomputation (remat) implementations.

`ModelSpec.conv_impl` and `ModelSpec.remat_impl` name them; 'auto' picks by the backend at trace time.
Both XLA:CPU choices were measured faster (or smaller) there (BENCHMARKS.md); on GPUs and TPUs 'auto'
is Flax's own `nn.Conv` and `jax.checkpoint`, the implementations every other Flax model uses.

The convolutions, all with `nn.Conv`'s parameters: 'xla' is `nn.Conv`; 'forward_vjp' (`conv2d`) writes
the backward pass as forward convolutions; 'matmul' (XLA:CPU's choice) is 'forward_vjp' with every 1x1
convolution a `(N*H*W, C) x (C, O)` matmul (`conv1x1`), whose backward pass is two matmuls: XLA:CPU runs
a 1x1 convolution 4-5x slower than the same matmul. 'auto' on XLA:CPU also compiles the eval step with
Eigen's convolutions and matmuls instead of YNNPACK's fusions (`compiler_options`), faster there for the
forward pass alone; a kernel named explicitly is compiled with XLA's defaults.
"""
from __future__ import annotations

import functools
from typing import Callable

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

_NHWC = ('NHWC', 'HWIO', 'NHWC')


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv2d(x, kernel, pad: int):
  """Stride-1 NHWC convolution whose backward pass is made of forward convolutions.

  Autodiff writes the gradients as convolutions with swapped dimension roles. XLA:CPU rewrites
  those to fast kernels in straight-line code but not inside a while loop (a scan), where they
  run several times slower; written out here they take the fast path in both.
  """
  return lax.conv_general_dilated(x, kernel, (1, 1), ((pad, pad), (pad, pad)), dimension_numbers=_NHWC)


def _conv2d_fwd(x, kernel, pad):
  return conv2d(x, kernel, pad), (x, kernel)


def _conv2d_bwd(pad, residuals, dy):
  x, kernel = residuals
  size = kernel.shape[0]
  flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
  dx = lax.conv_general_dilated(dy, flipped, (1, 1), ((size - 1 - pad,) * 2,) * 2, dimension_numbers=_NHWC)
  if size == 1:
    dk = lax.dot_general(x, dy, (((0, 1, 2), (0, 1, 2)), ((), ())))[None, None]
  else:  # channels as the batch, the batch as the features: a forward conv over the whole image
    dk = lax.conv_general_dilated(x.transpose(3, 1, 2, 0), dy.transpose(1, 2, 0, 3), (1, 1),
                                  ((pad, pad), (pad, pad)), dimension_numbers=_NHWC).transpose(1, 2, 0, 3)
  return dx, dk.astype(kernel.dtype)


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


@jax.custom_vjp
def conv1x1(x, kernel):
  """A 1x1 NHWC convolution (`kernel` is (1, 1, C, O)) as one matmul over every pixel of the batch.

  Its backward pass is the two matmuls of a dense layer, written out so that no convolution (and no
  transpose of a 4-D activation) appears in the step, in straight-line code or in a scan.
  """
  return _matmul(x, kernel[0, 0])


def _matmul(x, w):
  """(N, H, W, C) x (C, O) -> (N, H, W, O): the reshapes are free in NHWC."""
  return (x.reshape(-1, x.shape[-1]) @ w).reshape(*x.shape[:-1], w.shape[-1])


def _conv1x1_fwd(x, kernel):
  return conv1x1(x, kernel), (x, kernel)


def _conv1x1_bwd(residuals, dy):
  x, kernel = residuals
  dx = _matmul(dy, kernel[0, 0].T)
  dk = x.reshape(-1, x.shape[-1]).T @ dy.reshape(-1, dy.shape[-1])
  return dx, dk[None, None].astype(kernel.dtype)


conv1x1.defvjp(_conv1x1_fwd, _conv1x1_bwd)


class ForwardVJPConv(nn.Conv):
  """nn.Conv (same parameters, counted by `counting` as one) with `conv2d`'s backward pass.

  Supports what the network uses, stride 1, 'SAME' padding, square odd kernels, no dilation or groups;
  anything else is refused rather than silently computed differently.
  """

  def _check(self):
    size = self.kernel_size
    unsupported = []
    if len(size) != 2 or size[0] != size[1] or size[0] % 2 == 0:
      unsupported.append(f'kernel_size={size}')
    for name in ('strides', 'input_dilation', 'kernel_dilation'):
      value = getattr(self, name)
      if value not in (None, 1) and any(v != 1 for v in (value if isinstance(value, (tuple, list)) else (value,))):
        unsupported.append(f'{name}={value}')
    if self.padding != 'SAME':
      unsupported.append(f'padding={self.padding!r}')
    if self.feature_group_count != 1:
      unsupported.append(f'feature_group_count={self.feature_group_count}')
    if unsupported:
      raise ValueError(f'ForwardVJPConv supports stride-1 SAME convolutions with square odd kernels; got '
                       f'{", ".join(unsupported)}: use conv_impl="xla"')

  def convolve(self, x, kernel, pad: int):
    return conv2d(x, kernel, pad)

  @nn.compact
  def __call__(self, inputs):
    self._check()
    size = self.kernel_size[0]
    kernel = self.param('kernel', self.kernel_init, (*self.kernel_size, inputs.shape[-1], self.features),
                        self.param_dtype)
    dtype = self.dtype or inputs.dtype
    y = self.convolve(inputs.astype(dtype), kernel.astype(dtype), (size - 1) // 2)
    if self.use_bias:
      y = y + self.param('bias', self.bias_init, (self.features,), self.param_dtype).astype(dtype)
    return y


class MatmulConv(ForwardVJPConv):
  """ForwardVJPConv with its 1x1 convolutions as matmuls (`conv1x1`): the 'matmul' kernel."""

  def convolve(self, x, kernel, pad: int):
    return conv1x1(x, kernel) if kernel.shape[:2] == (1, 1) else conv2d(x, kernel, pad)


CONV_MODULES = {'xla': nn.Conv, 'forward_vjp': ForwardVJPConv, 'matmul': MatmulConv}


def tied_recompute(layer: nn.Module, x, train: bool):
  """`layer(x, train)`, storing only `x` and the layer's variables for the backward pass.

  The backward pass recomputes the layer (its input concatenation included) and differentiates it.
  Unlike `nn.remat`, the recomputation reads its inputs through a zero-valued term taken from the
  incoming output gradient: XLA:CPU strips optimization barriers before it schedules and fuses, and
  without a data dependence it computes every recomputation as early as the forward pass (or merges
  it with the forward), which frees nothing. Here each layer is recomputed only once its gradient
  exists, i.e. one layer at a time, in reverse.
  """
  detached = layer.clone(parent=None)  # static fields only; applied to saved variables in `backward`

  def call(mdl, x):
    return mdl(x, train)

  def forward(mdl, x):
    y = mdl(x, train)
    return y, (mdl.variables, x)

  def backward(residuals, dy):
    (variables, x), dy = lax.optimization_barrier((residuals, dy))
    tie = 0 * dy.reshape(-1)[0]  # not folded away: 0 * inf is nan for floats
    x = jax.tree.map(lambda a: a + tie.astype(a.dtype), x)

    def pure(params, x):
      return detached.apply({**variables, 'params': params}, x, train, mutable=True)[0]

    _, vjp = jax.vjp(pure, variables['params'], x)
    dparams, dx = vjp(dy)
    return {'params': dparams}, dx

  return nn.custom_vjp(call, forward, backward)(layer, x)



def resolve(impl: str, cpu_choice: str, other_choice: str) -> str:
  """'auto' -> the backend's choice (XLA:CPU or not); anything else is returned as it is."""
  if impl != 'auto':
    return impl
  return cpu_choice if jax.default_backend() == 'cpu' else other_choice


def conv_kernel(conv_impl: str) -> str:
  """The convolution `ModelSpec.conv_impl` runs on this backend: 'matmul' on XLA:CPU, 'xla' elsewhere."""
  return resolve(conv_impl, 'matmul', 'xla')


# XLA:CPU's choice per step under 'auto' (BENCHMARKS.md): Eigen for the eval step, where it measured
# faster; the train step keeps YNNPACK's fusions.
_EIGEN = {'xla_cpu_experimental_ynn_fusion_type': ''}
_CPU_STEP_OPTIONS = {'train': {}, 'eval': _EIGEN}


def compiler_options(conv_impl: str, step: str) -> dict:
  """XLA compiler options for the 'train' or 'eval' step of a model with `conv_impl`: XLA:CPU's per-step
  choice under 'auto', none otherwise (so `:matmul` in launch/bench.py measures what this choice buys)."""
  if conv_impl != 'auto' or jax.default_backend() != 'cpu':
    return {}
  return dict(_CPU_STEP_OPTIONS[step])


def one_buffer(spec) -> bool:
  """Whether a block keeps its features in one buffer (`network.buffered_block`): with the 'matmul'
  kernels (XLA:CPU's), where it measured faster than concatenating each layer's input from pieces,
  unrolled and without remat (a layer's saved input would be a copy of a slice, not a shared piece)."""
  return conv_kernel(spec.conv_impl) == 'matmul' and not spec.scan and not spec.remat


def pool_first(spec) -> bool:
  """Whether a transition pools before its 1x1 conv (`layers.Transition.pool_first`: the same function on
  a quarter of the pixels): with the 'matmul' kernels (XLA:CPU's); elsewhere the paper's order stays."""
  return conv_kernel(spec.conv_impl) == 'matmul'


def conv_module(conv_impl: str) -> Callable[..., nn.Module]:
  """The Conv class for `ModelSpec.conv_impl`: all have the same parameters and compute the same."""
  return CONV_MODULES[conv_kernel(conv_impl)]


def remat_impl(remat_impl_name: str) -> str:
  """'checkpoint' or 'tied' for `ModelSpec.remat_impl`."""
  return resolve(remat_impl_name, 'tied', 'checkpoint')


def checkpointed(layer: nn.Module, x, train: bool):
  """`layer(x, train)` under `jax.checkpoint` (Flax's lifted form), the usual remat."""
  def call(mdl, x):
    return mdl(x, train)
  return nn.checkpoint(call)(layer, x)
