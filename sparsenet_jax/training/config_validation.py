"""Checks a config before anything is loaded or compiled, so a typo costs one line, not a traceback.

Three checks, each a ConfigError naming the field:
- `check_file(config, path)`: what a config file's `get_config()` returned, as it loads: a ConfigDict
  with every section and field of `configs/default.py` and none that no code reads (named with the close
  field it probably meant). `optimizer.kwargs` is open: optax's own arguments, checked by `validate`.
- `validate(config, device_count)`: every value in range, finite where it is a number (epochs, rates,
  boundaries, decay, the optimiser's arguments), seeds every generator takes, and the model builds.
- `check_steps(config, steps_per_epoch)`: once the data fixes an epoch's steps, the schedule fits the
  step counter.
Pure Python until `validate` asks optax (which imports JAX) whether it takes the optimiser.
"""
from __future__ import annotations

import difflib
import math
from typing import Any, Iterator, Optional, Tuple

import ml_collections

from configs import default
from sparsenet_jax.data import datasets
from sparsenet_jax.data import download
from sparsenet_jax.errors import ConfigError
from sparsenet_jax.model import presets
from sparsenet_jax.model.spec import PRECISIONS

# Seeds go to NumPy's SeedSequence (non-negative) and jax.random.key (64-bit): a uint32 suits both.
MAX_SEED = 2 ** 32 - 1
# The train state's step counter is an int32: a schedule longer than this cannot be counted.
MAX_STEPS = 2 ** 31 - 1
# Fields whose sections hold whatever optax takes; `validate` checks them against optax.
OPEN_SECTIONS = ('optimizer.kwargs',)
# optax's arguments whose range optax does not check, and the range their meaning allows ([low, high)).
OPTIMIZER_RANGES = {'momentum': (0, 1), 'b1': (0, 1), 'b2': (0, 1), 'decay': (0, 1), 'eps': (0, None),
                    'eps_root': (0, None), 'weight_decay': (0, None)}
_INTEGERS = ('batch_size', 'eval_batch_size', 'log_every_steps', 'eval_every_epochs',
             'checkpoint_every_epochs', 'keep_checkpoints', 'max_device_dataset_bytes')


def _fields(node: Any, prefix: str = '') -> Iterator[Tuple[str, Any]]:
  """(dotted name, value) of every field under a ConfigDict, sections included, open ones not entered."""
  for key in node.keys():
    name = f'{prefix}{key}'
    yield name, node[key]
    if isinstance(node[key], ml_collections.ConfigDict) and name not in OPEN_SECTIONS:
      yield from _fields(node[key], name + '.')


def check_file(config: Any, path: str) -> None:
  """What `get_config()` of the config file at `path` returned has the fields the code reads, no others.
  A model field left out is None, "as the preset says"; every other field of configs/default.py is
  read by the code, so a config without one fails here rather than at the first read of it."""
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f'config file {path}: get_config() returned {type(config).__name__}, not an '
                      'ml_collections.ConfigDict (start from configs/default.py: default.get_config())')
  known = dict(_fields(default.get_config()))
  given = dict(_fields(config))
  for name, value in given.items():
    if name not in known:
      parent, _, field = name.rpartition('.')
      siblings = [k.rpartition('.')[2] for k in known if k.rpartition('.')[0] == parent]
      close = difflib.get_close_matches(field, siblings, n=1)
      hint = f'; did you mean {(parent + "." if parent else "") + close[0]!r}?' if close else ''
      raise ConfigError(f'config file {path} sets config.{name}, a field no code reads{hint}')
    if isinstance(known[name], ml_collections.ConfigDict) and not isinstance(value, ml_collections.ConfigDict):
      raise ConfigError(f'config file {path}: config.{name} must be a section (a ConfigDict), got {value!r}')
  missing = [name for name in known if name not in given and (not name.startswith('model.') or name == 'model.name')]
  if missing:
    raise ConfigError(f'config file {path}: get_config() returns no config.{missing[0]}, which the code reads '
                      '(start from configs/default.py: default.get_config())')


