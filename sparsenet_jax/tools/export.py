"""A trained model in one self-contained file, and inference on images with it.

The file is an uncompressed `.npz` (a zip of `.npy` arrays, readable by numpy from any language
and loaded here with `allow_pickle=False`: it never holds Python objects):

- `params/<module>/.../<name>` and `batch_stats/<module>/.../<name>`: every variable of the model,
  its Flax path joined with '/' (e.g. `params/block1_layer1/conv1/kernel`), float32.
- `__meta__`: uint8, the UTF-8 bytes of one JSON object:
    format: "sparsenet_jax.export", format_version: 1,
    model: the architecture it was trained with, `ModelSpec.architecture()` (growth_rate, blocks,
      connectivity, path, near, bottleneck, attention, compression, ..., num_classes),
    preset, dataset, step: where it came from (informational); fingerprint, num_classes, augment,
      train_size, steps_per_epoch: the rest of the run's description (run.json), when it has them,
    image_shape: [H, W, C] of the training images,
    class_names: one per class, or [] when the data had none,
    mean, std: per channel, 0..255 pixel units: inputs are (pixels - mean) / std.

Only model code, the run description's checks (pure Python) and the image decoder are imported here, so
a file can be used for inference without the training code, the data or the run's workdir:
`model, variables, meta = load_exported(path)`, then `predict`.
"""
from __future__ import annotations

import json
import os
import zipfile
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from sparsenet_jax.data import images as image_files
from sparsenet_jax.errors import ExportError
from sparsenet_jax.model import counting
from sparsenet_jax.model import network
from sparsenet_jax.model.spec import ModelSpec
from sparsenet_jax.training import description

FORMAT = 'sparsenet_jax.export'
FORMAT_VERSION = 1
META_KEY = '__meta__'
COLLECTIONS = ('params', 'batch_stats')
META_FIELDS = ('model', 'preset', 'dataset', 'step', 'image_shape', 'class_names', 'mean', 'std')
# The rest of the run's description, carried along where the checkpoint has it (older ones do not).
DESCRIPTION_FIELDS = ('fingerprint', 'num_classes', 'augment', 'train_size', 'steps_per_epoch')


def leaves(tree: Mapping[str, Any], prefix: str = '') -> Dict[str, Any]:
  """{'params': {'stem': {'kernel': x}}} -> {'params/stem/kernel': x}."""
  out = {}
  for key, value in tree.items():
    if isinstance(value, Mapping):
      out.update(leaves(value, f'{prefix}{key}/'))
    else:
      out[prefix + key] = value
  return out


def _nest(arrays: Mapping[str, np.ndarray]) -> Dict[str, Any]:
  tree: Dict[str, Any] = {}
  for path, value in arrays.items():
    *parents, leaf = path.split('/')
    node = tree
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return tree


def exported_header(path: str) -> Optional[Dict[str, Any]]:
  """The JSON header of an exported model at `path`, or None if the file is not one."""
  try:
    if not zipfile.is_zipfile(path):
      return None
    with np.load(path, allow_pickle=False) as npz:
      if META_KEY not in npz.files:
        return None
      return json.loads(npz[META_KEY].tobytes().decode())
  except (OSError, ValueError, EOFError, zipfile.BadZipFile):
    return None


def save_exported(path: str, variables: Mapping[str, Any], meta: Mapping[str, Any], source: str = '',
                  overwrite: bool = False) -> None:
  """Writes `variables` ({'params', 'batch_stats'}) and `meta` (a checkpoint's record) to `path`.

  `source` (the run's workdir) is recorded in the header. An existing `path` is replaced only if it is a
  regular file (never a directory or a symbolic link) and an export of the same run, or with `overwrite`.
  Written to a temporary file first, so an interrupted or failed export leaves no half file under `path`,
  and the temporary file is removed.
  """
  missing = [f for f in META_FIELDS if f not in meta]
  if missing:
    raise ExportError(f'meta lacks {", ".join(missing)}')
  source = os.path.abspath(source) if source else ''
  if os.path.islink(path) or (os.path.lexists(path) and not os.path.isfile(path)):
    what = 'a symbolic link' if os.path.islink(path) else 'a directory' if os.path.isdir(path) else 'not a file'
    raise ExportError(f'{path} is {what}; an export replaces only a regular file, even with --overwrite: '
                      'choose another --out')
  if os.path.lexists(path) and not overwrite:
    old = exported_header(path) if os.path.isfile(path) else None
    if old is None or not source or old.get('source') != source:
      what = (f'an export of {old.get("source") or "another run"}' if old is not None else
              'not an exported model')
      raise ExportError(f'{path} exists and is {what}: add --overwrite to replace it, or choose another --out')
  header = {'format': FORMAT, 'format_version': FORMAT_VERSION, **{f: meta[f] for f in META_FIELDS},
            **{f: meta[f] for f in DESCRIPTION_FIELDS if f in meta}, 'source': source}
  arrays = {path_: np.asarray(v) for path_, v in
            leaves(jax.device_get({c: variables.get(c, {}) for c in COLLECTIONS})).items()}
  arrays[META_KEY] = np.frombuffer(json.dumps(header).encode(), np.uint8)
  tmp = f'{path}.tmp{os.getpid()}'
  try:
    with open(tmp, 'wb') as f:  # a file object: given a name, np.savez would append '.npz' to it
      np.savez(f, **arrays)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def load_exported(path: str) -> Tuple[network.SparseNet, Dict[str, Any], Dict[str, Any]]:
  """(model, {'params', 'batch_stats'}, meta) from a file `save_exported` wrote."""
  if not os.path.isfile(path):
    raise ExportError(f'no such file: {path}')
  if not zipfile.is_zipfile(path):
    raise ExportError(f'{path} is not an exported model (not an .npz archive)')
  try:
    with np.load(path, allow_pickle=False) as npz:
      arrays = {key: npz[key] for key in npz.files}
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    raise ExportError(f'cannot read {path} as an exported model: {" ".join(str(e).split())}') from e
  if META_KEY not in arrays:
    raise ExportError(f'{path} is an .npz but not an exported model (it has no {META_KEY})')
  meta = _header(path, arrays.pop(META_KEY))
  model = network.make(ModelSpec.from_json(meta['model']).canonical())  # `_header` built it once
  shapes = counting.abstract_variables(model, tuple(meta['image_shape']))
  want = {p: tuple(v.shape) for p, v in leaves(dict(shapes)).items()}
  have = {p: tuple(v.shape) for p, v in arrays.items()}
  if want != have:
    first = sorted(set(want.items()) ^ set(have.items()))[0][0]
    shown = {p: list(s) if s else 'missing' for p, s in (('want', want.get(first)), ('have', have.get(first)))}
    raise ExportError(f'{path}: its variables do not fit the model its header describes ({first}: the model '
                      f'has {shown["want"]}, the file {shown["have"]}); export it again')
  for name, array in arrays.items():
    if not np.issubdtype(array.dtype, np.floating):
      raise ExportError(f'{path}: {name} is {array.dtype}, not floating point; export it again')
    if not np.all(np.isfinite(array)):
      raise ExportError(f'{path}: {name} holds NaN or infinite values (a damaged file, or a model that '
                        'diverged); export a good checkpoint again')
  return model, _nest(arrays), meta


