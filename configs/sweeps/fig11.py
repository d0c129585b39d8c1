r"""Paper Fig. 11: deeper or wider at about 1M parameters. Basic SparseNet on CIFAR-10 with 28, 52 and 76
layers (blocks 8-8-8, 16-16-16, 24-24-24: `budget.blocks_for_depth`) and growth rates 6, 8, .., 26,
each with the path that brings it closest to 1M parameters (`budget.fig11_matches`).

A (depth, growth rate) pair joins the sweep only if that path lands within `tolerance` of 1M: a shallow
narrow model stays below 1M even when dense, a deep wide one exceeds it at path 1, and one path step of
a deep wide model is worth several percent. Solving takes about a minute (an abstract init per
guess); `:layers=28` alone takes seconds.

  python launch/sweep.py --sweep=configs/sweeps/fig11.py --workdir=$HOME/sweeps/fig11 --dry_run
  python launch/sweep.py --sweep=configs/sweeps/fig11.py:layers=28 --workdir=... --dry_run
"""
from sparsenet_jax.tools import budget
from sparsenet_jax.tools import sweeps

GROWTH_RATES = tuple(range(6, 27, 2))
BASIC_V1 = 'configs/cifar10_v1.py:variant=basic'  # CIFAR-10 recipe; blocks, k and path overridden


def get_sweep(seeds=1, layers=(28, 52, 76), tolerance=0.10):
  runs = []
  for depth in (layers if isinstance(layers, (tuple, list)) else (layers,)):
    for m in budget.fig11_matches(depth, GROWTH_RATES):
      if abs(m.params / budget.FIG11_TARGET - 1) <= tolerance:
        model = {'model.blocks': m.blocks, 'model.growth_rate': m.growth_rate, 'model.path': m.path}
        runs += sweeps.runs(f'cifar10_L{depth}_k{m.growth_rate}_path{m.path}', BASIC_V1, sweeps.seeds(seeds),
                            model)
  return runs
