"""Which examples go into which batch: pure functions of (seed, epoch), so a resumed run sees exactly the
batches the uninterrupted run would have seen. The pixels themselves are augmented on the accelerator."""
from __future__ import annotations

import functools
from typing import Iterator, Tuple

import numpy as np


@functools.lru_cache(maxsize=2)
def epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  """The order of the training set in `epoch`; depends on nothing else (cached: one per epoch)."""
  perm = np.random.default_rng([seed, epoch, 0x5EED]).permutation(num_examples)
  perm.flags.writeable = False
  return perm


def train_batch_indices(seed: int, step: int, steps_per_epoch: int, batch_size: int,
                        num_examples: int) -> np.ndarray:
  """Indices of global batch `step` (counted from the start of training)."""
  epoch, position = divmod(step, steps_per_epoch)
  perm = epoch_permutation(seed, epoch, num_examples)
  return perm[position * batch_size:(position + 1) * batch_size]


def eval_batches(num_examples: int, batch_size: int) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
  """(indices, mask) per batch; the last batch is padded with index 0 and masked out, so every example
  counts exactly once and shapes stay static."""
  for start in range(0, num_examples, batch_size):
    idx = np.arange(start, min(start + batch_size, num_examples))
    mask = np.ones(batch_size, bool)
    mask[len(idx):] = False
    yield np.pad(idx, (0, batch_size - len(idx))), mask
