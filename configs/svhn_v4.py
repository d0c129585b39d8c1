r"""SVHN (train + extra), SparseNet-V4 (paper Table 2). Default SparseNet-abc; `:variant=basic|bc|abc`
picks the variant.

  python launch/main.py --config=configs/svhn_v4.py --workdir=runs/svhn_v4
  python launch/main.py --config=configs/svhn_v4.py:variant=bc --workdir=runs/svhn_v4_bc
"""
from configs import default


def get_config(arg=None):
  return default.sparsenet_config('svhn', 'v4', arg)
