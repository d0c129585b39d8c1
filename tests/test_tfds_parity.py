"""The same arrays, label order and class names as tensorflow-datasets, without TensorFlow: tfds's own
generators run on the archives the download tests serve, and a tfds copy (mocked) is read when present."""
import io
import os
import tarfile
import types

import chex
import numpy as np
import pytest

from download_fixtures import Server, archives, cfg, leftovers, serve
from sparsenet_jax.data import cifar_svhn
from sparsenet_jax.data import datasets
from sparsenet_jax.data import tfds_copy


@pytest.fixture
def server():
  s = Server()
  yield s
  s.close()


def _no_tensorflow(monkeypatch, module):
  """tfds's builders read files through tf.io.gfile.GFile; plain `open` is that, minus TensorFlow."""
  monkeypatch.setattr(module, 'tf', types.SimpleNamespace(io=types.SimpleNamespace(
      gfile=types.SimpleNamespace(GFile=open))))


def _tfds_cifar(name, archive, tmp_path, monkeypatch):
  """tfds's own CIFAR generator on `archive`: (class names, {split: [(key, example)]})."""
  import tensorflow_datasets as tfds
  from tensorflow_datasets.image_classification import cifar
  _no_tensorflow(monkeypatch, cifar)
  with tarfile.open(fileobj=io.BytesIO(archive), mode='r:gz') as tar:
    tar.extractall(tmp_path / 'extracted', filter='data')
  builder = tfds.builder(name, data_dir=str(tmp_path / 'tfds'))
  manager = types.SimpleNamespace(download_and_extract=lambda url: str(tmp_path / 'extracted'))
  generators = builder._split_generators(manager)  # pylint: disable=protected-access
  return builder.info.features['label'].names, {s: list(g) for s, g in generators.items()}


def _tfds_svhn(files, tmp_path, monkeypatch):
  import tensorflow_datasets as tfds
  from tensorflow_datasets.datasets.svhn_cropped import svhn_cropped_dataset_builder as svhn
  _no_tensorflow(monkeypatch, svhn)
  for filename, data in files.items():
    (tmp_path / filename).write_bytes(data)
  builder = tfds.builder('svhn_cropped', data_dir=str(tmp_path / 'tfds'))
  manager = types.SimpleNamespace(download=lambda urls: {k: str(tmp_path / os.path.basename(u))
                                                         for k, u in urls.items()})
  # pylint: disable=protected-access
  examples = {str(g.name): list(builder._generate_examples(**g.gen_kwargs))
              for g in builder._split_generators(manager)}
  return builder.info.features['label'].names, examples


@pytest.mark.parametrize('name', ['cifar10', 'cifar100', 'svhn'])
def test_same_arrays_labels_and_names_as_tfds_and_as_a_tfds_copy(server, monkeypatch, tmp_path, name):
  files, _, _ = archives(name)
  serve(server, monkeypatch, name, files)
  ours = datasets.load(cfg(name, tmp_path / 'ours', server.url))
  if name == 'svhn':
    names, generated = _tfds_svhn(files, tmp_path, monkeypatch)
  else:
    names, generated = _tfds_cifar(name, files[next(iter(files))], tmp_path, monkeypatch)
  assert tuple(names) == ours.class_names
  layout = cifar_svhn.LAYOUTS[name]
  # A tfds copy stores the generated examples shuffled; reading it puts them back in file order.
  rng = np.random.default_rng(0)
  copies = {split: [examples[i][1] for i in rng.permutation(len(examples))]
            for split, examples in generated.items()}
  for split, want in (('train', ours.train), ('test', ours.test)):
    splits = layout.train_splits if split == 'train' else (layout.test_split,)
    read = tfds_copy.read_sources([copies[s] for s in splits])
    chex.assert_trees_all_equal((read.images, read.labels), (want.images, want.labels))


def test_a_tfds_copy_is_read_when_present(monkeypatch, tmp_path):
  import tensorflow_datasets as tfds
  os.makedirs(tmp_path / 'cifar10')  # where a tfds copy would be
  with tfds.testing.mock_data(num_examples=6):
    data = datasets.load(cfg('cifar10', tmp_path, download=False))
  assert len(data.train) == 6 and len(data.test) == 6 and data.num_classes == 10
  assert leftovers(tmp_path) == []  # nothing downloaded or cached


def test_svhn_class_names_are_tfds_class_label_names():
  import tensorflow_datasets as tfds
  assert tuple(tfds.builder('svhn_cropped').info.features['label'].names) == tuple('0123456789')
  assert tfds.builder('cifar100').info.features['label'].num_classes == 100


def test_file_order_from_ids():
  assert tfds_copy.file_order([b'train_00002', b'train_00000', b'train_00001']).tolist() == [1, 2, 0]
  assert tfds_copy.file_order(['gebc ahg', 'x']) is None  # ids without positions: stored order kept
  assert tfds_copy.file_order(['train_1', 'train_1']) is None
