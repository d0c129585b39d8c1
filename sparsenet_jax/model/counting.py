"""Parameter counts and FLOPs from a model's shapes alone (`jax.eval_shape`: V4 costs no memory).

FLOPs follow docs/model.md section 3: 2 x multiply-accumulates of every conv and dense layer, padded positions
counted, per image. XLA's own cost analysis of the lowered forward pass is reported beside it.
"""
from __future__ import annotations

import math
from typing import Dict, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

DEFAULT_INPUT = (32, 32, 3)


def abstract_variables(model: nn.Module, input_shape: Tuple[int, ...] = DEFAULT_INPUT, interceptor=None):
  """The variables' shapes from an abstract init; `interceptor` (nn.intercept_methods) sees its trace."""
  def init(x):
    if interceptor is None:
      return model.init(jax.random.key(0), x, train=False)
    with nn.intercept_methods(interceptor):
      return model.init(jax.random.key(0), x, train=False)
  return jax.eval_shape(init, jax.ShapeDtypeStruct((1, *input_shape), jnp.float32))


def _num_params(variables) -> int:
  return sum(math.prod(p.shape) for p in jax.tree.leaves(variables['params']))


def param_count(model: nn.Module, input_shape: Tuple[int, ...] = DEFAULT_INPUT) -> int:
  """Trainable parameters: kernels, biases, BN scale and offset (not BN running statistics)."""
  return _num_params(abstract_variables(model, input_shape))


def _counting(total: list):
  """A method interceptor appending 2 x MACs of each nn.Conv / nn.Dense call to `total` as it traces."""
  def count(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.method_name == '__call__' and isinstance(context.module, (nn.Conv, nn.Dense)):
      kernel = context.module.variables['params']['kernel']
      positions = math.prod(out.shape[1:-1])  # output pixels per image; 1 for a dense layer
      total.append(2 * positions * math.prod(kernel.shape))
    return out
  return count


def flops(model: nn.Module, input_shape: Tuple[int, ...] = DEFAULT_INPUT) -> int:
  """2 x MACs of every conv and dense layer for one image (docs/model.md section 3)."""
  return summarize(model, input_shape, with_xla=False)['flops']


def summarize(model: nn.Module, input_shape: Tuple[int, ...] = DEFAULT_INPUT,
              with_xla: bool = True) -> Dict[str, float]:
  """params, flops and (with_xla) xla_flops, XLA's cost analysis of the same lowered forward pass.

  The FLOPs are counted while the abstract init traces the forward pass (init runs every layer once, as
  the unrolled forward pass does), so without XLA's analysis a model costs one trace.
  """
  spec = getattr(model, 'spec', None)
  if spec is not None:  # the same function as the paper writes it: a scan traces its body once (count it
    # unrolled), and XLA:CPU's kernels pool a transition before its conv (count the paper's order)
    model = model.clone(spec=spec.replace(scan=False, conv_impl='xla'))
  total = []
  variables = abstract_variables(model, input_shape, _counting(total))
  result = {'params': _num_params(variables), 'flops': sum(total)}
  if with_xla:
    def forward(variables, x):
      return model.apply(variables, x, train=False)
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    analysis = jax.jit(forward).lower(variables, x).cost_analysis()
    if isinstance(analysis, (list, tuple)):
      analysis = analysis[0]
    result['xla_flops'] = float(analysis.get('flops', float('nan')))
  return result
