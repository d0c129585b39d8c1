r"""SVHN (train + extra), SparseNet-V3 (paper Table 2). Default SparseNet-abc; `:variant=basic|bc|abc`
picks the variant.

  python launch/main.py --config=configs/svhn_v3.py --workdir=runs/svhn_v3
  python launch/main.py --config=configs/svhn_v3.py:variant=bc --workdir=runs/svhn_v3_bc
"""
from configs import default


def get_config(arg=None):
  return default.sparsenet_config('svhn', 'v3', arg)
