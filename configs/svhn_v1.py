r"""SVHN (train + extra), SparseNet-V1 (paper Table 2). Default SparseNet-abc; `:variant=basic|bc|abc`
picks the variant.

  python launch/main.py --config=configs/svhn_v1.py --workdir=runs/svhn_v1
  python launch/main.py --config=configs/svhn_v1.py:variant=bc --workdir=runs/svhn_v1_bc
"""
from configs import default


def get_config(arg=None):
  return default.sparsenet_config('svhn', 'v1', arg)
