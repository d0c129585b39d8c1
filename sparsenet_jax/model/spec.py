"""The one description of a model: `ModelSpec`, a frozen dataclass, validated once when it is made.

Every field has a kind:
- architecture: what the weights mean. A checkpoint, an exported file and a report row are identified by
  these fields alone.
- layout: how the same function is computed (scan, remat, kernel implementations). A run may change
  them between restarts; checkpoints are stored in one canonical layout.
- runtime: set by the training code for one process (compute dtype, the BatchNorm axis name).

A field is one line here (its kind, default and description; a check in `_validate` if it needs one),
and the config fields, checkpoint metadata, report grouping and export header derive from this class.
Adding one takes more than that line: the code it configures must read it (network, layers); a spec
stored before it existed is read back with its default (`from_json`), so an architecture field's
default must be the model those runs trained; and a layout field that changes the variables' structure,
as `scan` does, also needs `canonical` and `model/layout.py` to move variables between layouts. A
connection pattern's parameters are spec fields the pattern declares (`connectivity.register`): only
the fields of `connectivity.PARAMETERS` are open to it. Pure Python: no JAX, so configs, the report and
sweeps can read specs without importing the model.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, Dict, Mapping, Optional, Tuple

from sparsenet_jax.model import connectivity

ARCHITECTURE, LAYOUT, RUNTIME = 'architecture', 'layout', 'runtime'
ATTENTIONS = (None, 'paper', 'se')
STEMS = ('cifar', 'imagenet')
COMPRESSIONS = ('sparsenet', 'half', 'none')
CONV_IMPLS = ('auto', 'xla', 'forward_vjp', 'matmul')
REMAT_IMPLS = ('auto', 'checkpoint', 'tied')
DTYPES = ('float32', 'bfloat16')
PRECISIONS = {'fp32': 'float32', 'bf16': 'bfloat16'}  # a config's `precision` -> the spec's dtype
# The network's only change of image size: after every block but the last, the transition's average pool
# (window = stride = TRANSITION_POOL, no padding: n -> n // 2). The stem and the blocks' convs keep the
# size ('SAME', stride 1). `layers.Transition` pools with it; `min_image_size` counts with it.
TRANSITION_POOL = 2


def _field(default, kind: str, doc: str):
  return dataclasses.field(default=default, metadata={'kind': kind, 'doc': doc})


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """SparseNet (Liu & Zeng 2018) and its relatives; docs/model.md explains every field."""
  growth_rate: int = _field(12, ARCHITECTURE, 'k, channels each layer adds')
  blocks: Tuple[int, ...] = _field((8, 12, 16), ARCHITECTURE, 'layers per dense block')
  connectivity: str = _field('sparsenet', ARCHITECTURE, 'connection pattern, a name registered in '
                             'connectivity.PATTERNS: ' + ', '.join(connectivity.PATTERNS) + ' or your own')
  path: Optional[int] = _field(14, ARCHITECTURE, "sparsenet: connections kept per layer (the paper's n); "
                                                 'None: all')
  near: Optional[int] = _field(None, ARCHITECTURE, 'sparsenet: how many of the path + 2 groups are the '
                                                   'nearest; None: path // 2')
  bottleneck: bool = _field(False, ARCHITECTURE, 'BN-ReLU-1x1 conv (4k) before each 3x3 conv')
  attention: Optional[str] = _field(None, ARCHITECTURE, "None, 'paper' or 'se'")
  compression: str = _field('sparsenet', ARCHITECTURE, "transition width: 'sparsenet', 'half', 'none'")
  conv_bias: bool = _field(True, ARCHITECTURE, 'biases on every conv (SparseNet) or none (DenseNet)')
  stem: str = _field('cifar', ARCHITECTURE, "'cifar': 3x3 conv; 'imagenet': 7x7/2 conv, BN-ReLU, 3x3/2 max "
                                           'pool (DenseNet-121 and its kin)')
  stem_relu: bool = _field(True, ARCHITECTURE, 'ReLU after the stem conv (SparseNet) or not (DenseNet); the '
                                               'ImageNet stem always has its BN-ReLU (stored True)')
  stem_features: Optional[int] = _field(None, ARCHITECTURE, 'stem width; None: 2 * growth_rate')
  num_classes: int = _field(10, ARCHITECTURE, 'classifier outputs')
  se_reduction: int = _field(8, ARCHITECTURE, 'squeeze-and-excitation reduction ratio')
  bn_momentum: float = _field(0.9, ARCHITECTURE, 'BatchNorm running-average momentum')
  bn_epsilon: float = _field(1e-3, ARCHITECTURE, 'BatchNorm epsilon')
  dropout: float = _field(0.0, ARCHITECTURE, 'dropout rate after every conv but the stem while training '
                                             '(DenseNet on data without augmentation: 0.2); 0: none')
  scan: bool = _field(False, LAYOUT, 'run capped and growing layers as scans (compile time flat in depth)')
  scan_chunk: int = _field(4, LAYOUT, 'growing layers per scan; 1 keeps them unrolled')
  remat: bool = _field(False, LAYOUT, 'recompute each layer in the backward pass')
  conv_impl: str = _field('auto', LAYOUT, "'xla' (nn.Conv), 'forward_vjp' (backward pass as forward "
                                          "convs), 'matmul' (forward_vjp with 1x1 convs as matmuls, the "
                                          "fastest on XLA:CPU) or 'auto' (by backend)")
  remat_impl: str = _field('auto', LAYOUT, "'checkpoint' (jax.checkpoint), 'tied' (frees memory on "
                                           "XLA:CPU) or 'auto' (by backend)")
  dtype: str = _field('float32', RUNTIME, "compute precision: 'float32' or 'bfloat16'")
  axis_name: Optional[str] = _field(None, RUNTIME, 'mesh axis for cross-device BatchNorm statistics')

  def __post_init__(self):
    """Spells one model one way: DenseNet is `dense` (not `sparsenet` without a path), the ImageNet stem
    has `stem_relu=True` (its ReLU follows its BatchNorm whatever the field says), a pattern keeps
    only the parameters it declares (the others are None) with its defaults stored as their values
    (sparsenet's near), and they are checked here, by the pattern."""
    if isinstance(self.blocks, list):
      object.__setattr__(self, 'blocks', tuple(self.blocks))
    if self.stem == 'imagenet':
      object.__setattr__(self, 'stem_relu', True)
    if self.connectivity == 'sparsenet' and self.path is None and self.near is None:
      object.__setattr__(self, 'connectivity', 'dense')
    values = {p: getattr(self, p) for p in connectivity.PARAMETERS}
    for name, value in connectivity.parameters(self.connectivity, **values).items():
      object.__setattr__(self, name, value)
    _validate(self)

  def replace(self, **changes) -> 'ModelSpec':
    """A copy with `changes`; a new `path` brings the default `near` unless `near` is given too, and
    a `path` given to a DenseNet makes it a SparseNet unless `connectivity` is given too."""
    unknown = set(changes) - set(FIELDS)
    if unknown:
      raise ValueError(f'unknown model field(s) {sorted(unknown)}; allowed: {", ".join(FIELDS)}')
    if 'path' in changes:
      changes.setdefault('near', None)
      if changes['path'] is not None and self.connectivity == 'dense':
        changes.setdefault('connectivity', 'sparsenet')
    return dataclasses.replace(self, **changes)

  def pattern_params(self) -> Dict[str, Any]:
    """The fields the connection pattern reads, by name: what `connectivity.block_rows` takes."""
    return {p: getattr(self, p) for p in connectivity.get(self.connectivity).params}

  def canonical(self) -> 'ModelSpec':
    """The layout checkpoints and exported files are stored in: unrolled (the only layout field that
    changes the variables' structure is `scan`)."""
    return self.replace(scan=False)

  def fields(self, kind: str) -> Dict[str, Any]:
    return {f: getattr(self, f) for f in FIELDS if KIND[f] == kind}

  def architecture(self) -> Dict[str, Any]:
    """What the weights mean, JSON-ready: checkpoints, exports and report rows are keyed by this."""
    return _jsonable(self.fields(ARCHITECTURE))

  def to_json(self) -> Dict[str, Any]:
    return _jsonable({f: getattr(self, f) for f in FIELDS})

  @classmethod
  def from_json(cls, data: Mapping[str, Any]) -> 'ModelSpec':
    """A spec from `to_json`/`architecture` output; absent layout and runtime fields take defaults."""
    unknown = set(data) - set(FIELDS)
    if unknown:
      raise ValueError(f'unknown model field(s) {sorted(unknown)}; allowed: {", ".join(FIELDS)}')
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

  def differences(self, other: 'ModelSpec', kind: str = ARCHITECTURE) -> Dict[str, Tuple[Any, Any]]:
    """{field: (self's value, other's value)} for the fields of `kind` that differ."""
    mine, theirs = self.fields(kind), other.fields(kind)
    return {f: (mine[f], theirs[f]) for f in mine if mine[f] != theirs[f]}


FIELDS: Tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ModelSpec))
KIND: Dict[str, str] = {f.name: f.metadata['kind'] for f in dataclasses.fields(ModelSpec)}
_HINTS = typing.get_type_hints(ModelSpec)


