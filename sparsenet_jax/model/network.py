"""One network for SparseNet, SparseNet-bc/abc, DenseNet and DenseNet-BC, driven by connection tables.

A block keeps its features as a list of groups (`growth_rate` channels each, the block input cut into
groups when its width allows) and every layer reads the groups its row of the static connection table
names (`connectivity.block_table`). The transition and the head read what a next layer would read.

With `scan=True` the capped layers of a block (its steady state, SPEC section 1) run as one `nn.scan`:
the far groups are a loop constant and the near groups a window that slides by one group per layer.
The growing layers before the cap (all of a DenseNet block) run as scans of `scan_chunk` layers over
a zero-padded feature buffer. Compile time then barely grows with depth. `to_scanned` / `to_unrolled`
move variables between the two layouts, which compute the same function.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

from sparsenet_jax.model import connectivity
from sparsenet_jax.model import layers

ATTENTIONS = (None, 'paper', 'se')


class BlockPlan(NamedTuple):
  """The static shape of one block: its input, connection table, output groups and transition."""
  input_width: int
  input_groups: int      # the block input cut into this many groups (1 if kept whole, dense only)
  table: connectivity.ConnectionTable
  output_sources: Tuple[int, ...]  # what the transition (or the head) reads
  output_width: int
  transition_width: Optional[int]  # None after the last block


def block_plans(growth_rate: int, blocks: Sequence[int], path: Optional[int], near: Optional[int],
                compression: str, stem_features: Optional[int]) -> Tuple[BlockPlan, ...]:
  """Every block's static plan, from hyperparameters alone (no tracing): the network follows it."""
  k = growth_rate
  width = stem_features or 2 * k
  plans = []
  for b, num_layers in enumerate(blocks):
    if width % k == 0:
      input_groups = width // k
    elif path is None:
      input_groups = 1
    else:
      raise ValueError(f'a SparseNet block input must be a multiple of growth_rate={k} channels, got '
                       f'{width} before block {b + 1}; use compression="sparsenet" or path=None')
    table = connectivity.block_table(input_groups, num_layers, path, near)
    out = connectivity.sources(input_groups + num_layers, path, near)
    group_widths = [width // input_groups] * input_groups + [k] * num_layers
    out_width = sum(group_widths[g] for g in out)
    last = b + 1 == len(blocks)
    trans = None if last else layers.transition_features(compression, out_width, len(out), k)
    plans.append(BlockPlan(width, input_groups, table, out, out_width, trans))
    width = trans
  return tuple(plans)


def split_groups(x, input_groups: int) -> List[Any]:
  """Cuts a block input into its groups (a dense block may keep an indivisible input whole)."""
  step = x.shape[-1] // input_groups
  return [x[..., i * step:(i + 1) * step] for i in range(input_groups)]


def gather(groups: Sequence[Any], row: Sequence[int]):
  return layers.join([groups[g] for g in row])


def steady_layers(plan: BlockPlan, path: Optional[int]) -> range:
  """The block's capped layers: same input width, fixed far prefix, sliding near window."""
  num_layers = len(plan.table)
  return range(connectivity.first_capped_layer(plan.input_groups, num_layers, path), num_layers)


def growing_chunks(plan: BlockPlan, path: Optional[int], size: int) -> List[range]:
  """The block's growing (uncapped) layers, all of DenseNet's, in runs of at most `size`.

  Each growing layer reads every earlier group, so the layers of a run are padded to the run's widest
  input (zero channels, zero kernel rows): at most size - 1 extra groups each. A run of one is unrolled.
  """
  first = steady_layers(plan, path).start
  return [range(s, min(s + size, first)) for s in range(0, first, size)]


# Inside a scan every iteration's backward already runs after the next one's, so `nn.remat`'s plain
# recomputation is freed in time there; `layers.recompute` serves the unrolled layers.
# static_argnums counts self: `train` is argument 2 of __call__(self, x, train).
_REMAT = {cls: nn.remat(cls, static_argnums=(2,)) for cls in (layers.BasicLayer, layers.BottleneckLayer)}


class LayerSpec(NamedTuple):
  """What all layers of a network share, so the unrolled and the scanned forms build the same layer."""
  growth_rate: int
  bottleneck: bool
  attention: Optional[str]
  se_reduction: int
  conv_bias: bool
  bn_momentum: float
  bn_epsilon: float
  axis_name: Optional[str]
  dtype: Any
  remat: bool

  def build(self, name: str, in_scan: bool = False):
    """The layer named `name` and its attention or None; run the layer with `apply`.

    Call inside a compact method: the modules belong to the module being called.
    """
    common = dict(conv_bias=self.conv_bias, bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
                  axis_name=self.axis_name, dtype=self.dtype)
    cls = layers.BottleneckLayer if self.bottleneck else layers.BasicLayer
    if self.remat and in_scan:
      cls = _REMAT[cls]
    layer = cls(growth_rate=self.growth_rate, **common, name=name)
    if self.attention == 'paper':
      return layer, layers.Attention(**common, name=name + '_attention')
    if self.attention == 'se':
      return layer, layers.SqueezeExcite(self.se_reduction, self.dtype, name=name + '_se')
    return layer, None

  def apply(self, layer, attn, groups, train: bool, in_scan: bool = False):
    """The layer's output from its input groups (recomputed in the backward pass when `remat`).

    `in_scan` as given to `build`: there `nn.remat` already wraps the layer.
    """
    recomputed = self.remat and not in_scan
    h = layers.recompute(layer, groups, train) if recomputed else layer(groups, train)
    return h if attn is None else attn(h, train)


class SteadyLayer(nn.Module):
  """One capped layer as a scan step: reads [far prefix, near window] and slides the window one group.

  The window keeps its groups oldest first, the order the unrolled layer's weights expect; with
  `near=0` it is empty and stays empty (the layer's output is read by nobody in the block).
  """
  spec: LayerSpec
  train: bool

  @nn.compact
  def __call__(self, window, prefix):
    layer, attn = self.spec.build('layer', in_scan=True)
    h = self.spec.apply(layer, attn, [p for p in (prefix, window) if p.shape[-1]], self.train, in_scan=True)
    if window.shape[-1]:
      window = jnp.concatenate([window[..., self.spec.growth_rate:], h], axis=-1)
    return window, None


class GrowingLayer(nn.Module):
  """One growing layer as a scan step over a buffer that holds the block's groups, zeros after them.

  Every step reads the first `read` channels (the widest input of its chunk; its weights are zero-padded
  to that) and writes its output at `offset`, the channel after its own input.
  """
  spec: LayerSpec
  train: bool
  read: int

  @nn.compact
  def __call__(self, buffer, offset):
    layer, attn = self.spec.build('layer', in_scan=True)
    h = self.spec.apply(layer, attn, [buffer[..., :self.read]], self.train, in_scan=True)
    buffer = lax.dynamic_update_slice_in_dim(buffer, h.astype(buffer.dtype), offset, axis=buffer.ndim - 1)
    return buffer, None


class SparseNet(nn.Module):
  """SparseNet (Liu & Zeng 2018) and, with `path=None`, DenseNet (Huang et al. 2017).

  Attributes:
    growth_rate: k, channels each layer adds.
    blocks: layers per dense block, e.g. (8, 12, 16).
    path: connections kept per layer (the paper's n); None reads everything (DenseNet).
    near: how many of the path + 2 groups are the nearest ones; None is path // 2.
    bottleneck: BN-ReLU-1x1(4k) before the 3x3 conv.
    attention: None, 'paper' (the paper's module) or 'se' (squeeze-and-excitation comparator).
    compression: transition width rule, one of layers.COMPRESSIONS.
    conv_bias: biases on every conv (the authors' SparseNet code) or none (DenseNet).
    stem_relu: ReLU after the stem conv (SparseNet) or not (DenseNet).
    stem_features: stem conv width; None is 2 * growth_rate.
    dtype: compute precision, e.g. jnp.bfloat16; parameters, BN statistics and logits stay float32.
    scan: run each block's capped layers as one `nn.scan` and its growing layers (all of DenseNet's) as
      scans of `scan_chunk` layers, padded to the widest input of each: compile time stays flat in depth.
    scan_chunk: growing layers per scan; 1 keeps them unrolled (no padding, more compile time).
    remat: recompute every layer, its input concatenation included, in the backward pass.
  """
  growth_rate: int = 12
  blocks: Sequence[int] = (8, 12, 16)
  path: Optional[int] = 14
  near: Optional[int] = None
  bottleneck: bool = False
  attention: Optional[str] = None
  compression: str = 'sparsenet'
  conv_bias: bool = True
  stem_relu: bool = True
  stem_features: Optional[int] = None
  num_classes: int = 10
  se_reduction: int = 8
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-3
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  scan: bool = False
  scan_chunk: int = 4
  remat: bool = False

  def _common(self):
    return dict(conv_bias=self.conv_bias, bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
                axis_name=self.axis_name, dtype=self.dtype)

  def _spec(self) -> LayerSpec:
    return LayerSpec(self.growth_rate, self.bottleneck, self.attention, self.se_reduction, self.conv_bias,
                     self.bn_momentum, self.bn_epsilon, self.axis_name, self.dtype, self.remat)

  def plans(self) -> Tuple[BlockPlan, ...]:
    return block_plans(self.growth_rate, self.blocks, self.path, self.near, self.compression,
                       self.stem_features)

  @nn.compact
  def __call__(self, x, train: bool = False):
    k = self.growth_rate
    x = x.astype(self.dtype)
    stem = nn.Conv(self.stem_features or 2 * k, (3, 3), padding='SAME', use_bias=self.conv_bias,
                   kernel_init=layers.conv_init, dtype=self.dtype, name='stem')
    x = stem(x)
    if self.stem_relu:
      x = nn.relu(x)
    spec = self._spec()
    for b, plan in enumerate(self.plans()):
      groups = split_groups(x, plan.input_groups)
      steady = steady_layers(plan, self.path) if self.scan else range(0)
      chunks = growing_chunks(plan, self.path, self.scan_chunk) if self.scan else []
      for i, row in enumerate(plan.table[:len(plan.table) - len(steady)]):
        chunk = next((c for c in chunks if i in c), range(i, i + 1))
        if len(chunk) > 1:
          if i == chunk.start:
            groups += self._scan_growing(spec, groups, chunk, b, train)
          continue
        layer, attn = spec.build(f'block{b + 1}_layer{i + 1}')
        groups.append(spec.apply(layer, attn, [groups[g] for g in row], train))
      if steady:
        x = self._scan_block(spec, groups, len(steady), b, train)
      else:
        x = gather(groups, plan.output_sources)
      if plan.transition_width is not None:
        x = layers.Transition(features=plan.transition_width, **self._common(),
                              name=f'transition{b + 1}')(x, train)
    x = nn.relu(layers.Norm(self.bn_momentum, self.bn_epsilon, self.axis_name, self.dtype,
                            name='head_bn')(x, train))
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dense(self.num_classes, dtype=self.dtype, name='classifier')(x)
    return x.astype(jnp.float32)

  def _layer_shapes(self, width: int):
    """Variable shapes of one layer (no attention) that reads `width` channels."""
    cls = layers.BottleneckLayer if self.bottleneck else layers.BasicLayer
    layer = cls(growth_rate=self.growth_rate, **self._common(), parent=None)  # not a submodule
    x = jnp.zeros((1, 1, 1, width), self.dtype)
    return jax.eval_shape(lambda: layer.init(jax.random.key(0), x, False))

  def _scan_growing(self, spec, groups, chunk: range, b, train):
    """Runs the growing layers `chunk` (each reads all of `groups` and its predecessors in the chunk)
    as one scan; returns their outputs. Variables are stored unpadded, per layer, under the unrolled
    names, and padded and stacked on the way in (`nn.map_variables`)."""
    k = self.growth_rate
    names = [f'block{b + 1}_layer{i + 1}' for i in chunk]
    width = sum(g.shape[-1] for g in groups)
    widths = [width + j * k for j in range(len(chunk))]  # each layer's input; also where it writes
    shapes = [self._layer_shapes(w) for w in widths]
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

    scan = nn.scan(GrowingLayer, variable_axes={'params': 0, 'batch_stats': 0},
                   split_rngs={'params': True}, in_axes=0, length=len(chunk))
    scan = nn.map_variables(scan, ['params', 'batch_stats'], trans_in_fn=stack, trans_out_fn=unstack,
                            init=self.is_initializing(), mutable=True)
    zeros = jnp.zeros((*groups[0].shape[:-1], len(chunk) * k), groups[0].dtype)
    buffer, _ = scan(spec, train, widths[-1], name=f'block{b + 1}_grow{chunk.start + 1}')(
        jnp.concatenate([*groups, zeros], axis=-1), jnp.asarray(widths, jnp.int32))
    return [buffer[..., w:w + k] for w in widths]

  def _scan_block(self, spec, groups, length, b, train):
    """Runs a block's `length` capped layers after `groups`; returns what the transition reads."""
    near = connectivity.default_near(self.path) if self.near is None else self.near
    far = self.path + 2 - near
    empty = groups[0][..., :0]
    prefix = layers.join(groups[:far]) if far else empty
    window = layers.join(groups[len(groups) - near:]) if near else empty
    scan = nn.scan(SteadyLayer, variable_axes={'params': 0, 'batch_stats': 0},
                   split_rngs={'params': True}, in_axes=nn.broadcast, length=length)
    window, _ = scan(spec, train, name=f'block{b + 1}_steady')(window, prefix)
    return layers.join([p for p in (prefix, window) if p.shape[-1]])


def _steady_names(model: SparseNet):
  """(scanned module name, the unrolled layer names it stacks) for every block with a steady state."""
  for b, plan in enumerate(model.plans()):
    steady = steady_layers(plan, model.path)
    if steady:
      yield f'block{b + 1}_steady', [f'block{b + 1}_layer{i + 1}' for i in steady]


def _growing_names(model: SparseNet):
  """(scanned module name, the unrolled layer names it keeps, unpadded) for every scanned growing chunk."""
  for b, plan in enumerate(model.plans()):
    for chunk in growing_chunks(plan, model.path, model.scan_chunk):
      if len(chunk) > 1:
        yield f'block{b + 1}_grow{chunk.start + 1}', [f'block{b + 1}_layer{i + 1}' for i in chunk]


def _suffixes(collection: Mapping[str, Any], name: str) -> List[str]:
  """'' for the layer itself, '_attention' / '_se' for its attention: what `LayerSpec.build` adds."""
  return [key[len(name):] for key in collection if key == name or key.startswith(name + '_')]


def to_scanned(model: SparseNet, variables: Mapping[str, Any]) -> Dict[str, Any]:
  """Variables of the unrolled `model` (params, batch_stats, ...) in the layout of `scan=True`."""
  out = {}
  for col, tree in variables.items():
    tree = dict(tree)
    for scanned, names in _steady_names(model):
      stacked = {}
      for suffix in _suffixes(tree, names[0]):
        stacked['layer' + suffix] = jax.tree.map(lambda *xs: jnp.stack(xs),
                                                 *[tree.pop(n + suffix) for n in names])
      if stacked:
        tree[scanned] = stacked
    for scanned, names in _growing_names(model):
      kept = {n + suffix: tree.pop(n + suffix) for n in names for suffix in _suffixes(tree, n)}
      if kept:
        tree[scanned] = kept
    out[col] = tree
  return out


def to_unrolled(model: SparseNet, variables: Mapping[str, Any]) -> Dict[str, Any]:
  """Variables of the scanned `model` in the layout of `scan=False`: the inverse of `to_scanned`."""
  out = {}
  for col, tree in variables.items():
    tree = dict(tree)
    for scanned, names in _steady_names(model):
      for key, stacked in dict(tree.pop(scanned, {})).items():
        for i, n in enumerate(names):
          tree[n + key[len('layer'):]] = jax.tree.map(lambda x, i=i: x[i], stacked)
    for scanned, _ in _growing_names(model):
      tree.update(tree.pop(scanned, {}))
    out[col] = tree
  return out


HYPERPARAMETERS = tuple(f for f in SparseNet.__dataclass_fields__ if f not in ('parent', 'name'))


def validate(hp) -> None:
  """Raises ValueError naming the first hyperparameter outside its allowed range."""
  def positive(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f'{name} must be a positive integer, got {value!r}')
  positive('growth_rate', hp.get('growth_rate', 12))
  blocks = hp.get('blocks', (8, 12, 16))
  if not blocks:
    raise ValueError('blocks must list at least one block, got ()')
  for b in blocks:
    positive('blocks', b)
  positive('num_classes', hp.get('num_classes', 10))
  positive('se_reduction', hp.get('se_reduction', 8))
  positive('scan_chunk', hp.get('scan_chunk', 4))
  for name in ('bottleneck', 'conv_bias', 'stem_relu', 'scan', 'remat'):
    if not isinstance(hp.get(name, False), bool):
      raise ValueError(f'{name} must be True or False, got {hp[name]!r}')
  if hp.get('stem_features') is not None:
    positive('stem_features', hp['stem_features'])
  if hp.get('attention') not in ATTENTIONS:
    raise ValueError(f'attention must be one of {ATTENTIONS}, got {hp.get("attention")!r}')
  if hp.get('compression', 'sparsenet') not in layers.COMPRESSIONS:
    raise ValueError(f'compression must be one of {layers.COMPRESSIONS}, got {hp.get("compression")!r}')
  connectivity.validate(1, 1, hp.get('path', 14), hp.get('near'))
  block_plans(hp.get('growth_rate', 12), blocks, hp.get('path', 14), hp.get('near'),
              hp.get('compression', 'sparsenet'), hp.get('stem_features'))


def make(**hp) -> SparseNet:
  """A validated SparseNet: bad hyperparameters fail here, with their name, not deep inside a trace."""
  unknown = set(hp) - set(HYPERPARAMETERS)
  if unknown:
    raise ValueError(f'unknown model field(s) {sorted(unknown)}; allowed: {", ".join(HYPERPARAMETERS)}')
  validate(hp)
  if 'blocks' in hp:
    hp['blocks'] = tuple(hp['blocks'])
  return SparseNet(**hp)
