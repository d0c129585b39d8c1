r"""Runs a sweep (configs/sweeps/*.py): every run in its own workdir under --workdir, locally or on SLURM.

  python launch/sweep.py --sweep=configs/sweeps/table2.py --workdir=$HOME/sweeps/table2 --dry_run
  python launch/sweep.py --sweep=configs/sweeps/fig10.py:seeds=3 --workdir=$HOME/sweeps/fig10
  python launch/sweep.py --sweep=configs/sweeps/table2.py --workdir=/shared/table2 --slurm
  sbatch /shared/table2/sweep.sbatch

Started again with the same flags, a sweep skips finished runs and resumes interrupted ones.
"""
import os
import shlex

from absl import flags

from sparsenet_jax import cli
from sparsenet_jax.tools import slurm
from sparsenet_jax.tools import sweep_models
from sparsenet_jax.tools import sweeps

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

flags.DEFINE_string('sweep', None, 'A sweep file and its parameters: configs/sweeps/NAME.py[:k=v,...].')
flags.DEFINE_string('workdir', None, 'The sweep root: each run writes to WORKDIR/<run name>.')
flags.DEFINE_bool('dry_run', False, 'Print every run\'s command and state instead of running.')
flags.DEFINE_integer('devices_per_run', 1, 'Accelerators each run gets (GPUs, or CPU devices without GPUs).')
flags.DEFINE_integer('max_parallel', None, 'Runs at once: default every GPU slot, or 1 on CPU; '
                     'with --slurm, the array\'s %N throttle.')
flags.DEFINE_bool('slurm', False, 'Write WORKDIR/sweep.sbatch (one array task per run) instead of running.')
flags.DEFINE_string('only', None, 'Only the runs whose name matches this regular expression.')
flags.mark_flags_as_required(['sweep', 'workdir'])
FLAGS = flags.FLAGS
cli.positive('devices_per_run', 'max_parallel')


def main(argv):
  """Exit 1 when a run failed (the summary names it)."""
  del argv
  cli.require(not (FLAGS.slurm and FLAGS.dry_run), '--dry_run lists the runs and --slurm writes their '
              'array job: give one of them')
  runs = sweeps.select(sweeps.load(sweep_file(FLAGS.sweep)), FLAGS.only)
  sweeps.check_configs(runs, REPO)
  if not FLAGS.dry_run:  # the dry run checks each one as it lists it, beside its model
    for run in runs:
      checked(run, lambda: sweep_models.checked_config(run.config, REPO, dict(run.overrides)))
  root = os.path.abspath(FLAGS.workdir)
  if os.path.exists(root) and not os.path.isdir(root):
    raise ValueError(f'--workdir={FLAGS.workdir} exists and is not a directory')
  if FLAGS.slurm:
    return write_slurm(runs, root)
  if FLAGS.dry_run:
    return dry_run(runs, root)
  slots = sweeps.slots(FLAGS.devices_per_run, FLAGS.max_parallel, sweeps.visible_gpus(),
                       os.environ.get('XLA_FLAGS', ''))
  print(f'{len(runs)} runs under {root}, {len(slots)} at once', flush=True)
  try:
    results = sweeps.run_local(runs, root, slots, cwd=REPO, echo=lambda line: print(line, flush=True))
  except KeyboardInterrupt as e:  # SIGINT, or SIGTERM (errors.Terminated): the shell says which
    raise type(e)(f'{e or "SIGINT received"}: the runs were stopped; the same command resumes the sweep') from None
  print('\n'.join(sweeps.summary(runs, root, results)))
  return 1 if any(r.outcome == 'failed' for r in results.values()) else 0


def sweep_file(spec):
  """configs/sweeps/... works from any directory: a path that is not there is tried in the repository."""
  path, colon, arg = spec.partition(':')
  if not os.path.exists(path) and os.path.exists(os.path.join(REPO, path)):
    return os.path.join(REPO, path) + colon + arg
  return spec


def dry_run(runs, root):
  """Every run's command, the parameters of the model it builds and its state; a run whose config is
  refused or whose model does not build stops the listing with exit code 2."""
  states = [sweeps.state(os.path.join(root, r.name)) for r in runs]
  shown = ('done', 'busy', 'partial', 'new') if 'busy' in states else ('done', 'partial', 'new')
  counts = ', '.join(f'{states.count(s)} {s}' for s in shown)
  print(f'# {FLAGS.sweep}: {len(runs)} runs under {root} ({counts}), run from {REPO}')
  for run, state in zip(runs, states):
    params = checked(run, lambda: sweep_models.param_count(run.config, REPO, dict(run.overrides)))
    print(f'{shlex.join(sweeps.command(run, os.path.join(root, run.name)))}  # {params:,} params  # {state}',
          flush=True)


def checked(run, work):
  """`work()` for one run; its config's refusal (a value out of range, an override that does not fit,
  a model that does not build or fit the data) names the run."""
  try:
    return work()
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(f'run {run.name} does not build: {e}') from None


def write_slurm(runs, root):
  script = slurm.slurm_script(runs, root, REPO, FLAGS.sweep, FLAGS.devices_per_run, FLAGS.max_parallel)
  os.makedirs(root, exist_ok=True)
  path = os.path.join(root, 'sweep.sbatch')
  with open(path, 'w') as f:
    f.write(script)
  print(f'wrote {path} ({len(runs)} array tasks); submit it with\n  sbatch {shlex.quote(path)}')


def entry():
  """The shell (sparsenet_jax/cli.py): flags, one line per failure, the exit code."""
  cli.run(main, input_errors=(ValueError,))


if __name__ == '__main__':
  entry()
