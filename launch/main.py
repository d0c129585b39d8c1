r"""Train or evaluate SparseNet.

  python launch/main.py --config=configs/digits.py --workdir=runs/digits
  python launch/main.py --config=configs/cifar100_v4.py:variant=bc --workdir=runs/c100_v4_bc
  python launch/main.py --config=configs/digits.py --workdir=runs/digits --mode=eval

Every config field can be overridden: --config.num_epochs=1 --config.model.growth_rate=12.
Started again with the same --workdir, a run resumes from its latest checkpoint.
"""
import json
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config file (configs/*.py[:arg]).',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Checkpoints, metrics.jsonl, TensorBoard events and config.json.')
flags.DEFINE_enum('mode', 'train', ['train', 'eval'], 'train (resumes if possible) or eval the latest '
                  'checkpoint on the configured test split.')
flags.DEFINE_string('compilation_cache', os.path.expanduser('~/.cache/sparsenet_jax/xla'),
                    'Persistent XLA compilation cache directory ("" disables it).')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  import jax  # after absl has parsed flags, so XLA_FLAGS set by callers apply
  if FLAGS.compilation_cache:
    jax.config.update('jax_compilation_cache_dir', FLAGS.compilation_cache)
  logging.set_verbosity(logging.WARNING)

  from sparsenet_jax import checkpoints
  from sparsenet_jax import config_validation
  from sparsenet_jax import datasets
  from sparsenet_jax import train

  config = FLAGS.config
  try:
    config_validation.validate(config, jax.device_count())
    if FLAGS.mode == 'eval':
      print(json.dumps(train.evaluate(config, FLAGS.workdir)))
    else:
      train.train_and_evaluate(config, FLAGS.workdir)
  except config_validation.ConfigError as e:
    print(f'config error: {e}', file=sys.stderr)
    sys.exit(2)
  except datasets.DataError as e:
    print(f'data error: {e}', file=sys.stderr)
    sys.exit(2)
  except checkpoints.CheckpointError as e:
    print(f'checkpoint error: {e}', file=sys.stderr)
    sys.exit(3)
  except train.NonFiniteLossError as e:
    print(f'stopped: {e}', file=sys.stderr)
    sys.exit(4)
  except train.PreemptedError as e:
    print(f'interrupted: {e}', file=sys.stderr)
    sys.exit(143)


if __name__ == '__main__':
  app.run(main)
