r"""Train or evaluate SparseNet.

  python launch/main.py --config=configs/digits.py --workdir=runs/digits
  python launch/main.py --config=configs/cifar100_v4.py:variant=bc --workdir=runs/c100_v4_bc
  python launch/main.py --config=configs/digits.py --workdir=runs/digits --mode=eval

Every config field can be overridden: --config.num_epochs=1 --config.model.growth_rate=12.
Started again with the same --workdir, a run resumes from its latest checkpoint; one whose checkpoints are
gone is refused, and trained again from step 0 with --restart.
"""
import json
import os

from absl import flags
from absl import logging
from ml_collections import config_flags

from sparsenet_jax import cli
from sparsenet_jax.training import config_validation


FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config file (configs/*.py[:arg]).',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Checkpoints, metrics.jsonl, TensorBoard events and config.json.')
flags.DEFINE_enum('mode', 'train', ['train', 'eval'], 'train (resumes if possible) or eval the latest '
                  'checkpoint on the configured test split.')
flags.DEFINE_bool('extend', False, 'Train a finished run further: needed when a finished workdir is '
                  'started again with a longer num_epochs / num_train_steps.')
flags.DEFINE_bool('restart', False, 'Train again from step 0 a run whose checkpoints are gone (deleted or moved), '
                  'which is refused without it; its config.json, run.json, metrics.jsonl and starts.jsonl are '
                  'moved aside to FILE.before_restartN first.')
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


def check_flags() -> None:
  """Flags that do not go together or do not apply, refused before JAX starts."""
  cli.require(not (FLAGS.extend and FLAGS.mode == 'eval'), '--extend trains a finished run further; it does '
              'not apply to --mode=eval')
  cli.require(not (FLAGS.restart and FLAGS.mode == 'eval'), '--restart trains: it does not go with --mode=eval')
  if FLAGS.process_id is not None:
    cli.require(FLAGS.num_processes is not None, f'--process_id={FLAGS.process_id} needs --num_processes')
    cli.require(FLAGS.process_id < FLAGS.num_processes, f'--process_id={FLAGS.process_id} must be below '
                f'--num_processes={FLAGS.num_processes}: the processes are 0 .. {FLAGS.num_processes - 1}')
  explicit = FLAGS.coordinator_address is not None or (FLAGS.num_processes or 1) > 1
  cli.require(not explicit or _cluster_detected() or None not in (
      FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id),
      'a multi-process run outside SLURM or a TPU pod needs --coordinator_address, --num_processes and '
      '--process_id together')


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
  check_flags()
  import jax  # after absl has parsed flags, so XLA_FLAGS set by callers apply
  cli.use_compilation_cache()
  logging.set_verbosity(logging.WARNING)
  multi_process = initialize_distributed(jax)

  from sparsenet_jax.training import cpu_devices
  from sparsenet_jax.training import host_memory
  from sparsenet_jax.training import train

  config = FLAGS.config
  devices = cpu_devices.split(jax, (config.batch_size, config.eval_batch_size), multi_process,
                              sync=cpu_devices.config_sync_bytes(config))  # before jax.devices()
  host_memory.keep(jax, step=host_memory.config_step_bytes(config, devices, FLAGS.mode == 'train'))  # as the split
  config_validation.validate(config, jax.device_count())
  if FLAGS.mode == 'eval':
    train.evaluate(config, FLAGS.workdir, show=lambda row: print(json.dumps(row), flush=True))
  else:
    train.train_and_evaluate(config, FLAGS.workdir, extend=FLAGS.extend, restart=FLAGS.restart)


def entry():
  """The shell (sparsenet_jax/cli.py): flags, one line per failure, the exit code."""
  cli.run(main, config_flag='config', check_config=config_validation.check_file)


if __name__ == '__main__':
  entry()
