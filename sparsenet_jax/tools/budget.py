"""Models matched to a parameter budget: the paper's Fig. 11 picks each model's `path` so that every
(depth, growth rate) pair has about 1M parameters, which isolates depth against width; the SparseNet
ImageNet presets are picked the same way at DenseNet-121's and DenseNet-169's budgets (docs/imagenet.md).

Depth follows the DenseNet convention for a network without bottlenecks: L = 3 * layers_per_block + 4
(the stem, two transitions and the classifier are the 4), so L = 28, 52, 76 are 8-8-8, 16-16-16 and
24-24-24 basic SparseNet layers. Only basic SparseNet reaches 1M at every depth the paper names:
with bottlenecks (L = 6 * layers_per_block + 4) the 28-layer model tops out near 0.5M even when dense.
"""
from __future__ import annotations

import functools
from typing import Callable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from sparsenet_jax.model import counting
from sparsenet_jax.model import presets

FIG11_PRESET = 'sparsenet_v1'
FIG11_TARGET = 1_000_000


class Match(NamedTuple):
  """A budget-matched model: its hyperparameters and how close it lands."""
  layers: int
  growth_rate: int
  blocks: Tuple[int, ...]
  path: int
  params: int


def closest(count: Callable[[int], int], target: int, lo: int, hi: int) -> int:
  """An x in [lo, hi] whose count(x) is nearest `target`, for a non-decreasing `count`.

  Each call of the real `count` is an abstract init of a model (up to a second for 76 layers), so
  the search alternates interpolation steps (params grow almost linearly with path) with bisection
  steps (which bound the worst case at twice bisection's O(log(hi - lo)) calls).
  """
  if lo > hi:
    raise ValueError(f'empty range [{lo}, {hi}]')
  c_lo, c_hi = count(lo), count(hi)
  if c_hi <= target:
    return hi
  if c_lo >= target:
    return lo
  interpolate = True
  while hi - lo > 1:  # c_lo < target < c_hi
    if interpolate:
      mid = min(max(lo + (target - c_lo) * (hi - lo) // (c_hi - c_lo), lo + 1), hi - 1)
    else:
      mid = (lo + hi) // 2
    interpolate = not interpolate
    c = count(mid)
    if c == target:
      return mid
    if c < target:
      lo, c_lo = mid, c
    else:
      hi, c_hi = mid, c
  return lo if target - c_lo <= c_hi - target else hi


def blocks_for_depth(layers: int) -> Tuple[int, int, int]:
  """Three equal blocks of basic layers: L = 3 * n + 4."""
  if layers < 7 or (layers - 4) % 3:
    raise ValueError(f'depth must be 3 * n + 4 with n >= 1, got {layers}')
  n = (layers - 4) // 3
  return (n, n, n)


@functools.lru_cache(maxsize=None)
def fig11_params(blocks: Tuple[int, ...], growth_rate: int, path: Optional[int]) -> int:
  """Trainable parameters of one Fig. 11 model (10 classes), cached: the solver revisits endpoints."""
  model = presets.build(FIG11_PRESET, blocks=blocks, growth_rate=growth_rate, path=path)
  return counting.param_count(model)


def fig11_match(layers: int, growth_rate: int, target: int = FIG11_TARGET,
                max_path: Optional[int] = None) -> Match:
  """The path that brings basic SparseNet of this depth and growth rate closest to `target` params.

  A path of sum(blocks) reads every group everywhere (dense), so the search never goes beyond it;
  `max_path` narrows the search when the answer is known to be no larger.
  """
  blocks = blocks_for_depth(layers)
  return path_match(lambda p: fig11_params(blocks, growth_rate, p), layers, growth_rate, blocks, target, max_path)


def path_match(params: Callable[[int], int], layers: int, growth_rate: int, blocks: Tuple[int, ...], target: int,
               max_path: Optional[int] = None) -> Match:
  """The path in [1, sum(blocks)] (or `max_path`) whose `params(path)` is closest to `target`."""
  hi = sum(blocks) if max_path is None else min(max_path, sum(blocks))
  path = closest(params, target, 1, hi)
  return Match(layers, growth_rate, blocks, path, params(path))


def fig11_matches(layers: int, growth_rates: Sequence[int], target: int = FIG11_TARGET) -> List[Match]:
  """`fig11_match` for each growth rate, the later searches bounded by the earlier answers.

  Parameters grow with the growth rate at a fixed path, so a wider model crosses `target` at a path no
  larger than a narrower one does, and that crossing is at most one past the narrower model's answer.
  """
  matches = {}
  bound = None
  for k in sorted(growth_rates):
    matches[k] = fig11_match(layers, k, target, bound)
    bound = matches[k].path + 1
  return [matches[k] for k in growth_rates]


# ----------------------------------------------------------------------------------------------------
# SparseNet on ImageNet at DenseNet's budgets: SparseNet-bc's layers (bottleneck, biases, its transition
# widths) on DenseNet's ImageNet stem and four blocks, 1000 classes. Depth counts as DenseNet's does:
# L = 2 * sum(blocks) + 5 (the stem, three transitions and the classifier), so (6, 12, 24, 16) is 121.
IMAGENET_BASE = 'sparsenet_bc_v1'
IMAGENET_DEPTHS = {121: (6, 12, 24, 16), 169: (6, 12, 32, 32), 201: (6, 12, 48, 32)}  # DenseNet's
IMAGENET_GROWTH_RATES = (32, 48)  # DenseNet-121's and -161's
IMAGENET_TARGETS = {'densenet_121': 7_978_856, 'densenet_169': 14_149_480}  # presets.IMAGENET_DENSENETS'
COUNT_SHAPE = (64, 64, 3)  # parameters do not depend on the image size; 64 px traces fastest


def imagenet_spec(blocks: Tuple[int, ...], growth_rate: int, path: Optional[int]):
  """The ImageNet SparseNet of these blocks, growth rate and path (a spec: pure Python)."""
  return presets.get(IMAGENET_BASE, stem='imagenet', num_classes=1000, blocks=tuple(blocks),
                     growth_rate=growth_rate, path=path)


@functools.lru_cache(maxsize=None)
def imagenet_params(blocks: Tuple[int, ...], growth_rate: int, path: Optional[int]) -> int:
  """Trainable parameters of one ImageNet SparseNet, cached: the two budgets' searches share guesses."""
  from sparsenet_jax.model import network  # pylint: disable=import-outside-toplevel
  return counting.param_count(network.make(imagenet_spec(blocks, growth_rate, path)), COUNT_SHAPE)


def imagenet_candidates(target: int, depths=tuple(IMAGENET_DEPTHS), growth_rates=IMAGENET_GROWTH_RATES
                        ) -> Iterator[Match]:
  """For each (depth, growth rate) the path closest to `target` parameters, yielded as found (each costs
  several abstract inits, seconds each), the wider searches bounded by the narrower answers as in
  `fig11_matches`."""
  for layers in depths:
    blocks, bound = IMAGENET_DEPTHS[layers], None
    for k in sorted(growth_rates):
      m = path_match(lambda p: imagenet_params(blocks, k, p), layers, k, blocks, target, bound)
      bound = m.path + 1
      yield m