def _number(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(field: str, value: Any, low: float = 0.0, strict: bool = False) -> None:
  """A finite number >= low (> low when strict)."""
  if not _number(value) or not math.isfinite(value) or value < low or (strict and value == low):
    bound = f'> {low:g}' if strict else f'>= {low:g}'
    raise ConfigError(f'config.{field} must be a finite number {bound}, got {value!r}')


def _numbers(field: str, values: Any) -> Tuple[float, ...]:
  """A tuple of finite numbers; a value the command line could not parse as one is named (a tuple
  with `nan` in it reaches the config as one string)."""
  values = tuple(values) if isinstance(values, (tuple, list)) else (values,)
  for v in values:
    if not _number(v) or not math.isfinite(v):
      raise ConfigError(f'config.{field}: {v!r} is not a finite number; write finite numbers, e.g. '
                        f'{field}=(0.1,0.01,0.001)')
  return values


def _integer(field: str, value: Any, low: int, high: Optional[int] = None) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
    allowed = ('a positive integer' if low == 1 else f'an integer >= {low}') if high is None else (
        f'an integer in [{low}, {high}]')
    raise ConfigError(f'config.{field} must be {allowed}, got {value!r}')


def _boolean(field: str, value: Any) -> None:
  if not isinstance(value, bool):
    raise ConfigError(f'config.{field} must be True or False, got {value!r}')


def validate(config, device_count: Optional[int]) -> None:
  """Every value in range before any work; `device_count` None (a sweep's dry run, which has no devices
  of its own) skips the batch sizes' divisibility by the devices."""
  if config.dataset.name not in datasets.SOURCES:
    raise ConfigError(f'config.dataset.name={config.dataset.name!r}; allowed: {", ".join(datasets.SOURCES)}')
  for field in _INTEGERS:
    _integer(field, config[field], 1)
  _finite('num_epochs', config.num_epochs, strict=True)
  _integer('num_train_steps', config.num_train_steps, -1, MAX_STEPS)
  _integer('seed', config.seed, 0, MAX_SEED)
  if device_count and config.batch_size % device_count:
    raise ConfigError(f'config.batch_size={config.batch_size} is not divisible by the {device_count} '
                      'devices: use a multiple of the device count')
  if device_count and config.eval_batch_size % device_count:
    raise ConfigError(f'config.eval_batch_size={config.eval_batch_size} is not divisible by the '
                      f'{device_count} devices')
  if config.precision not in PRECISIONS:
    raise ConfigError(f'config.precision={config.precision!r}; allowed: {", ".join(PRECISIONS)}')
  _boolean('sync_batch_norm', config.sync_batch_norm)
  bounds = _numbers('lr_boundaries_epochs', config.lr_boundaries_epochs) if config.lr_boundaries_epochs else ()
  if any(b <= 0 for b in bounds) or any(b <= a for a, b in zip(bounds, bounds[1:])):
    raise ConfigError(f'config.lr_boundaries_epochs={bounds} must be positive and strictly increasing')
  rates = _numbers('learning_rates', config.learning_rates)
  if len(rates) != len(bounds) + 1:
    raise ConfigError(f'config.learning_rates has {len(rates)} values; it needs '
                      f'len(lr_boundaries_epochs) + 1 = {len(bounds) + 1}')
  if any(v < 0 for v in rates):
    raise ConfigError(f'config.learning_rates={rates} must be non-negative numbers')
  _finite('weight_decay', config.weight_decay)
  _integer('dataset.validation_size', config.dataset.validation_size, 0)
  if config.dataset.num_classes is not None:
    _integer('dataset.num_classes', config.dataset.num_classes, 1)
  _boolean('dataset.download', config.dataset.download)
  download.check_mirror(config.dataset.mirror)
  check_optimizer(config)
  check_model(config)


def check_optimizer(config) -> None:
  """optax takes `config.optimizer`: its name and arguments, each finite and, where optax leaves the
  range to the caller (momentum, b1, b2, decay, eps, weight_decay), inside it."""
  for key, value in dict(config.optimizer.kwargs).items():
    field = f'optimizer.kwargs.{key}'
    if _number(value):
      low, high = OPTIMIZER_RANGES.get(key, (-math.inf, None))
      if not math.isfinite(value) or value < low or (high is not None and value >= high):
        allowed = 'a finite number' + (f' in [{low}, {high})' if high is not None else
                                        f' >= {low}' if math.isfinite(low) else '')
        raise ConfigError(f'config.{field} must be {allowed}, got {value!r}')
  from sparsenet_jax.training import optimizer  # pylint: disable=import-outside-toplevel  (optax loads JAX)
  try:
    optimizer.make(config.optimizer.name, config.optimizer.kwargs, 0.1, config.weight_decay)
  except ValueError as e:
    raise ConfigError(str(e)) from None


def check_model(config) -> None:
  """The model builds: its preset exists and every field it sets is allowed (no data needed)."""
  if config.model.name not in presets.PRESETS:
    raise ConfigError(f'config.model.name={config.model.name!r} is not a preset; known: '
                      f'{", ".join(presets.names())}')
  from sparsenet_jax.model import network  # pylint: disable=import-outside-toplevel  (Flax loads JAX)
  try:
    network.block_plans(presets.from_config(config))
  except ValueError as e:
    raise ConfigError(f'config.model: {e}') from None


def check_steps(config, steps_per_epoch: int) -> None:
  """The schedule in steps fits the step counter (an int32), now that an epoch's steps are known."""
  longest = max([config.num_epochs, *config.lr_boundaries_epochs]) * steps_per_epoch
  if longest > MAX_STEPS:
    raise ConfigError(f'config.num_epochs={config.num_epochs} (or a learning-rate boundary) is {longest:.3g} '
                      f'steps of {steps_per_epoch} per epoch, more than the {MAX_STEPS} a run can count')
