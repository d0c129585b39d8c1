"""CIFAR-10, CIFAR-100 and SVHN (cropped digits) from their canonical archives, without TensorFlow.

First use: the archives tensorflow-datasets itself downloads (same URLs, sizes and SHA-256 sums) are fetched
into DATA_DIR/downloads, verified, decoded without unpickling (CIFAR's binary version: fixed-size records
read with numpy; SVHN's .mat files with scipy.io.loadmat) and cached as one uncompressed DATA_DIR/NAME.npz,
written under a temporary name and renamed when complete. Later runs read only that file. The arrays, label
order and class names are tfds's: the same files decoded the same way (tests/test_download.py runs tfds's own
generators on the same archives). A tfds-prepared copy, where one exists, is read instead (`tfds_copy`).
"""
from __future__ import annotations

import os
import tarfile
import zipfile
import zlib
from typing import Dict, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from sparsenet_jax.data import download
from sparsenet_jax.data import tfds_copy
from sparsenet_jax.data.base import DataError, Loaded, Split
from sparsenet_jax.data.download import Remote

# From tensorflow-datasets 4.9.10's checksum files: url_checksums/cifar10.txt, url_checksums/cifar100.txt and
# datasets/svhn_cropped/checksums.tsv (URL, size in bytes, SHA-256). A mirror must serve these exact bytes.
ARCHIVES: Dict[str, Tuple[Remote, ...]] = {
    'cifar10': (Remote('cifar-10-binary.tar.gz', 'https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz',
                       170052171, 'c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd'),),
    'cifar100': (Remote('cifar-100-binary.tar.gz', 'https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz',
                        168513733, '58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec'),),
    'svhn': (Remote('train_32x32.mat', 'http://ufldl.stanford.edu/housenumbers/train_32x32.mat',
                    182040794, '435e94d69a87fde4fd4d7f3dd208dfc32cb6ae8af2240d066de1df7508d083b8'),
             Remote('test_32x32.mat', 'http://ufldl.stanford.edu/housenumbers/test_32x32.mat',
                    64275384, 'cdce80dfb2a2c4c6160906d0bd7c68ec5a99d7ca4831afa54f09182025b6a75b'),
             Remote('extra_32x32.mat', 'http://ufldl.stanford.edu/housenumbers/extra_32x32.mat',
                    1329278602, 'a133a4beb38a00fcdda90c9489e0c04f900b660ce8a316a5e854838379a71eb3')),
}


class Layout(NamedTuple):
  tfds_name: str
  train_splits: Tuple[str, ...]  # concatenated in this order; SVHN trains on train + extra, as in the paper
  test_split: str
  num_classes: int


LAYOUTS = {
    'cifar10': Layout('cifar10', ('train',), 'test', 10),
    'cifar100': Layout('cifar100', ('train',), 'test', 100),
    'svhn': Layout('svhn_cropped', ('train', 'extra'), 'test', 10),
}
CACHE_VERSION = 1
IMAGE_SHAPE = (32, 32, 3)

# CIFAR binary archives: member prefix, train files, test files, class-name file, label bytes per record and
# which of them is the label tfds uses (CIFAR-100: coarse then fine; tfds's `label` is the fine one).
_CIFAR = {
    'cifar10': ('cifar-10-batches-bin/', tuple(f'data_batch_{i}.bin' for i in range(1, 6)), ('test_batch.bin',),
                'batches.meta.txt', 1, 0),
    'cifar100': ('cifar-100-binary/', ('train.bin',), ('test.bin',), 'fine_label_names.txt', 2, 1),
}
_PIXELS = 32 * 32 * 3
_DECODE_ERRORS = (OSError, EOFError, ValueError, KeyError, IndexError, tarfile.TarError, zlib.error)


class Prepared(NamedTuple):
  cache: str  # the .npz every later run reads
  fetched: Tuple[Tuple[str, int], ...]  # (URL, bytes) downloaded by this call
  examples: Dict[str, int]  # per split
  created: bool  # False: the cache was already there


def cache_path(directory: str, name: str) -> str:
  return os.path.join(directory, f'{name}.npz')


