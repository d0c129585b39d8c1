"""Fig. 11's parameter budget: the solver that matches basic SparseNets of a depth and growth rate to 1M
parameters, checked against brute force and against the counts themselves."""
import random

import pytest

from sparsenet_jax.tools import budget


def brute_force(count, target, lo, hi):
  return min(abs(count(x) - target) for x in range(lo, hi + 1))


def test_closest_matches_brute_force_on_monotone_functions():
  rng = random.Random(0)
  for _ in range(300):
    lo = rng.randint(0, 5)
    hi = lo + rng.randint(0, 60)
    values, v = [], rng.randint(0, 100)
    for _ in range(hi - lo + 1):
      v += rng.choice([0, 0, 1, 3, 50, 1000])
      values.append(v)
    calls_made = []

    def count(x):
      calls_made.append(x)
      return values[x - lo]
    target = rng.randint(values[0] - 10, values[-1] + 10)
    x = budget.closest(count, target, lo, hi)
    assert len(set(calls_made)) <= 2 * (hi - lo).bit_length() + 2
    assert lo <= x <= hi and abs(count(x) - target) == brute_force(count, target, lo, hi)
  with pytest.raises(ValueError, match='empty range'):
    budget.closest(lambda x: x, 3, 5, 4)


def test_depth_maps_to_three_equal_blocks():
  assert [budget.blocks_for_depth(depth) for depth in (28, 52, 76)] == [(8, 8, 8), (16, 16, 16), (24, 24, 24)]
  with pytest.raises(ValueError, match='3 \\* n \\+ 4'):
    budget.blocks_for_depth(30)


@pytest.mark.parametrize('layers, growth_rate', [(28, 20), (28, 24), (52, 12)])
def test_fig11_match_lands_near_1m(layers, growth_rate):
  match = budget.fig11_match(layers, growth_rate)
  assert abs(match.params / 1e6 - 1) < 0.03, match
  below = budget.fig11_params(match.blocks, growth_rate, match.path - 1) if match.path > 1 else 0
  above = budget.fig11_params(match.blocks, growth_rate, match.path + 1)
  assert below <= match.params <= above
  assert abs(match.params - 1e6) <= min(abs(below - 1e6), abs(above - 1e6))


def test_fig11_params_grow_with_path_and_paths_shrink_with_growth():
  params = [budget.fig11_params((8, 8, 8), 20, p) for p in (1, 3, 6, 11, 24)]
  assert params == sorted(params) and params[0] < params[-1]
  matches = [budget.fig11_match(28, k) for k in (16, 18, 20, 22, 24, 26)]
  assert [m.path for m in matches] == sorted((m.path for m in matches), reverse=True)
  assert budget.fig11_matches(28, (16, 18, 20, 22, 24, 26)) == matches  # the bounded search agrees
