r"""Paper Table 2: every cell with a published number, SparseNet-bc/abc and the DenseNet-BC baselines.

28 runs per seed: SparseNet-bc V1-V3 and SparseNet-abc V1-V3 on C10, C100 and SVHN, SparseNet-abc-V4 and
DenseNet-BC (k=40, L=190) on C10 and C100 only (the paper has no SVHN number for them), DenseNet-BC
(k=12, L=100) and (k=24, L=250) on all three.

  python launch/sweep.py --sweep=configs/sweeps/table2.py --workdir=$HOME/sweeps/table2 --dry_run
  python launch/sweep.py --sweep=configs/sweeps/table2.py:seeds=3 --workdir=/shared/table2 --slurm
"""
from sparsenet_jax.tools import sweeps

DATASETS = ('cifar10', 'cifar100', 'svhn')
SPARSENET = {'bc': ('v1', 'v2', 'v3'), 'abc': ('v1', 'v2', 'v3', 'v4')}
DENSENET = ('densenet_bc_100', 'densenet_bc_250', 'densenet_bc_190')
NOT_IN_PAPER = {('svhn', 'abc_v4'), ('svhn', 'densenet_bc_190')}


def get_sweep(seeds=1):
  runs = []
  for dataset in DATASETS:
    for variant, versions in SPARSENET.items():
      for version in versions:
        if (dataset, f'{variant}_{version}') not in NOT_IN_PAPER:
          runs += sweeps.runs(f'{dataset}_{variant}_{version}',
                              f'configs/{dataset}_{version}.py:variant={variant}', sweeps.seeds(seeds))
    for model in DENSENET:
      if (dataset, model) not in NOT_IN_PAPER:
        runs += sweeps.runs(f'{dataset}_{model}', f'configs/{dataset}_densenet_bc.py:model={model}',
                            sweeps.seeds(seeds))
  return runs
