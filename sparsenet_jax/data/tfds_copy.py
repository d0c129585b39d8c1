"""A copy of cifar10, cifar100 or svhn_cropped already prepared by tensorflow-datasets (ArrayRecord files),
read with `tfds.data_source`, which needs no TensorFlow.

tfds stores examples shuffled; each carries an `id` ('train_00042', 'extra_000007') that is its position in
the original file, and examples are put back in that order, so a tfds copy and the archives decoded by
`cifar_svhn` give the same arrays in the same order.
"""
from __future__ import annotations

import os
import re
from typing import Optional, Sequence, Tuple

from absl import logging
import numpy as np

from sparsenet_jax.data.base import DataError, Loaded, Split

_ID = re.compile(r'^[a-z]+_(\d+)$')


def root(data_dir: Optional[str]) -> str:
  """Where tfds keeps its datasets: `data_dir`, else $TFDS_DATA_DIR, else ~/tensorflow_datasets (tfds's rule)."""
  return os.path.expanduser(data_dir or os.environ.get('TFDS_DATA_DIR')
                            or os.path.join('~', 'tensorflow_datasets'))


def present(tfds_name: str, data_dir: Optional[str]) -> bool:
  """Whether a tfds copy may be there, decided without importing tensorflow_datasets."""
  return os.path.isdir(os.path.join(root(data_dir), tfds_name))


def load(tfds_name: str, train_splits: Tuple[str, ...], test_split: str, data_dir: Optional[str],
         need_test: bool) -> Loaded:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  (only a tfds copy needs it)
  splits = list(train_splits) + ([test_split] if need_test else [])
  try:
    sources = tfds.data_source(tfds_name, split=splits, data_dir=data_dir, download=False)
  except (KeyError, NotImplementedError, ValueError, OSError, tfds.core.DatasetNotFoundError) as e:
    reason = ' '.join(str(e).split())[:200]
    raise DataError(f'{os.path.join(root(data_dir), tfds_name)} holds no readable ArrayRecord copy '
                    f'({type(e).__name__}: {reason})') from e
  try:
    label = sources[0].dataset_info.features['label']
    return Loaded(train=read_sources(sources[:len(train_splits)]),
                  test=read_sources(sources[len(train_splits):]) if need_test else None,
                  num_classes=label.num_classes, class_names=tuple(label.names))
  except Exception as e:  # a damaged ArrayRecord file: array_record and tfds's decoders raise many types
    reason = ' '.join(str(e).split())[:200]
    raise DataError(f'the tfds copy in {os.path.join(root(data_dir), tfds_name)} is damaged ({type(e).__name__}: '
                    f'{reason}); delete it, or set dataset.data_dir to a directory without it') from e


def read_sources(sources: Sequence) -> Split:
  """Decodes every example of `sources` into one preallocated array (SVHN train + extra is 1.9 GB), each
  source in its original file order where the ids give it."""
  total = sum(len(source) for source in sources)
  images = np.empty((total, *sources[0][0]['image'].shape), np.uint8)
  labels = np.empty((total,), np.int32)
  start = 0
  for source in sources:
    logging.info('decoding %d examples of %s', len(source), source)
    ids = []
    for i, example in enumerate(source):
      images[start + i] = example['image']
      labels[start + i] = example['label']
      ids.append(example.get('id', b''))
    end = start + len(ids)
    order = file_order(ids)
    if order is not None:
      images[start:end] = images[start:end][order]  # one split's copy at a time
      labels[start:end] = labels[start:end][order]
    start = end
  return Split(images, labels)


def file_order(ids: Sequence) -> Optional[np.ndarray]:
  """The permutation that sorts examples by the index in their ids, or None when the ids carry none."""
  positions = np.empty(len(ids), np.int64)
  for i, example_id in enumerate(ids):
    text = example_id.decode() if isinstance(example_id, bytes) else str(example_id)
    match = _ID.match(text)
    if not match:
      return None
    positions[i] = int(match.group(1))
  if not np.array_equal(np.sort(positions), np.arange(len(ids))):
    return None
  return np.argsort(positions)
