"""One network for SparseNet, SparseNet-bc/abc, DenseNet and DenseNet-BC, driven by connection tables.

A block keeps its features as a list of groups (`growth_rate` channels each, the block input cut into
groups when its width allows) and every layer reads the groups its row of the static connection table
names (`connectivity.block_table`). The transition and the head read what a next layer would read.

With `spec.scan` a block runs as a *schedule* read off its table (`block_schedule`): leading rows that
read every group run as padded scans of `scan_chunk` layers, a final run of rows with a fixed prefix and
a sliding window as one scan, anything else unrolled. Variables keep the unrolled layout's names and
shapes either way where possible; `layout.to_scanned` / `layout.to_unrolled` move them between the two.
"""
from __future__ import annotations

from typing import Any, List, NamedTuple, Optional, Sequence, Tuple

import flax.linen as nn
import jax.numpy as jnp

from sparsenet_jax.model import connectivity
from sparsenet_jax.model import kernels
from sparsenet_jax.model import layers
from sparsenet_jax.model import scan
from sparsenet_jax.model.spec import ModelSpec


class BlockPlan(NamedTuple):
  """The static shape of one block: its input, connection table, output groups and transition.

  `reads` / `output_reads` are what each layer / the transition reads as channel intervals of the
  block's stacked features (`connectivity.channel_rows`): the network slices those. When the block input
  is whole groups they are the table's groups; otherwise (`by_channels`) the input is kept whole as
  piece 0, `table` names the pieces (input, then one per layer) a row touches, and the reads come from
  the channel reading (docs/model.md section 1).
  """
  input_width: int
  input_groups: int      # the block input cut into this many groups (1 if kept whole)
  table: connectivity.ConnectionTable
  output_sources: Tuple[int, ...]  # what the transition (or the head) reads
  output_width: int
  transition_width: Optional[int]  # None after the last block
  reads: Tuple[connectivity.ChannelRow, ...] = ()
  output_reads: connectivity.ChannelRow = ()
  by_channels: bool = False  # a sparse block whose input is not whole groups: read by channel counts


def _pieces_touched(row: connectivity.ChannelRow, input_width: int, k: int) -> Tuple[int, ...]:
  """The pieces (0: the block input, j + 1: layer j's output) a channel row reads any part of."""
  total = max(b for _, b in row)
  starts = [0] + list(range(input_width, total, k))
  ends = starts[1:] + [total]
  return tuple(p for p, (lo, hi) in enumerate(zip(starts, ends)) if any(a < hi and lo < b for a, b in row))


