"""The Grain stream of an ImageNet-layout folder (`imagenet_folder`): listing, bad files, order and crops, sharding
across real processes, and a run through launch/main.py with 2 workers that is killed mid-epoch and resumed."""
import ast
import functools
import io
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import jax
import ml_collections
import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, cpu_env, restored_state, write_image_folder
from configs import imagenet
from sparsenet_jax.data import datasets
from sparsenet_jax.data import images
from sparsenet_jax.data import stream
from sparsenet_jax.errors import DataError
from sparsenet_jax.model import presets
from sparsenet_jax.model import spec as spec_lib
from sparsenet_jax.training import steps

CLASSES = ('n01', 'n02', 'n03')
BAD = ('text.JPEG', 'trunc.JPEG')  # unreadable: replaced in training, not counted in evaluation
CONVERTED = ('cmyk.JPEG', 'gray.JPEG', 'png.JPEG')  # decoded as RGB


def write_imagenet_folder(root, train=12, val=5, seed=0, bad=True):
  """root/{train,val}/<class>/*.JPEG of mixed sizes (32..64 px), coloured by class with noise; with `bad`, the
  first training class also holds each bad kind (a zero-byte file, text, a truncated JPEG, CMYK, grayscale,
  a PNG named .JPEG) and the first val class a truncated JPEG. Returns root."""
  rng = np.random.default_rng(seed)
  colours = rng.integers(40, 216, (len(CLASSES), 3))
  for split, count in (('train', train), ('val', val)):
    for c, name in enumerate(CLASSES):
      os.makedirs(os.path.join(root, split, name), exist_ok=True)
      for i in range(count):
        h, w = rng.integers(32, 65, 2)
        pixels = np.clip(colours[c] + rng.normal(0, 30, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(os.path.join(root, split, name, f'{i:03d}.JPEG'), quality=90)
  if bad:
    d = os.path.join(root, 'train', CLASSES[0])
    Image.new('CMYK', (40, 50), (10, 20, 30, 40)).save(os.path.join(d, 'cmyk.JPEG'))
    Image.new('L', (50, 40), 100).save(os.path.join(d, 'gray.JPEG'))
    Image.new('RGB', (40, 40), (1, 2, 3)).save(os.path.join(d, 'png.JPEG'), format='PNG')
    open(os.path.join(d, 'zero.JPEG'), 'wb').close()
    with open(os.path.join(d, 'text.JPEG'), 'w') as f:
      f.write('not an image')
    jpeg = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (60, 60, 3), np.uint8)).save(jpeg, 'JPEG')
    for path in (os.path.join(d, 'trunc.JPEG'), os.path.join(root, 'val', CLASSES[0], 'trunc.JPEG')):
      with open(path, 'wb') as f:
        f.write(jpeg.getvalue()[:len(jpeg.getvalue()) // 2])
  return root


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
  return write_imagenet_folder(str(tmp_path_factory.mktemp('imagenet')))


def _cfg(root, workers=0, size=32):
  return ml_collections.ConfigDict({'name': 'imagenet_folder', 'root': root, 'image_size': size,
                                    'num_workers': workers})


def test_listing_leaves_out_empty_files_and_decodes_the_convertible_ones(folder):
  data = datasets.load(_cfg(folder))
  assert data.streamed and data.image_shape == (32, 32, 3) and data.augment == 'random_resized_crop'
  assert data.class_names == CLASSES and (data.mean, data.std) == (stream.IMAGENET_MEAN, stream.IMAGENET_STD)
  names = {data.train.names[i].decode() for i in range(len(data.train))}
  assert len(data.train) == 3 * 12 + 5 and 'zero.JPEG' not in names  # zero bytes: left out when listing
  assert len(data.test) == 3 * 5 + 1
  for name in CONVERTED:
    assert stream.decode(os.path.join(folder, 'train', 'n01', name)).shape[2] == 3
  for name in BAD:
    assert stream.decode(os.path.join(folder, 'train', 'n01', name)) is None
  # The fingerprint is of the listing: the same files give the same one, one more file another.
  assert datasets.load(_cfg(folder, workers=2)).fingerprint == data.fingerprint


def test_decoding_goes_through_the_one_image_decoder_and_its_limits(folder, monkeypatch):
  path = os.path.join(folder, 'train', 'n01', '000.JPEG')
  np.testing.assert_array_equal(stream.decode(path), images.read(path))
  monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 100)  # every image here is a "decompression bomb" now
  assert stream.decode(path) is None  # skipped and counted by the stream, not a crash


def test_empty_class_folder_and_val_class_missing_from_train_are_refused(tmp_path):
  root = write_imagenet_folder(str(tmp_path / 'a'), train=2, val=1, bad=False)
  os.makedirs(os.path.join(root, 'val', 'n99'))
  with pytest.raises(DataError, match=r'val has class folder\(s\) n99 that the training split lacks'):
    datasets.load(_cfg(root))
  os.makedirs(os.path.join(root, 'train', 'n99'))  # now in train too, but empty
  with pytest.raises(DataError, match='no .png/.jpg/.jpeg files in class folder .*n99'):
    datasets.load(_cfg(root))


def _epoch_batches(files, seed, batch, process=0, processes=1, steps=None):
  spe = len(files) // batch
  return list(stream.iterate(stream.train_dataset(files, seed, batch, spe, steps or 2 * spe, 'random_resized_crop',
                                                  process, processes), 0))


def test_each_epoch_is_a_fresh_permutation_and_crops_do_not_depend_on_processes_or_resume(folder):
  files = datasets.load(_cfg(folder)).train
  one = _epoch_batches(files, 0, 8)
  spe = len(files) // 8
  epochs = [np.concatenate([b['index'] for b in one[e * spe:(e + 1) * spe]]) for e in range(2)]
  for order in epochs:
    assert len(set(order.tolist())) == spe * 8  # an example at most once per epoch
  assert not np.array_equal(epochs[0], epochs[1])
  assert one[0]['image'].shape == (8, 32, 32, 3) and one[0]['image'].dtype == np.uint8
  # The unreadable files were drawn, flagged and replaced by readable ones.
  bad = {int(i) for b in one for i in b['bad'] if i >= 0}
  assert {files.names[i].decode() for i in bad} <= set(BAD) and bad
  # Two processes: process p's parts are the p-th halves of the same global batches, pixel for pixel.
  halves = [_epoch_batches(files, 0, 8, p, 2) for p in range(2)]
  for s, whole in enumerate(one):
    for key in ('index', 'image', 'label'):
      np.testing.assert_array_equal(np.concatenate([halves[0][s][key], halves[1][s][key]]), whole[key])
  # A resume at step s reads batch s, crops and all; another seed another order.
  spe_total = len(one)
  again = list(stream.iterate(stream.train_dataset(files, 0, 8, spe, spe_total, 'random_resized_crop')[3:], 0))
  for a, b in zip(again, one[3:]):
    np.testing.assert_array_equal(a['image'], b['image'])
  assert not np.array_equal(_epoch_batches(files, 1, 8)[0]['index'], one[0]['index'])


def test_evaluation_counts_every_readable_example_once_across_processes(folder):
  files = datasets.load(_cfg(folder)).test
  parts = [list(stream.iterate(stream.eval_dataset(files, 6, p, 2), 0)) for p in range(2)]
  index = np.concatenate([b['index'][b['mask']] for part in parts for b in part])
  unreadable = [i for i in range(len(files)) if files.names[i].decode() in BAD]
  assert sorted(index.tolist()) == sorted(set(range(len(files))) - set(unreadable))
  assert all(b['image'].shape == (3, 32, 32, 3) for part in parts for b in part)


def test_an_image_folder_larger_than_max_bytes_streams_the_pixels_it_would_have_held(tmp_path):
  root = write_image_folder(str(tmp_path / 'folder'), classes=('a', 'b', 'c'), counts=(('train', 6), ('test', 4)))
  cfg = ml_collections.ConfigDict({'name': 'image_folder', 'root': root, 'num_workers': 0})
  held = datasets.load(cfg, max_bytes=18 * 32 * 32 * 3)
  streamed = datasets.load(cfg, max_bytes=18 * 32 * 32 * 3 - 1)
  assert not held.streamed and streamed.streamed and not streamed.train.crop
  assert streamed.image_shape == held.image_shape == (32, 32, 3) and streamed.augment == held.augment == 'cifar'
  np.testing.assert_allclose(streamed.mean, held.mean)  # a sample of up to 1,000 images: here all 18
  assert 'max_device_dataset_bytes' in steps.feed_summary(streamed.train, 18 * 32 * 32 * 3 - 1)
  batches = list(stream.iterate(stream.eval_dataset(streamed.test, 4), 0))
  np.testing.assert_array_equal(np.concatenate([b['image'][b['mask']] for b in batches]), held.test.images)
  np.testing.assert_array_equal(np.concatenate([b['label'][b['mask']] for b in batches]), held.test.labels)
  for batch in stream.iterate(stream.train_dataset(streamed.train, 0, 6, 3, 3, streamed.augment), 0):
    np.testing.assert_array_equal(batch['image'], held.train.images[batch['index']])  # as decoded, uncropped


# ----------------------------------------------------------------------------------------------------
# Real processes.

READER = r'''
import json, sys


def main():  # the Grain workers are spawned: they import this file, which must not start anything then
  import jax
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address=sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
  import ml_collections
  from sparsenet_jax.data import datasets, stream
  data = datasets.load(ml_collections.ConfigDict(dict(name='imagenet_folder', root=sys.argv[3], image_size=32,
                                                      num_workers=2)))
  spe = len(data.train) // 8
  ds = stream.train_dataset(data.train, 0, 8, spe, 2 * spe, data.augment, jax.process_index(), jax.process_count())
  read = [b['index'].tolist() for b in stream.iterate(ds, data.train.num_workers)]
  json.dump({'process': jax.process_index(), 'steps_per_epoch': spe, 'read': read}, open(sys.argv[4], 'w'))


if __name__ == '__main__':
  main()
'''


def _free_port():
  import socket
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_read_disjoint_slices_covering_each_epoch_once(tmp_path):
  root = write_imagenet_folder(str(tmp_path / 'folder'), bad=False)
  script = tmp_path / 'reader.py'
  script.write_text(READER)
  address = f'127.0.0.1:{_free_port()}'
  procs = [subprocess.Popen([sys.executable, str(script), address, str(p), root, str(tmp_path / f'{p}.json')],
                            env=cpu_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for p in range(2)]
  for p in procs:
    out, _ = p.communicate(timeout=500)
    assert p.returncode == 0, out[-3000:]
  reads = [json.load(open(tmp_path / f'{p}.json')) for p in range(2)]
  spe = reads[0]['steps_per_epoch']
  for e in range(2):
    mine = [set(sum(r['read'][e * spe:(e + 1) * spe], [])) for r in reads]
    assert not mine[0] & mine[1]  # disjoint
    assert len(mine[0]) == len(mine[1]) == spe * 4
    assert len(mine[0] | mine[1]) == spe * 8 == 36 - 36 % 8  # the epoch's examples, each once


def _readme_command():
  """The README's ImageNet training command, less its --workdir and --config.dataset.root (each test gives its
  own): the test runs what a reader types, so a README that changes the command changes the test."""
  line = next(line for line in open(os.path.join(ROOT, 'README.md'))
              if 'launch/main.py --config=configs/imagenet.py:' in line)
  words = shlex.split(line.split('#')[0])
  assert words[:2] == ['python', 'launch/main.py'], line
  kept = [w for w in words[2:] if not w.startswith(('--workdir=', '--config.dataset.root='))]
  assert len(kept) == len(words) - 4, line  # it names a workdir and a root
  return kept


# A small ImageNet-stem DenseNet (k=4, two blocks of 2 and 3 layers; 32 px is above its spec.min_image_size of
# 5) on 32 px crops, fp32 on the CPU, 2 Grain workers, 8 steps of 8 (an epoch of the folder is 5 steps),
# evaluated at the end only and checkpointed only when stopped.
OVERRIDES = ['--config.model.stem=imagenet', '--config.model.growth_rate=4', '--config.model.blocks=(2,3)',
             '--config.precision=fp32', '--config.dataset.image_size=32', '--config.dataset.num_workers=2',
             '--config.batch_size=8', '--config.eval_batch_size=8', '--config.num_train_steps=8',
             '--config.log_every_steps=1', '--config.eval_every_epochs=100', '--config.checkpoint_every_epochs=100']
ARGS = _readme_command() + OVERRIDES


def _main(root, workdir):
  return subprocess.Popen([sys.executable, 'launch/main.py', *ARGS, f'--config.dataset.root={root}',
                           f'--workdir={workdir}'], cwd=ROOT, env=cpu_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def _state(workdir):
  config = imagenet.get_config(ARGS[0].split(':', 1)[1])
  for override in OVERRIDES:
    key, value = override[len('--config.'):].split('=', 1)
    *parents, field = key.split('.')
    node = functools.reduce(getattr, parents, config)
    try:
      node[field] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      node[field] = value  # a string: imagenet, fp32
  assert spec_lib.min_image_size(presets.from_config(config, 3)) <= 32
  return restored_state(workdir, config, 3, 5, (32, 32, 3))


@pytest.mark.slow
def test_main_trains_with_two_workers_and_a_killed_run_resumes_bit_exact(tmp_path, folder):
  reference, workdir = _main(folder, tmp_path / 'reference'), _main(folder, tmp_path / 'killed')
  start = time.time()
  metrics = tmp_path / 'killed' / 'metrics.jsonl'
  while not metrics.exists() or not metrics.read_text().count('train_loss') >= 2:  # mid-epoch: 5 steps each
    assert workdir.poll() is None and time.time() - start < 500, workdir.communicate()[0][-3000:]
    time.sleep(0.05)
  workdir.send_signal(signal.SIGTERM)
  killed_out = workdir.communicate(timeout=300)[0]
  out = reference.communicate(timeout=500)[0]
  assert reference.returncode == 0, out[-3000:]
  assert 'streamed from' in out and 'by Grain, 2 worker processes' in out
  assert 'left out 1 empty (zero-byte) files' in out and 'unreadable file(s)' in out
  if workdir.returncode == 0:
    pytest.skip('the run finished before the signal arrived')
  assert workdir.returncode == 143, killed_out[-3000:]
  stopped = int(killed_out.split('saved checkpoint at step ')[1].split()[0])
  assert 0 < stopped < 5, killed_out[-2000:]  # inside the first epoch
  resumed = _main(folder, tmp_path / 'killed')
  out = resumed.communicate(timeout=500)[0]
  assert resumed.returncode == 0 and f'resumed from step {stopped}' in out, out[-3000:]
  finals = [[json.loads(line) for line in open(tmp_path / w / 'metrics.jsonl')] for w in ('reference', 'killed')]
  assert [r['train_loss'] for r in finals[1] if r['step'] > stopped and 'train_loss' in r] == \
      [r['train_loss'] for r in finals[0] if r['step'] > stopped and 'train_loss' in r]
  assert finals[0][-1]['num_examples'] == 15  # val: 16 files, the truncated one not counted
  for a, b in zip(jax.tree.leaves(_state(tmp_path / 'reference')), jax.tree.leaves(_state(tmp_path / 'killed'))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_main_refuses_an_empty_class_folder_in_one_line_with_exit_2(tmp_path):
  root = write_imagenet_folder(str(tmp_path / 'folder'), train=1, val=1, bad=False)
  os.makedirs(os.path.join(root, 'train', 'n04'))
  done = subprocess.run([sys.executable, 'launch/main.py', *ARGS, f'--config.dataset.root={root}',
                         f'--workdir={tmp_path / "run"}'], cwd=ROOT, env=cpu_env(), capture_output=True, text=True,
                        timeout=300)
  assert done.returncode == 2, done.stderr[-2000:]
  lines = [line for line in done.stderr.splitlines() if line.strip()]
  assert lines[-1].startswith('data error: no .png/.jpg/.jpeg files in class folder') and len(lines) == 1
  assert not (tmp_path / 'run').exists()