def field_type(name: str) -> type:
  """The plain type of a field (int for Optional[int], tuple for Tuple[int, ...]): for config parsing."""
  hint = _HINTS[name]
  args = [a for a in typing.get_args(hint) if a is not type(None)]
  if typing.get_origin(hint) is typing.Union:
    hint = args[0]
  origin = typing.get_origin(hint)
  return origin or hint


def min_image_size(spec: ModelSpec) -> int:
  """The smallest height (and width) `spec` takes: every transition's pool maps n to n // TRANSITION_POOL,
  and the last block and the head need at least 1x1 (a 0x0 input lowers, then fails inside XLA). The
  ImageNet stem's stride-2 conv and stride-2 max pool (both padded) first map n to ceil(n / 4)."""
  first_block = TRANSITION_POOL ** (len(spec.blocks) - 1)
  return 4 * (first_block - 1) + 1 if spec.stem == 'imagenet' else first_block


# The largest height (and width) taken: XLA refuses shapes whose element count overflows int64 (a 1e10x1e10
# image), and far smaller ones would not fit any accelerator.
MAX_IMAGE_SIZE = 2 ** 16


def check_image_size(spec: ModelSpec, image_shape: Tuple[int, ...]) -> None:
  """ValueError naming the smallest size when images of `image_shape` ((H, W, ...)) are too small for
  `spec`, or the largest when they are over MAX_IMAGE_SIZE: found before anything is traced or compiled."""
  height, width = (int(d) for d in image_shape[:2])
  if max(height, width) > MAX_IMAGE_SIZE:
    raise ValueError(f'{height}x{width} images are larger than {MAX_IMAGE_SIZE}x{MAX_IMAGE_SIZE} '
                     '(spec.MAX_IMAGE_SIZE)')
  smallest = min_image_size(spec)
  if min(height, width) < smallest:
    pools = len(spec.blocks) - 1
    stem = 'the ImageNet stem divides the size by 4, ' if spec.stem == 'imagenet' else ''
    raise ValueError(f'{height}x{width} images are too small for blocks={tuple(spec.blocks)}: {stem}its {pools} '
                     f'transition(s) each divide the size by {TRANSITION_POOL} (average pool), so it takes at '
                     f'least {smallest}x{smallest} (spec.min_image_size); use fewer blocks or larger images')


