r"""SVHN (train + extra), SparseNet-V2 (paper Table 2). Default SparseNet-abc; `:variant=basic|bc|abc`
picks the variant.

  python launch/main.py --config=configs/svhn_v2.py --workdir=runs/svhn_v2
  python launch/main.py --config=configs/svhn_v2.py:variant=bc --workdir=runs/svhn_v2_bc
"""
from configs import default


def get_config(arg=None):
  return default.sparsenet_config('svhn', 'v2', arg)
