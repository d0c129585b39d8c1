"""The training recipes of the paper and of DenseNet, per dataset: schedules, lengths and dropout.

The owner of "how long the paper trained": configs build their fields from these, and the report asks
`paper_epochs` to flag runs shorter than the paper's. Pure Python (no JAX), so the report reads it free.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

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


def paper_epochs(dataset: str) -> Optional[float]:
  """How long the paper trained on `dataset` (Table 2), or None for data the paper did not use."""
  recipe = SPARSENET.get(dataset)
  return recipe['num_epochs'] if recipe else None
