r"""CIFAR-10, SparseNet-V2 (paper Table 2). Default SparseNet-abc; `:variant=basic|bc|abc` picks the variant.

  python launch/main.py --config=configs/cifar10_v2.py --workdir=runs/cifar10_v2
  python launch/main.py --config=configs/cifar10_v2.py:variant=bc --workdir=runs/cifar10_v2_bc
"""
from configs import default


def get_config(arg=None):
  return default.sparsenet_config('cifar10', 'v2', arg)
