"""Connection tables: which earlier feature groups each layer of a block reads.

Pure Python on purpose (no JAX, no Flax): the table is static, known at trace time, and the sharpest
place to test the paper's idea. See docs/model.md section 1.

Inside a block every feature map is cut into groups of `growth_rate` channels, oldest first. The block
input contributes `input_groups` groups and each layer appends one. A connection *pattern* says which of
the `num_groups` groups seen so far a consumer (the next layer, or the transition after the block) reads:

- `sparsenet` (Liu & Zeng): every group while there are at most `path + 2` of them; beyond that the
  `far` oldest and the `near` newest (`far + near == path + 2`). `path=None` reads everything: DenseNet.
- `dense`: everything (DenseNet), whatever `path` says.
- `log` (LogDenseNet, Hu et al. 2017): the block input plus the groups at distances 1, 2, 4, 8, ...
  behind the consumer.

A new pattern is one function `(num_groups, input_groups, path, near) -> sorted group indices` added to
`PATTERNS`; the network, its scanned layout, the counts and the drawings all follow the table it makes.
"""
from __future__ import annotations

from typing import Callable, Dict, NamedTuple, Optional, Sequence, Tuple

ConnectionTable = Tuple[Tuple[int, ...], ...]
Pattern = Callable[[int, int, Optional[int], Optional[int]], Tuple[int, ...]]


def default_near(path: int) -> int:
  """The paper's symmetric choice ("7-7" for path 14): half of the path reads the nearest groups."""
  return path // 2


def _check(name: str, value, low: int, high: Optional[int] = None) -> None:
  if isinstance(value, bool) or not isinstance(value, int):
    raise ValueError(f'{name} must be an integer, got {value!r}')
  if value < low or (high is not None and value > high):
    allowed = f'>= {low}' if high is None else f'in [{low}, {high}]'
    raise ValueError(f'{name} must be {allowed}, got {value}')


def sparsenet_sources(num_groups: int, input_groups: int, path: Optional[int],
                      near: Optional[int]) -> Tuple[int, ...]:
  del input_groups
  if path is None or num_groups <= path + 2:
    return tuple(range(num_groups))
  n = default_near(path) if near is None else near
  far = path + 2 - n
  return tuple(range(far)) + tuple(range(num_groups - n, num_groups))


def dense_sources(num_groups: int, input_groups: int, path: Optional[int],
                  near: Optional[int]) -> Tuple[int, ...]:
  del input_groups, path, near
  return tuple(range(num_groups))


def log_sources(num_groups: int, input_groups: int, path: Optional[int],
                near: Optional[int]) -> Tuple[int, ...]:
  del path, near
  read = set(range(min(input_groups, num_groups)))
  distance = 1
  while distance <= num_groups:
    read.add(num_groups - distance)
    distance *= 2
  return tuple(sorted(read))


PATTERNS: Dict[str, Pattern] = {
    'sparsenet': sparsenet_sources,
    'dense': dense_sources,
    'log': log_sources,
}


def validate(input_groups: int, num_layers: int, path: Optional[int], near: Optional[int],
             pattern: str = 'sparsenet') -> None:
  """Raises ValueError naming the first argument outside its allowed range."""
  if pattern not in PATTERNS:
    raise ValueError(f'connectivity must be one of {", ".join(PATTERNS)}, got {pattern!r}')
  _check('input_groups', input_groups, 1)
  _check('num_layers', num_layers, 1)
  if path is None:
    if near is not None:
      raise ValueError(f'near must be None when path is None (DenseNet), got {near}')
    return
  _check('path', path, 0)
  if near is not None:
    _check('near', near, 0, path + 2)


def sources(num_groups: int, path: Optional[int], near: Optional[int] = None, *,
            input_groups: int = 1, pattern: str = 'sparsenet') -> Tuple[int, ...]:
  """Group indices read by a consumer (layer or transition) that sees `num_groups` groups."""
  _check('num_groups', num_groups, 1)
  return PATTERNS[pattern](num_groups, input_groups, path, near)


def block_table(input_groups: int, num_layers: int, path: Optional[int], near: Optional[int] = None,
                pattern: str = 'sparsenet') -> ConnectionTable:
  """For each layer of a block, the tuple of group indices it reads (oldest group is 0)."""
  validate(input_groups, num_layers, path, near, pattern)
  return tuple(sources(input_groups + i, path, near, input_groups=input_groups, pattern=pattern)
               for i in range(num_layers))


