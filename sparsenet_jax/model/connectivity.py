"""Connection patterns: which channels of its block each layer reads, as half-open intervals.

Pure Python on purpose (no JAX, no Flax): the rows are static, known at trace time, and the sharpest
place to test the paper's idea. See docs/model.md section 1.

A block's *stacked features* are its input's channels followed by `growth_rate` (k) channels per layer,
oldest first. A consumer (the next layer, or the transition or head after the block) that sees `total`
of them reads a *row*: sorted, disjoint intervals [start, stop). A *pattern* is one function
`(total, growth_rate, input_width, **params) -> row`, registered by name with the spec fields it reads
(`register`); the model field `connectivity` names it. Built in:

- `sparsenet` (Liu & Zeng): everything while `total <= (path + 2) * k`, else the oldest `far * k` and
  the newest `near * k` channels (`far + near == path + 2`). `path=None` reads everything: DenseNet.
- `dense`: everything (DenseNet).
- `log` (LogDenseNet, Hu et al. 2017): the block input and the outputs 1, 2, 4, 8, ... layers back.

The rule is written over channels, so it needs no divisibility: DenseNet-40's 16-channel stem (k=12)
is read the way the authors' scripts read it, and an input of whole k-groups reads whole groups. The
network, its scanned layout (`scan_shape`), the counts and the drawings all follow the rows.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, NamedTuple, Optional, Sequence, Tuple

Interval = Tuple[int, int]
ChannelRow = Tuple[Interval, ...]

PARAMETERS = ('path', 'near')  # the model fields a pattern may read (a spec field each)


class Pattern(NamedTuple):
  """A registered connection pattern.

  `read(total, growth_rate, input_width, **params)` is the row of a consumer that sees `total` channels;
  `params` names the spec fields (of `PARAMETERS`) it reads, and `resolve(**params)` returns them with
  defaults filled in, raising ValueError naming a bad one. A spec keeps only these fields (the others
  are None), so one model has one spelling.
  """
  name: str
  read: Callable[..., ChannelRow]
  params: Tuple[str, ...]
  resolve: Callable[..., Dict[str, Any]]


PATTERNS: Dict[str, Pattern] = {}


def register(name: str, params: Sequence[str] = (), resolve: Optional[Callable[..., Dict[str, Any]]] = None):
  """A decorator adding the pattern function it wraps to `PATTERNS` as `name`.

  A constant of the pattern that is no spec field is bound in the function (a keyword default or
  `functools.partial`): the spec's fields, and so checkpoints, are the same for every pattern.
  """
  params = tuple(params)
  unknown = [p for p in params if p not in PARAMETERS]
  if unknown:
    raise ValueError(f'a pattern reads spec fields of {", ".join(PARAMETERS)}, not {", ".join(unknown)}')
  if name in PATTERNS:
    raise ValueError(f'connectivity {name!r} is registered already')

  def add(read):
    PATTERNS[name] = Pattern(name, read, params, resolve or (lambda **values: values))
    return read
  return add


def get(name: str) -> Pattern:
  """The pattern registered as `name`; an unknown name is a ValueError that lists the known ones."""
  if not isinstance(name, str) or name not in PATTERNS:
    raise ValueError(f'connectivity must be one of {", ".join(PATTERNS)}, got {name!r}')
  return PATTERNS[name]


def parameters(name: str, **values) -> Dict[str, Any]:
  """Every field of `PARAMETERS` as a spec of pattern `name` stores it: the pattern's own resolved,
  the others None."""
  pattern = get(name)
  own = pattern.resolve(**{p: values.get(p) for p in pattern.params})
  return {p: own[p] if p in pattern.params else None for p in PARAMETERS}


def _check(name: str, value, low: int, high: Optional[int] = None) -> None:
  if isinstance(value, bool) or not isinstance(value, int):
    raise ValueError(f'{name} must be an integer, got {value!r}')
  if value < low or (high is not None and value > high):
    allowed = f'>= {low}' if high is None else f'in [{low}, {high}]'
    raise ValueError(f'{name} must be {allowed}, got {value}')


def merge(intervals: Sequence[Interval]) -> ChannelRow:
  """Sorted, non-empty, touching intervals joined: (0, 4), (4, 8) -> (0, 8)."""
  out = []
  for a, b in sorted(i for i in intervals if i[1] > i[0]):
    if out and a <= out[-1][1]:
      out[-1] = (out[-1][0], max(out[-1][1], b))
    else:
      out.append((a, b))
  return tuple(out)


def width(row: Sequence[Interval]) -> int:
  """Channels a row reads."""
  return sum(b - a for a, b in row)


# ----------------------------------------------------------------------------------------------------
# The built-in patterns.


def default_near(path: int) -> int:
  """The paper's symmetric choice ("7-7" for path 14): half of the path reads the nearest groups."""
  return path // 2


def _sparsenet_params(path: Optional[int], near: Optional[int]) -> Dict[str, Any]:
  """`near` defaults to `path // 2` and is stored as that value; `path=None` (DenseNet) takes no near."""
  if path is None:
    if near is not None:
      raise ValueError(f'near must be None when path is None (DenseNet), got {near}')
    return dict(path=None, near=None)
  _check('path', path, 0)
  near = default_near(path) if near is None else near
  _check('near', near, 0, path + 2)
  return dict(path=path, near=near)


