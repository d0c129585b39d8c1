r"""The reproduction report of every run under a root: a Table 2-style table and plots, as markdown.

  python launch/report.py --workdir=$HOME/sweeps/table2
  python launch/report.py --workdir=runs --out=runs/report

Writes OUT/report.md (default OUT: WORKDIR/report) and the PNGs it embeds.
"""
import os

from absl import flags
from absl import logging

from sparsenet_jax import cli
from sparsenet_jax import errors
from sparsenet_jax.tools import report_page

flags.DEFINE_string('workdir', None, 'A run, or a directory with runs anywhere below it (a sweep root).')
flags.DEFINE_string('out', None, 'Where report.md and its PNGs go; default WORKDIR/report.')
flags.mark_flag_as_required('workdir')
FLAGS = flags.FLAGS


def main(argv):
  del argv
  logging.set_verbosity(logging.ERROR)  # Orbax warns about every read-only checkpoint it opens
  out = FLAGS.out or os.path.join(FLAGS.workdir, 'report')
  if os.path.lexists(out) and not os.path.isdir(out):  # refused before any work, not as an I/O error after it
    raise errors.ArgumentError(f'--out={out} is a file, not a directory for report.md and its PNGs')
  print(report_page.write(FLAGS.workdir, out))


def entry():
  """The shell (sparsenet_jax/cli.py): flags, one line per failure, the exit code."""
  cli.run(main, input_errors=(ValueError,))  # a CheckpointError is exit 3, as in every script


if __name__ == '__main__':
  entry()
