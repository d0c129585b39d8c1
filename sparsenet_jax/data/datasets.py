"""Whole datasets as uint8 numpy arrays, selected by `config.dataset.name`.

Every source ends as the same `Dataset`: uint8 NHWC images, int32 labels, and the per-channel statistics
and augmentation that `augment.preprocess` applies on the accelerator. Decoding happens once, here, so
the training loop only ever slices arrays.

This module owns what is known of a dataset: `facts(cfg)` says its image shape, classes, statistics,
default augmentation and size without decoding it (the registry's fixed facts, or a look at the files),
so the report, sweeps and bench ask here instead of keeping their own lists; a loaded `Dataset` adds a
fingerprint of its content, which the run description records (a resume on other data is refused).

Sources (the registry `_REGISTRY` at the end of this file: a new dataset is one entry and its loader):
- `cifar10`, `cifar100`, `svhn`: downloaded, verified and cached on first use by `cifar_svhn` (the
  archives tensorflow-datasets uses, decoded without TensorFlow), under `data_dir` (default
  $SPARSENET_DATA_DIR or ~/.cache/sparsenet_jax/datasets); a tfds-prepared copy is read where one exists.
  SVHN trains on train + extra (604,388 images) and tests on test, as in the paper.
- `digits`: scikit-learn's bundled 8x8 digits, real data with no download.
- `npz`: arrays `image` (uint8, N x H x W x C) and `label` (int) per split.
- `image_folder`: `root/<split>/<class>/*.png|jpg|jpeg`, classes sorted by name.
- `imagenet_folder`: `root/train/<class>/*.JPEG` and `root/val/...`, listed here and streamed by Grain in
  training (`stream`): its splits are `stream.Streamed`, not arrays (`Dataset.streamed`).
- `imagenet_tfds`: a tfds ArrayRecord copy of `imagenet2012` under `data_dir`, streamed the same way
  (`tfds_stream`).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import zipfile
from typing import Any, Callable, NamedTuple, Optional, Sequence, Tuple

from absl import logging
import numpy as np

from sparsenet_jax.data import cifar_svhn
from sparsenet_jax.data import images as image_files
from sparsenet_jax.data import stream
from sparsenet_jax.data import tfds_stream
from sparsenet_jax.data.base import AUGMENTATIONS, IMAGE_EXTENSIONS, DataError, Loaded, Split

__all__ = ['AUGMENTATIONS', 'DataError', 'Dataset', 'Facts', 'SOURCES', 'Split', 'facts', 'load']

# Fixed, unlike the run seed, so every run of a sweep validates on the same held-out images.
VALIDATION_SEED = 20180414
DIGITS_SEED = 0
DIGITS_TEST_SIZE = 297


class Facts(NamedTuple):
  """A dataset without its pixels: what a model, a schedule and a report need to know of it.
  None where only the data itself can tell (statistics computed from the training set)."""
  name: str
  image_shape: Optional[Tuple[int, ...]]  # (H, W, C)
  num_classes: Optional[int]
  class_names: Optional[Tuple[str, ...]]
  mean: Optional[Tuple[float, ...]]  # per channel, in 0..255 pixel units
  std: Optional[Tuple[float, ...]]
  augment: Optional[str]  # 'cifar' (pad 4 + random crop + flip) or 'none'
  train_size: Optional[int]  # training examples (after a validation split is held out)


@dataclasses.dataclass(frozen=True)
class Dataset:
  name: str
  train: Split  # or stream.Streamed (streamed data): the same len, image_shape, labels and digest
  test: Split  # the test split, or the validation split carved from train when validation_size > 0
  num_classes: int
  class_names: Optional[Tuple[str, ...]]
  mean: Tuple[float, ...]  # per channel, in 0..255 pixel units
  std: Tuple[float, ...]
  augment: str  # 'cifar' (pad 4 + random crop + flip) or 'none'

  @functools.cached_property
  def fingerprint(self) -> str:
    """A digest of the content trained and evaluated on (pixels and labels of both splits; a streamed
    folder's file names, sizes and labels, `stream.Files.digest`): the same data read from another place has
    the same fingerprint."""
    h = hashlib.sha256()
    for split in (self.train, self.test):
      split.digest(h)
    return h.hexdigest()[:16]

  @property
  def image_shape(self) -> Tuple[int, ...]:
    """(H, W, C) of the images a step receives."""
    return tuple(self.train.image_shape)

  @property
  def streamed(self) -> bool:
    """Read from files batch by batch (Grain) rather than held as arrays."""
    return isinstance(self.train, stream.Streamed)

  def facts(self) -> Facts:
    return Facts(self.name, self.image_shape, self.num_classes, self.class_names,
                 self.mean, self.std, self.augment, len(self.train))


class Source(NamedTuple):
  """One registered dataset: its loader, and the facts fixed for every copy of it (None: the files say)."""
  loader: Callable[[Any, bool], Loaded]  # (config.dataset, need_test) -> Loaded
  stats: Optional[Tuple[Tuple[float, ...], Tuple[float, ...]]] = None  # None: the training set's own
  augment: Optional[str] = None  # None: 'cifar' for 32x32 RGB images, else 'none'
  image_shape: Optional[Tuple[int, ...]] = None
  num_classes: Optional[int] = None
  class_names: Optional[Tuple[str, ...]] = None
  train_size: Optional[int] = None
  peek: Optional[Callable[[Any], Tuple[Tuple[int, ...], int, Optional[Tuple[str, ...]], int]]] = None
  # peek(config.dataset) -> (image shape, classes, class names, training examples), without decoding
  streamer: Optional[Callable[[Any, bool, Tuple[int, ...]], Loaded]] = None
  # (config.dataset, need_test, image shape) -> Loaded of stream.Files: used instead of `loader` when the
  # decoded training set would be larger than `load`'s max_bytes


def _default_augment(image_shape: Optional[Tuple[int, ...]]) -> str:
  """Unknown data gets CIFAR's augmentation only when it has CIFAR's shape."""
  return 'cifar' if tuple(image_shape or ()) == (32, 32, 3) else 'none'


def facts(cfg) -> Facts:
  """What `cfg` (config.dataset) names, without loading it: the registry's fixed facts, else a look at
  the files (an npz's array headers and labels, an image folder's classes and first image). DataError
  when the files are missing or unreadable."""
  name = cfg.name
  if name not in _REGISTRY:
    raise DataError(f'unknown dataset {name!r}; choose one of {", ".join(SOURCES)}')
  source = _REGISTRY[name]
  shape, classes, names, size = source.image_shape, source.num_classes, source.class_names, source.train_size
  if source.peek is not None:
    shape, classes, names, size = source.peek(cfg)
  size = None if size is None else size - (getattr(cfg, 'validation_size', None) or 0)
  mean, std = source.stats or (None, None)
  augment = getattr(cfg, 'augment', None) or source.augment or _default_augment(shape)
  return Facts(name, shape, classes, names, mean, std, augment, size)


def load(cfg, max_bytes: Optional[int] = None) -> Dataset:
  """The dataset `cfg` names, with its test (or validation) split, statistics and augmentation.

  A source that can also be streamed (an image folder) is, when its decoded training set is larger than
  `max_bytes` (training passes config.max_device_dataset_bytes): it is listed, and Grain decodes its batches.

  `cfg` has `name`, `data_dir`, `download`, `mirror`, `train_path`, `test_path`, `root`, `validation_size`
  and `augment` (None = the dataset's default); `npz` also reads an optional `num_classes`.
  """
  name = cfg.name
  if name not in _REGISTRY:
    raise DataError(f'unknown dataset {name!r}; choose one of {", ".join(SOURCES)}')
  augment = getattr(cfg, 'augment', None)
  if augment is not None and augment not in AUGMENTATIONS:
    raise DataError(f'unknown augment {augment!r}; choose one of {", ".join(AUGMENTATIONS)} or None')
  validation_size = getattr(cfg, 'validation_size', None) or 0
  if validation_size < 0:
    raise DataError(f'validation_size must be >= 0, got {validation_size}')

  source = _REGISTRY[name]
  loader = source.loader
  if source.streamer is not None and max_bytes is not None:
    shape, _, _, count = source.peek(cfg)
    if count * int(np.prod(shape)) > max_bytes:
      loader = functools.partial(source.streamer, fixed_shape=tuple(shape))
  loaded = loader(cfg, validation_size == 0)
  train, test = loaded.train, loaded.test
  streamed = isinstance(train, stream.Streamed)
  if validation_size and streamed:
    raise DataError(f'dataset.validation_size is not supported when {name} is streamed: it evaluates on its '
                    'own split (ROOT/val or ROOT/test)')
  if validation_size:
    train, test = _carve_validation(train, validation_size)
  mean, std = source.stats or _channel_stats(stream.sample(train) if streamed else train.images)
  if augment is None:
    augment = source.augment or _default_augment(train.image_shape)
  if augment == 'random_resized_crop' and not (streamed and train.crop):
    raise DataError(f'augment random_resized_crop crops from the original images of an imagenet_folder; '
                    f'{name} takes cifar or none')
  return Dataset(name=name, train=train, test=test, num_classes=loaded.num_classes,
                 class_names=loaded.class_names, mean=mean, std=std, augment=augment)


def _carve_validation(train: Split, size: int) -> Tuple[Split, Split]:
  """(train without the validation images, validation): a fixed draw of `size` images, order kept."""
  if size >= len(train):
    raise DataError(f'validation_size {size} leaves no training images (train has {len(train)})')
  held_out = np.zeros(len(train), bool)
  held_out[np.random.default_rng(VALIDATION_SEED).permutation(len(train))[:size]] = True
  return (Split(train.images[~held_out], train.labels[~held_out]),
          Split(train.images[held_out], train.labels[held_out]))


def _channel_stats(images: np.ndarray, chunk: int = 4096) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
  """Per-channel mean and std in pixel units, in chunks so a large uint8 array is never copied to float."""
  total = np.zeros(images.shape[-1])
  squares = np.zeros(images.shape[-1])
  for start in range(0, len(images), chunk):
    block = images[start:start + chunk].astype(np.float64)
    total += block.sum(axis=(0, 1, 2))
    squares += np.square(block).sum(axis=(0, 1, 2))
  count = images.size // images.shape[-1]
  mean = total / count
  std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
  # A constant channel carries no information; dividing it by 1 keeps it finite.
  std = np.where(std > 0, std, 1.0)
  return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def _load_digits(cfg, need_test: bool) -> Loaded:
  del cfg, need_test  # fixed split
  from sklearn import datasets as sklearn_datasets  # pylint: disable=import-outside-toplevel  # 2 s to import
  digits = sklearn_datasets.load_digits()
  images = np.round(digits.images * (255 / 16)).astype(np.uint8)[..., None]  # 0..16 -> 0..255
  labels = digits.target.astype(np.int32)
  order = np.random.default_rng(DIGITS_SEED).permutation(len(labels))
  train, test = np.sort(order[DIGITS_TEST_SIZE:]), np.sort(order[:DIGITS_TEST_SIZE])
  return Loaded(train=Split(images[train], labels[train]), test=Split(images[test], labels[test]),
                num_classes=10, class_names=tuple(str(d) for d in range(10)))


def _load_npz(cfg, need_test: bool) -> Loaded:
  train_path = getattr(cfg, 'train_path', None)
  test_path = getattr(cfg, 'test_path', None)
  if not train_path:
    raise DataError('dataset.name=npz needs dataset.train_path, an .npz file with arrays image and label')
  if need_test and not test_path:
    raise DataError('dataset.name=npz needs dataset.test_path, or dataset.validation_size > 0 '
                    'to hold out part of train_path instead')
  images, labels = _read_npz(train_path)
  num_classes = getattr(cfg, 'num_classes', None) or int(labels.max()) + 1
  train = _checked_split(images, labels, num_classes, train_path)
  test = None
  if need_test:
    images, labels = _read_npz(test_path)
    if images.shape[1:] != train.images.shape[1:]:
      raise DataError(f'{test_path} has images of shape {images.shape[1:]}, '
                      f'but {train_path} has {train.images.shape[1:]}')
    test = _checked_split(images, labels, num_classes, test_path)
  return Loaded(train=train, test=test, num_classes=num_classes, class_names=None)


def _peek_npz(cfg):
  """(image shape, classes, None, examples) of an npz training file: the array headers and the labels."""
  path = getattr(cfg, 'train_path', None)
  if not path:
    raise DataError('dataset.name=npz needs dataset.train_path, an .npz file with arrays image and label')
  if not os.path.isfile(path) or not zipfile.is_zipfile(path):
    raise DataError(f'npz file not found: {path}' if not os.path.isfile(path) else
                    f'{path} is not an .npz archive; save image and label with np.savez')
  try:
    with zipfile.ZipFile(path) as z, z.open('image.npy') as f:
      shape, _ = cifar_svhn.npy_header(f)
    with np.load(path, allow_pickle=False) as arrays:
      labels = arrays['label']
  except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
    raise DataError(f'cannot read {path} as an .npz with arrays image and label: {" ".join(str(e).split())}') from e
  if len(shape) != 4 or not labels.size:
    raise DataError(f'{path}: image must have shape (N, H, W, C) and label at least one value')
  classes = getattr(cfg, 'num_classes', None) or int(np.max(labels)) + 1
  return tuple(int(d) for d in shape[1:]), classes, None, int(shape[0])


def _read_npz(path: str) -> Tuple[np.ndarray, np.ndarray]:
  """(images, int64 labels) from one file, each wrong shape or type reported as a DataError."""
  if not os.path.isfile(path):
    raise DataError(f'npz file not found: {path}')
  if not zipfile.is_zipfile(path):
    raise DataError(f'{path} is not an .npz archive; save image and label with np.savez')
  try:
    with np.load(path, allow_pickle=False) as arrays:
      files = arrays.files
      found = {key: arrays[key] for key in ('image', 'label') if key in files}
  except (OSError, ValueError, zipfile.BadZipFile) as e:
    reason = ' '.join(str(e).split())
    raise DataError(f'cannot read {path} as an .npz of plain arrays: {reason}') from e
  if len(found) < 2:
    raise DataError(f'{path} has array(s) {", ".join(files) or "none"}; it needs image and label')
  images, labels = found['image'], found['label']
  if images.dtype != np.uint8 or images.ndim != 4:
    raise DataError(f'{path}: image must be uint8 with shape (N, H, W, C), '
                    f'got {images.dtype} with shape {images.shape}')
  if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer)
                              or np.issubdtype(labels.dtype, np.floating)):
    raise DataError(f'{path}: label must be integers with shape (N,), '
                    f'got {labels.dtype} with shape {labels.shape}')
  if np.issubdtype(labels.dtype, np.floating):
    if not np.all(np.isfinite(labels)):
      raise DataError(f'{path}: label contains NaN or infinite values')
    if np.any(labels != np.round(labels)):
      raise DataError(f'{path}: label contains non-integer values')
  if len(images) != len(labels):
    raise DataError(f'{path}: {len(images)} images but {len(labels)} labels')
  if not len(labels):
    raise DataError(f'{path}: no examples')
  if np.abs(labels).max() >= 2**31:
    raise DataError(f'{path}: label values exceed the int32 range; labels are class indices 0..C-1')
  return images, labels.astype(np.int64)


def _checked_split(images: np.ndarray, labels: np.ndarray, num_classes: int, path: str) -> Split:
  low, high = int(labels.min()), int(labels.max())
  if low < 0 or high >= num_classes:
    raise DataError(f'{path}: labels span {low}..{high}, outside 0..{num_classes - 1} '
                    f'(num_classes={num_classes})')
  return Split(images, labels.astype(np.int32))


def _load_image_folder(cfg, need_test: bool) -> Loaded:
  root = getattr(cfg, 'root', None)
  if not root or not os.path.isdir(root):
    raise DataError(f'image folder not found: {root} (expected ROOT/train/<class>/*.png|jpg)')
  classes = stream.class_dirs(os.path.join(root, 'train'))
  skipped = []
  train = _read_folder(os.path.join(root, 'train'), classes, None, skipped)
  test = None
  if need_test:
    test_dir = os.path.join(root, 'test')
    if not os.path.isdir(test_dir):
      raise DataError(f'split directory not found: {test_dir}; add it, or set dataset.validation_size > 0 '
                      'to hold out part of train instead')
    unknown = sorted(set(stream.class_dirs(test_dir)) - set(classes))
    if unknown:
      raise DataError(f'{test_dir} has class(es) {", ".join(unknown)} that {root}/train lacks')
    test = _read_folder(test_dir, classes, train.images.shape[1:], skipped)
  if skipped:
    logging.warning('skipped %d unreadable files under %s, e.g. %s', len(skipped), root, skipped[0])
  return Loaded(train=train, test=test, num_classes=len(classes), class_names=tuple(classes))


def _peek_image_folder(cfg):
  """(image shape, classes, class names, examples) of an image folder: its class folders and first image."""
  root = getattr(cfg, 'root', None)
  if not root or not os.path.isdir(root):
    raise DataError(f'image folder not found: {root} (expected ROOT/train/<class>/*.png|jpg)')
  train = os.path.join(root, 'train')
  classes = stream.class_dirs(train)
  files = [os.path.join(train, c, f) for c in classes for f in sorted(os.listdir(os.path.join(train, c)))
           if f.lower().endswith(IMAGE_EXTENSIONS)]
  if not files:
    raise DataError(f'no .png/.jpg/.jpeg images under {train}')
  width, height = image_files.size(files[0])
  return (height, width, 3), len(classes), tuple(classes), len(files)


def _read_folder(split_dir: str, classes: Sequence[str], shape: Optional[tuple], skipped: list) -> Split:
  """Decodes every image of the class folders present in `split_dir`; `shape` (H, W, 3) all must share."""
  images, labels = [], []
  for label, name in enumerate(classes):
    class_dir = os.path.join(split_dir, name)
    if not os.path.isdir(class_dir):
      continue
    before = len(images)
    for file in sorted(os.listdir(class_dir)):
      path = os.path.join(class_dir, file)
      if not file.lower().endswith(IMAGE_EXTENSIONS):
        continue
      try:
        pixels = image_files.read(path, 'RGB')
      except image_files.ImageFileError:
        skipped.append(path)
        continue
      shape = shape or pixels.shape
      if pixels.shape != shape:
        raise DataError(f'{path} is {pixels.shape[1]}x{pixels.shape[0]}, but the other images are '
                        f'{shape[1]}x{shape[0]}; resize the folder to one size')
      images.append(pixels)
      labels.append(label)
    if len(images) == before:
      raise DataError(f'no readable .png/.jpg/.jpeg images in class folder {class_dir}')
  return Split(np.stack(images), np.asarray(labels, np.int32))


# The registry: dataset name -> loader and what is fixed about it. docs/model.md section 4: the authors'
# CIFAR constants; SVHN is only divided by 255 and trains on train + extra (604,388 images).
_REGISTRY = {
    'cifar10': Source(functools.partial(cifar_svhn.load, 'cifar10'),
                      ((125.3, 123.0, 113.9), (63.3, 62.1, 66.7)), 'cifar', cifar_svhn.IMAGE_SHAPE, 10,
                      None, 50_000),
    'cifar100': Source(functools.partial(cifar_svhn.load, 'cifar100'),
                       ((129.3, 124.1, 112.4), (68.2, 65.4, 70.4)), 'cifar', cifar_svhn.IMAGE_SHAPE, 100,
                       None, 50_000),
    'svhn': Source(functools.partial(cifar_svhn.load, 'svhn'), ((0.0, 0.0, 0.0), (255.0, 255.0, 255.0)),
                   'none', cifar_svhn.IMAGE_SHAPE, 10, None, 604_388),
    'digits': Source(_load_digits, augment='none', image_shape=(8, 8, 1), num_classes=10,
                     class_names=tuple(str(d) for d in range(10)), train_size=1797 - DIGITS_TEST_SIZE),
    'npz': Source(_load_npz, peek=_peek_npz),
    'image_folder': Source(_load_image_folder, peek=_peek_image_folder, streamer=stream.load_folder),
    'imagenet_folder': Source(stream.load_folder, (stream.IMAGENET_MEAN, stream.IMAGENET_STD),
                              'random_resized_crop', peek=stream.peek_folder),
    'imagenet_tfds': Source(tfds_stream.load, (stream.IMAGENET_MEAN, stream.IMAGENET_STD), 'random_resized_crop',
                            peek=tfds_stream.peek),
}
SOURCES = tuple(_REGISTRY)


def fixed_image_shape(name: str) -> Optional[Tuple[int, ...]]:
  """The image shape the registry fixes for dataset `name` (CIFAR, SVHN, digits), without a look at any
  file; None where only the files say (folders, npz files, streams) or the name is unknown."""
  source = _REGISTRY.get(name)
  return None if source is None else source.image_shape
