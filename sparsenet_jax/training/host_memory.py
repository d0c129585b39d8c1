"""A CPU run's step temporaries reused from one step to the next, not page-faulted afresh every step.

XLA:CPU allocates one block for a step's temporaries on every call (about 1.9 GB per device for
densenet_bc_100 at 32 images per device) and frees it when the step ends. glibc's malloc serves a block
that large with a fresh `mmap` and hands it back with `munmap`, so every step first touches (page-faults
and zeroes) all of it, and each device's thread then spends about 0.2 s in the kernel unmapping it while
the next step runs. Told (mallopt) to use one arena, never `mmap` and never trim, glibc gives the next
step the block the last one freed. Measured in BENCHMARKS.md: 1.37x the train step and 1.75x the eval
step of densenet_bc_100 on the development machine.

`keep()` does it, before JAX starts its backends (`launch/main.py`, `launch/bench.py` and
`tools/op_profile.py` call it right after `import jax`), on a CPU run with glibc only: with
an accelerator the temporaries are in device memory, and other C libraries allocate differently.
`SPARSENET_MALLOC=system` in the environment leaves glibc's defaults.

It costs too: every thread allocates from the one arena, so XLA's compile threads wait on each other
(the digits quick start's cold run took 1.3x as long with it), and the process keeps its peak heap until it
exits. So a run whose step is small is left alone: glibc already reuses a freed block up to its largest
mmap threshold (32 MiB), and `step_bytes` estimates the step's temporaries from the model, the image
size and the per-device batch before anything is compiled.
"""
from __future__ import annotations

import ctypes
import importlib.util
import os
import pkgutil
from typing import Any, Mapping, Optional, Sequence, Tuple

from sparsenet_jax.errors import ArgumentError

SWITCH = 'SPARSENET_MALLOC'
# mallopt's parameters (glibc's malloc.h).
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
_SETTINGS = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, -1))  # -1: never trim
# The same settings as glibc's environment variables, for a process started with them (tools/peer_ratios.py
# gives them to the PyTorch peer, like for like).
ENVIRONMENT = {'MALLOC_ARENA_MAX': '1', 'MALLOC_MMAP_MAX_': '0', 'MALLOC_TRIM_THRESHOLD_': str(2**62)}
# glibc's largest dynamic mmap threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX): a freed block up to this
# size raises the threshold and is reused by the next step without any setting; larger ones are mapped afresh.
MMAP_THRESHOLD_MAX = 32 * 2**20
# XLA:CPU's train-step temporaries over the feature maps' bytes (network.feature_map_elements x per-device
# batch x itemsize), measured from `memory_analysis()`: 3.12 (the digits config), 3.28 (sparsenet_bc_v1),
# 3.43 (densenet_bc_100), 2 devices. The eval step's were 0.11-0.30: counted as 1, an upper bound.
TRAIN_TEMPORARIES = 3
_KEPT = False
_SMALL: Optional[int] = None  # the step_bytes a run was left alone for


def accelerator_installed() -> bool:
  """Whether JAX may pick a GPU or TPU here: a PJRT plugin (CUDA, ROCm: the `jax_plugins` namespace) or
  libtpu is installed. Checked without starting a backend."""
  if importlib.util.find_spec('libtpu') is not None:
    return True
  plugins = importlib.util.find_spec('jax_plugins')
  return bool(plugins and plugins.submodule_search_locations
              and any(pkgutil.iter_modules(plugins.submodule_search_locations)))


def cpu_run(jax, environ: Mapping[str, str]) -> bool:
  """Whether this process's default backend will be XLA:CPU: JAX_PLATFORMS (or `jax_platforms`) names
  the CPU first, or names nothing and no accelerator is installed."""
  platforms = environ.get('JAX_PLATFORMS') or jax.config.jax_platforms or ''
  if platforms:
    return platforms.split(',')[0].strip() == 'cpu'
  return not accelerator_installed()


def _glibc():
  """The process's C library if it is glibc (it has mallopt and gnu_get_libc_version), else None."""
  try:
    libc = ctypes.CDLL(None)
    libc.gnu_get_libc_version  # pylint: disable=pointless-statement
    return libc if hasattr(libc, 'mallopt') else None
  except (OSError, AttributeError):
    return None


def step_bytes(spec, image_hw: Sequence[int], per_device_batch: int, train: bool) -> int:
  """About how many bytes of temporaries one device's step allocates (see TRAIN_TEMPORARIES): pure
  arithmetic on the model's plan, known before JAX compiles anything."""
  from sparsenet_jax.model import network  # pylint: disable=import-outside-toplevel
  return network.feature_map_bytes(spec, image_hw, per_device_batch) * (TRAIN_TEMPORARIES if train else 1)


def config_plan(config) -> Optional[Tuple[Any, Tuple[int, int]]]:
  """(the model's spec, the images' height and width) of a training config, known before any data is
  read; None when the images' shape is not fixed by the dataset's name (folders, npz files, streams: only
  their files say) or the model fields are bad (refused by the config checks after)."""
  from sparsenet_jax.data import datasets  # pylint: disable=import-outside-toplevel
  from sparsenet_jax.model import presets  # pylint: disable=import-outside-toplevel
  shape = datasets.fixed_image_shape(config.dataset.name)
  if shape is None:
    return None
  try:
    return presets.from_config(config), tuple(shape[:2])
  except ValueError:
    return None


def config_step_bytes(config, devices: int, train: bool) -> Optional[int]:
  """`step_bytes` of a training config's step (the train step, or the eval step for an eval-only run) on
  `devices` devices; None where `config_plan` is."""
  plan = config_plan(config)
  batch = config.batch_size if train else config.eval_batch_size
  return plan and step_bytes(*plan, -(-batch // max(1, devices)), train)


def keep(jax, environ: Mapping[str, str] = os.environ, step: Optional[int] = None) -> bool:
  """Sets glibc's malloc to keep and reuse freed memory on a CPU run (see the module's docstring) whose
  step's temporaries (`step`, from `step_bytes`; None: not known, taken as large) are larger than glibc
  reuses by itself; returns whether it did. Call before anything starts JAX's backends."""
  global _KEPT, _SMALL
  if environ.get(SWITCH, '') not in ('', 'system'):
    raise ArgumentError(f'{SWITCH}={environ[SWITCH]!r}: set it to system (glibc\'s defaults) or leave it unset')
  if environ.get(SWITCH) == 'system' or not cpu_run(jax, environ):
    return False
  if step is not None and step <= MMAP_THRESHOLD_MAX:
    _SMALL = step
    return False
  libc = _glibc()
  if libc is None:
    return False
  _KEPT = all(libc.mallopt(param, value) == 1 for param, value in _SETTINGS)
  return _KEPT


def describe() -> Optional[str]:
  """The log line when `keep` took effect or left a small step alone, else None."""
  if _SMALL is not None:
    return (f"host memory: glibc's defaults: the step's temporaries (about {_SMALL / 2**20:.0f} MiB per device) "
            f'are below the {MMAP_THRESHOLD_MAX // 2**20} MiB it reuses by itself')
  if not _KEPT:
    return None
  return ("host memory: glibc's malloc keeps the memory a step frees for the next step (one arena, no mmap, "
          f'no trimming), so XLA:CPU\'s temporaries are not page-faulted afresh every step; {SWITCH}=system '
          'turns this off')
