r"""Paper Fig. 7: SparseNet-V1 on CIFAR-10 without attention, with the paper's attention and with SE.

Basic SparseNet-V1 (k=16, path 14, no bottleneck or compression): the paper says "SparseNet-V1" without
the bc/abc qualifier it uses everywhere else, as for Table 3, and the attention-versus-none comparison on
SparseNet-bc is already Table 2's bc and abc rows. Both modules act on each layer's output.

The caption says "the epoch and learning rates are set as DenseNet": 300 epochs, the rate 0.1 divided
by 10 at 50% and 75% (`sparsenet_jax/training/recipes.py` DENSENET), not the SparseNet recipe of Table 2.

  python launch/sweep.py --sweep=configs/sweeps/fig7.py --workdir=$HOME/sweeps/fig7
"""
from sparsenet_jax.tools import sweeps
from sparsenet_jax.training import recipes

BASIC_V1 = 'configs/cifar10_v1.py:variant=basic'
DENSENET_SCHEDULE = dict(recipes.DENSENET['cifar10'])  # in the run names: densenet-schedule


def get_sweep(seeds=1):
  runs = []
  for attention in ('none', 'paper', 'se'):
    overrides = dict(DENSENET_SCHEDULE, **({} if attention == 'none' else {'model.attention': attention}))
    runs += sweeps.runs(f'cifar10_v1_densenet-schedule_attention-{attention}', BASIC_V1,
                        sweeps.seeds(seeds), overrides)
  return runs
