"""Image folders too large for memory, streamed with Grain: listed up front, decoded per batch in worker processes.

The layout is ImageNet's: `ROOT/train/<class>/*.JPEG` and `ROOT/val/<class>/*.JPEG` (also .jpg, .jpeg, .png,
any case), classes sorted by name. Listing a split (`scan`) reads directory entries and file sizes only, so
opening 1.28 M files costs no decoding, and the dataset's fingerprint (`Files.digest`) covers class folders,
file names and byte sizes, not pixels.

Training (`train_dataset`): a Grain `MapDataset` whose element `s` is this process's part of global batch `s`,
so a resume starts at the exact step by slicing, with no iterator state to store:
- order: Grain's global shuffle, reshuffled every epoch from the run's seed; each epoch drops its last partial
  batch, as the in-memory path does;
- crops: Grain's `random_map` draws each example's random-resized crop (8%-100% of the area, aspect 3/4-4/3)
  and flip from (seed, epoch, example index), so they do not depend on the batch size, the process count or
  the number of workers;
- sharding: global batch `s` is split in contiguous parts, part `p` for JAX process `p` (the devices of
  process `p` hold that part of the mesh), and each process decodes only its parts.
Evaluation (`eval_dataset`) resizes the short side to 256 * size / 224, centre-crops `size` and pads the last
global batch with masked copies of example 0, so every example counts once across processes.

Images leave the workers as uint8; the train and eval steps normalise them on the accelerator with
ImageNet's statistics (`IMAGENET_MEAN`, `IMAGENET_STD`), as they normalise in-memory data.

Unreadable files (truncated, not an image) cannot be known without decoding: in training such an example is
replaced by the next readable file of the split (deterministic, so resume stays exact), in evaluation it is
masked out; the batches carry the index of every file that failed, and `steps` (which puts them on the
devices) warns with a count and a few names. CMYK, grayscale and palette images are converted to RGB, and a PNG
named `.JPEG` is decoded as a PNG. Zero-byte files are dropped when listing.

A tfds ArrayRecord copy of ImageNet (`tfds_stream.Records`) goes through the same pipeline: any `Streamed`
split can. An `image_folder` (ROOT/train, ROOT/test, images of one size) whose decoded training set is larger
than `config.max_device_dataset_bytes` is streamed the same way, its images used as decoded (`Files.crop`
False: one of another size counts as unreadable) and its statistics estimated from a fixed sample (`sample`).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import TYPE_CHECKING, Optional, Sequence, Tuple

from absl import flags
from absl import logging
import numpy as np
from PIL import Image

from sparsenet_jax.data import images
from sparsenet_jax.data.base import DataError, IMAGE_EXTENSIONS, Loaded

if TYPE_CHECKING:
  import grain  # imported where a pipeline is built: it brings JAX (3 s), which listing and checking need not

# ImageNet's per-channel statistics (torchvision's 0.485, 0.456, 0.406 / 0.229, 0.224, 0.225) in 0..255 units.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
CROP_AREA = (0.08, 1.0)        # random-resized crop: fraction of the image's area
CROP_ASPECT = (3 / 4, 4 / 3)   # and width / height, drawn log-uniformly
CROP_ATTEMPTS = 10             # draws before falling back to a centre crop
EVAL_RESIZE = 256 / 224        # the short side before the centre crop, relative to the crop
NAMES_SHOWN = 3                # unreadable files named in a warning
STATS_SAMPLE = 1000            # images decoded to estimate a streamed image_folder's statistics


class Streamed:
  """What the Grain pipeline reads, decoded per example in the workers: a split of a folder (`Files`) or of a
  tfds ArrayRecord copy (`tfds_stream.Records`). It has `root` (named in logs), `classes`, `image_shape`,
  `crop`, `num_workers`, `len`, `example(i)` -> (uint8 RGB pixels or None when unreadable, label), `path(i)`
  (the example's name in a warning), `labels` and `digest(h)` (the dataset's fingerprint)."""


@dataclasses.dataclass(frozen=True, eq=False)
class Files(Streamed):
  """One split of a folder, listed and not decoded: file `i` is `root/classes[labels[i]]/names[i]`.

  Held as three numpy arrays (file names as fixed-width bytes, then 12 bytes of label and size per file), so a
  worker process receives ImageNet's 1.28 M entries as a few compact buffers, not as 1.28 M Python strings.
  """
  root: str
  classes: Tuple[str, ...]
  names: np.ndarray   # bytes, the file name inside its class folder
  labels: np.ndarray  # int32
  sizes: np.ndarray   # int64, bytes on disk
  image_shape: Tuple[int, int, int]  # (H, W, 3) of the images a step receives
  crop: bool          # True: every image is cropped to image_shape (imagenet_folder); False: must have it
  num_workers: int    # Grain worker processes decoding this split

  def __len__(self) -> int:
    return len(self.labels)

  def path(self, i: int) -> str:
    return os.path.join(self.root, self.classes[self.labels[i]], self.names[i].decode())

  def example(self, i: int) -> Tuple[Optional[np.ndarray], int]:
    return decode(self.path(i)), self.labels[i]

  def digest(self, h) -> None:
    """Adds what the split is to hashlib object `h`: its class folders, file names, labels and byte sizes
    (a file rewritten with the same size is not noticed; decoding every image to find out is what a
    streamed dataset avoids)."""
    h.update(repr((self.classes, tuple(self.image_shape), self.crop)).encode())
    for a in (self.names, self.labels, self.sizes):
      h.update(f'{a.dtype.str}{a.shape}'.encode())
      h.update(np.ascontiguousarray(a).tobytes())


def class_dirs(split_dir: str) -> list:
  """The class folders of a split, sorted by name; DataError when there are none."""
  if not os.path.isdir(split_dir):
    raise DataError(f'split directory not found: {split_dir} (expected one folder per class inside)')
  classes = sorted(d for d in os.listdir(split_dir)
                   if not d.startswith('.') and os.path.isdir(os.path.join(split_dir, d)))
  if not classes:
    raise DataError(f'no class folders in {split_dir}')
  return classes


def scan(split_dir: str, classes: Optional[Sequence[str]], image_shape: Tuple[int, int, int], crop: bool,
         num_workers: int) -> Tuple[Files, list]:
  """(the split's files, the zero-byte files left out); `classes` None: the split's own class folders (train),
  else those of train, which every class folder of this split must be one of. DataError: no such folder,
  a class folder without images, or a class train lacks."""
  found = class_dirs(split_dir)
  if classes is None:
    classes = found
  unknown = sorted(set(found) - set(classes))
  if unknown:
    raise DataError(f'{split_dir} has class folder(s) {", ".join(unknown[:NAMES_SHOWN])}'
                    f'{" ..." if len(unknown) > NAMES_SHOWN else ""} that the training split lacks')
  names, labels, sizes, empty = [], [], [], []
  for label, name in enumerate(classes):
    class_dir = os.path.join(split_dir, name)
    if not os.path.isdir(class_dir):
      continue
    with os.scandir(class_dir) as entries:
      files = sorted((e.name, e.stat().st_size) for e in entries
                     if e.name.lower().endswith(IMAGE_EXTENSIONS) and e.is_file())
    if not files:
      raise DataError(f'no {"/".join(IMAGE_EXTENSIONS)} files in class folder {class_dir}')
    for file, size in files:
      if size:
        names.append(file.encode())
        labels.append(label)
        sizes.append(size)
      else:
        empty.append(os.path.join(class_dir, file))
  if not names:
    raise DataError(f'no non-empty image files under {split_dir}')
  return Files(split_dir, tuple(classes), np.array(names), np.array(labels, np.int32), np.array(sizes, np.int64),
               tuple(image_shape), crop, num_workers), empty


# ----------------------------------------------------------------------------------------------------
# Decoding and the per-example transforms (run in the worker processes; pure functions of their inputs).


def decode(path: str) -> Optional[np.ndarray]:
  """The file's pixels as uint8 RGB through the project's one decoder (`images.read`: CMYK, grayscale and
  palette images converted, the format read from the content, not the name, its decompression-bomb limit), or
  None when it cannot be decoded: the stream skips such a file and counts it instead of stopping."""
  try:
    return images.read(path)
  except images.ImageFileError:
    return None


class _Source:
  """Grain's random-access source over a split (`Streamed`): {'image', 'label', 'index', 'bad'} for example i,
  decoded.

  `replace`: an unreadable file gives the next readable file of the split (training); otherwise a 1x1 black
  image that evaluation masks out. 'index' is i; 'bad' is i when file i could not be read, else -1."""

  def __init__(self, files: Streamed, replace: bool):
    self.files, self.replace = files, replace

  def __len__(self) -> int:
    return len(self.files)

  def __getitem__(self, i: int):
    i = int(i) % len(self.files)
    for offset in range(len(self.files) if self.replace else 1):
      j = (i + offset) % len(self.files)
      pixels, label = self.files.example(j)
      if pixels is not None and (self.files.crop or pixels.shape == self.files.image_shape):
        return {'image': pixels, 'label': np.int32(label), 'index': np.int32(i),
                'bad': np.int32(-1 if offset == 0 else i)}
    if self.replace:
      raise DataError(f'no readable image among the {len(self.files)} files under {self.files.root}')
    return {'image': np.zeros((1, 1, 3), np.uint8), 'label': np.int32(self.files.example(i)[1]), 'index': np.int32(i),
            'bad': np.int32(i)}


def crop_box(height: int, width: int, rng: np.random.Generator) -> Tuple[int, int, int, int]:
  """(left, top, right, bottom) of a random-resized crop: area a uniform fraction CROP_AREA of the image's,
  width / height log-uniform in CROP_ASPECT; after CROP_ATTEMPTS misses, the largest centred crop whose
  aspect is within CROP_ASPECT."""
  log_aspect = (math.log(CROP_ASPECT[0]), math.log(CROP_ASPECT[1]))
  for _ in range(CROP_ATTEMPTS):
    area = rng.uniform(*CROP_AREA) * height * width
    aspect = math.exp(rng.uniform(*log_aspect))
    w, h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
    if 0 < w <= width and 0 < h <= height:
      top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
      return left, top, left + w, top + h
  aspect = min(max(width / height, CROP_ASPECT[0]), CROP_ASPECT[1])
  w, h = (width, round(width / aspect)) if width / height <= aspect else (round(height * aspect), height)
  left, top = (width - w) // 2, (height - h) // 2
  return left, top, left + w, top + h


def train_transform(element, rng: np.random.Generator, size: int, augment: str):
  """Random-resized crop to size x size and a random flip ('random_resized_crop'); 'as decoded': the image
  unchanged (a folder of one size); else the evaluation crop (the step on the accelerator augments)."""
  if augment == 'as decoded':
    return element
  if augment != 'random_resized_crop':
    return eval_transform(element, size)
  pixels = element['image']
  box = crop_box(pixels.shape[0], pixels.shape[1], rng)
  out = np.asarray(Image.fromarray(pixels).resize((size, size), Image.BILINEAR, box=box))
  if rng.random() < 0.5:
    out = out[:, ::-1]
  return {**element, 'image': np.ascontiguousarray(out)}


def eval_transform(element, size: int):
  """The short side resized to round(size * EVAL_RESIZE), then the centre size x size."""
  pixels = element['image']
  height, width = pixels.shape[:2]
  scale = round(size * EVAL_RESIZE) / min(height, width)
  w, h = max(size, round(width * scale)), max(size, round(height * scale))
  image = Image.fromarray(pixels).resize((w, h), Image.BILINEAR)
  left, top = (w - size) // 2, (h - size) // 2
  return {**element, 'image': np.asarray(image.crop((left, top, left + size, top + size)))}


def _with_mask(index: int, element, count: int):
  """Evaluation: padding (index >= count) and unreadable files do not count."""
  return {**element, 'mask': np.bool_(index < count and element['bad'] < 0)}


# ----------------------------------------------------------------------------------------------------
# The datasets: one element per global batch, this process's part of it.


def _local(batch_size: int, processes: int) -> int:
  if batch_size % processes:
    raise DataError(f'batch size {batch_size} is not divisible by the {processes} processes')
  return batch_size // processes


def train_dataset(files: Streamed, seed: int, batch_size: int, steps_per_epoch: int, total_steps: int,
                  augment: str, process: int = 0, processes: int = 1) -> grain.MapDataset:
  """Element s: process `process`'s contiguous part of global training batch s (s < total_steps), a dict of
  'image' (uint8, local batch x size x size x 3), 'label' and 'bad' (see the module's docstring)."""
  import grain  # pylint: disable=import-outside-toplevel
  n, local = len(files), _local(batch_size, processes)
  examples = (grain.MapDataset.source(_Source(files, replace=True)).seed(seed)
              .random_map(functools.partial(train_transform, size=files.image_shape[0],
                                            augment=augment if files.crop else 'as decoded'))
              .shuffle()  # reshuffled per epoch: it reads index e * n + i as epoch e's i-th example
              .repeat())
  used = steps_per_epoch * batch_size  # the epoch's last partial batch is dropped
  epochs = [examples[e * n:e * n + used].batch(local, drop_remainder=True)[process::processes]
            for e in range(-(-total_steps // steps_per_epoch))]
  return grain.MapDataset.concatenate(epochs)[:total_steps]


def eval_dataset(files: Streamed, batch_size: int, process: int = 0, processes: int = 1) -> grain.MapDataset:
  """Element b: process `process`'s part of global evaluation batch b, with a 'mask'; the last batch is padded
  with example 0, masked out, so every example counts once across processes."""
  import grain  # pylint: disable=import-outside-toplevel
  n, local = len(files), _local(batch_size, processes)
  examples = grain.MapDataset.source(_Source(files, replace=False))
  padding = -n % batch_size
  if padding:
    examples = grain.MapDataset.concatenate([examples, examples[:1].repeat(padding)])
  examples = examples.map_with_index(functools.partial(_with_mask, count=n))
  if files.crop:
    examples = examples.map(functools.partial(eval_transform, size=files.image_shape[0]))
  return examples.batch(local)[process::processes]


def iterate(dataset: grain.MapDataset, num_workers: int) -> grain.IterDataset:
  """Elements in order, computed ahead by `num_workers` Grain worker processes (0: in this process); each
  worker holds one batch ready and computes the next. Grain reads its absl flags when it starts workers: outside
  an absl app (a notebook, a test) they are taken at their defaults."""
  import grain  # pylint: disable=import-outside-toplevel
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  ds = dataset.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=1))
  if num_workers:
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers, per_worker_buffer_size=1))
  return ds


# ----------------------------------------------------------------------------------------------------
# The registry's source `imagenet_folder` (datasets.py): ROOT/train and ROOT/val, listed.

DEFAULT_IMAGE_SIZE = 224


def default_num_workers() -> int:
  """Every core but one (the training loop's): one worker decodes and crops about 150 ImageNet-size images
  per second of a core (docs/data.md, "Streaming with Grain"), and an accelerator wants thousands."""
  return max(1, (os.cpu_count() or 2) - 1)


def _folder_fields(cfg) -> Tuple[str, int, int]:
  root = getattr(cfg, 'root', None)
  if not root or not os.path.isdir(root):
    raise DataError(f'image folder not found: {root} (expected ROOT/train/<class>/*.JPEG and ROOT/val/<class>/*.JPEG)')
  return (root, *crop_fields(cfg))


def crop_fields(cfg) -> Tuple[int, int]:
  """(dataset.image_size, dataset.num_workers) of a streamed source, defaults filled in; DataError if invalid."""
  size = getattr(cfg, 'image_size', None) or DEFAULT_IMAGE_SIZE
  workers = getattr(cfg, 'num_workers', None)
  workers = default_num_workers() if workers is None else workers
  if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
    raise DataError(f'dataset.image_size must be a positive integer, got {size!r}')
  if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
    raise DataError(f'dataset.num_workers must be an integer >= 0, got {workers!r}')
  return size, workers


def load_folder(cfg, need_test: bool, fixed_shape: Optional[Tuple[int, int, int]] = None):
  """base.Loaded with `Files`: ROOT/train and ROOT/val cropped to dataset.image_size (imagenet_folder), or with
  `fixed_shape` ROOT/train and ROOT/test used as decoded, every image of that shape (an image_folder too large
  to decode up front). Zero-byte files are left out with a counted warning."""
  root, size, workers = _folder_fields(cfg)
  shape, crop, test_split = ((size, size, 3), True, 'val') if fixed_shape is None else (fixed_shape, False, 'test')
  train, empty = scan(os.path.join(root, 'train'), None, shape, crop, workers)
  test = None
  if need_test:
    test, more = scan(os.path.join(root, test_split), train.classes, shape, crop, workers)
    empty += more
  if empty:
    logging.warning('left out %d empty (zero-byte) files under %s, e.g. %s', len(empty), root,
                    ', '.join(empty[:NAMES_SHOWN]))
  return Loaded(train=train, test=test, num_classes=len(train.classes), class_names=train.classes)


def sample(files: Files, count: int = STATS_SAMPLE) -> np.ndarray:
  """Up to `count` images of the split, a fixed draw, decoded (those that read and have the split's shape):
  the training set's statistics, estimated without decoding all of it."""
  draw = np.sort(np.random.default_rng(0).permutation(len(files))[:count])
  images = [pixels for pixels in (files.example(int(i))[0] for i in draw)
            if pixels is not None and pixels.shape == tuple(files.image_shape)]
  if not images:
    raise DataError(f'no readable {files.image_shape[1]}x{files.image_shape[0]} image among {len(draw)} drawn '
                    f'from {files.root}')
  return np.stack(images)


def peek_folder(cfg):
  """(image shape, classes, class names, training examples) from the training split's listing."""
  root, size, workers = _folder_fields(cfg)
  train, _ = scan(os.path.join(root, 'train'), None, (size, size, 3), True, workers)
  return train.image_shape, len(train.classes), train.classes, len(train)
