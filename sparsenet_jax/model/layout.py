"""Variables between layouts: the unrolled layout is canonical, scanned layouts are views of it.

A steady (capped) segment stacks its layers' variables under `block<b>_steady/layer*`; a growing chunk
keeps them unpadded, per layer, under `block<b>_grow<i>`. Checkpoints and exported files hold the
canonical layout, so a run can change `scan`, `scan_chunk` or `remat` between restarts.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List, Mapping, Tuple

import jax
import jax.numpy as jnp

from sparsenet_jax.model import network
from sparsenet_jax.model.spec import ModelSpec


def _segments(spec: ModelSpec, kind: str) -> Iterator[Tuple[str, List[str]]]:
  """(module name, the unrolled layer names it holds) for every scanned segment of `kind`."""
  for b, plan in enumerate(network.block_plans(spec)):
    for segment in network.block_schedule(plan, spec):
      if segment.kind == kind:
        yield network.segment_name(b, segment), [network.layer_name(b, i) for i in segment.layers]


def _suffixes(collection: Mapping[str, Any], name: str) -> List[str]:
  """'' for the layer itself, '_attention' / '_se' for its attention: what `LayerRunner.build` adds."""
  return [key[len(name):] for key in collection if key == name or key.startswith(name + '_')]


def to_scanned(spec: ModelSpec, variables: Mapping[str, Any]) -> Dict[str, Any]:
  """Canonical (unrolled) variables {collection: tree} in the layout of `spec` (identity if unrolled)."""
  out = {}
  for col, tree in variables.items():
    tree = dict(tree)
    for scanned, names in _segments(spec, 'steady'):
      stacked = {}
      for suffix in _suffixes(tree, names[0]):
        stacked['layer' + suffix] = jax.tree.map(lambda *xs: jnp.stack(xs),
                                                 *[tree.pop(n + suffix) for n in names])
      if stacked:
        tree[scanned] = stacked
    for scanned, names in _segments(spec, 'grow'):
      kept = {n + suffix: tree.pop(n + suffix) for n in names for suffix in _suffixes(tree, n)}
      if kept:
        tree[scanned] = kept
    out[col] = tree
  return out


def to_unrolled(spec: ModelSpec, variables: Mapping[str, Any]) -> Dict[str, Any]:
  """Variables in the layout of `spec` as canonical (unrolled) variables: the inverse of `to_scanned`."""
  out = {}
  for col, tree in variables.items():
    tree = dict(tree)
    for scanned, names in _segments(spec, 'steady'):
      for key, stacked in dict(tree.pop(scanned, {})).items():
        for i, n in enumerate(names):
          tree[n + key[len('layer'):]] = jax.tree.map(lambda x, i=i: x[i], stacked)
    for scanned, _ in _segments(spec, 'grow'):
      tree.update(tree.pop(scanned, {}))
    out[col] = tree
  return out


def map_param_trees(fn: Callable[[Any], Any], tree: Any, params: Mapping[str, Any]) -> Any:
  """Applies `fn` to every sub-tree of `tree` shaped like `params` (an optimiser's moments, say)."""
  keys = set(params)

  def is_params(x):
    return isinstance(x, Mapping) and set(x) == keys

  return jax.tree.map(lambda x: fn(x) if is_params(x) else x, tree, is_leaf=is_params)

