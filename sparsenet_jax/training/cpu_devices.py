"""One XLA device per CPU core: how a CPU-only run splits its batch, and the one place that decides it.

XLA:CPU runs one program on one device with a thread pool, and many of the step's operations (the
BatchNorm arithmetic, concatenations, gradient accumulation, small convolutions) use one thread of it.
Splitting the batch over one host device per core runs those side by side; BatchNorm statistics are then
synchronised across the devices (`axis_name`), so the step computes the one-device function, to float
rounding (tests/test_train.py). Measured in BENCHMARKS.md.

The count must be set before JAX starts its backends (`split`, called by `launch/main.py` and
`launch/bench.py` right after `import jax`); the training code asks `active()` afterwards. Left alone
when the user chose a count (`--xla_force_host_platform_device_count` in XLA_FLAGS, or
JAX_NUM_CPU_DEVICES: then the devices are theirs and `config.sync_batch_norm` applies as written, per-device
statistics by default) and in multi-process runs.
"""
from __future__ import annotations

import os
from typing import Mapping, Optional, Sequence

COUNT_FLAG = '--xla_force_host_platform_device_count'
_SPLIT: Optional[int] = None  # the count `split` set, if it set one


def cores() -> int:
  """The cores this process may run on (its affinity mask, e.g. under taskset or a cgroup cpuset)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not Linux
    return os.cpu_count() or 1


def user_count(environ: Mapping[str, str]) -> bool:
  """Whether the environment already sets the host device count."""
  return COUNT_FLAG in environ.get('XLA_FLAGS', '') or bool(environ.get('JAX_NUM_CPU_DEVICES'))


def device_count(num_cores: int, batch_sizes: Sequence[int]) -> int:
  """The most devices, at most one per core, that divide every batch size evenly (1: no split)."""
  return max(d for d in range(1, max(1, num_cores) + 1) if all(b % d == 0 for b in batch_sizes))


def split(jax, batch_sizes: Sequence[int], multi_process: bool = False,
          environ: Mapping[str, str] = os.environ) -> int:
  """Asks JAX for one CPU device per core (as many as divide `batch_sizes`) unless the user set a count or
  the run spans processes; returns the count asked for, 1 when it left the default alone. Call before
  anything starts JAX's backends (`jax.devices()`, the first array)."""
  global _SPLIT
  if multi_process or user_count(environ):
    return 1
  count = device_count(cores(), batch_sizes)
  if count > 1:
    jax.config.update('jax_num_cpu_devices', count)
    _SPLIT = count
  return count


def active() -> bool:
  """This process's devices are CPU devices `split` made (the CPU is the default backend), so BatchNorm
  must be synchronised across them for the run to compute what one device computes."""
  import jax  # pylint: disable=import-outside-toplevel
  return _SPLIT is not None and jax.default_backend() == 'cpu' and jax.device_count() == _SPLIT


def describe() -> str:
  """The log line of an active split."""
  return (f'XLA:CPU: the batch is split over {_SPLIT} host devices, one per core, with BatchNorm statistics '
          f'synchronised across them (the one-device result, to float rounding); {COUNT_FLAG}=1 in XLA_FLAGS '
          'turns this off')
