"""The channel reading: block inputs that are not whole groups (DenseNet-40 made sparse, Figs. 1 and 3).

Properties of `connectivity.block_rows` (hypothesis, like tests/test_connectivity.py), and the network
that slices them: scanned equals unrolled, DenseNet-40's variants build with the expected counts.
"""
import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsenet_jax.model import connectivity as c


@st.composite
def channel_args(draw):
  k = draw(st.integers(1, 16))
  path = draw(st.integers(0, 30))
  near = draw(st.one_of(st.none(), st.integers(0, path + 2)))
  return draw(st.integers(1, 200)), draw(st.integers(1, 40)), k, path, near


@settings(max_examples=300, deadline=None)
@given(channel_args())
def test_every_channel_read_exists_and_the_budget_holds(args):
  width, n, k, path, near = args
  rows, out = c.block_rows(width, n, k, path=path, near=near)
  for i, row in enumerate(list(rows) + [out]):
    total = width + i * k
    assert row == c.merge(row) and row  # sorted, disjoint, non-empty
    assert all(0 <= a < b <= total for a, b in row)  # only channels that exist when it runs
    read = sum(b - a for a, b in row)
    assert read == min(total, (path + 2) * k)  # everything until capped, then exactly (path + 2) * k


@settings(max_examples=300, deadline=None)
@given(channel_args())
def test_capped_rows_are_oldest_far_and_newest_near_channels(args):
  width, n, k, path, near = args
  nn_ = path // 2 if near is None else near
  rows, out = c.block_rows(width, n, k, path=path, near=near)
  for i, row in enumerate(list(rows) + [out]):
    total = width + i * k
    if total > (path + 2) * k:
      assert row == c.merge([(0, (path + 2 - nn_) * k), (total - nn_ * k, total)])


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 12), st.integers(1, 40), st.integers(1, 16), st.integers(0, 30), st.data())
def test_whole_groups_read_exactly_the_papers_groups(g0, n, k, path, data):
  """For inputs that are multiples of k the channel reading is the paper's group reading: whole groups,
  the far oldest and the near newest once a consumer sees more than path + 2 of them."""
  near = data.draw(st.one_of(st.none(), st.integers(0, path + 2)))
  nn_ = path // 2 if near is None else near
  rows, out = c.block_rows(g0 * k, n, k, path=path, near=near)
  for i, row in enumerate(list(rows) + [out]):
    seen = g0 + i
    groups = range(seen) if seen <= path + 2 else list(range(path + 2 - nn_)) + list(range(seen - nn_, seen))
    assert row == c.merge([(g * k, (g + 1) * k) for g in groups])
  assert not c.cuts_pieces(list(rows) + [out], g0 * k, k)


@settings(max_examples=300, deadline=None)
@given(channel_args())
def test_no_layer_is_dead_unless_near_is_zero(args):
  """Every layer's output is read by a later layer, the transition or the head, unless the user asked
  for near = 0 (the paper's literal "14-0"; also the default near of path 0 and 1, path // 2), which
  `launch/summary.py` then warns about."""
  width, n, k, path, near = args
  rows, out = c.block_rows(width, n, k, path=path, near=near)
  dead = c.unread_layers(rows, out, width, k)
  if (path // 2 if near is None else near) != 0:
    assert dead == ()
  else:
    for j in dead:  # only outputs past the far prefix, in a block that gets capped
      assert width + (j + 1) * k > (path + 2) * k


@settings(max_examples=300, deadline=None)
@given(channel_args())
def test_scan_shape_of_channel_rows_is_prefix_plus_window_sliding_by_k(args):
  width, n, k, path, near = args
  rows, out = c.block_rows(width, n, k, path=path, near=near)
  shape = c.scan_shape(rows, out, width, k)
  for i, row in enumerate(list(rows[shape.steady:]) + [out] if shape.steady < n else []):
    total = width + (shape.steady + i) * k
    assert row == c.merge([(0, shape.far * k), (total - shape.near * k, total)])
  assert all(rows[i] == ((0, width + i * k),) for i in range(shape.growing))  # the growing rows read all
  assert shape.growing <= shape.steady


def test_authors_example_densenet40_block2_path12():
  # 160 channels in, k=12, path 12 (far 8, near 6): layer 2 sees 172 channels and reads the oldest
  # 96 and the newest 72, which start 4 channels into a k-group of the block input.
  rows, out = c.block_rows(160, 12, 12, path=12)
  assert rows[0] == ((0, 160),)
  assert rows[1] == ((0, 96), (100, 172))
  assert out == ((0, 96), (232, 304))


def test_log_counts_layers_back_with_the_whole_input_as_the_oldest_piece():
  rows, out = c.block_rows(10, 4, 4, 'log')  # a 10-channel input, k=4: not whole groups
  assert rows == (((0, 10),), ((0, 14),), ((0, 18),), ((0, 10), (14, 22)))
  assert out == ((0, 14), (18, 26))  # the input, and layers 4, 3 and 1 (distances 1, 2, 4)
  assert c.num_connections(rows, 10, 4) == 1 + 2 + 3 + 3


# ----------------------------------------------------------------------------------------------------
# The network.

jnp = pytest.importorskip('jax.numpy')


def test_densenet40_variants_build_with_fig3_counts():
  from sparsenet_jax.model import counting, presets
  assert counting.param_count(presets.build('densenet_40')) == 1_019_722  # unchanged
  wide = counting.param_count(presets.build('densenet_40', growth_rate=16, path=12))
  deep = counting.param_count(presets.build('densenet_40', path=12, blocks=(20, 20, 20)))
  assert abs(wide / 1.0e6 - 1) < 0.1 and abs(deep / 1.0e6 - 1) < 0.1  # "about the same" as DenseNet-40
  for p in range(2, 23):
    presets.build('densenet_40', path=p).plans()


@pytest.mark.parametrize('hp', [
    dict(growth_rate=4, blocks=(7,), path=3, stem_features=10),      # 2.5 groups, capped from layer 3
    dict(growth_rate=4, blocks=(6, 5), path=2, stem_features=6, compression='none', bottleneck=True),
    dict(growth_rate=4, blocks=(7,), path=3, near=0, stem_features=10),
    dict(growth_rate=4, blocks=(7,), path=3, near=5, stem_features=10, attention='paper'),
])
def test_channel_blocks_scan_as_they_run_unrolled(hp):
  from sparsenet_jax.model import layout, network
  hp = dict(hp, num_classes=5)
  unrolled, scanned = network.make(**hp), network.make(**hp, scan=True)
  assert any(c.cuts_pieces(p.rows + (p.output_row,), p.input_width, 4) for p in unrolled.plans())
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
  shapes = jax.eval_shape(lambda: unrolled.init(jax.random.key(0), x))
  leaves, treedef = jax.tree.flatten_with_path(shapes)
  rng = np.random.default_rng(0)
  v = jax.tree.unflatten(treedef, [jnp.asarray(rng.uniform(0.5, 1.5, s.shape) if jax.tree_util.keystr(p)
                                               .endswith("'var']") else rng.normal(0, 0.3, s.shape),
                                               jnp.float32) for p, s in leaves])
  vs = layout.to_scanned(scanned.spec, v)
  assert any(k.endswith('_steady') for k in vs['params'])
  a, ua = unrolled.apply(v, x, train=True, mutable=['batch_stats'])
  b, ub = scanned.apply(vs, x, train=True, mutable=['batch_stats'])
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
  jax.tree.map(lambda u, w: np.testing.assert_allclose(np.asarray(u), np.asarray(w), rtol=1e-4, atol=1e-5),
               ua, layout.to_unrolled(scanned.spec, ub))