def _jsonable(values: Dict[str, Any]) -> Dict[str, Any]:
  return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def _positive(name, value):
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ValueError(f'{name} must be a positive integer, got {value!r}')


def _choice(name, value, allowed):
  if value not in allowed:
    raise ValueError(f'{name} must be one of {", ".join(map(repr, allowed))}, got {value!r}')


def _validate(spec: ModelSpec) -> None:
  """Raises ValueError naming the first field outside its allowed range."""
  _positive('growth_rate', spec.growth_rate)
  if not isinstance(spec.blocks, tuple) or not spec.blocks:
    raise ValueError(f'blocks must list at least one block, got {spec.blocks!r}')
  for b in spec.blocks:
    _positive('blocks', b)
  for name in ('num_classes', 'se_reduction', 'scan_chunk'):
    _positive(name, getattr(spec, name))
  for name in ('bottleneck', 'conv_bias', 'stem_relu', 'scan', 'remat'):
    if not isinstance(getattr(spec, name), bool):
      raise ValueError(f'{name} must be True or False, got {getattr(spec, name)!r}')
  if spec.stem_features is not None:
    _positive('stem_features', spec.stem_features)
  _choice('attention', spec.attention, ATTENTIONS)
  _choice('stem', spec.stem, STEMS)
  _choice('compression', spec.compression, COMPRESSIONS)
  _choice('conv_impl', spec.conv_impl, CONV_IMPLS)
  _choice('remat_impl', spec.remat_impl, REMAT_IMPLS)
  _choice('dtype', spec.dtype, DTYPES)
  for name in ('bn_momentum', 'bn_epsilon', 'dropout'):
    value = getattr(spec, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
      raise ValueError(f'{name} must be a number in [0, 1), got {value!r}')
