"""`imagenet_tfds`: a tfds ArrayRecord copy of imagenet2012, written here without TensorFlow by tfds's own
imagenet2012 builder fed a few generated JPEGs, read by tfds.data_source and streamed through the folder's Grain
pipeline (crops, order, bad records, evaluation counts), in this process and in 2 Grain workers."""
import io
import json
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, cpu_env
from test_stream import ARGS  # the README's ImageNet command, shrunk to a small ImageNet-stem model
from sparsenet_jax.data import datasets
from sparsenet_jax.data import stream
from sparsenet_jax.errors import DataError

TRAIN, VAL = 12, 5
BAD = 7  # the training example whose "image" is not an image


def write_copy(data_dir):
  """data_dir/imagenet2012/<version>/*.array_record-*: JPEGs of 32..64 px, labels 0-2, record BAD of train
  holding text. tfds's builder writes it; only the examples it generates are replaced."""
  import tensorflow_datasets as tfds

  def examples(count, seed, bad=None):
    rng = np.random.default_rng(seed)
    for i in range(count):
      jpeg = io.BytesIO()
      h, w = rng.integers(32, 65, 2)
      Image.fromarray(rng.integers(0, 255, (h, w, 3), np.uint8)).save(jpeg, 'JPEG')
      image = b'not an image' if i == bad else jpeg.getvalue()
      yield f'{i}', {'image': image, 'label': i % 3, 'file_name': f'{i}.JPEG'}

  with tfds.core.registered.skip_registration():
    class Copy(tfds.builder_cls('imagenet2012')):  # pylint: disable=missing-class-docstring
      name = 'imagenet2012'

      def _split_generators(self, dl_manager):
        del dl_manager
        return {'train': examples(TRAIN, 0, BAD), 'validation': examples(VAL, 1)}

  Copy(data_dir=data_dir, file_format='array_record').download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=data_dir))
  return data_dir


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return write_copy(str(tmp_path_factory.mktemp('tfds')))


def _cfg(data_dir, workers=0):
  return ml_collections.ConfigDict({'name': 'imagenet_tfds', 'data_dir': data_dir, 'image_size': 32,
                                    'num_workers': workers})


def _train(data, workers, steps=6):
  ds = stream.train_dataset(data.train, 0, 4, len(data.train) // 4, steps, data.augment)
  return list(stream.iterate(ds, workers))


def test_a_tfds_copy_streams_like_a_folder(data_dir):
  data = datasets.load(_cfg(data_dir))
  assert data.streamed and (len(data.train), len(data.test)) == (TRAIN, VAL) and data.num_classes == 1000
  assert data.augment == 'random_resized_crop' and (data.mean, data.std) == (stream.IMAGENET_MEAN, stream.IMAGENET_STD)
  assert datasets.facts(_cfg(data_dir)).train_size == TRAIN
  batches = _train(data, 0)
  for epoch in (batches[:3], batches[3:]):  # each epoch a permutation of the 12 records
    assert sorted(np.concatenate([b['index'] for b in epoch]).tolist()) == list(range(TRAIN))
  assert all(b['image'].shape == (4, 32, 32, 3) and b['image'].dtype == np.uint8 for b in batches)
  # tfds stores the records shuffled: record i is not example i, but its label is the record's own.
  assert sorted(data.train.labels.tolist()) == sorted(np.arange(TRAIN) % 3)
  assert all(b['label'][k] == data.train.labels[b['index'][k]] for b in batches for k in range(4) if b['bad'][k] < 0)
  bad = {int(i) for b in batches for i in b['bad'] if i >= 0}  # flagged, replaced by the next record
  assert len(bad) == 1 and data.train.example(bad.pop())[0] is None
  assert data.train.path(3).endswith('train[3]') and data.train.example(3)[0].shape[2] == 3
  evaluated = list(stream.iterate(stream.eval_dataset(data.test, 4), 0))
  assert sorted(np.concatenate([b['index'][b['mask']] for b in evaluated]).tolist()) == list(range(VAL))
  assert sorted(np.concatenate([b['label'][b['mask']] for b in evaluated]).tolist()) == sorted(np.arange(VAL) % 3)


@pytest.mark.slow
def test_two_grain_workers_read_the_same_batches(data_dir):
  data = datasets.load(_cfg(data_dir, workers=2))
  for a, b in zip(_train(data, 2), _train(data, 0)):
    for key in ('image', 'label', 'index', 'bad'):
      np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.slow
def test_main_trains_on_a_tfds_copy_with_two_workers(data_dir, tmp_path):
  done = subprocess.run([sys.executable, 'launch/main.py', *ARGS, '--config.dataset.name=imagenet_tfds',
                         f'--config.dataset.data_dir={data_dir}', '--config.num_train_steps=3',
                         f'--workdir={tmp_path / "run"}'], cwd=ROOT, env=cpu_env(), capture_output=True, text=True,
                        timeout=500)
  assert done.returncode == 0, done.stderr[-3000:]
  assert f'{TRAIN} training images streamed from' in done.stderr and 'by Grain, 2 worker processes' in done.stderr
  assert 'unreadable file(s)' in done.stderr
  final = [json.loads(line) for line in open(tmp_path / 'run' / 'metrics.jsonl')][-1]
  assert final['step'] == 3 and final['num_examples'] == VAL


def test_a_missing_copy_is_one_data_error_naming_the_directory(tmp_path):
  with pytest.raises(DataError, match=f'no tfds copy of imagenet2012 in {tmp_path}.*dataset.data_dir'):
    datasets.load(_cfg(str(tmp_path)))
