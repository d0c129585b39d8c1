r"""Paper Fig. 3: at about the same parameter count, DenseNet (k=12, L=40) against a wider SparseNet (k=16,
L=40, path 12) and a deeper one (k=12, L=64, path 12), test error on CIFAR-10 over training.

The three networks are `presets.FIG3`: DenseNet-40 and two overrides of it (16-channel stem, no
bottleneck or compression). L counts the stem, the block layers, two transitions and the classifier,
so L=64 is 20 layers per block. `python launch/summary.py --model=fig3` prints their parameters side by
side (1.02M, 1.06M, 1.05M). Trained with DenseNet's recipe, like Fig. 1.

  python launch/sweep.py --sweep=configs/sweeps/fig3.py --workdir=$HOME/sweeps/fig3 --dry_run
  python launch/sweep.py --sweep=configs/sweeps/fig3.py:npz=cifar10_train_10k.npz,steps=2 --workdir=...
"""
from sparsenet_jax.model import presets
from sparsenet_jax.tools import sweep_models
from sparsenet_jax.tools import sweeps

DENSENET_40 = 'configs/cifar10_densenet_bc.py:model=densenet_40'  # DenseNet's recipe on CIFAR-10


def get_sweep(seeds=1, npz=None, steps=None):
  fixed, prefix = {}, 'cifar10'
  if npz:
    fixed, prefix = sweep_models.smoke_overrides(npz, steps or 2), f'smoke{steps or 2}'
  runs = []
  for name, fields in presets.FIG3.items():
    overrides = {**fixed, **{f'model.{k}': v for k, v in fields.items()}}
    runs += sweeps.runs(f'{prefix}_fig3_{name}', DENSENET_40, sweeps.seeds(seeds), overrides)
  return runs