@register('sparsenet', params=('path', 'near'), resolve=_sparsenet_params)
def sparsenet(total: int, growth_rate: int, input_width: int, *, path: Optional[int],
              near: Optional[int]) -> ChannelRow:
  """The far/near rule, by channel counts as the authors' scripts split the stack: for an input of whole
  groups it reads whole groups (the paper's `path + 2` groups), otherwise the newest window may start a
  few channels into the input."""
  del input_width
  if path is None or total <= (path + 2) * growth_rate:
    return ((0, total),)
  far = path + 2 - near
  return merge([(0, far * growth_rate), (total - near * growth_rate, total)])


@register('dense')
def dense(total: int, growth_rate: int, input_width: int) -> ChannelRow:
  del growth_rate, input_width
  return ((0, total),)


@register('log')
def log(total: int, growth_rate: int, input_width: int) -> ChannelRow:
  """Distances count layers (k-channel pieces) back from the consumer, the whole block input being the
  oldest piece: it is always read, so whether it is whole groups does not matter."""
  layers = (total - input_width) // growth_rate
  read, distance = [(0, input_width)], 1
  while distance <= layers:
    start = input_width + (layers - distance) * growth_rate
    read.append((start, start + growth_rate))
    distance *= 2
  return merge(read)


# ----------------------------------------------------------------------------------------------------
# A block's rows.


def block_rows(input_width: int, num_layers: int, growth_rate: int, pattern: str = 'sparsenet',
               **params) -> Tuple[Tuple[ChannelRow, ...], ChannelRow]:
  """(each layer's row, the transition's) for a block whose input has `input_width` channels.

  The transition reads what a next layer would read. `params` are the pattern's own (`Pattern.params`);
  its defaults fill in the missing ones. Raises ValueError naming the first bad argument.
  """
  p = get(pattern)
  extra = sorted(set(params) - set(p.params))
  if extra:
    raise ValueError(f'connectivity {pattern!r} reads {", ".join(p.params) or "no parameters"}, '
                     f'not {", ".join(extra)}')
  params = p.resolve(**{q: params.get(q) for q in p.params})
  _check('input_width', input_width, 1)
  _check('num_layers', num_layers, 1)
  _check('growth_rate', growth_rate, 1)
  rows = []
  for i in range(num_layers + 1):
    total = input_width + i * growth_rate
    row = merge(p.read(total, growth_rate, input_width, **params))
    if not row or row[0][0] < 0 or row[-1][1] > total:
      raise ValueError(f'connectivity {pattern!r} read {row} of {total} channels: a row reads at least '
                       f'one channel, all of them in [0, {total})')
    rows.append(row)
  return tuple(rows[:-1]), rows[-1]


def pieces(input_width: int, growth_rate: int, total: int) -> Tuple[Interval, ...]:
  """The pieces the network keeps the stacked features in: the block input cut into k-channel groups when
  it is whole groups (so whole-group reads never slice), else kept whole; then one per layer."""
  step = growth_rate if input_width % growth_rate == 0 else input_width
  bounds = list(range(0, input_width, step)) + list(range(input_width, total + 1, growth_rate))
  return tuple(zip(bounds, bounds[1:]))


def _touched(row: Sequence[Interval], bounds: Sequence[Interval]) -> Tuple[Interval, ...]:
  return tuple((lo, hi) for lo, hi in bounds if any(a < hi and lo < b for a, b in row))


def num_connections(rows: Sequence[ChannelRow], input_width: int, growth_rate: int) -> int:
  """Pieces (`pieces`) the rows read any part of, summed: the group reads of the paper's table for an
  input of whole groups, O(L) for SparseNet and O(L^2) for DenseNet."""
  total = max(b for row in rows for _, b in row)
  bounds = pieces(input_width, growth_rate, total)
  return sum(len(_touched(row, bounds)) for row in rows)


def cuts_pieces(rows: Sequence[ChannelRow], input_width: int, growth_rate: int) -> bool:
  """Whether a row reads part of a piece: the block is then read by channel counts, slicing pieces."""
  total = max(b for row in rows for _, b in row)
  bounds = pieces(input_width, growth_rate, total)
  return any(width(_touched(row, bounds)) != width(row) for row in rows)


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


# ----------------------------------------------------------------------------------------------------
# The shapes a scan can run, read off the rows (never re-derived from path or near).


class ScanShape(NamedTuple):
  """How a scan runs a block: its first `growing` rows read everything (padded growing scans); rows
  `steady..` and the transition's read a fixed prefix of `far` k-pieces and a window of the `near` newest
  that slides by one piece per layer (one scan); the rows between run unrolled. `steady` is the number
  of rows when no final run has that shape."""
  growing: int
  steady: int
  far: int = 0
  near: int = 0


def scan_shape(rows: Sequence[ChannelRow], output_row: ChannelRow, input_width: int,
               growth_rate: int) -> ScanShape:
  """The growing rows and the longest final run of prefix + window rows, the transition's included (a
  scan keeps only the prefix and the window, not every output). A row that reads everything is left to
  the growing rows."""
  k = growth_rate
  every = list(rows) + [tuple(output_row)]

  def shape(i):  # (prefix, window) channels of row i, or None: it reads everything or has another shape
    total, row = input_width + i * k, every[i]
    if row == ((0, total),):
      return None
    prefix = row[0][1] if row[0][0] == 0 else 0
    window = total - row[-1][0] if row[-1][1] == total else 0
    if merge([(0, prefix), (total - window, total)]) != row or prefix % k or window % k:
      return None
    return prefix, window

  n, last = len(rows), shape(len(rows))
  start = n
  while last is not None and start > 0 and shape(start - 1) == last:
    start -= 1
  growing = 0
  while growing < start and rows[growing] == ((0, input_width + growing * k),):
    growing += 1
  if start == n:
    return ScanShape(growing, n)
  return ScanShape(growing, start, last[0] // k, last[1] // k)