def transition_sources(input_groups: int, num_layers: int, path: Optional[int],
                       near: Optional[int] = None, pattern: str = 'sparsenet') -> Tuple[int, ...]:
  """The transition after a block reads what a next layer would read."""
  validate(input_groups, num_layers, path, near, pattern)
  return sources(input_groups + num_layers, path, near, input_groups=input_groups, pattern=pattern)


def num_connections(table: ConnectionTable) -> int:
  """Total group reads of a block: O(L) for SparseNet, O(L^2) for DenseNet."""
  return sum(len(row) for row in table)


def input_widths(table: ConnectionTable, growth_rate: int,
                 group_widths: Optional[Sequence[int]] = None) -> Tuple[int, ...]:
  """Channels each layer reads; `group_widths` overrides the width of individual (input) groups."""
  def width(g):
    return group_widths[g] if group_widths is not None and g < len(group_widths) else growth_rate
  return tuple(sum(width(g) for g in row) for row in table)


# ----------------------------------------------------------------------------------------------------
# The shapes a scan can run, read off a table (never re-derived from path or near).


class SteadyState(NamedTuple):
  """Rows `start..` of a block read a fixed prefix of `far` groups and a window of the `near` newest
  groups that slides by one group per layer, and the transition reads the same shape after the block."""
  start: int
  far: int
  near: int


def _window_row(num_groups: int, far: int, near: int) -> Tuple[int, ...]:
  return tuple(range(far)) + tuple(range(num_groups - near, num_groups))


def steady_state(table: ConnectionTable, input_groups: int,
                 output_sources: Sequence[int]) -> Optional[SteadyState]:
  """The longest run of final rows of the prefix + sliding-window shape, or None.

  A row that reads every group is left to the growing layers (`dense_rows`). The transition's row must
  have the same shape: a scan keeps only the prefix and the window, not every output.
  """
  rows = list(table) + [tuple(output_sources)]
  last = rows[-1]
  total = input_groups + len(table)
  if len(last) == total:  # the last consumer reads everything: no capped layer at all
    return None
  for far in range(len(last) + 1):
    near = len(last) - far
    if tuple(last) != _window_row(total, far, near) or (near and total - near < far):
      continue
    start = len(table)
    while start > 0:
      groups = input_groups + start - 1
      row = table[start - 1]
      if len(row) == groups or groups - near < far or tuple(row) != _window_row(groups, far, near):
        break
      start -= 1
    if start < len(table):
      return SteadyState(start, far, near)
  return None


def dense_rows(table: ConnectionTable, input_groups: int, stop: Optional[int] = None) -> int:
  """How many leading rows (up to `stop`) read every group: the growing layers a padded scan can run."""
  stop = len(table) if stop is None else stop
  count = 0
  while count < stop and table[count] == tuple(range(input_groups + count)):
    count += 1
  return count


# ----------------------------------------------------------------------------------------------------
# Channel intervals: what a consumer reads as half-open ranges [start, stop) of the block's stacked
# features (the block input's channels first, then k per layer, oldest first). Every network reads
# through these; the group table above is their source whenever the block input is whole groups.
#
# The channel reading (the authors' scripts, docs/model.md section 1): a block input that is not a
# multiple of k (DenseNet-40's 16-channel stem and 160-channel block inputs, made sparse for Fig. 1 and 3)
# cannot be cut into equal groups. A `sparsenet` consumer that sees T channels then reads all of them
# while T <= (path + 2) * k, else the oldest `far * k` and the newest `near * k` channels. No divisibility
# is needed, and for inputs that are whole groups it is exactly the group reading.

Interval = Tuple[int, int]
ChannelRow = Tuple[Interval, ...]


def merge(intervals: Sequence[Interval]) -> ChannelRow:
  """Sorted, non-empty, touching intervals joined: (0, 4), (4, 8) -> (0, 8)."""
  out = []
  for a, b in sorted(i for i in intervals if i[1] > i[0]):
    if out and a <= out[-1][1]:
      out[-1] = (out[-1][0], max(out[-1][1], b))
    else:
      out.append((a, b))
  return tuple(out)


