r"""Where a step's time goes on XLA:CPU: a `jax.profiler` trace of bench's own steps, summed per operation kind.

Takes launch/bench.py's flags (the same rows, models with options, batch, mode, device split) and times
`--profile_steps` steps of each row under `jax.profiler.trace`, then sums the busy time of every XLA
operation on XLA's threads by kind (its name without the numeric suffix: `transpose_copy_fusion`,
`ynn_fusion`, ...). With several devices each runs on its own threads; the times add up over them. Prints
one line per kind, largest first, with its share of the busy time and the milliseconds per step.

  python tools/op_profile.py --model=densenet_bc_100 --mode=train --profile_steps=2 --top=25 --nocold_compile
"""
import collections
import glob
import importlib.util
import os
import re
import sys
import tempfile

from absl import app
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
_spec = importlib.util.spec_from_file_location('bench', os.path.join(ROOT, 'launch', 'bench.py'))
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)  # defines bench's flags, which this tool takes

import jax  # noqa: E402  (after bench, which imports it first anyway)

from sparsenet_jax import cli  # noqa: E402
from sparsenet_jax.training import steps  # noqa: E402

flags.DEFINE_integer('profile_steps', 2, 'Steps traced per row (after one untraced warm-up step).')
flags.DEFINE_integer('top', 25, 'Operation kinds listed per row.')
FLAGS = flags.FLAGS
_SUFFIX = re.compile(r'(\.\d+)+$')
_SKIP = ('ThreadpoolListener', 'ThunkExecutor', 'end: ')


def op_times(trace_dir):
  """{operation kind: busy nanoseconds} over XLA's threads in the trace written to `trace_dir`."""
  path = glob.glob(os.path.join(trace_dir, '**', '*.xplane.pb'), recursive=True)[0]
  totals = collections.Counter()
  for plane in jax.profiler.ProfileData.from_file(path).planes:
    for line in plane.lines:
      if not line.name.startswith('tf_XLA'):
        continue
      for event in line.events:
        if not event.name.startswith(_SKIP):
          totals[_SUFFIX.sub('', event.name)] += event.duration_ns
  return totals


def main(argv):
  del argv
  cli.use_compilation_cache(not FLAGS.cold_compile)
  runs = [bench.parse_model(text) for text in FLAGS.model]
  bench.keep_host_memory([spec for _, spec in runs])
  mesh = steps.make_mesh()
  for text, (config, spec) in zip(FLAGS.model, runs):
    for row in bench.make_rows(config, spec, mesh):
      row.step(timed=False)
      with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir):
          for _ in range(FLAGS.profile_steps):
            row.step()
        totals = op_times(trace_dir)
      busy = sum(totals.values())
      wall = sum(row.times) / len(row.times)
      print(f'# {text} {row.mode}, {mesh.size} device(s): {wall * 1e3:.0f} ms per step (wall), '
            f'{busy / 1e6 / FLAGS.profile_steps:.0f} ms busy per step over XLA threads')
      for name, ns in totals.most_common(FLAGS.top):
        print(f'{100 * ns / busy:5.1f}%  {ns / 1e6 / FLAGS.profile_steps:8.1f} ms  {name}')


if __name__ == '__main__':
  app.run(main)
