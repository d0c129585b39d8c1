"""The connection patterns as pure functions: the paper's idea, checked property by property.

Inputs here are whole groups (g0 groups of k channels), where the paper's table is defined: a row is
expected to read exactly the channels of the groups the paper names (`group_row`, written by hand from
the paper's rule). Inputs that are not whole groups: tests/test_channel_reading.py.
"""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsenet_jax.model import connectivity as c

paths = st.integers(0, 40)


def first_capped(g0, n, path):
  """The paper's cap, from path arithmetic: the first layer that sees more than path + 2 groups."""
  return min(n, max(0, path + 3 - g0))


def group_row(groups, k):
  """The channels of k-channel groups, as intervals: the paper's table in channel form."""
  return c.merge([(g * k, (g + 1) * k) for g in groups])


def paper_groups(seen, path, near):
  """The groups the paper's rule reads when a consumer sees `seen` groups."""
  if seen <= path + 2:
    return range(seen)
  return list(range(path + 2 - near)) + list(range(seen - near, seen))


@st.composite
def block_args(draw):
  path = draw(paths)
  near = draw(st.one_of(st.none(), st.integers(0, path + 2)))
  return draw(st.integers(1, 12)), draw(st.integers(1, 60)), path, near, draw(st.integers(1, 8))


@settings(max_examples=300, deadline=None)
@given(block_args())
def test_no_layer_reads_more_than_path_plus_two_groups(args):
  g0, n, path, near, k = args
  rows, out = c.block_rows(g0 * k, n, k, path=path, near=near)
  for row in list(rows) + [out]:
    assert c.num_connections([row], g0 * k, k) <= path + 2
    assert c.width(row) <= (path + 2) * k
    assert row == c.merge(row)  # sorted, disjoint, oldest first


@settings(max_examples=300, deadline=None)
@given(block_args())
def test_capped_layers_read_farthest_f_and_nearest_n(args):
  g0, n, path, near, k = args
  nn_ = path // 2 if near is None else near
  far = path + 2 - nn_
  rows, out = c.block_rows(g0 * k, n, k, path=path, near=near)
  for i, row in enumerate(list(rows) + [out]):
    seen = g0 + i
    if seen <= path + 2:
      assert row == ((0, seen * k),)
    else:
      assert row == group_row(list(range(far)) + list(range(seen - nn_, seen)), k)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 12), st.integers(1, 60), st.integers(1, 8))
def test_path_none_is_densenet(g0, n, k):
  rows, out = c.block_rows(g0 * k, n, k, path=None)
  assert rows == tuple(((0, (g0 + i) * k),) for i in range(n))
  assert out == ((0, (g0 + n) * k),)
  assert c.block_rows(g0 * k, n, k, 'dense') == (rows, out)


@settings(max_examples=200, deadline=None)
@given(block_args())
def test_path_at_least_group_count_is_densenet(args):
  g0, n, path, near, k = args
  big = g0 + n  # no layer ever sees more than path + 2 groups
  assert c.block_rows(g0 * k, n, k, path=big) == c.block_rows(g0 * k, n, k, path=None)


