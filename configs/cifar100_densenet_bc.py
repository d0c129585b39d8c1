r"""CIFAR-100: the DenseNet-BC baselines of the paper's Table 2.

  python launch/main.py --config=configs/cifar100_densenet_bc.py:model=densenet_bc_100 --workdir=runs/cifar100_densenet_bc_100
  (model=densenet_bc_100 | densenet_bc_250 | densenet_bc_190)
"""
from configs import default


def get_config(arg=None):
  return default.densenet_config('cifar100', arg)
