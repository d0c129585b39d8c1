r"""DenseNet-121 against the two SparseNet ImageNet presets at DenseNet-121's and DenseNet-169's parameter
budgets (docs/imagenet.md: how they were chosen), each with DenseNet's ImageNet recipe (configs/imagenet.py).

  python launch/sweep.py --sweep=configs/sweeps/imagenet.py:root=/path/to/imagenet --workdir=$HOME/sweeps/in \
      --dry_run
  python launch/sweep.py --sweep=configs/sweeps/imagenet.py:root=/path/to/imagenet,seeds=2 --workdir=/shared/in \
      --slurm --devices_per_run=8
"""
from sparsenet_jax.tools import sweeps

MODELS = ('densenet_121', 'sparsenet_imagenet_121', 'sparsenet_imagenet_169')


def get_sweep(root=None, seeds=1):
  """`root`: the ImageNet folder (dataset.root) every run reads."""
  if not root:
    raise ValueError('the ImageNet sweep needs its data: configs/sweeps/imagenet.py:root=/path/to/imagenet')
  runs = []
  for model in MODELS:
    runs += sweeps.runs(f'imagenet_{model}', f'configs/imagenet.py:model={model}', sweeps.seeds(seeds),
                        {'dataset.root': root})
  return runs
