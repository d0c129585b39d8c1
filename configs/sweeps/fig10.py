r"""Paper Fig. 10: where to drop connections. Basic SparseNet-V1 (path 14) on CIFAR-10 keeping the
far-near split 14-0, 10-4, 7-7 (the default), 4-10 and 0-14: `near` = 0, 4, 7, 10, 14.

  python launch/sweep.py --sweep=configs/sweeps/fig10.py --workdir=$HOME/sweeps/fig10
"""
from sparsenet_jax.tools import sweeps


def get_sweep(seeds=1):
  near = sweeps.product({'model.near': [0, 4, 7, 10, 14]}, sweeps.seeds(seeds))
  return sweeps.runs('cifar10_v1_path14', 'configs/cifar10_v1.py:variant=basic', near)
