"""Image files decoded one way, with one set of limits: `read` and `size`, for image folders (training, decoded
up front or streamed by Grain: `stream.decode`) and for predict's inputs.

PIL guards against decompression bombs by warning above `Image.MAX_IMAGE_PIXELS` pixels and refusing
above twice that; here both are one refusal, `ImageFileError`, as is everything PIL raises on a file
that is not an image, is cut short or is empty, so a caller reports one line or skips the file.
"""
from __future__ import annotations

import io
import os
import struct
import warnings
from typing import Optional, Tuple

import numpy as np
from PIL import Image
from PIL import ImageOps

from sparsenet_jax.errors import DataError

# What PIL raises on a file it cannot decode: its plugins raise more than OSError (UnidentifiedImageError).
_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error, Image.DecompressionBombWarning,
           Image.DecompressionBombError)


class ImageFileError(DataError):
  """A file that cannot be decoded as an image; the message names it and says why."""


def _opened(path) -> Image.Image:
  """`Image.open(path)` (a path or a file object), PIL's decompression-bomb warning raised as a refusal."""
  with warnings.catch_warnings():
    warnings.simplefilter('error', Image.DecompressionBombWarning)
    return Image.open(path)


def _refusal(path: str, e: BaseException) -> ImageFileError:
  if isinstance(e, (Image.DecompressionBombWarning, Image.DecompressionBombError)):
    return ImageFileError(f'{path} is larger than the image decoder accepts ({Image.MAX_IMAGE_PIXELS:,} pixels, '
                          "PIL's limit against decompression bombs); resize it")
  if isinstance(e, OSError) and e.strerror:  # the file itself: missing, a directory, no permission
    return ImageFileError(f'cannot read {path}: {e.strerror}')
  why = ' '.join(str(e).split()) or type(e).__name__
  if os.path.isfile(path) and not os.path.getsize(path):
    why = 'it is empty (0 bytes)'
  return ImageFileError(f'cannot read {path} as an image: {why}')


def read(path: str, mode: str = 'RGB', size: Optional[Tuple[int, int]] = None, orient: bool = False) -> np.ndarray:
  """The pixels of `path` as uint8 (H, W, channels of `mode`: 'L' or 'RGB'); with `orient`, its EXIF
  orientation applied first, as a viewer would; resized (bilinear, antialiased when shrinking) to `size`
  (width, height) if given. ImageFileError if it cannot be decoded."""
  return _read(path, path, mode, size, orient)


def read_bytes(data: bytes, name: str, mode: str = 'RGB') -> np.ndarray:
  """`read` of an encoded image held in memory (a record of a tfds copy); `name` says which in a refusal."""
  return _read(io.BytesIO(data), name, mode, None, False)


def _read(source, path: str, mode: str, size: Optional[Tuple[int, int]], orient: bool) -> np.ndarray:
  try:
    with _opened(source) as image:
      image = (ImageOps.exif_transpose(image) if orient else image).convert(mode)
      if size is not None and image.size != tuple(size):
        image = image.resize(tuple(size), Image.Resampling.BILINEAR)
      pixels = np.asarray(image, np.uint8)
  except _ERRORS as e:
    raise _refusal(path, e) from None
  return pixels.reshape(pixels.shape[0], pixels.shape[1], -1)


def size(path: str) -> Tuple[int, int]:
  """(width, height) of `path` from its header, without decoding it; ImageFileError as `read`."""
  try:
    with _opened(path) as image:
      return image.size
  except _ERRORS as e:
    raise _refusal(path, e) from None
