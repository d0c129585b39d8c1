"""Named models of the paper (Table 1) and the DenseNet baselines, as plain hyperparameter dicts.

`build(name, **overrides)` returns a `network.SparseNet`; the paper's figures live beside each preset so
that tools can print them next to ours.
"""
from __future__ import annotations

from typing import Any, Dict

from sparsenet_jax.model import network

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
VARIANTS = {  # variant name: (preset family, network kwargs)
    'basic': ('sparsenet', dict(bottleneck=False, attention=None, compression='none')),
    'bc': ('sparsenet_bc', dict(bottleneck=True, attention=None, compression='sparsenet')),
    'abc': ('sparsenet_abc', dict(bottleneck=True, attention='paper', compression='sparsenet')),
}

PRESETS: Dict[str, Dict[str, Any]] = {}
PAPER_PARAMS: Dict[str, float] = {}

for _variant, (_family, _kwargs) in VARIANTS.items():
  for _version, (_k, _blocks, _path) in _VERSIONS.items():
    _name = f'{_family}_{_version}'
    PRESETS[_name] = dict(growth_rate=_k, blocks=_blocks, path=_path, near=None, conv_bias=True,
                          stem_relu=True, stem_features=None, bn_epsilon=1e-3, **_kwargs)
    PAPER_PARAMS[_name] = _PAPER_PARAMS[_family][_version]

_DENSENET = dict(path=None, near=None, attention=None, conv_bias=False, stem_relu=False, bn_epsilon=1e-5)
PRESETS.update({
    'densenet_bc_100': dict(growth_rate=12, blocks=(16, 16, 16), bottleneck=True, compression='half',
                            stem_features=None, **_DENSENET),
    'densenet_bc_250': dict(growth_rate=24, blocks=(41, 41, 41), bottleneck=True, compression='half',
                            stem_features=None, **_DENSENET),
    'densenet_bc_190': dict(growth_rate=40, blocks=(31, 31, 31), bottleneck=True, compression='half',
                            stem_features=None, **_DENSENET),
    # DenseNet (k=12, L=40) of Huang et al.: 16-channel stem, no bottleneck, no compression.
    'densenet_40': dict(growth_rate=12, blocks=(12, 12, 12), bottleneck=False, compression='none',
                        stem_features=16, **_DENSENET),
})
PAPER_PARAMS.update({'densenet_bc_100': 0.8e6, 'densenet_bc_250': 15.3e6, 'densenet_bc_190': 25.6e6,
                     'densenet_40': 1.0e6})


def names():
  return list(PRESETS)


def hyperparameters(name: str, **overrides) -> Dict[str, Any]:
  """A preset's network kwargs with `overrides` applied (None values in overrides are kept)."""
  if name not in PRESETS:
    raise ValueError(f'unknown model {name!r}; known: {", ".join(PRESETS)}')
  unknown = set(overrides) - set(network.HYPERPARAMETERS)
  if unknown:
    raise ValueError(f'unknown model field(s) {sorted(unknown)}; allowed: {", ".join(network.HYPERPARAMETERS)}')
  hp = dict(PRESETS[name])
  hp.update(overrides)
  if 'blocks' in hp:
    hp['blocks'] = tuple(hp['blocks'])
  return hp


def build(name: str, **overrides) -> network.SparseNet:
  """The named model; any network field (num_classes, path, dtype, ...) can be overridden."""
  return network.make(**hyperparameters(name, **overrides))
