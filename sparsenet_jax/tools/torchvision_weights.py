"""torchvision's DenseNet weights as this project's variables, for `launch/convert_torchvision.py`.

torchvision's DenseNet-121/169/201/161 and the presets of the same names compute the same function
(docs/imagenet.md): the same layers in the same order, the block inputs concatenated oldest first, so a
state dict maps onto the variables one tensor each, only renamed and transposed (conv kernels OIHW ->
HWIO, the classifier's OI -> IO). Pure numpy: the launch script reads the `.pth` with torch and hands the
arrays here, so nothing below needs torch.
"""
from __future__ import annotations

import re
from typing import Dict, Mapping, Tuple

import numpy as np

from sparsenet_jax.data import stream
from sparsenet_jax.errors import ExportError
from sparsenet_jax.model import counting
from sparsenet_jax.model import network
from sparsenet_jax.model.spec import ModelSpec
from sparsenet_jax.tools import export

# The state dicts torchvision publishes still spell a layer's modules 'norm.1', 'conv.2' (torchvision
# renames them to 'norm1', 'conv2' when it loads one): both spellings are read.
_OLD_LAYER_KEY = re.compile(r'^(.*denselayer\d+\.(?:norm|conv))\.([12])\.(.*)$')
_BN = {'weight': ('params', 'scale'), 'bias': ('params', 'bias'), 'running_mean': ('batch_stats', 'mean'),
       'running_var': ('batch_stats', 'var')}
IGNORED = ('num_batches_tracked',)  # BatchNorm's step counter: no part of the function


def modernized(state_dict: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """The state dict with torchvision's current key names ('denselayer1.norm.1.weight' -> '...norm1.weight')
  and without the entries that hold no weights."""
  out = {}
  for key, value in state_dict.items():
    if key.rsplit('.', 1)[-1] in IGNORED:
      continue
    m = _OLD_LAYER_KEY.match(key)
    out[f'{m.group(1)}{m.group(2)}.{m.group(3)}' if m else key] = value
  return out


def _module(torch_module: str) -> str:
  """torchvision's module path (without 'features.') -> this project's module path of the same layer."""
  if torch_module == 'conv0':
    return 'stem'
  if torch_module == 'norm0':
    return 'stem_bn/bn'
  if torch_module == 'norm5':
    return 'head_bn/bn'
  m = re.fullmatch(r'denseblock(\d+)\.denselayer(\d+)\.(norm|conv)([12])', torch_module)
  if m:
    block, layer, kind, i = m.groups()
    return f'{network.layer_name(int(block) - 1, int(layer) - 1)}/{"bn" if kind == "norm" else "conv"}{i}' + (
        '/bn' if kind == 'norm' else '')
  m = re.fullmatch(r'transition(\d+)\.(norm|conv)', torch_module)
  if m:
    return f'transition{m.group(1)}/{"bn/bn" if m.group(2) == "norm" else "conv"}'
  raise ExportError(f'the state dict has {torch_module!r}, which a torchvision DenseNet does not have')


def target_key(torch_key: str) -> Tuple[str, str]:
  """(this project's variable path, how to lay out the array: 'conv', 'dense' or 'vector') of one
  torchvision key, e.g. 'features.conv0.weight' -> ('params/stem/kernel', 'conv')."""
  if torch_key in ('classifier.weight', 'classifier.bias'):
    leaf = torch_key.split('.')[1]
    return (f'params/classifier/{"kernel" if leaf == "weight" else "bias"}', 'dense' if leaf == 'weight'
            else 'vector')
  if not torch_key.startswith('features.'):
    raise ExportError(f'the state dict has {torch_key!r}, which a torchvision DenseNet does not have')
  module, leaf = torch_key[len('features.'):].rsplit('.', 1)
  path = _module(module)
  if path.endswith('/bn'):
    if leaf not in _BN:
      raise ExportError(f'the state dict has {torch_key!r}, which a torchvision DenseNet does not have')
    collection, name = _BN[leaf]
    return f'{collection}/{path}/{name}', 'vector'
  if leaf != 'weight':  # torchvision's DenseNet convs have no biases
    raise ExportError(f'the state dict has {torch_key!r}: a torchvision DenseNet conv has no {leaf}')
  return f'params/{path}/kernel', 'conv'


def _laid_out(array: np.ndarray, kind: str) -> np.ndarray:
  array = np.asarray(array, np.float32)
  if kind == 'conv' and array.ndim == 4:
    return array.transpose(2, 3, 1, 0)  # OIHW -> HWIO
  if kind == 'dense' and array.ndim == 2:
    return array.T  # (out, in) -> (in, out)
  return array


def convert(state_dict: Mapping[str, np.ndarray], spec: ModelSpec, image_shape=(224, 224, 3)
            ) -> Dict[str, np.ndarray]:
  """{'params/...': array, 'batch_stats/...': array} of `spec` from a torchvision DenseNet state dict
  (torch tensors converted to numpy by the caller). ExportError naming the first key that is missing,
  extra or of another shape than `spec` needs: a state dict of another model is refused, never bent."""
  want = {p: tuple(v.shape) for p, v in export.leaves(dict(
      counting.abstract_variables(network.make(spec.canonical()), tuple(image_shape)))).items()}
  placed = {}
  for key, value in modernized(state_dict).items():
    path, kind = target_key(key)
    if path not in want:
      raise ExportError(f'the state dict has {key!r}, which the model has no place for ({path})')
    placed[path] = key, _laid_out(value, kind)
  missing = sorted(set(want) - set(placed))
  if missing:
    raise ExportError(f'the state dict lacks the weights of {missing[0]} ({len(missing)} variables missing): '
                      'is it a DenseNet of another depth?')
  for path, (key, array) in placed.items():
    if tuple(array.shape) != want[path]:
      raise ExportError(f'{key!r} has shape {tuple(np.shape(state_dict.get(key, array)))}, but the model needs '
                        f'{want[path]} as {path} (another growth rate, width or block count?)')
  out = {path: array for path, (_, array) in placed.items()}
  return out


def write_export(path: str, state_dict: Mapping[str, np.ndarray], spec: ModelSpec, preset: str, image_shape,
                 class_names, overwrite: bool = False) -> int:
  """Converts `state_dict` for `spec` and writes it as an exported model (`export.save_exported`) that
  normalises with ImageNet's statistics, as torchvision's weights expect; returns the parameter count."""
  variables: Dict[str, Dict] = {c: {} for c in export.COLLECTIONS}
  arrays = convert(state_dict, spec, image_shape)
  for key, value in arrays.items():
    collection, *parents, leaf = key.split('/')
    node = variables[collection]
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  meta = {'model': spec.architecture(), 'preset': preset, 'dataset': 'imagenet (torchvision weights)', 'step': 0,
          'image_shape': list(image_shape), 'class_names': list(class_names), 'mean': list(stream.IMAGENET_MEAN),
          'std': list(stream.IMAGENET_STD), 'num_classes': spec.num_classes}
  export.save_exported(path, variables, meta, overwrite=overwrite)
  return sum(v.size for k, v in arrays.items() if k.startswith('params/'))


def num_classes(state_dict: Mapping[str, np.ndarray]) -> int:
  """The classifier's outputs, read off the state dict (the one architecture field it is not given)."""
  if 'classifier.bias' not in state_dict:
    raise ExportError("the state dict has no 'classifier.bias': not a torchvision DenseNet state dict")
  return int(np.shape(state_dict['classifier.bias'])[0])
