"""What every data source returns, and the error a user sees (errors.DataError); no other project imports."""
from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional, Tuple

import numpy as np

from sparsenet_jax.errors import DataError  # noqa: F401 (the data sources import it from here)

# The augmentations a run can ask for: 'cifar' (pad 4, random crop, flip: `augment.preprocess`, on the
# accelerator), 'random_resized_crop' (Inception's crop and a flip: `stream`, in the Grain workers; streamed
# folders only) and 'none'.
AUGMENTATIONS = ('cifar', 'random_resized_crop', 'none')
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg')  # what an image folder's files end with, in any case


@dataclasses.dataclass(frozen=True)
class Split:
  images: np.ndarray  # uint8, (N, H, W, C)
  labels: np.ndarray  # int32, (N,)

  def __len__(self) -> int:
    return len(self.labels)

  @property
  def image_shape(self) -> tuple:
    return tuple(self.images.shape[1:])

  def digest(self, h) -> None:
    """Adds the split's pixels and labels to hashlib object `h`."""
    for a in (self.images, self.labels):
      a = np.ascontiguousarray(a)
      h.update(f'{a.dtype.str}{a.shape}'.encode())
      h.update(memoryview(a).cast('B'))


class Loaded(NamedTuple):
  """What a registered loader returns."""
  train: Split
  test: Optional[Split]  # None when a validation split replaces it
  num_classes: int
  class_names: Optional[Tuple[str, ...]]
