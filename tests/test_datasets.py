"""Every source on real or generated data; every way a user's data can be wrong gives one actionable line.

Runs on a fresh clone: fixtures are written here (numpy, Pillow, scikit-learn's digits). Only
`test_image_folder_on_real_cifar_images` reads real CIFAR-10 files (../shared/data), and skips without them.
CIFAR/SVHN download and caching: tests/test_download.py.
"""
import logging
import os

import chex
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image
from sklearn import datasets as sklearn_datasets

from conftest import SHARED_DATA
from sparsenet_jax.data import datasets

CIFAR10_FOLDER = os.path.join(SHARED_DATA, 'cifar10_folder_mini')


def _cfg(name, **overrides):
  cfg = ml_collections.ConfigDict(dict(name=name, data_dir=None, download=False, train_path=None,
                                       test_path=None, root=None, validation_size=0, augment=None))
  cfg.update(overrides)
  return cfg


def _load_error(cfg):
  with pytest.raises(datasets.DataError) as info:
    datasets.load(cfg)
  message = str(info.value)
  assert '\n' not in message
  return message


def _save_npz(path, **arrays):
  np.savez(path, **arrays)
  return str(path)


# A tfds-prepared copy, mocked: no download, no TensorFlow.

@pytest.fixture
def tfds_dir(tmp_path):
  """A data_dir where tfds copies of the three datasets appear to be (tfds.testing.mock_data serves them)."""
  for name in ('cifar10', 'cifar100', 'svhn_cropped'):
    os.makedirs(tmp_path / name)
  return str(tmp_path)


@pytest.mark.parametrize('name,num_classes,aug', [('cifar10', 10, 'cifar'), ('cifar100', 100, 'cifar'),
                                                  ('svhn', 10, 'none')])
def test_tfds_sources(tfds_dir, name, num_classes, aug):
  with tfds.testing.mock_data(num_examples=6):
    data = datasets.load(_cfg(name, data_dir=tfds_dir, download=False))
  train_size = 12 if name == 'svhn' else 6  # SVHN trains on train + extra
  chex.assert_shape([data.train.images, data.train.labels], [(train_size, 32, 32, 3), (train_size,)])
  chex.assert_type([data.train.images, data.train.labels], [np.uint8, np.int32])
  chex.assert_shape(data.test.images, (6, 32, 32, 3))
  assert data.num_classes == num_classes and len(data.class_names) == num_classes
  for split in (data.train, data.test):
    assert 0 <= split.labels.min() and split.labels.max() < num_classes
  assert data.augment == aug


def test_tfds_statistics_follow_the_spec(tfds_dir):
  with tfds.testing.mock_data(num_examples=2):
    assert datasets.load(_cfg('cifar10', data_dir=tfds_dir)).mean == (125.3, 123.0, 113.9)
    assert datasets.load(_cfg('cifar100', data_dir=tfds_dir)).std == (68.2, 65.4, 70.4)
    svhn = datasets.load(_cfg('svhn', data_dir=tfds_dir))
  assert svhn.mean == (0, 0, 0) and svhn.std == (255, 255, 255)  # SVHN: divide by 255


def test_tfds_validation_comes_from_train_plus_extra(tfds_dir):
  with tfds.testing.mock_data(num_examples=6):
    data = datasets.load(_cfg('svhn', data_dir=tfds_dir, validation_size=4))
  assert len(data.train) == 8 and len(data.test) == 4


def test_absent_data_offline_names_the_directory_and_the_files(tmp_path):
  message = _load_error(_cfg('cifar10', data_dir=str(tmp_path), download=False))
  assert str(tmp_path / 'downloads') in message and 'cifar-10-binary.tar.gz' in message
  assert f'launch/prepare_data.py --dataset=cifar10 --data_dir={tmp_path}' in message
  assert 'extra_32x32.mat' in _load_error(_cfg('svhn', data_dir=str(tmp_path), download=False))


# digits: the offline default.

def test_digits_fixed_split():
  data = datasets.load(_cfg('digits'))
  assert data.train.images.shape == (1500, 8, 8, 1) and data.test.images.shape == (297, 8, 8, 1)
  assert data.train.images.dtype == np.uint8 and data.train.images.max() == 255
  assert data.num_classes == 10 and data.class_names == tuple('0123456789')
  for split in (data.train, data.test):
    assert set(np.unique(split.labels)) == set(range(10))
  np.testing.assert_allclose(data.mean, [data.train.images.mean()])
  np.testing.assert_allclose(data.std, [data.train.images.std()])
  assert data.augment == 'none'
  again = datasets.load(_cfg('digits'))
  np.testing.assert_array_equal(again.test.images, data.test.images)
  np.testing.assert_array_equal(again.train.labels, data.train.labels)