def load(name: str, cfg, need_test: bool) -> Loaded:
  """The registered loader: the cache, else a tfds-prepared copy, else download and prepare."""
  configured = getattr(cfg, 'data_dir', None)
  directory = download.data_dir(configured)
  layout = LAYOUTS[name]
  if not os.path.isfile(cache_path(directory, name)) and tfds_copy.present(layout.tfds_name, configured):
    try:
      return tfds_copy.load(layout.tfds_name, layout.train_splits, layout.test_split, configured, need_test)
    except DataError as e:
      download.say(f'not using the tfds copy: {e}')
  prepared = prepare(name, directory, allow_download=getattr(cfg, 'download', True),
                     mirror=getattr(cfg, 'mirror', None))
  return read(name, prepared.cache, need_test)


def offline_message(name: str, directory: str, missing: Sequence[Remote]) -> str:
  files = ', '.join(f'{r.filename} ({r.size} bytes, sha256 {r.sha256}, from {r.url})' for r in missing)
  return (f'{name} is not prepared in {directory} and dataset.download=False: put {files} in '
          f'{os.path.join(directory, download.DOWNLOADS)}/ (or run launch/prepare_data.py --dataset={name} '
          f'--data_dir={directory} where there is internet)')


def prepare(name: str, directory: str, allow_download: bool = True, mirror: Optional[str] = None) -> Prepared:
  """Makes DIRECTORY/NAME.npz unless it exists; one process per directory does it, the others wait."""
  cache = cache_path(directory, name)
  if os.path.lexists(cache) and not os.path.isfile(cache):
    raise DataError(f'{cache} is not a file (the prepared {name} goes there): move it aside and run again')
  if os.path.isfile(cache):
    check_cache(name, cache)
    return Prepared(cache, (), {}, False)
  try:
    os.makedirs(directory, exist_ok=True)
  except OSError as e:
    raise DataError(f'cannot create data directory {directory}: {download.reason(e)}') from e
  with download.locked(directory, name):
    if os.path.isfile(cache):  # another process prepared it while this one waited
      check_cache(name, cache)
      return Prepared(cache, (), {}, False)
    downloads = os.path.join(directory, download.DOWNLOADS)
    download.remove_partial(directory, os.path.basename(cache))
    for remote in ARCHIVES[name]:
      download.remove_partial(downloads, remote.filename)
    missing = [r for r in ARCHIVES[name] if not os.path.isfile(os.path.join(downloads, r.filename))]
    if missing and not allow_download:
      raise DataError(offline_message(name, directory, missing))
    fetched = []  # archives this call downloaded: deleted once decoded, or on any failure
    try:
      paths = {}
      for remote in ARCHIVES[name]:
        path = paths[remote.filename] = os.path.join(downloads, remote.filename)
        if remote in missing:
          url = remote.url_from(mirror)
          download.fetch(remote, url, path)
          fetched.append((path, url, remote.size))
        else:
          download.verify(path, remote)  # placed by hand: kept whatever happens
      splits, class_names = _decode(name, paths)
      _write_cache(cache, splits, class_names)
    except OSError as e:  # what the steps above do not name themselves: an unreadable file, a directory
      raise DataError(f'preparing {name} in {directory} failed ({download.reason(e)}); nothing was '
                      'cached') from e
    finally:
      for path, _, _ in fetched:
        if os.path.exists(path):
          os.remove(path)
      if os.path.isdir(downloads) and not os.listdir(downloads):
        os.rmdir(downloads)
  return Prepared(cache, tuple((url, size) for _, url, size in fetched),
                  {split: len(labels) for split, (_, labels) in splits.items()}, True)


def _decode(name: str, paths: Dict[str, str]):
  """({split: (images, labels)}, class names) from the verified archives, or a DataError."""
  from scipy.io import matlab  # pylint: disable=g-import-not-at-top  (only SVHN needs scipy)
  try:
    splits, class_names = (_decode_svhn if name == 'svhn' else _decode_cifar)(name, paths)
  except (*_DECODE_ERRORS, matlab.MatReadError) as e:
    names = ', '.join(paths)
    raise DataError(f'cannot decode {names} ({type(e).__name__}: {download.reason(e)}); nothing was cached; '
                    'run again to retry') from e
  if len(class_names) != LAYOUTS[name].num_classes:
    raise DataError(f'{name}: the archive names {len(class_names)} classes, expected '
                    f'{LAYOUTS[name].num_classes}; nothing was cached')
  for split, (images, labels) in splits.items():
    if len(labels) and int(labels.max()) >= len(class_names):
      raise DataError(f'{name} {split}: label {int(labels.max())} is outside 0..{len(class_names) - 1}; '
                      'nothing was cached')
  return splits, class_names