def group_intervals(row: Sequence[int], group_widths: Sequence[int]) -> ChannelRow:
  """The channels of the groups `row` names, the groups having `group_widths` channels each."""
  starts = [0]
  for w in group_widths:
    starts.append(starts[-1] + w)
  return merge([(starts[g], starts[g + 1]) for g in row])


def channel_sources(total: int, growth_rate: int, path: Optional[int],
                    near: Optional[int] = None) -> ChannelRow:
  """The channel reading of a `sparsenet` consumer that sees `total` channels."""
  _check('total', total, 1)
  if path is None or total <= (path + 2) * growth_rate:
    return ((0, total),)
  n = default_near(path) if near is None else near
  far = path + 2 - n
  return merge([(0, far * growth_rate), (total - n * growth_rate, total)])


def channel_rows(input_width: int, num_layers: int, growth_rate: int, path: Optional[int],
                 near: Optional[int] = None, pattern: str = 'sparsenet'
                 ) -> Tuple[Tuple[ChannelRow, ...], ChannelRow]:
  """(each layer's intervals, the transition's) for a block whose input has `input_width` channels.

  Whole groups: the group table's groups as intervals. Otherwise a dense block reads everything, a
  `sparsenet` block reads by channel counts (above), and any other pattern is refused by name.
  """
  _check('input_width', input_width, 1)
  _check('growth_rate', growth_rate, 1)
  k = growth_rate
  if input_width % k == 0:
    g0 = input_width // k
    widths = [k] * (g0 + num_layers)
    layers = tuple(group_intervals(r, widths) for r in block_table(g0, num_layers, path, near, pattern))
    return layers, group_intervals(transition_sources(g0, num_layers, path, near, pattern), widths)
  if pattern == 'dense' or (pattern == 'sparsenet' and path is None):
    validate(1, num_layers, path, near, pattern)
    return tuple(((0, input_width + i * k),) for i in range(num_layers)), ((0, input_width + num_layers * k),)
  if pattern != 'sparsenet':
    raise ValueError(f'a {pattern} block input must be a multiple of growth_rate={k} channels, got '
                     f'{input_width}: only sparsenet and dense blocks read by channel counts')
  validate(1, num_layers, path, near, pattern)
  rows = tuple(channel_sources(input_width + i * k, k, path, near) for i in range(num_layers + 1))
  return rows[:-1], rows[-1]


def unread_layers(rows: Sequence[ChannelRow], output_row: ChannelRow, input_width: int,
                  growth_rate: int) -> Tuple[int, ...]:
  """0-based layers whose k output channels no later layer, transition or head reads (dead layers)."""
  dead = []
  for j in range(len(rows)):
    lo, hi = input_width + j * growth_rate, input_width + (j + 1) * growth_rate
    later = list(rows[j + 1:]) + [output_row]
    if not any(a < hi and lo < b for row in later for a, b in row):
      dead.append(j)
  return tuple(dead)


def channel_steady_state(rows: Sequence[ChannelRow], output_row: ChannelRow, input_width: int,
                         growth_rate: int) -> Optional[SteadyState]:
  """The scan shape of a channel-read block: the final rows (and the transition's) that read a fixed
  prefix of `far * k` channels and the newest `near * k`, a window sliding by k; `far` and `near` in k.
  Rows that read everything are left to the growing layers, as in `steady_state`."""
  k = growth_rate
  all_rows = list(rows) + [tuple(output_row)]

  def shape(i):  # (prefix, window) channels of row i, or None if it reads everything or another shape
    total, row = input_width + i * k, all_rows[i]
    if row == ((0, total),):
      return None
    prefix = row[0][1] if row[0][0] == 0 else 0
    window = total - row[-1][0] if row[-1][1] == total else 0
    if merge([(0, prefix), (total - window, total)]) != row or prefix % k or window % k:
      return None
    return prefix, window

  last = shape(len(rows))
  if last is None:
    return None
  start = len(rows)
  while start > 0 and shape(start - 1) == last:
    start -= 1
  if start == len(rows):
    return None
  return SteadyState(start, last[0] // k, last[1] // k)


def channel_dense_rows(rows: Sequence[ChannelRow], input_width: int, growth_rate: int,
                       stop: Optional[int] = None) -> int:
  """How many leading rows (up to `stop`) read every channel: the growing layers."""
  stop = len(rows) if stop is None else stop
  count = 0
  while count < stop and rows[count] == ((0, input_width + count * growth_rate),):
    count += 1
  return count
