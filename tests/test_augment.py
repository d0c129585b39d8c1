"""Preprocessing against numpy references: every augmented image must be a window of the padded input."""
import functools

import jax
import numpy as np
import pytest

from sparsenet_jax.data import augment

MEAN = (125.3, 123.0, 113.9)
STD = (63.3, 62.1, 66.7)


def _uint8_images(n, size=8, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _windows(image, pad):
  """Every (dy, dx, flip) -> crop the augmentation may produce from one image, in numpy."""
  height, width = image.shape[:2]
  padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
  for dy in range(2 * pad + 1):
    for dx in range(2 * pad + 1):
      crop = padded[dy:dy + height, dx:dx + width]
      yield (dy, dx, False), crop
      yield (dy, dx, True), crop[:, ::-1]


def _which_window(image, out, pad=4):
  """The transformations that turn `image` into `out` exactly."""
  return [move for move, crop in _windows(image, pad) if np.array_equal(crop, out)]


def test_normalize_matches_numpy():
  images = _uint8_images(5)
  expected = (images.astype(np.float64) - np.array(MEAN)) / np.array(STD)
  out = augment.normalize(images, MEAN, STD)
  assert out.dtype == np.float32
  np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5, atol=1e-5)


def test_crop_flip_outputs_are_windows_of_the_zero_padded_input():
  images = np.random.default_rng(1).normal(size=(64, 8, 8, 3)).astype(np.float32)
  out = np.asarray(augment.random_crop_flip(jax.random.key(0), images))
  assert out.shape == images.shape and out.dtype == np.float32
  moves = [_which_window(image, crop) for image, crop in zip(images, out)]
  assert all(len(m) == 1 for m in moves)  # random values: exactly one window matches
  offsets = {m[0][:2] for m in moves}
  flips = {m[0][2] for m in moves}
  assert len(offsets) > 20 and flips == {False, True}  # per example, not one draw for the batch


def test_crop_flip_is_a_function_of_the_key():
  images = np.random.default_rng(2).normal(size=(16, 32, 32, 3)).astype(np.float32)
  first = augment.random_crop_flip(jax.random.key(3), images)
  again = augment.random_crop_flip(jax.random.key(3), images)
  other = augment.random_crop_flip(jax.random.key(4), images)
  np.testing.assert_array_equal(first, again)
  assert not np.array_equal(first, other)
  assert first.shape == (16, 32, 32, 3)


@pytest.mark.parametrize('aug,train', [('cifar', False), ('none', False), ('none', True)])
def test_eval_and_no_augmentation_only_normalise(aug, train):
  images = _uint8_images(4)
  out = augment.preprocess(jax.random.key(0), images, MEAN, STD, aug, train)
  np.testing.assert_array_equal(out, augment.normalize(images, MEAN, STD))


def test_eval_needs_no_key():
  images = _uint8_images(2)
  out = augment.preprocess(None, images, MEAN, STD, 'cifar', train=False)
  np.testing.assert_array_equal(out, augment.normalize(images, MEAN, STD))


def test_training_pads_with_zeros_after_normalisation():
  images = np.full((32, 8, 8, 3), 255, np.uint8)  # normalised pixels are far from zero
  out = np.asarray(augment.preprocess(jax.random.key(5), images, MEAN, STD, 'cifar', train=True))
  normalized = np.asarray(augment.normalize(images, MEAN, STD))
  for image, crop in zip(normalized, out):
    assert _which_window(image, crop)
  assert (out == 0).any()  # some crop reaches into the padding


def test_preprocess_jits():
  images = _uint8_images(8, size=32)
  step = functools.partial(augment.preprocess, mean=MEAN, std=STD, augment='cifar', train=True)
  np.testing.assert_allclose(jax.jit(step)(jax.random.key(6), images), step(jax.random.key(6), images))


def test_unknown_augment_is_refused():
  with pytest.raises(ValueError, match='unknown augment'):
    augment.preprocess(None, _uint8_images(1), MEAN, STD, 'autoaugment', train=True)
