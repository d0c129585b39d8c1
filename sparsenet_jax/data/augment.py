"""Preprocessing as pure JAX functions, so it runs on the accelerator inside the jitted step (docs/model.md section 4).

Images stay uint8 on the device (4x less memory and transfer than float32); each batch is normalised and,
when training with `augment='cifar'`, padded, cropped and flipped per example with static shapes.
"""
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from sparsenet_jax.data.base import AUGMENTATIONS



def normalize(images: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
  """(images - mean) / std per channel, in float32; mean and std are in 0..255 pixel units."""
  mean = jnp.asarray(mean, jnp.float32)
  std = jnp.asarray(std, jnp.float32)
  return (images.astype(jnp.float32) - mean) / std


def random_crop_flip(rng: jax.Array, images: jax.Array, pad: int = 4) -> jax.Array:
  """Zero-pads by `pad`, takes a random crop of the input's size and flips it left-right half the time.

  Applied after normalisation, so the padding is zero in normalised units, as in the authors' scripts.
  """
  n, height, width, channels = images.shape
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  crop_rng, flip_rng = jax.random.split(rng)
  offsets = jax.random.randint(crop_rng, (n, 2), 0, 2 * pad + 1)
  flips = jax.random.bernoulli(flip_rng, 0.5, (n,))

  def crop_flip(image, offset, flip):
    crop = lax.dynamic_slice(image, (offset[0], offset[1], 0), (height, width, channels))
    return jnp.where(flip, crop[:, ::-1], crop)

  return jax.vmap(crop_flip)(padded, offsets, flips)


def preprocess(rng: Optional[jax.Array], images: jax.Array, mean: Sequence[float], std: Sequence[float],
               augment: str, train: bool) -> jax.Array:
  """Normalises uint8 images; in training with augment='cifar', also pad-4 random crop and flip."""
  if augment not in AUGMENTATIONS:
    raise ValueError(f'unknown augment {augment!r}; choose one of {", ".join(AUGMENTATIONS)}')
  images = normalize(images, mean, std)
  if train and augment == 'cifar':
    images = random_crop_flip(rng, images)
  return images
