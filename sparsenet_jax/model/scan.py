"""The scanned segments of a block (`network.block_schedule`): compile time flat in depth.

- steady: rows that read a fixed prefix of `far` k-pieces and a window of the `near` newest, sliding by
  one piece per layer (SparseNet's capped layers), run as one `nn.scan`; the prefix is a loop constant.
- growing: rows that read everything (all of a DenseNet block) run as a scan over a zero-padded feature
  buffer; each step reads the chunk's widest input (zero channels meet zero kernel rows).

Both take their shapes from the block's channel rows (`connectivity.scan_shape`, via the schedule), for
any registered pattern, never from `path` or `near`.
"""
from __future__ import annotations

from typing import Any, List, Sequence

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

from sparsenet_jax.model import layers


class SteadyLayer(nn.Module):
  """One capped layer as a scan step: reads [far prefix, near window] and slides the window one piece.

  The window keeps its channels oldest first, the order the unrolled layer's weights expect; with
  `near=0` it is empty and stays empty.
  """
  runner: Any  # network.LayerRunner
  train: bool

  @nn.compact
  def __call__(self, window, prefix):
    layer, attn = self.runner.build('layer')
    h = self.runner.run(layer, attn, [p for p in (prefix, window) if p.shape[-1]], self.train, in_scan=True)
    if window.shape[-1]:
      window = jnp.concatenate([window[..., self.runner.spec.growth_rate:], h], axis=-1)
    return window, None


class GrowingLayer(nn.Module):
  """One growing layer as a scan step over a buffer that holds the block's pieces, zeros after them.

  Every step reads the first `read` channels (the widest input of its chunk; its weights are zero-padded
  to that) and writes its output at `offset`, the channel after its own input.
  """
  runner: Any
  train: bool
  read: int

  @nn.compact
  def __call__(self, buffer, offset):
    layer, attn = self.runner.build('layer')
    h = self.runner.run(layer, attn, [buffer[..., :self.read]], self.train, in_scan=True)
    buffer = lax.dynamic_update_slice_in_dim(buffer, h.astype(buffer.dtype), offset, axis=buffer.ndim - 1)
    return buffer, None


def steady(runner, prefix: Sequence[Any], window: Sequence[Any], length: int, train: bool, name: str):
  """Runs `length` capped layers after the block's features so far, given as the pieces of the fixed
  prefix and of the newest window (either may be empty; the network slices both from the stack by
  channels, so a window may start inside the block input); returns what the transition reads."""
  empty = (list(prefix) + list(window))[0][..., :0]
  prefix = layers.join(list(prefix)) if prefix else empty
  window = layers.join(list(window)) if window else empty
  scanned = nn.scan(SteadyLayer, variable_axes={'params': 0, 'batch_stats': 0},
                    split_rngs={'params': True, 'dropout': True}, in_axes=nn.broadcast, length=length)
  window, _ = scanned(runner, train, name=name)(window, prefix)
  return layers.join([p for p in (prefix, window) if p.shape[-1]])


def _layer_shapes(runner, width: int):
  """Variable shapes of one layer (no attention) that reads `width` channels."""
  spec = runner.spec
  cls = layers.BottleneckLayer if spec.bottleneck else layers.BasicLayer
  layer = cls(growth_rate=spec.growth_rate, **runner.common(), parent=None)  # not a submodule
  x = jnp.zeros((1, 1, 1, width), jnp.dtype(spec.dtype))
  return jax.eval_shape(lambda: layer.init(jax.random.key(0), x, False))


def growing(parent: nn.Module, runner, pieces: List[Any], names: Sequence[str], train: bool,
            name: str) -> List[Any]:
  """Runs the growing layers `names` (each reads all of `pieces` and its predecessors in the chunk) as
  one scan; returns their outputs. Variables are stored unpadded, per layer, under the unrolled names,
  and padded and stacked on the way in (`nn.map_variables`)."""
  k = runner.spec.growth_rate
  width = sum(p.shape[-1] for p in pieces)
  widths = [width + j * k for j in range(len(names))]  # each layer's input; also where it writes
  shapes = [_layer_shapes(runner, w) for w in widths]
  suffixes = ('', '_attention', '_se')

  def pad(x, like):
    return jnp.pad(x, [(0, n - m) for m, n in zip(x.shape, like.shape)])

  def stack(cols):  # stored -> scanned view
    view = {}
    for col, tree in cols.items():
      view[col] = {}
      for suffix in suffixes:
        if names[0] + suffix in tree:
          trees = [tree[n + suffix] for n in names]
          if not suffix:
            trees = [jax.tree.map(pad, t, trees[-1]) for t in trees]
          view[col]['layer' + suffix] = jax.tree.map(lambda *xs: jnp.stack(xs), *trees)
    return view

  def unstack(view):  # scanned view -> stored
    cols = {}
    for col, tree in view.items():
      cols[col] = {}
      for key, stacked in tree.items():
        for j, n in enumerate(names):
          t = jax.tree.map(lambda x, j=j: x[j], stacked)
          if key == 'layer':
            t = jax.tree.map(lambda x, s: x[tuple(slice(0, d) for d in s.shape)], t, shapes[j][col])
          cols[col][n + key[len('layer'):]] = t
    return cols

  scanned = nn.scan(GrowingLayer, variable_axes={'params': 0, 'batch_stats': 0},
                    split_rngs={'params': True, 'dropout': True}, in_axes=0, length=len(names))
  scanned = nn.map_variables(scanned, ['params', 'batch_stats'], trans_in_fn=stack, trans_out_fn=unstack,
                             init=parent.is_initializing(), mutable=True)
  zeros = jnp.zeros((*pieces[0].shape[:-1], len(names) * k), pieces[0].dtype)
  buffer, _ = scanned(runner, train, widths[-1], name=name)(
      jnp.concatenate([*pieces, zeros], axis=-1), jnp.asarray(widths, jnp.int32))
  return [buffer[..., w:w + k] for w in widths]
