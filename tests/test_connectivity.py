"""The connection table as pure functions: the paper's idea, checked property by property."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsenet_jax.model import connectivity as c

paths = st.integers(0, 40)


def first_capped(g0, n, path):
  """The paper's cap, from path arithmetic: the first layer that sees more than path + 2 groups."""
  return min(n, max(0, path + 3 - g0))


@st.composite
def block_args(draw):
  path = draw(paths)
  near = draw(st.one_of(st.none(), st.integers(0, path + 2)))
  return draw(st.integers(1, 12)), draw(st.integers(1, 60)), path, near


@settings(max_examples=300, deadline=None)
@given(block_args())
def test_no_layer_reads_more_than_path_plus_two(args):
  g0, n, path, near = args
  for row in c.block_table(g0, n, path, near):
    assert len(row) <= path + 2
    assert list(row) == sorted(set(row))  # unique, oldest first


@settings(max_examples=300, deadline=None)
@given(block_args())
def test_capped_layers_read_farthest_f_and_nearest_n(args):
  g0, n, path, near = args
  nn_ = path // 2 if near is None else near
  far = path + 2 - nn_
  for i, row in enumerate(c.block_table(g0, n, path, near)):
    seen = g0 + i
    if seen <= path + 2:
      assert row == tuple(range(seen))
    else:
      assert row == tuple(range(far)) + tuple(range(seen - nn_, seen))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 12), st.integers(1, 60))
def test_path_none_is_densenet(g0, n):
  table = c.block_table(g0, n, None)
  assert table == tuple(tuple(range(g0 + i)) for i in range(n))
  assert c.transition_sources(g0, n, None) == tuple(range(g0 + n))


@settings(max_examples=200, deadline=None)
@given(block_args())
def test_path_at_least_group_count_is_densenet(args):
  g0, n, path, near = args
  big = g0 + n  # no layer ever sees more than path + 2 groups
  assert c.block_table(g0, n, big) == c.block_table(g0, n, None)


@settings(max_examples=300, deadline=None)
@given(block_args())
def test_widths_grow_one_group_per_layer_then_stay_constant(args):
  g0, n, path, near = args
  widths = c.input_widths(c.block_table(g0, n, path, near), growth_rate=1)
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
  g0, n, path, near = args
  nn_ = path // 2 if near is None else near
  far = path + 2 - nn_
  table = c.block_table(g0, n, path, near)
  capped = table[first_capped(g0, n, path):]
  for a, b in zip(capped, capped[1:]):
    assert a[:far] == b[:far] == tuple(range(far))
    assert tuple(g + 1 for g in a[far:]) == b[far:]  # the near window slides by one


def test_connections_linear_for_sparsenet_quadratic_for_densenet():
  sparse = [c.num_connections(c.block_table(2, n, 14)) for n in (100, 200, 400)]
  dense = [c.num_connections(c.block_table(2, n, None)) for n in (100, 200, 400)]
  # Doubling depth doubles SparseNet's connections (plus a constant), quadruples DenseNet's.
  assert sparse[2] - sparse[1] == 2 * (sparse[1] - sparse[0])
  assert sparse[1] - sparse[0] == 100 * 16
  assert dense[2] / dense[1] == pytest.approx(4, rel=0.01)
  assert dense[1] / dense[0] == pytest.approx(4, rel=0.02)


def test_paper_example_v1_first_block():
  # SparseNet-V1 block 1: 2k-wide stem output = 2 groups, 8 layers, path 14: never capped.
  assert c.block_table(2, 8, 14) == tuple(tuple(range(2 + i)) for i in range(8))
  # Block 3 of V1-bc: 9 input groups, 16 layers; layer 7 is the first capped one.
  t = c.block_table(9, 16, 14)
  assert c.steady_state(t, 9, c.transition_sources(9, 16, 14)).start == 8
  assert t[8] == tuple(range(9)) + tuple(range(10, 17))


@pytest.mark.parametrize('near,expected', [(0, tuple(range(16))), (14, (0, 1) + tuple(range(6, 20))),
                                           (7, tuple(range(9)) + tuple(range(13, 20)))])
def test_section_5_1_variants(near, expected):
  # "14-0" reads only the farthest, "0-14" the nearest (plus the 2 of the +2), "7-7" both.
  assert c.sources(20, 14, near) == expected


@pytest.mark.parametrize('kwargs,name', [
    (dict(input_groups=0, num_layers=4, path=14, near=None), 'input_groups'),
    (dict(input_groups=2, num_layers=0, path=14, near=None), 'num_layers'),
    (dict(input_groups=2, num_layers=4, path=-1, near=None), 'path'),
    (dict(input_groups=2, num_layers=4, path=14, near=17), 'near'),
    (dict(input_groups=2, num_layers=4, path=14, near=-1), 'near'),
    (dict(input_groups=2, num_layers=4, path=None, near=3), 'near'),
    (dict(input_groups=2, num_layers=4, path=2.5, near=None), 'path'),
])
def test_invalid_arguments_name_the_argument(kwargs, name):
  with pytest.raises(ValueError, match=name):
    c.block_table(**kwargs)


@settings(max_examples=300, deadline=None)
@given(block_args())
def test_steady_state_read_off_the_table_is_the_papers_cap(args):
  """The scan's prefix and window come from the table rows and agree with the path arithmetic."""
  g0, n, path, near = args
  table = c.block_table(g0, n, path, near)
  steady = c.steady_state(table, g0, c.transition_sources(g0, n, path, near))
  cap = first_capped(g0, n, path)
  if cap == n:
    assert steady is None
    return
  nn_ = path // 2 if near is None else near
  assert steady == c.SteadyState(cap, path + 2 - nn_, nn_)
  assert c.dense_rows(table, g0) == cap


def test_a_table_without_a_sliding_window_has_no_steady_state():
  table = c.block_table(2, 12, None, pattern='log')
  assert c.steady_state(table, 2, c.transition_sources(2, 12, None, pattern='log')) is None
  assert c.dense_rows(table, 2) == 3  # layers 1-3 still read everything: a growing scan can run them


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 12), st.integers(1, 80))
def test_log_pattern_reads_the_block_input_and_power_of_two_distances(g0, n):
  for i, row in enumerate(c.block_table(g0, n, None, pattern='log')):
    groups = g0 + i
    expected = set(range(g0)) | {groups - 2 ** j for j in range(groups.bit_length()) if 2 ** j <= groups}
    assert set(row) == expected and list(row) == sorted(row)
  # O(L log L): far fewer reads than DenseNet's L^2 / 2
  assert c.num_connections(c.block_table(2, 200, None, pattern='log')) < 200 * 12


def test_unknown_pattern_is_refused_by_name():
  with pytest.raises(ValueError, match='connectivity'):
    c.block_table(2, 3, 4, pattern='ring')
