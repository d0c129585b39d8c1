r"""Paper Table 3: block arrangement at equal depth, basic SparseNet-V1 (k=16, path 14) on CIFAR-10,
blocks 8-12-16 (the preset, 4.95% error) against 12-12-12 (5.36%).

  python launch/sweep.py --sweep=configs/sweeps/table3.py --workdir=$HOME/sweeps/table3
"""
from sparsenet_jax.tools import sweeps


def get_sweep(seeds=1):
  blocks = sweeps.product({'model.blocks': [(8, 12, 16), (12, 12, 12)]}, sweeps.seeds(seeds))
  return sweeps.runs('cifar10_v1', 'configs/cifar10_v1.py:variant=basic', blocks)
