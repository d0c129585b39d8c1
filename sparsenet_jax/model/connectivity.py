"""SparseNet's connection table: which earlier feature groups each layer of a block reads.

Pure Python on purpose (no JAX, no Flax): the table is static, known at trace time, and the sharpest
place to test the paper's idea. See SPEC section 1.

Inside a block every feature map is cut into groups of `growth_rate` channels, oldest first. The block
input contributes `input_groups` groups and each layer appends one. A layer reads every group while there
are at most `path + 2` of them; beyond that it reads the `far` oldest and the `near` newest groups
(`far + near == path + 2`). `path=None` is DenseNet: every layer reads everything.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

ConnectionTable = Tuple[Tuple[int, ...], ...]


def default_near(path: int) -> int:
  """The paper's symmetric choice ("7-7" for path 14): half of the path reads the nearest groups."""
  return path // 2


def _check(name: str, value, low: int, high: Optional[int] = None) -> None:
  if isinstance(value, bool) or not isinstance(value, int):
    raise ValueError(f'{name} must be an integer, got {value!r}')
  if value < low or (high is not None and value > high):
    allowed = f'>= {low}' if high is None else f'in [{low}, {high}]'
    raise ValueError(f'{name} must be {allowed}, got {value}')


def validate(input_groups: int, num_layers: int, path: Optional[int], near: Optional[int]) -> None:
  """Raises ValueError naming the first argument outside its allowed range."""
  _check('input_groups', input_groups, 1)
  _check('num_layers', num_layers, 1)
  if path is None:
    if near is not None:
      raise ValueError(f'near must be None when path is None (DenseNet), got {near}')
    return
  _check('path', path, 0)
  if near is not None:
    _check('near', near, 0, path + 2)


def sources(num_groups: int, path: Optional[int], near: Optional[int] = None) -> Tuple[int, ...]:
  """Group indices read by a consumer (layer or transition) that sees `num_groups` groups."""
  _check('num_groups', num_groups, 1)
  if path is None or num_groups <= path + 2:
    return tuple(range(num_groups))
  n = default_near(path) if near is None else near
  far = path + 2 - n
  return tuple(range(far)) + tuple(range(num_groups - n, num_groups))


def block_table(input_groups: int, num_layers: int, path: Optional[int],
                near: Optional[int] = None) -> ConnectionTable:
  """For each layer of a block, the tuple of group indices it reads (oldest group is 0)."""
  validate(input_groups, num_layers, path, near)
  return tuple(sources(input_groups + i, path, near) for i in range(num_layers))


def transition_sources(input_groups: int, num_layers: int, path: Optional[int],
                       near: Optional[int] = None) -> Tuple[int, ...]:
  """The transition after a block reads what a next layer would read."""
  validate(input_groups, num_layers, path, near)
  return sources(input_groups + num_layers, path, near)


def first_capped_layer(input_groups: int, num_layers: int, path: Optional[int]) -> int:
  """Index of the first layer that no longer reads everything (`num_layers` if none is capped).

  From this layer on every layer has the same input width and the same far prefix, with the near
  window sliding by one group per layer: the steady state a `lax.scan` can run.
  """
  if path is None:
    return num_layers
  return min(num_layers, max(0, path + 3 - input_groups))


def num_connections(table: ConnectionTable) -> int:
  """Total group reads of a block: O(L) for SparseNet, O(L^2) for DenseNet."""
  return sum(len(row) for row in table)


def input_widths(table: ConnectionTable, growth_rate: int,
                 group_widths: Optional[Sequence[int]] = None) -> Tuple[int, ...]:
  """Channels each layer reads; `group_widths` overrides the width of individual (input) groups."""
  def width(g):
    return group_widths[g] if group_widths is not None and g < len(group_widths) else growth_rate
  return tuple(sum(width(g) for g in row) for row in table)