# npz, on generated CIFAR-shaped images.

@pytest.fixture(scope='module')
def cifar_npz(tmp_path_factory):
  """1,000 train and 200 test 32x32 RGB images of 10 classes, as (train_path, test_path, train arrays)."""
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (1200, 32, 32, 3), dtype=np.uint8)
  labels = np.arange(1200) % 10
  root = tmp_path_factory.mktemp('npz')
  train = _save_npz(root / 'train.npz', image=images[:1000], label=labels[:1000])
  test = _save_npz(root / 'test.npz', image=images[1000:], label=labels[1000:])
  return train, test, images[:1000], labels[:1000]


def test_npz(cifar_npz):
  train_path, test_path, images, labels = cifar_npz
  data = datasets.load(_cfg('npz', train_path=train_path, test_path=test_path))
  np.testing.assert_array_equal(data.train.images, images)
  np.testing.assert_array_equal(data.train.labels, labels)
  assert data.train.labels.dtype == np.int32
  assert len(data.test) == 200 and data.num_classes == 10 and data.class_names is None
  np.testing.assert_allclose(data.mean, images.mean(axis=(0, 1, 2)))
  np.testing.assert_allclose(data.std, images.std(axis=(0, 1, 2)))
  assert data.augment == 'cifar'  # 32x32x3: CIFAR-like


def test_npz_augment_override_and_num_classes(cifar_npz):
  train_path, test_path, _, _ = cifar_npz
  data = datasets.load(_cfg('npz', train_path=train_path, test_path=test_path, augment='none',
                            num_classes=12))
  assert data.augment == 'none' and data.num_classes == 12


def test_npz_float_labels_that_are_integers_are_accepted(tmp_path):
  path = _save_npz(tmp_path / 'a.npz', image=np.zeros((3, 4, 4, 1), np.uint8), label=np.array([0., 1., 2.]))
  data = datasets.load(_cfg('npz', train_path=path, test_path=path))
  assert data.train.labels.tolist() == [0, 1, 2] and data.augment == 'none'


def _bad_npz(tmp_path, case):
  """(train_path, test_path, overrides, expected message fragment) for one way a file can be wrong."""
  images = np.zeros((4, 4, 4, 3), np.uint8)
  labels = np.array([0, 1, 2, 3])
  good = _save_npz(tmp_path / 'good.npz', image=images, label=labels)
  bad = str(tmp_path / 'bad.npz')
  if case == 'missing file':
    return bad, good, {}, 'not found'
  if case == 'missing key':
    return _save_npz(bad, image=images, labels=labels), good, {}, 'needs image and label'
  if case == 'float images':
    return _save_npz(bad, image=images.astype(np.float32), label=labels), good, {}, 'must be uint8'
  if case == '3-D images':
    return _save_npz(bad, image=images[..., 0], label=labels), good, {}, '(N, H, W, C)'
  if case == '2-D labels':
    return _save_npz(bad, image=images, label=labels[:, None]), good, {}, 'shape (N,)'
  if case == 'length mismatch':
    return _save_npz(bad, image=images, label=labels[:3]), good, {}, '4 images but 3 labels'
  if case == 'NaN labels':
    return _save_npz(bad, image=images, label=np.array([0, 1, np.nan, 3])), good, {}, 'NaN'
  if case == 'fractional labels':
    return _save_npz(bad, image=images, label=np.array([0, 1, 1.5, 3])), good, {}, 'non-integer'
  if case == 'negative label':
    return _save_npz(bad, image=images, label=np.array([0, -1, 2, 3])), good, {}, 'outside 0..3'
  if case == 'label beyond int32':
    return _save_npz(bad, image=images, label=np.array([0, 1, 2, 2**32])), good, {}, 'int32 range'
  if case == 'test label unseen in train':
    return good, _save_npz(bad, image=images, label=np.array([0, 1, 2, 4])), {}, 'outside 0..3'
  if case == 'labels beyond num_classes':
    return good, good, {'num_classes': 3}, 'outside 0..2'
  if case == 'test shape differs':
    return good, _save_npz(bad, image=np.zeros((4, 8, 8, 3), np.uint8), label=labels), {}, 'shape'
  if case == 'pickled objects':
    return _save_npz(bad, image=np.array([None] * 4), label=labels), good, {}, 'cannot read'
  if case == 'not an npz':
    with open(bad, 'wb') as f:
      f.write(b'not an archive')
    return bad, good, {}, 'not an .npz archive'
  if case == 'a single .npy array':
    np.save(str(tmp_path / 'single.npy'), images)
    return str(tmp_path / 'single.npy'), good, {}, 'not an .npz archive'
  if case == 'empty':
    return _save_npz(bad, image=images[:0], label=labels[:0]), good, {}, 'no examples'
  if case == 'no test and no validation':
    return good, None, {}, 'validation_size'
  if case == 'no train path':
    return None, good, {}, 'train_path'
  raise ValueError(case)


