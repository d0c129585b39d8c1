"""Named models of the paper (Table 1) and the DenseNet baselines, as `ModelSpec`s.

`get(name, **overrides)` is the spec; `build(name, **overrides)` the Flax module; `from_config` the model
a training config asks for. A preset is one `register` call: its spec and, optionally, the paper's
parameter count and Table 2 errors, which tools print beside ours ('-' without them).
Pure Python, like the spec: configs, sweeps and the report read presets without importing JAX.
"""
from __future__ import annotations

from typing import Dict, Mapping, NamedTuple, Optional

from sparsenet_jax.model import connectivity
from sparsenet_jax.model.spec import PRECISIONS, ModelSpec

class Preset(NamedTuple):
  """One named model: its spec and, where the paper has them, the paper's numbers beside it."""
  spec: ModelSpec
  paper_params: Optional[float] = None  # Table 1 / Table 2 parameter count (10 classes)
  paper_errors: Mapping[str, float] = {}  # Table 2 final-epoch test error (%) per dataset


PRESETS: Dict[str, Preset] = {}


def register(name: str, spec: ModelSpec, paper_params: Optional[float] = None,
             paper_errors: Optional[Mapping[str, float]] = None) -> None:
  """Adds a preset: one entry, the paper's numbers optional (tools print '-' without them)."""
  if name in PRESETS:
    raise ValueError(f'preset {name!r} exists already')
  PRESETS[name] = Preset(spec, paper_params, dict(paper_errors or {}))


_VERSIONS = {  # version: (growth_rate, blocks, path)
    'v1': (16, (8, 12, 16), 14),
    'v2': (24, (12, 18, 24), 21),
    'v3': (32, (16, 24, 32), 28),
    'v4': (50, (20, 30, 40), 35),
}
VARIANTS = {  # variant name: (preset family, spec fields)
    'basic': ('sparsenet', dict(bottleneck=False, attention=None, compression='none')),
    'bc': ('sparsenet_bc', dict(bottleneck=True, attention=None, compression='sparsenet')),
    'abc': ('sparsenet_abc', dict(bottleneck=True, attention='paper', compression='sparsenet')),
}
# docs/model.md sections 3 and 5: the paper's Table 1 parameter counts (10 classes) and Table 2 test errors.
_PAPER = {
    'sparsenet_v1': (1.20e6, {}), 'sparsenet_v2': (5.70e6, {}), 'sparsenet_v3': (17.5e6, {}),
    'sparsenet_v4': (65.7e6, {}),
    'sparsenet_bc_v1': (0.83e6, {'cifar10': 4.34, 'cifar100': 22.18, 'svhn': 2.0}),
    'sparsenet_bc_v2': (3.45e6, {'cifar10': 3.93, 'cifar100': 19.27, 'svhn': 1.85}),
    'sparsenet_bc_v3': (9.69e6, {'cifar10': 3.56, 'cifar100': 17.75, 'svhn': 1.75}),
    'sparsenet_bc_v4': (34.3e6, {}),
    'sparsenet_abc_v1': (0.86e6, {'cifar10': 4.25, 'cifar100': 21.59, 'svhn': 1.98}),
    'sparsenet_abc_v2': (3.56e6, {'cifar10': 3.75, 'cifar100': 19.54, 'svhn': 1.89}),
    'sparsenet_abc_v3': (9.92e6, {'cifar10': 3.40, 'cifar100': 17.53, 'svhn': 1.69}),
    'sparsenet_abc_v4': (35.0e6, {'cifar10': 3.24, 'cifar100': 16.98}),
}

for _variant, (_family, _fields) in VARIANTS.items():
  for _version, (_k, _blocks, _path) in _VERSIONS.items():
    _name = f'{_family}_{_version}'
    register(_name, ModelSpec(growth_rate=_k, blocks=_blocks, path=_path, conv_bias=True, stem_relu=True,
                              bn_epsilon=1e-3, **_fields), *_PAPER.get(_name, (None, None)))

_DENSENET = dict(connectivity='dense', path=None, attention=None, conv_bias=False, stem_relu=False,
                 bn_epsilon=1e-5)
register('densenet_bc_100', ModelSpec(growth_rate=12, blocks=(16, 16, 16), bottleneck=True, compression='half',
                                      **_DENSENET), 0.8e6, {'cifar10': 4.51, 'cifar100': 22.27, 'svhn': 1.76})
register('densenet_bc_250', ModelSpec(growth_rate=24, blocks=(41, 41, 41), bottleneck=True, compression='half',
                                      **_DENSENET), 15.3e6, {'cifar10': 3.62, 'cifar100': 17.60, 'svhn': 1.74})
register('densenet_bc_190', ModelSpec(growth_rate=40, blocks=(31, 31, 31), bottleneck=True, compression='half',
                                      **_DENSENET), 25.6e6, {'cifar10': 3.46, 'cifar100': 17.18})
# DenseNet (k=12, L=40) of Huang et al.: 16-channel stem, no bottleneck, no compression.
register('densenet_40', ModelSpec(growth_rate=12, blocks=(12, 12, 12), bottleneck=False, compression='none',
                                  stem_features=16, **_DENSENET), 1.0e6)

