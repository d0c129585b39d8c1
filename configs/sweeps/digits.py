r"""A smoke sweep that runs anywhere in a few minutes: configs/digits.py for `seeds` seeds, `num_epochs`
epochs each (the epochs are in the run names, so a longer sweep never mistakes these for finished).

  python launch/sweep.py --sweep=configs/sweeps/digits.py --workdir=/tmp/digits_sweep --max_parallel=2
  python launch/sweep.py --sweep=configs/sweeps/digits.py:seeds=4,num_epochs=30 --workdir=/tmp/digits30
"""
from sparsenet_jax.tools import sweeps


def get_sweep(seeds=2, num_epochs=1):
  grid = sweeps.product({'num_epochs': [num_epochs]}, sweeps.seeds(seeds))
  return sweeps.runs('digits', 'configs/digits.py', grid)
