"""An existing tensorflow-datasets copy of ImageNet (`imagenet2012`, ArrayRecord files) streamed through the
same Grain pipeline as an image folder (`stream`): the dataset `imagenet_tfds`, read from `dataset.data_dir`.

tfds reads ArrayRecord copies by index with `tfds.data_source`, which needs no TensorFlow. A copy stores each
image as its original JPEG bytes: the records are read with the image left encoded, and the bytes are decoded
by the project's one decoder (`images.read_bytes`) in the Grain workers, so crops, order, resume, sharding and
bad-record handling are the folder's (`stream.train_dataset`, `stream.eval_dataset`). Training reads the split
`train`, evaluation `validation`.
"""
from __future__ import annotations

import dataclasses
import functools
import glob
import os
from typing import Optional, Tuple

import numpy as np

from sparsenet_jax.data import images
from sparsenet_jax.data import stream
from sparsenet_jax.data import tfds_copy
from sparsenet_jax.data.base import DataError, Loaded

TFDS_NAME = 'imagenet2012'
SPLITS = ('train', 'validation')


@functools.lru_cache(maxsize=None)
def _source(data_dir: str, split: str):
  """The split's tfds data source, opened once per process (each Grain worker opens its own)."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel  (only a tfds copy needs it)
  return tfds.data_source(TFDS_NAME, split=split, data_dir=data_dir, download=False,
                          decoders={'image': tfds.decode.SkipDecoding()})


@dataclasses.dataclass(frozen=True, eq=False)
class Records(stream.Streamed):
  """One split of the tfds copy: record `i` of `tfds.data_source(TFDS_NAME, split=split, data_dir=data_dir)`.
  Holds only where the copy is, so a Grain worker receives a few strings and opens the files itself."""
  data_dir: str
  split: str
  root: str                # the copy's version folder, named in logs
  classes: Tuple[str, ...]
  size: int                # records in the split
  image_shape: Tuple[int, int, int]
  num_workers: int
  crop: bool = True        # every image is cropped to image_shape

  def __len__(self) -> int:
    return self.size

  def path(self, i: int) -> str:
    return f'{self.root} {self.split}[{i}]'

  def example(self, i: int) -> Tuple[Optional[np.ndarray], int]:
    record = _source(self.data_dir, self.split)[int(i)]
    try:
      pixels = images.read_bytes(record['image'], self.path(i))
    except images.ImageFileError:
      pixels = None
    return pixels, int(record['label'])

  @functools.cached_property
  def labels(self) -> np.ndarray:
    """Every record's label, read on first use (evaluation's label check), not when the copy is opened."""
    source = _source(self.data_dir, self.split)
    return np.array([source[i]['label'] for i in range(len(source))], np.int32)

  def digest(self, h) -> None:
    """Adds the copy's identity to hashlib object `h`: split, record count, and its ArrayRecord files' names and
    byte sizes (records are not read)."""
    files = sorted(glob.glob(os.path.join(self.root, f'{TFDS_NAME}-{self.split}.array_record-*')))
    h.update(repr((TFDS_NAME, self.split, self.size, self.classes, tuple(self.image_shape))).encode())
    for f in files:
      h.update(f'{os.path.basename(f)}:{os.path.getsize(f)}'.encode())


def _info(cfg):
  """(data_dir, the copy's tfds DatasetInfo, image size, workers); DataError when there is no readable copy."""
  data_dir = tfds_copy.root(getattr(cfg, 'data_dir', None))
  size, workers = stream.crop_fields(cfg)
  if not tfds_copy.present(TFDS_NAME, data_dir):
    raise DataError(f'no tfds copy of {TFDS_NAME} in {data_dir} (expected {TFDS_NAME}/<version>/*.array_record-*; '
                    'set dataset.data_dir to the tfds data directory that holds it)')
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  try:
    info = tfds.builder(TFDS_NAME, data_dir=data_dir).info
    for split in SPLITS:
      if not info.splits[split].num_examples:
        raise ValueError(f'its split {split} is empty')
  except (KeyError, ValueError, OSError, tfds.core.DatasetNotFoundError) as e:
    raise DataError(f'{os.path.join(data_dir, TFDS_NAME)} holds no readable ArrayRecord copy '
                    f'({type(e).__name__}: {" ".join(str(e).split())[:200]})') from e
  return data_dir, info, size, workers


def _records(data_dir, info, split, size, workers) -> Records:
  names = tuple(info.features['label'].names)
  return Records(data_dir, split, str(info.data_dir), names, info.splits[split].num_examples, (size, size, 3),
                 workers)


def load(cfg, need_test: bool) -> Loaded:
  """base.Loaded of `Records`: the copy's train split and, with `need_test`, its validation split."""
  data_dir, info, size, workers = _info(cfg)
  train = _records(data_dir, info, 'train', size, workers)
  test = _records(data_dir, info, 'validation', size, workers) if need_test else None
  return Loaded(train=train, test=test, num_classes=len(train.classes), class_names=train.classes)


def peek(cfg):
  """(image shape, classes, class names, training examples) from the copy's dataset_info, no record read."""
  data_dir, info, size, workers = _info(cfg)
  train = _records(data_dir, info, 'train', size, workers)
  return train.image_shape, len(train.classes), train.classes, len(train)
