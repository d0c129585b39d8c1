"""One network for SparseNet, SparseNet-bc/abc, DenseNet and DenseNet-BC, driven by channel rows.

A block keeps its stacked features as a list of pieces (its input cut into `growth_rate`-channel groups
when it is whole groups, else kept whole; then one piece per layer: `connectivity.pieces`), and every
layer reads the channel intervals its row names (`connectivity.block_rows`, from the pattern the spec
names): whole pieces where a row covers them, slices where it cuts one. The transition and the head read
what a next layer would read.

With `spec.scan` a block runs as a *schedule* read off its rows (`block_schedule`,
`connectivity.scan_shape`): leading rows that read everything run as padded scans of `scan_chunk`
layers, a final run of rows with a fixed prefix and a sliding window as one scan, anything else
unrolled. Variables keep the unrolled layout's names and shapes either way where possible;
`layout.to_scanned` / `layout.to_unrolled` move them between the two.
"""
from __future__ import annotations

from typing import Any, List, NamedTuple, Optional, Sequence, Tuple

import flax.linen as nn
from jax import lax
import jax.numpy as jnp

from sparsenet_jax.model import connectivity
from sparsenet_jax.model import kernels
from sparsenet_jax.model import layers
from sparsenet_jax.model import scan
from sparsenet_jax.model.spec import TRANSITION_POOL, ModelSpec


class BlockPlan(NamedTuple):
  """The static shape of one block: its input, the channel rows of its layers and of what reads its
  output (`connectivity.block_rows`), and the transition's width. Everything else is read off the rows."""
  input_width: int
  growth_rate: int
  rows: Tuple[connectivity.ChannelRow, ...]
  output_row: connectivity.ChannelRow  # what the transition (or the head) reads
  output_width: int
  transition_width: Optional[int]  # None after the last block