def _header(path: str, raw: np.ndarray) -> Dict[str, Any]:
  """The `__meta__` of an exported file, checked as a run description is (`Description.problem`): JSON,
  this format, every field, a model this version builds, statistics and class names that fit it."""
  try:
    meta = json.loads(raw.tobytes().decode('utf-8'))
  except ValueError as e:  # UnicodeDecodeError too
    raise ExportError(f'{path}: its {META_KEY} is not a JSON header ({" ".join(str(e).split())}); '
                      'the file is damaged: export it again') from None
  if not isinstance(meta, dict):
    raise ExportError(f'{path}: its {META_KEY} holds a JSON {type(meta).__name__}, not a header; export it again')
  if meta.get('format') != FORMAT or meta.get('format_version') != FORMAT_VERSION:
    raise ExportError(f'{path} is format {meta.get("format")!r} version {meta.get("format_version")}; '
                      f'this code reads {FORMAT!r} version {FORMAT_VERSION}')
  missing = [f for f in META_FIELDS if f not in meta]
  if missing:
    raise ExportError(f'{path}: its {META_KEY} lacks {", ".join(missing)}; export it again')
  try:
    problem = description.Description.from_json(meta).problem()
  except (TypeError, ValueError) as e:
    problem = str(e)
  if problem:
    raise ExportError(f'{path}: its {META_KEY} is unusable: {problem}; export it again')
  return meta


# ----------------------------------------------------------------------------------------------------
# Inference.


def load_image(path: str, image_shape: Sequence[int]) -> np.ndarray:
  """An image file of any size as the model saw its training images: uint8 (H, W, C).

  Resized (bilinear, antialiased when shrinking) to the training size and converted to grayscale or
  RGB to match the training channels; EXIF orientation is applied first, as a viewer would. A file that
  cannot be decoded (`images.read`: not an image, cut short, empty, over the decoder's limit) is an
  ExportError.
  """
  height, width, channels = image_shape
  mode = {1: 'L', 3: 'RGB'}.get(channels)
  if mode is None:
    raise ExportError(f'the model takes {channels}-channel images; image files give 1 (grayscale) or 3 (RGB)')
  try:
    return image_files.read(path, mode, size=(width, height), orient=True)
  except image_files.ImageFileError as e:
    raise ExportError(str(e)) from None


def logits(model: network.SparseNet, variables: Mapping[str, Any], meta: Mapping[str, Any],
           images: np.ndarray, batch_size: int = 256) -> np.ndarray:
  """Logits (N, num_classes) of uint8 images (N, H, W, C), normalised as in evaluation."""
  mean, std = jnp.asarray(meta['mean'], jnp.float32), jnp.asarray(meta['std'], jnp.float32)

  @jax.jit
  def forward(variables, images):
    return model.apply(variables, (images.astype(jnp.float32) - mean) / std, train=False)

  return np.concatenate([np.asarray(forward(variables, images[i:i + batch_size]))
                         for i in range(0, len(images), batch_size)])


def predict(model: network.SparseNet, variables: Mapping[str, Any], meta: Mapping[str, Any],
            images: np.ndarray) -> np.ndarray:
  """Class probabilities (N, num_classes) of uint8 images (N, H, W, C)."""
  return np.asarray(jax.nn.softmax(logits(model, variables, meta, images), axis=-1))


def top_k(probabilities: np.ndarray, class_names: Sequence[str], k: int = 5) -> List[Tuple[int, str, float]]:
  """The k most likely classes of one image as (index, name, probability); names default to indices."""
  order = np.argsort(-probabilities, kind='stable')[:k]
  return [(int(i), class_names[i] if i < len(class_names) else str(i), float(probabilities[i]))
          for i in order]
