"""What every data source returns, and the one error type a user sees; no other project imports."""
from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional, Tuple

import numpy as np


# The augmentations `augment.preprocess` knows: 'cifar' (pad 4, random crop, flip) and 'none'.
AUGMENTATIONS = ('cifar', 'none')


class DataError(ValueError):
  """Bad or missing data; the message is one line a user can act on."""


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
