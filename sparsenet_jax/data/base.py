"""What every data source returns, and the error a user sees (errors.DataError); no other project imports."""
from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional, Tuple

import numpy as np

from sparsenet_jax.errors import DataError  # noqa: F401 (the data sources import it from here)

# The augmentations `augment.preprocess` knows: 'cifar' (pad 4, random crop, flip) and 'none'.
AUGMENTATIONS = ('cifar', 'none')


@dataclasses.dataclass(frozen=True)
class Split:
  images: np.ndarray  # uint8, (N, H, W, C)
  labels: np.ndarray  # int32, (N,)

  def __len__(self) -> int:
    return len(self.labels)


class Loaded(NamedTuple):
  """What a registered loader returns."""
  train: Split
  test: Optional[Split]  # None when a validation split replaces it
  num_classes: int
  class_names: Optional[Tuple[str, ...]]
