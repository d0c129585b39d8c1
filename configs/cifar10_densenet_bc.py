r"""CIFAR-10: the DenseNet-BC baselines of the paper's Table 2.

  python launch/main.py --config=configs/cifar10_densenet_bc.py:model=densenet_bc_100 \
      --workdir=runs/cifar10_densenet_bc_100
  (model=densenet_bc_100 | densenet_bc_250 | densenet_bc_190 | densenet_40, or any other preset), with
  DenseNet's recipe: 300 epochs on CIFAR, 40 on SVHN (dropout 0.2), the rate 0.1 divided by 10 at 50% and
  75%
"""
from configs import default


def get_config(arg=None):
  return default.densenet_config('cifar10', arg)
