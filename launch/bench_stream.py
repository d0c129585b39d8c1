r"""Throughput and host memory of the Grain input pipeline alone (no model, no accelerator): decoded-and-augmented
training images per second and the peak resident memory of this process and its workers.

  python launch/bench_stream.py --root=/tmp/synthetic --synthetic=2000 --workers=0,1,2 --steps=30
  python launch/bench_stream.py --root=DIR --workers=8 --batch_size=256 --steps=100 --json

The pipeline is the training one (`stream.train_dataset` and `stream.iterate`, as `steps.train_batches` runs
them): Grain's global shuffle, the random-resized crop to --image_size and the flip in --workers worker
processes, batches of --batch_size; only the copy to the devices is left out. Each worker count is timed after
--warmup batches (which include starting the workers). `peak_rss_mib` is the largest sum, sampled every 20 ms,
of the resident memory of this process and all its descendants, and `images_per_cpu_second` the images over the
CPU time (user + system) those processes spent while timed: on a shared machine, the rate one worker with a
core of its own delivers (Linux /proc).

`--synthetic=N` first writes N JPEGs of random noise, --synthetic_size (WxH) pixels, into ROOT/train/<class>
(10 classes) and one per class into ROOT/val, unless ROOT exists already.
"""
import json
import os
import threading
import time

from absl import flags
import ml_collections
import numpy as np
from PIL import Image

from sparsenet_jax import cli
from sparsenet_jax import errors
from sparsenet_jax.data import datasets
from sparsenet_jax.data import stream

flags.DEFINE_string('root', None, 'An ImageNet-layout folder: ROOT/train/<class>/*.JPEG and ROOT/val.')
flags.DEFINE_integer('synthetic', 0, 'Write this many synthetic training JPEGs into --root first (0: none).')
flags.DEFINE_string('synthetic_size', '400x350', 'WxH of the synthetic JPEGs.')
flags.DEFINE_list('workers', ['0', '1', '2'], 'Grain worker counts to time (0: decode in this process).')
flags.DEFINE_integer('image_size', 224, 'The training crop.')
flags.DEFINE_integer('batch_size', 64, 'Images per batch.')
flags.DEFINE_integer('steps', 30, 'Timed batches per worker count.')
flags.DEFINE_integer('warmup', 2, 'Untimed batches first (they include starting the workers).')
flags.DEFINE_bool('json', False, 'One JSON line per worker count instead of a table.')
flags.mark_flags_as_required(['root'])
cli.positive('image_size')
cli.positive('batch_size')
cli.positive('steps')
cli.non_negative('warmup')
cli.non_negative('synthetic', 'workers')
FLAGS = flags.FLAGS
CLASSES = 10


def write_synthetic(root: str, count: int, size: str) -> None:
  width, height = (int(v) for v in size.split('x'))
  rng = np.random.default_rng(0)
  for split, n in (('train', count), ('val', CLASSES)):
    for i in range(n):
      folder = os.path.join(root, split, f'n{i % CLASSES:08d}')
      os.makedirs(folder, exist_ok=True)
      pixels = rng.integers(0, 256, (height, width, 3), np.uint8)
      Image.fromarray(pixels).save(os.path.join(folder, f'{i:08d}.JPEG'), quality=90)


def _tree(pid: int) -> list:
  """`pid` and its descendants."""
  found, todo = [], [pid]
  while todo:
    p = todo.pop()
    found.append(p)
    try:
      for task in os.listdir(f'/proc/{p}/task'):  # a child belongs to the thread that started it
        with open(f'/proc/{p}/task/{task}/children') as f:
          todo += [int(c) for c in f.read().split()]
    except OSError:
      continue
  return found


def _tree_rss(pid: int) -> int:
  """Resident bytes of `pid` and its descendants."""
  total = 0
  for p in _tree(pid):
    try:
      with open(f'/proc/{p}/status') as f:
        total += next(int(line.split()[1]) * 1024 for line in f if line.startswith('VmRSS:'))
    except (OSError, StopIteration):
      continue
  return total


def _tree_cpu(pid: int) -> dict:
  """{process: CPU seconds (user + system) so far} for `pid` and its descendants."""
  out = {}
  for p in _tree(pid):
    try:
      with open(f'/proc/{p}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
      out[p] = (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')
    except (OSError, IndexError, ValueError):
      continue
  return out


class PeakRss:
  """The largest `_tree_rss` of this process seen while the context is open."""

  def __enter__(self):
    self.peak, self._stop = _tree_rss(os.getpid()), threading.Event()
    self._thread = threading.Thread(target=self._sample, daemon=True)
    self._thread.start()
    return self

  def _sample(self):
    while not self._stop.wait(0.02):
      self.peak = max(self.peak, _tree_rss(os.getpid()))

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()


def measure(files, workers: int) -> dict:
  steps_per_epoch = len(files) // FLAGS.batch_size
  total = FLAGS.warmup + FLAGS.steps
  dataset = stream.train_dataset(files, 0, FLAGS.batch_size, steps_per_epoch, total, 'random_resized_crop')
  with PeakRss() as rss:
    iterator = iter(stream.iterate(dataset, workers))
    for _ in range(FLAGS.warmup):
      next(iterator)
    start, cpu_start = time.perf_counter(), _tree_cpu(os.getpid())
    for _ in range(FLAGS.steps):
      next(iterator)
    seconds, cpu_end = time.perf_counter() - start, _tree_cpu(os.getpid())
    iterator.close()
  images = FLAGS.steps * FLAGS.batch_size
  cpu = sum(t - cpu_start.get(p, 0.0) for p, t in cpu_end.items())
  return {'workers': workers, 'images_per_sec': images / seconds, 'images_per_cpu_second': images / cpu,
          'peak_rss_mib': rss.peak / 2**20, 'train_images': len(files), 'image_size': FLAGS.image_size,
          'batch_size': FLAGS.batch_size, 'steps': FLAGS.steps, 'cpus': os.cpu_count(),
          'load_average_1min': os.getloadavg()[0]}


def main(argv):
  del argv
  if FLAGS.synthetic and not os.path.exists(FLAGS.root):
    write_synthetic(FLAGS.root, FLAGS.synthetic, FLAGS.synthetic_size)
  workers = [int(w) for w in FLAGS.workers]  # counts >= 0 (cli.non_negative)
  cfg = ml_collections.ConfigDict({'name': 'imagenet_folder', 'root': FLAGS.root, 'image_size': FLAGS.image_size,
                                   'num_workers': 0})
  files = datasets.load(cfg).train
  if len(files) < FLAGS.batch_size:
    raise errors.DataError(f'{FLAGS.root}/train has {len(files)} images, fewer than --batch_size')
  for w in workers:
    row = measure(files, w)
    print(json.dumps(row) if FLAGS.json else
          f'{w} workers: {row["images_per_sec"]:8,.1f} images/s, {row["images_per_cpu_second"]:6,.1f} per CPU second  '
          f'peak RSS {row["peak_rss_mib"]:7,.0f} MiB  '
          f'({len(files):,} images, load average {row["load_average_1min"]:.1f} on {row["cpus"]} CPUs)', flush=True)


def entry():
  """The shell (sparsenet_jax/cli.py): flags, one line per failure, the exit code."""
  cli.run(main)


if __name__ == '__main__':
  entry()
