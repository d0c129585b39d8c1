r"""SVHN (train + extra): the DenseNet-BC baselines of the paper's Table 2.

  python launch/main.py --config=configs/svhn_densenet_bc.py:model=densenet_bc_100 --workdir=runs/svhn_densenet_bc_100
  (model=densenet_bc_100 | densenet_bc_250 | densenet_bc_190)
"""
from configs import default


def get_config(arg=None):
  return default.densenet_config('svhn', arg)
