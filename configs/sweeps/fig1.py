r"""Paper Fig. 1: the connections of DenseNet-40 (k=12, 12 layers per block, 16-channel stem, no bottleneck
or compression) from 2 up to fully dense, test and training error on CIFAR-10 ("When the connections is
22, the error rate reaches the lowest, 5.11%").

"Connections" is `model.path`, the paper's n everywhere else (Table 1's path 14 for V1): a capped layer
reads `path + 2` groups of k channels, the oldest `path + 2 - path // 2` and the newest `path // 2`
(docs/model.md sections 1 and 6). DenseNet-40's block inputs (16, 160, 304 channels) are not whole
groups, so its blocks read by channel counts, as the authors' scripts do. path >= 36 reads every channel
of every block: the `dense` run (DenseNet-40 itself) is the fully dense end of the curve.

Trained with DenseNet's recipe (300 epochs, the rate 0.1 divided by 10 at 50% and 75%: the network is
Huang et al.'s); the final row also holds the training error in eval mode, which the report draws.

  python launch/sweep.py --sweep=configs/sweeps/fig1.py --workdir=$HOME/sweeps/fig1 --dry_run
  python launch/sweep.py --sweep=configs/sweeps/fig1.py:connections=(12,22),dense=False --workdir=...
  python launch/sweep.py --sweep=configs/sweeps/fig1.py:npz=cifar10_train_10k.npz,steps=2 --workdir=...
"""
from sparsenet_jax.tools import sweep_models
from sparsenet_jax.tools import sweeps

CONNECTIONS = tuple(range(2, 36, 2))  # 2, 4, .., 34 (22 included); 36 and more is the dense run
DENSENET_40 = 'configs/cifar10_densenet_bc.py:model=densenet_40'  # DenseNet's recipe on CIFAR-10


def get_sweep(seeds=1, connections=CONNECTIONS, dense=True, npz=None, steps=None):
  connections = connections if isinstance(connections, (tuple, list)) else (connections,)
  fixed, name = {}, 'cifar10_densenet40'
  if npz:
    fixed, name = sweep_models.smoke_overrides(npz, steps or 2), f'smoke{steps or 2}_densenet40'
  grid = sweeps.product({'model.path': list(connections)}, sweeps.seeds(seeds))
  runs = sweeps.runs(name, DENSENET_40, grid, fixed)
  if dense:
    runs += sweeps.runs(f'{name}_dense', DENSENET_40, sweeps.seeds(seeds), fixed)
  return runs
