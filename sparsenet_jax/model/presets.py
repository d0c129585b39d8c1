"""Named models of the paper (Table 1) and the DenseNet baselines, as `ModelSpec`s.

`get(name, **overrides)` is the spec; `build(name, **overrides)` the Flax module. The paper's parameter
counts live beside each preset so that tools can print them next to ours (docs/model.md section 3).
Pure Python, like the spec: configs, sweeps and the report read presets without importing JAX.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional

from sparsenet_jax.model.spec import ModelSpec

_VERSIONS = {  # version: (growth_rate, blocks, path)
    'v1': (16, (8, 12, 16), 14),
    'v2': (24, (12, 18, 24), 21),
    'v3': (32, (16, 24, 32), 28),
    'v4': (50, (20, 30, 40), 35),
}
# Paper Table 1 / Table 2 parameter counts (10 classes).
_PAPER_PARAMS = {
    'sparsenet': {'v1': 1.20e6, 'v2': 5.70e6, 'v3': 17.5e6, 'v4': 65.7e6},
    'sparsenet_bc': {'v1': 0.83e6, 'v2': 3.45e6, 'v3': 9.69e6, 'v4': 34.3e6},
    'sparsenet_abc': {'v1': 0.86e6, 'v2': 3.56e6, 'v3': 9.92e6, 'v4': 35.0e6},
}
VARIANTS = {  # variant name: (preset family, spec fields)
    'basic': ('sparsenet', dict(bottleneck=False, attention=None, compression='none')),
    'bc': ('sparsenet_bc', dict(bottleneck=True, attention=None, compression='sparsenet')),
    'abc': ('sparsenet_abc', dict(bottleneck=True, attention='paper', compression='sparsenet')),
}

PRESETS: Dict[str, ModelSpec] = {}
PAPER_PARAMS: Dict[str, float] = {}

for _variant, (_family, _fields) in VARIANTS.items():
  for _version, (_k, _blocks, _path) in _VERSIONS.items():
    _name = f'{_family}_{_version}'
    PRESETS[_name] = ModelSpec(growth_rate=_k, blocks=_blocks, path=_path, conv_bias=True, stem_relu=True,
                               bn_epsilon=1e-3, **_fields)
    PAPER_PARAMS[_name] = _PAPER_PARAMS[_family][_version]

_DENSENET = dict(connectivity='dense', path=None, attention=None, conv_bias=False, stem_relu=False,
                 bn_epsilon=1e-5)
PRESETS.update({
    'densenet_bc_100': ModelSpec(growth_rate=12, blocks=(16, 16, 16), bottleneck=True, compression='half',
                                 **_DENSENET),
    'densenet_bc_250': ModelSpec(growth_rate=24, blocks=(41, 41, 41), bottleneck=True, compression='half',
                                 **_DENSENET),
    'densenet_bc_190': ModelSpec(growth_rate=40, blocks=(31, 31, 31), bottleneck=True, compression='half',
                                 **_DENSENET),
    # DenseNet (k=12, L=40) of Huang et al.: 16-channel stem, no bottleneck, no compression.
    'densenet_40': ModelSpec(growth_rate=12, blocks=(12, 12, 12), bottleneck=False, compression='none',
                             stem_features=16, **_DENSENET),
})
PAPER_PARAMS.update({'densenet_bc_100': 0.8e6, 'densenet_bc_250': 15.3e6, 'densenet_bc_190': 25.6e6,
                     'densenet_40': 1.0e6})


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
  """The preset's spec with `overrides` applied (validated: a bad value names its field)."""
  if name not in PRESETS:
    raise ValueError(f'unknown model {name!r}; known: {", ".join(PRESETS)}')
  return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]


def from_config(model_config: Mapping) -> ModelSpec:
  """`config.model`: a preset `name` plus the fields the user set (None: the preset's value)."""
  overrides = {k: v for k, v in dict(model_config).items() if k != 'name' and v is not None}
  return get(model_config['name'], **overrides)


def changed_fields(spec: ModelSpec, name: Optional[str]) -> Dict[str, object]:
  """The architecture fields of `spec` that differ from preset `name` (all of them without one)."""
  base = PRESETS.get(name) if name else None
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
