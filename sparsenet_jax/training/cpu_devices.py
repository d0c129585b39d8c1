"""One XLA device per CPU core: how a CPU-only run splits its batch, and the one place that decides it.

XLA:CPU runs one program on one device with a thread pool, and many of the step's operations (the
BatchNorm arithmetic, concatenations, gradient accumulation, small convolutions) use one thread of it.
Splitting the batch over one host device per core runs those side by side; BatchNorm statistics are then
synchronised across the devices (`axis_name`), so the step computes the one-device function, to float
rounding (tests/test_cpu_devices.py). Measured in BENCHMARKS.md.

The synchronisation has a cost per BatchNorm layer (an all-reduce forward, another backward), and with
more than one device XLA:CPU starts a step only when the last one has finished, so the host's work
between steps no longer overlaps the step. A small step is therefore left on one device: `split` takes
the train step's mean bytes per BatchNorm layer (`sync_bytes`) and splits only where each device would
still normalise `MIN_SYNC_BYTES` or more per layer.

The count must be set before JAX starts its backends (`split`, called by `launch/main.py` and
`launch/bench.py` right after `import jax`); the training code asks `active()` afterwards. Left alone
when the user chose a count (`--xla_force_host_platform_device_count` in XLA_FLAGS, or
JAX_NUM_CPU_DEVICES: then the devices are theirs and `config.sync_batch_norm` applies as written, per-device
statistics by default) and in multi-process runs.
"""
from __future__ import annotations

import os
from typing import Mapping, Optional, Sequence, Tuple

COUNT_FLAG = '--xla_force_host_platform_device_count'
# Measured on 2 cores with synchronised BatchNorm, the split against one device in turns (BENCHMARKS.md,
# "When the split pays"), train step: at 1.1 and 1.3 MiB per layer and device one device was 1.12x and
# 1.02x faster, at 2.1 and 2.2 MiB they tied (1.02x), at 3.9, 4.2 and 5.3 MiB the split was 1.14x, 1.15x
# and 1.04x faster.
MIN_SYNC_BYTES = 3 * 2**20
_SPLIT: Optional[int] = None  # the count `split` set, if it set one
_SMALL: Optional[Tuple[int, int]] = None  # (sync_bytes, count) of a run `split` left on one device


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


def sync_bytes(spec, image_hw: Sequence[int], batch: int) -> int:
  """The bytes of feature map one BatchNorm layer of the train step normalises for `batch` images, on
  average: the forward pass's feature maps (`network.feature_map_bytes`) over its BatchNorm layers.
  Pure arithmetic on the model's plan, known before anything is compiled."""
  from sparsenet_jax.model import network  # pylint: disable=import-outside-toplevel
  return network.feature_map_bytes(spec, image_hw, batch) // network.norm_layers(spec)


def config_sync_bytes(config) -> Optional[int]:
  """`sync_bytes` of a training config's train step; None where `host_memory.config_plan` is."""
  from sparsenet_jax.training import host_memory  # pylint: disable=import-outside-toplevel
  plan = host_memory.config_plan(config)
  return plan and sync_bytes(*plan, config.batch_size)


def split(jax, batch_sizes: Sequence[int], multi_process: bool = False,
          environ: Mapping[str, str] = os.environ, sync: Optional[int] = None) -> int:
  """Asks JAX for one CPU device per core (as many as divide `batch_sizes`) unless the user set a count,
  the run spans processes, or the train step is too small to gain (`sync`: its `sync_bytes` over the
  whole batch, below `MIN_SYNC_BYTES` per device; None: not known, split); returns the count asked for,
  1 when it left the default alone. Call before anything starts JAX's backends (`jax.devices()`)."""
  global _SPLIT, _SMALL
  if multi_process or user_count(environ):
    return 1
  count = device_count(cores(), batch_sizes)
  if count > 1 and sync is not None and sync / count < MIN_SYNC_BYTES:
    _SMALL = (sync, count)
    return 1
  if count > 1:
    jax.config.update('jax_num_cpu_devices', count)
    _SPLIT = count
  return count


def active() -> bool:
  """This process's devices are CPU devices `split` made (the CPU is the default backend), so BatchNorm
  must be synchronised across them for the run to compute what one device computes."""
  import jax  # pylint: disable=import-outside-toplevel
  return _SPLIT is not None and jax.default_backend() == 'cpu' and jax.device_count() == _SPLIT


def describe() -> Optional[str]:
  """The log line of an active split, or of a CPU run `split` left on one device; else None."""
  import jax  # pylint: disable=import-outside-toplevel
  if active():
    return (f'XLA:CPU: the batch is split over {_SPLIT} host devices, one per core, with BatchNorm statistics '
            f'synchronised across them (the one-device result, to float rounding); {COUNT_FLAG}=1 in XLA_FLAGS '
            'turns this off')
  if _SMALL is None or jax.default_backend() != 'cpu':
    return None
  sync, count = _SMALL
  return (f'XLA:CPU: one device: the train step is small (split over {count} devices, each would normalise '
          f'{sync / count / 2**20:.2f} MiB per BatchNorm layer, below the {MIN_SYNC_BYTES // 2**20} MiB where a '
          f'split pays); {COUNT_FLAG}={count} in XLA_FLAGS splits it (per-device BatchNorm statistics unless '
          'config.sync_batch_norm)')