def block_plans(spec: ModelSpec) -> Tuple[BlockPlan, ...]:
  """Every block's static plan, from the spec alone (no tracing): the network follows it.

  A `sparsenet` compression counts the groups' worth of channels the transition reads (whole groups for
  an input of whole groups)."""
  k = spec.growth_rate
  width = spec.stem_features or 2 * k
  params = spec.pattern_params()
  plans = []
  for b, num_layers in enumerate(spec.blocks):
    try:
      rows, output_row = connectivity.block_rows(width, num_layers, k, spec.connectivity, **params)
    except ValueError as e:
      raise ValueError(f'block {b + 1}: {e}') from None
    out_width = connectivity.width(output_row)
    last = b + 1 == len(spec.blocks)
    trans = None if last else layers.transition_features(spec.compression, out_width, -(-out_width // k), k)
    plans.append(BlockPlan(width, k, rows, output_row, out_width, trans))
    width = trans
  return tuple(plans)


def feature_map_elements(spec: ModelSpec, image_hw: Sequence[int]) -> int:
  """The forward pass's feature-map elements for one image of `image_hw` (height, width), from the plan
  alone: the stem's output, every layer's input as its row reads it, bottleneck and output, and every
  transition's output. A size, not a memory model: the train step keeps these and their gradients."""
  height, width = (int(n) for n in image_hw)
  if spec.stem == 'imagenet':  # stride-2 conv, stride-2 max pool, both padded
    height, width = -(-height // 4), -(-width // 4)
  k = spec.growth_rate
  elements = 0
  for plan in block_plans(spec):
    per_pixel = plan.input_width + sum(connectivity.width(row) + 4 * k * spec.bottleneck + k for row in plan.rows)
    elements += height * width * per_pixel
    height, width = height // TRANSITION_POOL, width // TRANSITION_POOL
    elements += height * width * (plan.transition_width or 0)
  return elements


def feature_map_bytes(spec: ModelSpec, image_hw: Sequence[int], batch: int) -> int:
  """`feature_map_elements` of `batch` images in the spec's compute dtype, in bytes."""
  return feature_map_elements(spec, image_hw) * batch * jnp.dtype(spec.dtype).itemsize


def norm_layers(spec: ModelSpec) -> int:
  """How many BatchNorm layers the network has, from the plan alone: the ImageNet stem's, one or two per
  layer (bottleneck), two per attention module ('paper'), one per transition, the head's. Each is a
  cross-device average of its statistics when the train step synchronises them (`spec.axis_name`)."""
  per_layer = (2 if spec.bottleneck else 1) + (2 if spec.attention == 'paper' else 0)
  return (int(spec.stem == 'imagenet') + sum(len(plan.rows) * per_layer + (plan.transition_width is not None)
                                             for plan in block_plans(spec)) + 1)


class Segment(NamedTuple):
  """Consecutive layers of a block run one way: 'layer' (unrolled), 'grow' (padded scan) or 'steady'."""
  kind: str
  layers: range
  far: int = 0   # 'steady' only: the fixed prefix and the sliding window, in k-pieces
  near: int = 0


def block_schedule(plan: BlockPlan, spec: ModelSpec) -> List[Segment]:
  """How a block's layers run, read off its rows. Unrolled specs run every layer on its own."""
  n = len(plan.rows)
  if not spec.scan:
    return [Segment('layer', range(i, i + 1)) for i in range(n)]
  shape = connectivity.scan_shape(plan.rows, plan.output_row, plan.input_width, plan.growth_rate)
  segments = []
  for s in range(0, shape.growing, spec.scan_chunk):
    chunk = range(s, min(s + spec.scan_chunk, shape.growing))
    segments.append(Segment('grow' if len(chunk) > 1 else 'layer', chunk))
  segments += [Segment('layer', range(i, i + 1)) for i in range(shape.growing, shape.steady)]
  if shape.steady < n:
    segments.append(Segment('steady', range(shape.steady, n), shape.far, shape.near))
  return segments


def layer_name(block: int, layer: int) -> str:
  return f'block{block + 1}_layer{layer + 1}'


def segment_name(block: int, segment: Segment) -> str:
  """The module name of a scanned segment; an unrolled layer keeps its own name."""
  if segment.kind == 'grow':
    return f'block{block + 1}_grow{segment.layers.start + 1}'
  if segment.kind == 'steady':
    return f'block{block + 1}_steady'
  return layer_name(block, segment.layers.start)


class LayerRunner(NamedTuple):
  """Builds and runs one layer (and its attention) the way the spec says: the single place that decides
  the conv implementation and the remat implementation, for unrolled and scanned layers alike."""
  spec: ModelSpec

  def common(self):
    s = self.spec
    return dict(conv_bias=s.conv_bias, bn_momentum=s.bn_momentum, bn_epsilon=s.bn_epsilon,
                axis_name=s.axis_name, dtype=jnp.dtype(s.dtype), conv_cls=kernels.conv_module(s.conv_impl),
                dropout=s.dropout)

  def build(self, name: str):
    """The layer named `name` and its attention or None. Call inside a compact method."""
    s = self.spec
    cls = layers.BottleneckLayer if s.bottleneck else layers.BasicLayer
    common = self.common()
    layer = cls(growth_rate=s.growth_rate, **common, name=name)
    if s.attention == 'paper':
      return layer, layers.Attention(**common, name=name + '_attention')
    if s.attention == 'se':
      return layer, layers.SqueezeExcite(s.se_reduction, jnp.dtype(s.dtype), name=name + '_se')
    return layer, None

  def run(self, layer, attn, groups: Sequence[Any], train: bool, in_scan: bool = False):
    """The layer's output from its input groups. With remat, inside a scan `jax.checkpoint` (the loop
    already orders the recomputation); unrolled, `spec.remat_impl` (`jax.checkpoint` with dropout: the
    tied recomputation applies saved variables and has no rng streams)."""
    if not self.spec.remat:
      h = layer(groups, train)
    elif in_scan or self.spec.dropout or kernels.remat_impl(self.spec.remat_impl) == 'checkpoint':
      h = kernels.checkpointed(layer, groups, train)
    else:
      h = kernels.tied_recompute(layer, groups, train)
    return h if attn is None else attn(h, train)


class SparseNet(nn.Module):
  """SparseNet (Liu & Zeng 2018) and its relatives, as the `ModelSpec` describes them."""
  spec: ModelSpec

  def plans(self) -> Tuple[BlockPlan, ...]:
    return block_plans(self.spec)

  @nn.compact
  def __call__(self, x, train: bool = False):
    s = self.spec
    runner = LayerRunner(s)
    dtype = jnp.dtype(s.dtype)
    x = stem(s, runner, x.astype(dtype), train)
    for b, plan in enumerate(self.plans()):
      if kernels.one_buffer(s):
        x = buffered_block(runner, plan, b, x, train)
      else:
        x = self.pieces_block(runner, plan, b, x, train)
      if plan.transition_width is not None:
        common = runner.common()
        x = layers.Transition(features=plan.transition_width, pool_first=kernels.pool_first(s), **common,
                              name=f'transition{b + 1}')(x, train)
    x = nn.relu(layers.Norm(s.bn_momentum, s.bn_epsilon, s.axis_name, dtype, name='head_bn')(x, train))
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dense(s.num_classes, kernel_init=layers.dense_init, dtype=dtype, name='classifier')(x)
    return x.astype(jnp.float32)

  def pieces_block(self, runner: LayerRunner, plan: BlockPlan, b: int, x, train: bool):
    """Block `b` on its stacked pieces (unrolled, scanned or remat): what the transition reads."""
    s = self.spec
    pieces = split_input(x, connectivity.pieces(plan.input_width, s.growth_rate, plan.input_width))
    window = None
    for segment in block_schedule(plan, s):
      name = segment_name(b, segment)
      if segment.kind == 'layer':
        i = segment.layers.start
        layer, attn = runner.build(name)
        pieces.append(runner.run(layer, attn, take(pieces, plan.rows[i]), train))
      elif segment.kind == 'grow':
        names = [layer_name(b, i) for i in segment.layers]
        pieces += scan.growing(self, runner, pieces, names, train, name)
      else:
        k, total = s.growth_rate, sum(p.shape[-1] for p in pieces)
        prefix = take(pieces, [(0, segment.far * k)])
        recent = take(pieces, [(total - segment.near * k, total)])
        window = scan.steady(runner, prefix, recent, len(segment.layers), train, name)
    return window if window is not None else layers.join(take(pieces, plan.output_row))


def buffered_block(runner: LayerRunner, plan: BlockPlan, b: int, x, train: bool):
  """Block `b` with its stacked features in one buffer (`kernels.one_buffer`): the block input, then
  each layer's output written in place after it (`dynamic_update_slice`); a layer reads its row's
  intervals as slices. No layer input is concatenated from pieces, and the backward pass accumulates
  the buffer's gradient instead of every piece's. Same variables and values as `pieces_block`."""
  k = plan.growth_rate
  total = plan.input_width + len(plan.rows) * k
  buffer = jnp.concatenate([x, jnp.zeros((*x.shape[:-1], total - plan.input_width), x.dtype)], axis=-1)
  for i, row in enumerate(plan.rows):
    layer, attn = runner.build(layer_name(b, i))
    h = runner.run(layer, attn, [buffer[..., lo:hi] for lo, hi in row], train)
    buffer = lax.dynamic_update_slice_in_dim(buffer, h.astype(buffer.dtype), plan.input_width + i * k, axis=-1)
  return layers.join([buffer[..., lo:hi] for lo, hi in plan.output_row])


def stem(s: ModelSpec, runner: LayerRunner, x, train: bool):
  """The first features from the images. 'cifar': a 3x3 conv (and a ReLU with `stem_relu`). 'imagenet'
  (DenseNet-121's, torchvision's to the padding): a 7x7 stride-2 conv padded by 3 on every side, BN-ReLU,
  a 3x3 stride-2 max pool padded by 1: a quarter of the resolution (224 -> 56). Its strided conv is always
  Flax's `nn.Conv` (`kernels.ForwardVJPConv` takes stride 1 only): one conv, its backward pass cheap."""
  width, dtype = s.stem_features or 2 * s.growth_rate, jnp.dtype(s.dtype)
  if s.stem == 'imagenet':
    x = nn.Conv(width, (7, 7), strides=(2, 2), padding=((3, 3), (3, 3)), use_bias=s.conv_bias,
                kernel_init=layers.conv_init, dtype=dtype, name='stem')(x)
    x = nn.relu(layers.Norm(s.bn_momentum, s.bn_epsilon, s.axis_name, dtype, name='stem_bn')(x, train))
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
  x = runner.common()['conv_cls'](width, (3, 3), padding='SAME', use_bias=s.conv_bias,
                                  kernel_init=layers.conv_init, dtype=dtype, name='stem')(x)
  return nn.relu(x) if s.stem_relu else x


def split_input(x, bounds: Sequence[Tuple[int, int]]) -> List[Any]:
  """Cuts a block input into the pieces `bounds` names (`connectivity.pieces`)."""
  return [x[..., a:b] for a, b in bounds]


def take(pieces: Sequence[Any], intervals: Sequence[Tuple[int, int]]) -> List[Any]:
  """The channels `intervals` name, from the stacked `pieces`, oldest first: whole pieces where an
  interval covers them (so whole-group reads are exactly the groups), slices where it cuts one."""
  out, start = [], 0
  for piece in pieces:
    stop = start + piece.shape[-1]
    for a, b in intervals:
      lo, hi = max(a, start), min(b, stop)
      if lo < hi:
        out.append(piece if (lo, hi) == (start, stop) else piece[..., lo - start:hi - start])
    start = stop
  return out


def make(spec: Optional[ModelSpec] = None, **fields) -> SparseNet:
  """The network for `spec` (default `ModelSpec()`) with `fields` replaced; bad values fail here, by
  name, not deep inside a trace."""
  spec = (spec or ModelSpec()).replace(**fields) if fields else (spec or ModelSpec())
  block_plans(spec)
  return SparseNet(spec)
