r"""Paper Fig. 7: SparseNet-V1 on CIFAR-10 without attention, with the paper's attention and with SE.

Basic SparseNet-V1 (k=16, path 14, no bottleneck or compression): the paper says "SparseNet-V1" without
the bc/abc qualifier it uses everywhere else, as for Table 3, and the attention-versus-none comparison on
SparseNet-bc is already Table 2's bc and abc rows. Both modules act on each layer's output.

  python launch/sweep.py --sweep=configs/sweeps/fig7.py --workdir=$HOME/sweeps/fig7
"""
from sparsenet_jax.tools import sweeps

BASIC_V1 = 'configs/cifar10_v1.py:variant=basic'


def get_sweep(seeds=1):
  runs = sweeps.runs('cifar10_v1_attention-none', BASIC_V1, sweeps.seeds(seeds))
  for attention in ('paper', 'se'):
    runs += sweeps.runs(f'cifar10_v1_attention-{attention}', BASIC_V1, sweeps.seeds(seeds),
                        {'model.attention': attention})
  return runs