# DenseNet-121/169/201/161 (Huang et al. 2017, Table 1) as torchvision builds them: the ImageNet stem of 2k
# channels, four bottleneck blocks, transitions to half the width, no conv biases, BatchNorm epsilon 1e-5
# and running-average momentum 0.9 (torch's 0.1), a classifier with bias; parameter counts equal
# torchvision's (tests/test_imagenet_models.py). Beside them, torchvision's printed parameter counts and
# its published ImageNet 1-crop (224x224) top-1 errors, https://docs.pytorch.org/0.1.12/torchvision/models.html
# (top-5: 7.83, 7.00, 6.43, 6.20).
IMAGENET_DENSENETS = {  # name: (growth_rate, blocks, torchvision's parameter count, top-1 error %)
    'densenet_121': (32, (6, 12, 24, 16), 7_978_856, 25.35),
    'densenet_169': (32, (6, 12, 32, 32), 14_149_480, 24.00),
    'densenet_201': (32, (6, 12, 48, 32), 20_013_928, 22.80),
    'densenet_161': (48, (6, 12, 36, 24), 28_681_000, 22.35),
}
IMAGENET_DATASETS = ('imagenet_folder', 'imagenet_tfds')  # the dataset names of ImageNet runs (config.dataset.name)
for _name, (_k, _blocks, _params, _top1) in IMAGENET_DENSENETS.items():
  register(_name, ModelSpec(growth_rate=_k, blocks=_blocks, bottleneck=True, compression='half', stem='imagenet',
                            num_classes=1000, **_DENSENET), _params, {d: _top1 for d in IMAGENET_DATASETS})

# SparseNet on ImageNet (docs/imagenet.md): SparseNet-bc's layers on the ImageNet stem, one DenseNet depth
# deeper than the DenseNet whose parameter budget it matches, at DenseNet's k=32, with the path the budget
# solver picks (`budget.imagenet_candidates`; `launch/summary.py --model=imagenet_budget` prints them all).
IMAGENET_SPARSENETS = {  # name: (blocks, growth_rate, path); DenseNet-169's and -201's blocks
    'sparsenet_imagenet_121': ((6, 12, 32, 32), 32, 12),
    'sparsenet_imagenet_169': ((6, 12, 48, 32), 32, 26),
}
for _name, (_blocks, _k, _path) in IMAGENET_SPARSENETS.items():
  register(_name, ModelSpec(growth_rate=_k, blocks=_blocks, path=_path, stem='imagenet', num_classes=1000,
                            conv_bias=True, bn_epsilon=1e-3, **VARIANTS['bc'][1]))


# The paper's Fig. 3 (docs/model.md section 5): DenseNet (k=12, L=40) against a wider SparseNet (k=16,
# L=40, path 12) and a deeper one (k=12, L=64: 20 layers per block, path 12), at about the same size.
# L counts the stem, the 3x3 convs of the blocks, two transitions and the classifier: 3 * 12 + 4 = 40.
FIG3: Dict[str, Dict[str, object]] = {
    'densenet_40': {},
    'sparsenet_L40_k16_path12': dict(growth_rate=16, path=12),
    'sparsenet_L64_k12_path12': dict(blocks=(20, 20, 20), path=12),
}


def names():
  return list(PRESETS)


def get(name: str, **overrides) -> ModelSpec:
  """The preset's spec with `overrides` applied (validated: a bad value names its field). A pattern
  parameter given beside a `connectivity` that does not read it is refused, not dropped."""
  if name not in PRESETS:
    raise ValueError(f'unknown model {name!r}; known: {", ".join(PRESETS)}')
  pattern = overrides.get('connectivity')
  if pattern in connectivity.PATTERNS:  # an unknown one: the spec names it
    reads = connectivity.get(pattern).params
    unread = [f'{p}={overrides[p]}' for p in connectivity.PARAMETERS if overrides.get(p) is not None and p not in reads]
    if unread:
      raise ValueError(f'{", ".join(unread)} does not apply to connectivity={pattern!r}, which reads '
                       f'{", ".join(reads) or "no parameters"}')
  spec = PRESETS[name].spec
  return spec.replace(**overrides) if overrides else spec


def paper_params(name: str) -> Optional[float]:
  """The paper's parameter count of preset `name`, or None when the paper gives none."""
  return PRESETS[name].paper_params if name in PRESETS else None


def paper_error(name: str, dataset: str) -> Optional[float]:
  """The paper's Table 2 test error (%) of preset `name` on `dataset`, or None."""
  return PRESETS[name].paper_errors.get(dataset) if name in PRESETS else None


def from_config(config: Mapping, num_classes: Optional[int] = None, axis_name: Optional[str] = None
                ) -> ModelSpec:
  """The model a training config asks for: the one reading of a config as a model.

  `config.model` is a preset `name` plus the fields the config sets (None: the preset's value); the
  class count is the config's when it sets one, else `num_classes` (the data's), else the preset's;
  the compute dtype comes from `config.precision`, the BatchNorm axis from the caller. A nested dict
  (a run's config.json) or a ConfigDict. ValueError names a bad field.
  """
  model = config['model']
  overrides = {k: v for k, v in dict(model).items() if k != 'name' and v is not None}
  if num_classes is not None:
    overrides.setdefault('num_classes', num_classes)
  precision = config.get('precision', 'fp32')
  if precision not in PRECISIONS:
    raise ValueError(f'precision={precision!r}; allowed: {", ".join(PRECISIONS)}')
  return get(model['name'], **overrides, dtype=PRECISIONS[precision], axis_name=axis_name)


def changed_fields(spec: ModelSpec, name: Optional[str]) -> Dict[str, object]:
  """The architecture fields of `spec` that differ from preset `name` (all of them without one)."""
  base = PRESETS[name].spec if name in PRESETS else None
  if base is None:
    return spec.architecture()
  changed = {k: v for k, v in spec.architecture().items() if base.architecture()[k] != v}
  if 'path' in changed and spec.near == base.replace(path=spec.path).near:
    changed.pop('near', None)  # the default near of the new path is no change of its own
  return changed


def build(name: str, **overrides):
  """The named model as a Flax module (imports JAX); any spec field can be overridden."""
  from sparsenet_jax.model import network  # pylint: disable=import-outside-toplevel
  return network.make(get(name, **overrides))
