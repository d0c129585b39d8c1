"""The paper's optimiser: SGD with Nesterov momentum, L2 weight decay, piecewise-constant learning rate.

Durations live in the config in epochs; this is the one place they become steps.
"""
from __future__ import annotations

import math
from typing import Sequence

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


def sgd(schedule: optax.Schedule, momentum: float, nesterov: bool,
        weight_decay: float) -> optax.GradientTransformation:
  """L2 regularisation as in the paper: decay * params added to the gradient, before momentum."""
  return optax.chain(optax.add_decayed_weights(weight_decay),
                     optax.sgd(schedule, momentum=momentum, nesterov=nesterov))
