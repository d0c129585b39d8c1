r"""Train or evaluate SparseNet.

  python launch/main.py --config=configs/digits.py --workdir=runs/digits
  python launch/main.py --config=configs/cifar100_v4.py:variant=bc --workdir=runs/c100_v4_bc
  python launch/main.py --config=configs/digits.py --workdir=runs/digits --mode=eval

Every config field can be overridden: --config.num_epochs=1 --config.model.growth_rate=12.
Started again with the same --workdir, a run resumes from its latest checkpoint.
"""
import json
import os

from absl import flags
from absl import logging
from ml_collections import config_flags

from sparsenet_jax import cli


FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config file (configs/*.py[:arg]).',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Checkpoints, metrics.jsonl, TensorBoard events and config.json.')
flags.DEFINE_enum('mode', 'train', ['train', 'eval'], 'train (resumes if possible) or eval the latest '
                  'checkpoint on the configured test split.')
flags.DEFINE_bool('extend', False, 'Train a finished run further: needed when a finished workdir is '
                  'started again with a longer num_epochs / num_train_steps.')
cli.define_compilation_cache()
flags.DEFINE_string('coordinator_address', None, 'Multi-host: HOST:PORT of process 0. Without it, JAX '
                    'detects SLURM and TPU-pod launches by itself.')
flags.DEFINE_integer('num_processes', None, 'Multi-host: how many processes train together.')
flags.DEFINE_integer('process_id', None, 'Multi-host: this process, 0 .. num_processes - 1.')
flags.mark_flags_as_required(['config', 'workdir'])
cli.positive('num_processes')
cli.non_negative('process_id')


def _cluster_detected() -> bool:
  """A multi-process launch JAX's auto-detection understands (SLURM with several tasks, TPU pods)."""
  return (int(os.environ.get('SLURM_NTASKS', '1')) > 1 and 'SLURM_JOB_ID' in os.environ) or bool(
      os.environ.get('TPU_WORKER_HOSTNAMES', '').count(','))


def initialize_distributed(jax) -> bool:
  """JAX's own multi-process runtime: explicit flags, or auto-detection under SLURM / on TPU pods. Whether
  it started one."""
  explicit = FLAGS.coordinator_address is not None or (FLAGS.num_processes or 1) > 1
  if not explicit and not _cluster_detected():
    return False
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')  # CPU runs; GPUs/TPUs use their own
  if explicit:
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                               num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)
  else:
    jax.distributed.initialize()
  return True


def main(argv):
  del argv
  import jax  # after absl has parsed flags, so XLA_FLAGS set by callers apply
  cli.use_compilation_cache()
  logging.set_verbosity(logging.WARNING)
  multi_process = initialize_distributed(jax)

  from sparsenet_jax.training import config_validation
  from sparsenet_jax.training import cpu_devices
  from sparsenet_jax.training import train

  config = FLAGS.config
  cpu_devices.split(jax, (config.batch_size, config.eval_batch_size), multi_process)  # before jax.devices()
  config_validation.validate(config, jax.device_count())
  if FLAGS.mode == 'eval':
    train.evaluate(config, FLAGS.workdir, show=lambda row: print(json.dumps(row), flush=True))
  else:
    train.train_and_evaluate(config, FLAGS.workdir, extend=FLAGS.extend)


def entry():
  """The shell (sparsenet_jax/cli.py): flags, one line per failure, the exit code."""
  cli.run(main, config_flag='config')


if __name__ == '__main__':
  entry()
