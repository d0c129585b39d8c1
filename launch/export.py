r"""Write a run's trained model to one self-contained file (format: sparsenet_jax/tools/export.py).

  python launch/export.py --workdir=runs/c10 --out=c10.npz

Load it for inference without the training code or the workdir:
  from sparsenet_jax.tools import export
  model, variables, meta = export.load_exported('c10.npz')
  probabilities = export.predict(model, variables, meta, uint8_images)
"""
from absl import flags
from absl import logging

from sparsenet_jax import cli

flags.DEFINE_string('workdir', None, 'A training run: its latest checkpoint is exported.')
flags.DEFINE_string('out', None, 'The file to write (an .npz).')
flags.DEFINE_bool('overwrite', False, 'Replace --out even if it is not an export of this run.')
flags.mark_flags_as_required(['workdir', 'out'])
FLAGS = flags.FLAGS
cli.output_file('out')


def main(argv):
  del argv
  # Imported here, in the shell, where a signal never cuts an import (sparsenet_jax/signals.py).
  from sparsenet_jax.tools import export
  from sparsenet_jax.training import restore
  from sparsenet_jax.training import workdir_lock
  logging.set_verbosity(logging.ERROR)  # Orbax warns about every read-only checkpoint it opens
  with workdir_lock.acquire(FLAGS.workdir, 'export'):  # not while a run trains there
    _, variables, meta = restore.restore_run(FLAGS.workdir)
  export.save_exported(FLAGS.out, variables, meta, source=FLAGS.workdir, overwrite=FLAGS.overwrite)
  params = sum(v.size for k, v in export.leaves(variables).items() if k.startswith('params/'))
  print(f'wrote {FLAGS.out}: {meta["preset"]}, {params:,} params, step {meta["step"]}, '
        f'{meta["model"]["num_classes"]} classes')


def entry():
  """The shell (sparsenet_jax/cli.py): flags, one line per failure, the exit code."""
  cli.run(main)


if __name__ == '__main__':
  entry()