def _decode_cifar(name: str, paths: Dict[str, str]):
  prefix, train_files, test_files, names_file, label_bytes, label_at = _CIFAR[name]
  (archive,) = paths.values()
  wanted = {prefix + f for f in (*train_files, *test_files, names_file)}
  found = {}
  with tarfile.open(archive, 'r:gz') as tar:  # one pass: a gzip stream cannot seek back cheaply
    for member in tar:
      if member.name in wanted and member.isfile():
        found[member.name] = tar.extractfile(member).read()
  if wanted - set(found):
    raise KeyError(f'{os.path.basename(archive)} lacks {", ".join(sorted(wanted - set(found)))}')
  # As tfds reads them: one name per line, blank lines dropped (and stripped, as a prepared copy stores them).
  text = found[prefix + names_file].decode('utf-8')
  class_names = tuple(n.strip() for n in text.split('\n') if n.strip())
  splits = {split: _cifar_records([found[prefix + f] for f in files], label_bytes, label_at, name)
            for split, files in (('train', train_files), ('test', test_files))}
  return splits, class_names


def _cifar_records(blobs: Sequence[bytes], label_bytes: int, label_at: int, where: str):
  """Records of `label_bytes` label bytes then 3072 pixel bytes (R, G, B planes of 32 rows): NHWC, labels."""
  record = label_bytes + _PIXELS
  for blob in blobs:
    if len(blob) % record:
      raise ValueError(f'{where}: a file of {len(blob)} bytes is not a whole number of {record}-byte records')
  rows = np.concatenate([np.frombuffer(blob, np.uint8).reshape(-1, record) for blob in blobs])
  images = np.ascontiguousarray(rows[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
  return images, rows[:, label_at].astype(np.int32)


def _decode_svhn(name: str, paths: Dict[str, str]):
  del name
  from scipy import io  # pylint: disable=g-import-not-at-top
  splits = {}
  for filename, path in paths.items():
    mat = io.loadmat(path, variable_names=('X', 'y'))
    images, labels = mat.pop('X'), mat.pop('y')
    if images.ndim != 4 or images.shape[:3] != IMAGE_SHAPE or images.dtype != np.uint8:
      raise ValueError(f'{filename}: X is {images.dtype} {images.shape}, expected uint8 32 x 32 x 3 x N')
    labels = labels.reshape(-1)
    if len(labels) != images.shape[-1] or not len(labels) or labels.min() < 1 or labels.max() > 10:
      raise ValueError(f'{filename}: y must hold one label in 1..10 per image')
    # H x W x C x N -> N x H x W x C, as tfds's np.rollaxis; label 10 is the digit 0, as tfds maps it.
    images = np.ascontiguousarray(np.moveaxis(images, -1, 0))
    splits[filename.split('_')[0]] = (images, (labels.astype(np.int64) % 10).astype(np.int32))
  return splits, tuple(str(d) for d in range(10))


def _write_cache(path: str, splits, class_names: Sequence[str]) -> None:
  arrays = {'version': np.array(CACHE_VERSION), 'class_names': np.array(class_names, dtype=str)}
  for split, (images, labels) in splits.items():
    arrays[f'{split}_image'], arrays[f'{split}_label'] = images, labels
  try:
    with download.atomic_file(path) as f:
      np.savez(f, **arrays)
  except OSError as e:
    need = sum(a.nbytes for a in arrays.values())
    raise DataError(f'writing {path} failed ({download.reason(e)}); nothing was cached; it needs '
                    f'{download.megabytes(need)}: free space and run again') from e


_CACHE_ERRORS = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error)


def _damaged(name: str, path: str, why: str) -> DataError:
  return DataError(f'the prepared {name} {path} is damaged ({why}); delete it and run again (or run '
                   f'launch/prepare_data.py --dataset={name}) to prepare it anew')


def check_cache(name: str, path: str) -> Tuple[str, ...]:
  """The class names of a prepared cache, its arrays checked from their headers alone (no pixel is read):
  every member there, this format's version, uint8 images N x 32 x 32 x 3 with one integer label each,
  each member as long as its header says (a cut file fails here; changed bytes fail their CRC in `read`).
  DataError naming the file and what to do otherwise."""
  layout = LAYOUTS[name]
  splits = (*layout.train_splits, layout.test_split)
  try:
    with zipfile.ZipFile(path) as z:
      missing = [k for k in ('version', 'class_names', *(f'{s}_{a}' for s in splits for a in ('image', 'label')))
                 if f'{k}.npy' not in z.namelist()]
      if missing:
        raise ValueError(f'it lacks {", ".join(missing)}')
      headers = {}
      for member in z.infolist():
        with z.open(member) as f:
          shape, dtype = headers[member.filename[:-4]] = npy_header(f)
          if dtype.hasobject:
            raise ValueError(f'{member.filename} holds Python objects (never unpickled here)')
          if member.file_size - f.tell() != int(np.prod(shape)) * dtype.itemsize:
            raise ValueError(f'{member.filename} does not hold the {shape} array its header describes')
    with np.load(path, allow_pickle=False) as arrays:
      version = int(arrays['version'])
      class_names = tuple(str(n) for n in arrays['class_names'])
  except _CACHE_ERRORS as e:
    raise _damaged(name, path, f'{type(e).__name__}: {download.reason(e)}') from None
  if version != CACHE_VERSION:
    raise _damaged(name, path, f'cache format {version}, this code reads {CACHE_VERSION}')
  for split in splits:
    (images, image_dtype), (labels, label_dtype) = headers[f'{split}_image'], headers[f'{split}_label']
    if (images[1:] != IMAGE_SHAPE or image_dtype != np.uint8 or labels != images[:1]
        or not np.issubdtype(label_dtype, np.integer)):
      raise _damaged(name, path, f'{split} holds {image_dtype} images {images} and {label_dtype} labels {labels}')
  return class_names


def read(name: str, path: str, need_test: bool) -> Loaded:
  """The cached arrays (`check_cache` first); SVHN's train and extra are read straight into one array."""
  layout = LAYOUTS[name]
  class_names = check_cache(name, path)

  def split(names):
    return Split(_read_concatenated(path, [f'{s}_image' for s in names]),
                 _read_concatenated(path, [f'{s}_label' for s in names]))
  try:
    train = split(layout.train_splits)
    test = split([layout.test_split]) if need_test else None
  except _CACHE_ERRORS as e:  # a member's bytes changed: zipfile's CRC check
    raise _damaged(name, path, f'{type(e).__name__}: {download.reason(e)}') from None
  return Loaded(train=train, test=test, num_classes=layout.num_classes, class_names=class_names)


def _read_concatenated(path: str, keys: Sequence[str]) -> np.ndarray:
  """npz members `keys` (plain arrays of one dtype and trailing shape) concatenated, read in chunks into one
  preallocated array, so SVHN's 1.9 GB train + extra is never held twice."""
  with zipfile.ZipFile(path) as z:
    headers = []
    for key in keys:
      with z.open(f'{key}.npy') as f:
        headers.append(npy_header(f))
    shape, dtype = headers[0][0][1:], headers[0][1]
    if any(s[1:] != shape or d != dtype for s, d in headers) or dtype.hasobject:
      raise ValueError(f'members {", ".join(keys)} differ in shape or dtype')
    out = np.empty((sum(s[0] for s, _ in headers), *shape), dtype)
    flat, pos = out.reshape(-1).view(np.uint8), 0
    for key in keys:
      with z.open(f'{key}.npy') as f:
        member_shape, _ = npy_header(f)
        end = pos + int(np.prod(member_shape)) * dtype.itemsize
        while pos < end:
          chunk = f.read(min(1 << 24, end - pos))
          if not chunk:
            raise ValueError(f'member {key} is truncated')
          flat[pos:pos + len(chunk)] = np.frombuffer(chunk, np.uint8)
          pos += len(chunk)
  return out


def npy_header(f) -> Tuple[tuple, np.dtype]:
  """(shape, dtype) of a .npy stream, read from its header alone."""
  version = np.lib.format.read_magic(f)
  read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                 else np.lib.format.read_array_header_2_0)
  shape, fortran_order, dtype = read_header(f)
  if fortran_order:
    raise ValueError('Fortran-ordered member')
  return shape, dtype
