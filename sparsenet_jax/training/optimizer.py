"""The optimiser from the config: any optax optimiser by name, L2 weight decay, a piecewise schedule.

The paper's is the default: SGD with Nesterov momentum 0.9 (`config.optimizer.name='sgd'`,
`config.optimizer.kwargs`), L2 decay added to the gradient before the optimiser, as in the authors'
scripts. Durations live in the config in epochs; this is the one place they become steps.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence, Tuple

import optax


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  """Full batches per epoch (the last partial batch is dropped, as in the authors' scripts)."""
  if num_examples < batch_size:
    raise ValueError(f'batch_size={batch_size} is larger than the training set ({num_examples} examples)')
  return num_examples // batch_size


def total_steps(num_epochs: float, steps_per_epoch_: int) -> int:
  return max(1, math.ceil(num_epochs * steps_per_epoch_))


def learning_rate_schedule(values: Sequence[float], boundaries_epochs: Sequence[float],
                           steps_per_epoch_: int) -> optax.Schedule:
  """`values[i]` from epoch `boundaries_epochs[i-1]` on: exact values, no products of ratios."""
  if len(values) != len(boundaries_epochs) + 1:
    raise ValueError(f'learning_rates needs one more entry than lr_boundaries_epochs, got {len(values)} '
                     f'rates and {len(boundaries_epochs)} boundaries')
  if any(b <= a for a, b in zip(boundaries_epochs, boundaries_epochs[1:])) or any(
      b <= 0 for b in boundaries_epochs):
    raise ValueError(f'lr_boundaries_epochs must be positive and increasing, got {tuple(boundaries_epochs)}')
  steps = [int(round(b * steps_per_epoch_)) for b in boundaries_epochs]
  return optax.join_schedules([optax.constant_schedule(float(v)) for v in values], steps)


def make(name: str, kwargs: Mapping[str, Any], schedule: optax.Schedule,
         weight_decay: float) -> optax.GradientTransformation:
  """`optax.<name>(learning_rate=schedule, **kwargs)` after L2 decay (decay * params added to the
  gradient, before momentum or moments). A name optax does not have, or arguments it does not take,
  raise ValueError naming them."""
  factory = getattr(optax, name, None)
  if not callable(factory) or name.startswith('_'):
    raise ValueError(f'optax has no optimiser {name!r} (config.optimizer.name)')
  try:
    tx = factory(learning_rate=schedule, **dict(kwargs))
  except TypeError as e:
    raise ValueError(f'optax.{name} does not take config.optimizer.kwargs={dict(kwargs)}: {e}') from None
  return optax.chain(optax.add_decayed_weights(weight_decay), tx)


def from_config(config, steps_per_epoch_: int) -> Tuple[optax.GradientTransformation, optax.Schedule]:
  """(optimiser, learning-rate schedule) of a training config."""
  schedule = learning_rate_schedule(config.learning_rates, config.lr_boundaries_epochs, steps_per_epoch_)
  return make(config.optimizer.name, config.optimizer.kwargs, schedule, config.weight_decay), schedule