def block_plans(spec: ModelSpec) -> Tuple[BlockPlan, ...]:
  """Every block's static plan, from the spec alone (no tracing): the network follows it."""
  k = spec.growth_rate
  width = spec.stem_features or 2 * k
  plans = []
  for b, num_layers in enumerate(spec.blocks):
    try:
      reads, out_reads = connectivity.channel_rows(width, num_layers, k, spec.path, spec.near,
                                                   spec.connectivity)
    except ValueError as e:
      raise ValueError(f'block {b + 1}: {e}') from None
    by_channels = width % k != 0 and spec.connectivity != 'dense'
    if width % k == 0:
      input_groups = width // k
      table = connectivity.block_table(input_groups, num_layers, spec.path, spec.near, spec.connectivity)
      out = connectivity.transition_sources(input_groups, num_layers, spec.path, spec.near,
                                            spec.connectivity)
    elif not by_channels:  # a dense block keeps an indivisible input as one group
      input_groups = 1
      table = connectivity.block_table(1, num_layers, None, None, 'dense')
      out = connectivity.transition_sources(1, num_layers, None, None, 'dense')
    else:
      input_groups = 1
      table = tuple(_pieces_touched(r, width, k) for r in reads)
      out = _pieces_touched(out_reads, width, k)
    out_width = sum(b_ - a for a, b_ in out_reads)
    groups_read = len(out) if not by_channels else -(-out_width // k)
    last = b + 1 == len(spec.blocks)
    trans = None if last else layers.transition_features(spec.compression, out_width, groups_read, k)
    plans.append(BlockPlan(width, input_groups, table, out, out_width, trans, reads, out_reads, by_channels))
    width = trans
  return tuple(plans)


class Segment(NamedTuple):
  """Consecutive layers of a block run one way: 'layer' (unrolled), 'grow' (padded scan) or 'steady'."""
  kind: str
  layers: range
  far: int = 0   # 'steady' only: the fixed prefix and the sliding window, in groups
  near: int = 0


def block_schedule(plan: BlockPlan, spec: ModelSpec) -> List[Segment]:
  """How a block's layers run, read off its table. Unrolled specs run every layer on its own."""
  n = len(plan.table)
  if not spec.scan:
    return [Segment('layer', range(i, i + 1)) for i in range(n)]
  if plan.by_channels:  # the same shapes, read off the channel rows
    k = spec.growth_rate
    steady = connectivity.channel_steady_state(plan.reads, plan.output_reads, plan.input_width, k)
    stop = steady.start if steady else n
    grow = connectivity.channel_dense_rows(plan.reads, plan.input_width, k, stop)
  else:
    steady = connectivity.steady_state(plan.table, plan.input_groups, plan.output_sources)
    stop = steady.start if steady else n
    grow = connectivity.dense_rows(plan.table, plan.input_groups, stop)
  segments = []
  for s in range(0, grow, spec.scan_chunk):
    chunk = range(s, min(s + spec.scan_chunk, grow))
    segments.append(Segment('grow' if len(chunk) > 1 else 'layer', chunk))
  segments += [Segment('layer', range(i, i + 1)) for i in range(grow, stop)]
  if steady:
    segments.append(Segment('steady', range(steady.start, n), steady.far, steady.near))
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
    x = x.astype(dtype)
    x = runner.common()['conv_cls'](s.stem_features or 2 * s.growth_rate, (3, 3), padding='SAME',
                                    use_bias=s.conv_bias, kernel_init=layers.conv_init, dtype=dtype,
                                    name='stem')(x)
    if s.stem_relu:
      x = nn.relu(x)
    for b, plan in enumerate(self.plans()):
      groups = split_groups(x, plan.input_groups)  # the pieces of the stacked features
      window = None
      for segment in block_schedule(plan, s):
        name = segment_name(b, segment)
        if segment.kind == 'layer':
          i = segment.layers.start
          layer, attn = runner.build(name)
          groups.append(runner.run(layer, attn, take(groups, plan.reads[i]), train))
        elif segment.kind == 'grow':
          names = [layer_name(b, i) for i in segment.layers]
          groups += scan.growing(self, runner, groups, names, train, name)
        else:
          k, total = s.growth_rate, sum(g.shape[-1] for g in groups)
          prefix = take(groups, [(0, segment.far * k)])
          recent = take(groups, [(total - segment.near * k, total)])
          window = scan.steady(runner, prefix, recent, len(segment.layers), train, name)
      x = window if window is not None else layers.join(take(groups, plan.output_reads))
      if plan.transition_width is not None:
        common = runner.common()
        x = layers.Transition(features=plan.transition_width, **common, name=f'transition{b + 1}')(x, train)
    x = nn.relu(layers.Norm(s.bn_momentum, s.bn_epsilon, s.axis_name, dtype, name='head_bn')(x, train))
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dense(s.num_classes, kernel_init=layers.dense_init, dtype=dtype, name='classifier')(x)
    return x.astype(jnp.float32)


def split_groups(x, input_groups: int) -> List[Any]:
  """Cuts a block input into its groups (a dense block may keep an indivisible input whole)."""
  step = x.shape[-1] // input_groups
  return [x[..., i * step:(i + 1) * step] for i in range(input_groups)]


def gather(groups: Sequence[Any], row: Sequence[int]):
  return layers.join([groups[g] for g in row])


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