@settings(max_examples=300, deadline=None)
@given(block_args())
def test_widths_grow_one_group_per_layer_then_stay_constant(args):
  g0, n, path, near, k = args
  rows, _ = c.block_rows(g0 * k, n, k, path=path, near=near)
  widths = [c.width(row) // k for row in rows]
  cap = first_capped(g0, n, path)
  for i, w in enumerate(widths):
    if i < cap:
      assert w == g0 + i
    else:
      assert w == path + 2
  steps = [b - a for a, b in zip(widths, widths[1:])]
  assert all(s in (0, 1) for s in steps)
  assert steps == sorted(steps, reverse=True)  # growth first, then flat


@settings(max_examples=300, deadline=None)
@given(block_args())
def test_capped_regime_is_fixed_prefix_plus_sliding_window(args):
  g0, n, path, near, k = args
  nn_ = path // 2 if near is None else near
  far = path + 2 - nn_
  rows, out = c.block_rows(g0 * k, n, k, path=path, near=near)
  capped = (list(rows) + [out])[first_capped(g0, n, path):]
  for a, b in zip(capped, capped[1:]):
    if far:
      assert a[0] == b[0] == (0, far * k)
    window = [(x, y) for x, y in a if x >= far * k]
    assert b == c.merge([(0, far * k)] + [(x + k, y + k) for x, y in window])  # the window slides by k


def test_connections_linear_for_sparsenet_quadratic_for_densenet():
  def connections(n, path):
    return c.num_connections(c.block_rows(2, n, 1, path=path)[0], 2, 1)
  sparse = [connections(n, 14) for n in (100, 200, 400)]
  dense = [connections(n, None) for n in (100, 200, 400)]
  # Doubling depth doubles SparseNet's connections (plus a constant), quadruples DenseNet's.
  assert sparse[2] - sparse[1] == 2 * (sparse[1] - sparse[0])
  assert sparse[1] - sparse[0] == 100 * 16
  assert dense[2] / dense[1] == pytest.approx(4, rel=0.01)
  assert dense[1] / dense[0] == pytest.approx(4, rel=0.02)


def test_paper_example_v1_first_block():
  k = 16
  # SparseNet-V1 block 1: 2k-wide stem output = 2 groups, 8 layers, path 14: never capped.
  assert c.block_rows(2 * k, 8, k, path=14)[0] == tuple(((0, (2 + i) * k),) for i in range(8))
  # Block 3 of V1-bc: 9 input groups, 16 layers; layer 9 is the first capped one.
  rows, out = c.block_rows(9 * k, 16, k, path=14)
  assert c.scan_shape(rows, out, 9 * k, k) == c.ScanShape(8, 8, 9, 7)
  assert rows[8] == ((0, 9 * k), (10 * k, 17 * k))  # groups 0-8 and 10-16
  assert c.num_connections(rows, 9 * k, k) == 228  # docs/model.md section 1: sparsenet_bc_v1 block 3


def test_worked_example_of_docs_model_md():
  rows, out = c.block_rows(2, 5, 1, path=2, near=2)
  assert rows == (((0, 2),), ((0, 3),), ((0, 4),), ((0, 2), (3, 5)), ((0, 2), (4, 6)))
  assert out == ((0, 2), (5, 7))


@pytest.mark.parametrize('near,expected', [(0, ((0, 16),)), (14, ((0, 2), (6, 20))),
                                           (7, ((0, 9), (13, 20)))])
def test_section_5_1_variants(near, expected):
  # "14-0" reads only the farthest, "0-14" the nearest (plus the 2 of the +2), "7-7" both: a consumer
  # that sees 20 groups (k=1), the transition after 18 layers on a 2-group input.
  assert c.block_rows(2, 18, 1, path=14, near=near)[1] == expected


@pytest.mark.parametrize('kwargs,name', [
    (dict(input_width=0, num_layers=4, growth_rate=2, path=14), 'input_width'),
    (dict(input_width=4, num_layers=0, growth_rate=2, path=14), 'num_layers'),
    (dict(input_width=4, num_layers=4, growth_rate=0, path=14), 'growth_rate'),
    (dict(input_width=4, num_layers=4, growth_rate=2, path=-1), 'path'),
    (dict(input_width=4, num_layers=4, growth_rate=2, path=14, near=17), 'near'),
    (dict(input_width=4, num_layers=4, growth_rate=2, path=14, near=-1), 'near'),
    (dict(input_width=4, num_layers=4, growth_rate=2, path=None, near=3), 'near'),
    (dict(input_width=4, num_layers=4, growth_rate=2, path=2.5), 'path'),
    (dict(input_width=4, num_layers=4, growth_rate=2, pattern='log', path=3), "'log' reads no parameters"),
])
def test_invalid_arguments_name_the_argument(kwargs, name):
  with pytest.raises(ValueError, match=name):
    c.block_rows(**kwargs)


@settings(max_examples=300, deadline=None)
@given(block_args())
def test_scan_shape_read_off_the_rows_is_the_papers_cap(args):
  """The scan's prefix and window come from the rows and agree with the path arithmetic."""
  g0, n, path, near, k = args
  rows, out = c.block_rows(g0 * k, n, k, path=path, near=near)
  shape = c.scan_shape(rows, out, g0 * k, k)
  cap = first_capped(g0, n, path)
  if cap == n:
    assert shape == c.ScanShape(n, n)  # every layer grows: no steady state
    return
  nn_ = path // 2 if near is None else near
  assert shape == c.ScanShape(cap, cap, path + 2 - nn_, nn_)


def test_rows_without_a_sliding_window_have_no_steady_state():
  rows, out = c.block_rows(2, 12, 1, 'log')
  # layers 1-3 still read everything: a growing scan can run them; the rest have no prefix + window
  assert c.scan_shape(rows, out, 2, 1) == c.ScanShape(3, 12)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 12), st.integers(1, 80), st.integers(1, 8))
def test_log_pattern_reads_the_block_input_and_power_of_two_distances(g0, n, k):
  rows, out = c.block_rows(g0 * k, n, k, 'log')
  for i, row in enumerate(list(rows) + [out]):
    groups = g0 + i
    expected = set(range(g0)) | {groups - 2 ** j for j in range(groups.bit_length()) if 2 ** j <= groups}
    assert row == group_row(sorted(expected), k)
  # O(L log L): far fewer reads than DenseNet's L^2 / 2
  assert c.num_connections(c.block_rows(2, 200, 1, 'log')[0], 2, 1) < 200 * 12


def test_unknown_pattern_is_refused_by_name():
  with pytest.raises(ValueError, match='connectivity must be one of sparsenet, dense, log'):
    c.block_rows(2, 3, 1, 'ring', path=4)


def test_parameters_are_the_patterns_own_with_its_defaults():
  assert c.parameters('sparsenet', path=14, near=None) == {'path': 14, 'near': 7}
  assert c.parameters('log', path=14, near=3) == {'path': None, 'near': None}
  with pytest.raises(ValueError, match='near must be in'):
    c.parameters('sparsenet', path=4, near=7)


def test_register_refuses_a_taken_name_and_fields_the_spec_lacks(monkeypatch):
  monkeypatch.setattr(c, 'PATTERNS', dict(c.PATTERNS))
  with pytest.raises(ValueError, match='registered already'):
    c.register('dense')
  with pytest.raises(ValueError, match='not every'):
    c.register('every', params=('every',))


def test_a_pattern_that_reads_channels_that_do_not_exist_is_refused_by_name(monkeypatch):
  monkeypatch.setattr(c, 'PATTERNS', dict(c.PATTERNS))

  @c.register('ahead')
  def ahead(total, growth_rate, input_width):
    del input_width
    return ((0, total + growth_rate),)

  assert ahead(4, 2, 4) == ((0, 6),)
  with pytest.raises(ValueError, match="'ahead' read"):
    c.block_rows(4, 2, 2, 'ahead')


def test_pieces_are_whole_groups_or_the_whole_input():
  assert c.pieces(8, 4, 16) == ((0, 4), (4, 8), (8, 12), (12, 16))
  assert c.pieces(10, 4, 18) == ((0, 10), (10, 14), (14, 18))
  assert c.num_connections([((0, 12),), ((0, 3), (14, 18))], 10, 4) == 2 + 2
  assert not c.cuts_pieces([((0, 12),)], 8, 4) and c.cuts_pieces([((0, 3), (14, 18))], 10, 4)