@pytest.mark.parametrize('case', [
    'missing file', 'missing key', 'float images', '3-D images', '2-D labels', 'length mismatch',
    'NaN labels', 'fractional labels', 'negative label', 'label beyond int32', 'test label unseen in train',
    'labels beyond num_classes', 'test shape differs', 'pickled objects', 'not an npz',
    'a single .npy array', 'empty', 'no test and no validation', 'no train path'])
def test_npz_errors(tmp_path, case):
  train_path, test_path, overrides, fragment = _bad_npz(tmp_path, case)
  message = _load_error(_cfg('npz', train_path=train_path, test_path=test_path, **overrides))
  assert fragment in message
  if case not in ('no test and no validation', 'no train path', 'labels beyond num_classes'):
    assert str(tmp_path) in message  # names the file


# validation_size.

def _indexed_npz(tmp_path, n=50):
  """Labels are the example indices, so where each example went is visible."""
  images = np.random.default_rng(0).integers(0, 256, (n, 4, 4, 3), dtype=np.uint8)
  return _save_npz(tmp_path / 'indexed.npz', image=images, label=np.arange(n)), images


def test_validation_is_carved_from_train_fixed_and_disjoint(tmp_path):
  path, images = _indexed_npz(tmp_path)
  data = datasets.load(_cfg('npz', train_path=path, validation_size=10))
  assert len(data.train) == 40 and len(data.test) == 10
  train, held_out = set(data.train.labels.tolist()), set(data.test.labels.tolist())
  assert not train & held_out and train | held_out == set(range(50))
  np.testing.assert_array_equal(data.test.images, images[data.test.labels])
  np.testing.assert_allclose(data.mean, images[data.train.labels].mean(axis=(0, 1, 2)))  # from train only
  again = datasets.load(_cfg('npz', train_path=path, validation_size=10))
  np.testing.assert_array_equal(again.test.labels, data.test.labels)


def test_validation_replaces_the_digits_test_split():
  data = datasets.load(_cfg('digits', validation_size=300))
  assert len(data.train) == 1200 and len(data.test) == 300


@pytest.mark.parametrize('size,fragment', [(50, 'leaves no training images'), (-1, '>= 0')])
def test_validation_size_out_of_range(tmp_path, size, fragment):
  path, _ = _indexed_npz(tmp_path)
  assert fragment in _load_error(_cfg('npz', train_path=path, validation_size=size))


# image_folder.

def test_image_folder_on_real_cifar_images():
  if not os.path.isdir(CIFAR10_FOLDER):
    pytest.skip(f'needs the real CIFAR-10 images in {CIFAR10_FOLDER} (absent on a fresh clone)')
  data = datasets.load(_cfg('image_folder', root=CIFAR10_FOLDER))
  assert data.class_names == ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse',
                              'ship', 'truck')
  assert data.train.images.shape == (200, 32, 32, 3) and data.train.images.dtype == np.uint8
  assert data.test.images.shape == (100, 32, 32, 3)
  assert np.bincount(data.train.labels).tolist() == [20] * 10
  assert np.bincount(data.test.labels).tolist() == [10] * 10
  assert data.num_classes == 10 and data.augment == 'cifar'
  with Image.open(os.path.join(CIFAR10_FOLDER, 'train', 'bird', sorted(
      os.listdir(os.path.join(CIFAR10_FOLDER, 'train', 'bird')))[0])) as first_bird:
    np.testing.assert_array_equal(data.train.images[40], np.asarray(first_bird.convert('RGB')))


def _digits_folder(root, fmt, per_class=(6, 3)):
  """scikit-learn's digits written as root/<split>/<digit>/<i>.<fmt>, 32x32 RGB; the arrays written."""
  digits = sklearn_datasets.load_digits()
  gray = np.round(digits.images * (255 / 16)).astype(np.uint8)
  written = {}
  start = 0
  for split, count in zip(('train', 'test'), per_class):
    images, labels = [], []
    for digit in range(10):
      os.makedirs(root / split / str(digit))
      for i, index in enumerate(np.flatnonzero(digits.target == digit)[start:start + count]):
        rgb = np.repeat(np.kron(gray[index], np.ones((4, 4), np.uint8))[..., None], 3, axis=-1)
        rgb[..., 0] = 255 - rgb[..., 0]  # channels differ, so a channel mix-up shows
        path = root / split / str(digit) / f'{i:02d}.{fmt}'
        Image.fromarray(rgb).save(path, **({'quality': 95} if fmt == 'jpg' else {}))
        with Image.open(path) as decoded:
          images.append(np.asarray(decoded.convert('RGB')))
        labels.append(digit)
    written[split] = (np.stack(images), np.asarray(labels))
    start += count
  return str(root), written


