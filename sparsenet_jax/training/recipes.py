"""The training recipes of the paper and of DenseNet, per dataset: schedules, lengths and dropout.

The owner of "how long the paper trained": configs build their fields from these, and the report asks
`paper_epochs` to flag runs shorter than the paper's. Pure Python (no JAX), so the report reads it free.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

# docs/model.md section 4: the authors' scripts. SGD with Nesterov momentum 0.9, batch 64, L2 1e-4.
SPARSENET: Dict[str, Dict[str, Any]] = {
    'cifar10': dict(num_epochs=280.0, lr_boundaries_epochs=(150.0, 200.0, 250.0),
                    learning_rates=(0.1, 0.01, 0.001, 0.0002)),
    'cifar100': dict(num_epochs=280.0, lr_boundaries_epochs=(150.0, 200.0, 250.0),
                     learning_rates=(0.1, 0.01, 0.001, 0.0002)),
    'svhn': dict(num_epochs=40.0, lr_boundaries_epochs=(20.0, 30.0), learning_rates=(0.1, 0.01, 0.001)),
}
# DenseNet's own recipe (Huang et al. 2017), docs/model.md section 4: batch 64, the rate 0.1 divided by 10
# at 50% and 75% of training, 300 epochs on CIFAR and 40 on SVHN, and dropout 0.2 after every conv but
# the first on the datasets trained without augmentation (SVHN). The DenseNet baselines train with it,
# and so do the paper's experiments "set as DenseNet" (Fig. 7's caption) and on DenseNet-40 (Figs. 1, 3).
DENSENET: Dict[str, Dict[str, Any]] = {
    'cifar10': dict(num_epochs=300.0, lr_boundaries_epochs=(150.0, 225.0), learning_rates=(0.1, 0.01, 0.001)),
    'cifar100': dict(num_epochs=300.0, lr_boundaries_epochs=(150.0, 225.0), learning_rates=(0.1, 0.01, 0.001)),
    'svhn': dict(num_epochs=40.0, lr_boundaries_epochs=(20.0, 30.0), learning_rates=(0.1, 0.01, 0.001)),
}
DENSENET_DROPOUT = {'svhn': 0.2}  # datasets without augmentation
# DenseNet's ImageNet recipe (Huang et al. 2017, Section 4.2 "Training"): batch 256, SGD
# with Nesterov momentum 0.9, weight decay 1e-4, 90 epochs, the rate 0.1 divided by 10 at epochs 30 and 60;
# the rate scales linearly with the batch (0.1 x batch / 256), so another batch keeps the schedule's shape.
IMAGENET = dict(batch_size=256, num_epochs=90.0, lr_boundaries_epochs=(30.0, 60.0), weight_decay=1e-4)
IMAGENET_BASE_RATE, IMAGENET_BASE_BATCH = 0.1, 256


def imagenet_learning_rates(batch_size: int) -> Tuple[float, float, float]:
  """The ImageNet recipe's three rates for a global batch of `batch_size`: 0.1 x batch / 256, then / 10."""
  rate = IMAGENET_BASE_RATE * batch_size / IMAGENET_BASE_BATCH
  return (rate, rate / 10, rate / 100)


def paper_epochs(dataset: str) -> Optional[float]:
  """How long the paper trained on `dataset` (Table 2), or None for data the paper did not use."""
  recipe = SPARSENET.get(dataset)
  return recipe['num_epochs'] if recipe else None