@pytest.mark.parametrize('fmt', ['png', 'jpg'])
def test_image_folder_on_written_digit_images(tmp_path, fmt):
  root, written = _digits_folder(tmp_path, fmt)
  data = datasets.load(_cfg('image_folder', root=root))
  assert data.class_names == tuple('0123456789') and data.num_classes == 10
  chex.assert_trees_all_equal((data.train.images, data.train.labels), written['train'])
  chex.assert_trees_all_equal((data.test.images, data.test.labels), written['test'])
  assert data.augment == 'cifar'  # 32x32x3: CIFAR-like
  np.testing.assert_allclose(data.mean, written['train'][0].mean(axis=(0, 1, 2)))


def _folder(root, layout, size=(6, 5)):
  """Writes root/<split>/<class>/<i>.png for {split: {class: count}}; alternate images are grayscale."""
  for split, classes in layout.items():
    for name, count in classes.items():
      os.makedirs(root / split / name, exist_ok=True)
      for i in range(count):
        mode = 'L' if i % 2 else 'RGB'
        Image.new(mode, size, color=i * 40).save(root / split / name / f'{i}.png')
  return str(root)


LAYOUT = {'train': {'b': 2, 'a': 3}, 'test': {'a': 1, 'b': 1}}


def test_image_folder_decodes_to_rgb_and_sorts_classes(tmp_path):
  data = datasets.load(_cfg('image_folder', root=_folder(tmp_path, LAYOUT)))
  assert data.class_names == ('a', 'b')
  assert data.train.images.shape == (5, 5, 6, 3)  # PIL sizes are (width, height)
  assert data.train.labels.tolist() == [0, 0, 0, 1, 1] and data.test.labels.tolist() == [0, 1]
  assert data.augment == 'none'


def test_image_folder_skips_unreadable_files_with_one_warning(tmp_path, caplog):
  root = _folder(tmp_path, LAYOUT)
  for name in ('broken.png', 'truncated.jpg'):
    (tmp_path / 'train' / 'a' / name).write_bytes(b'not an image')
  (tmp_path / 'train' / 'a' / 'notes.txt').write_text('not an image file, and not counted')
  with caplog.at_level(logging.WARNING):
    data = datasets.load(_cfg('image_folder', root=root))
  assert len(data.train) == 5
  warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  warnings = [w for w in warnings if 'skipped' in w]
  assert len(warnings) == 1
  assert f'skipped 2 unreadable files under {root}, e.g. ' in warnings[0]
  assert 'broken.png' in warnings[0]


def test_image_folder_validation_needs_no_test_dir(tmp_path):
  root = _folder(tmp_path, {'train': {'a': 3, 'b': 3}})
  data = datasets.load(_cfg('image_folder', root=root, validation_size=2))
  assert len(data.train) == 4 and len(data.test) == 2


@pytest.mark.parametrize('case,fragment', [
    ('missing root', 'image folder not found'),
    ('missing test dir', 'validation_size'),
    ('empty class', os.path.join('train', 'c')),
    ('only unreadable files', os.path.join('train', 'c')),
    ('no classes', 'no class folders'),
    ('size mismatch', 'odd.png'),
    ('test class unknown', 'class(es) z'),
])
def test_image_folder_errors(tmp_path, case, fragment):
  root = tmp_path / 'data'
  layout = {'train': {'a': 2, 'b': 2}, 'test': {'a': 1}}
  if case == 'missing test dir':
    del layout['test']
  if case == 'no classes':
    layout['train'] = {}
    os.makedirs(root / 'train')
  if case != 'missing root':
    _folder(root, layout)
  if case in ('empty class', 'only unreadable files'):
    os.makedirs(root / 'train' / 'c')
  if case == 'only unreadable files':
    (root / 'train' / 'c' / '0.png').write_bytes(b'junk')
  if case == 'size mismatch':
    Image.new('RGB', (7, 7)).save(root / 'train' / 'b' / 'odd.png')
  if case == 'test class unknown':
    _folder(root, {'test': {'z': 1}})
  message = _load_error(_cfg('image_folder', root=str(root)))
  assert fragment in message and str(root) in message


# Configuration mistakes.

def test_unknown_name_lists_the_sources():
  message = _load_error(_cfg('imagenet'))
  assert all(source in message for source in datasets.SOURCES)


def test_unknown_augment():
  assert 'autoaugment' in _load_error(_cfg('digits', augment='autoaugment'))
