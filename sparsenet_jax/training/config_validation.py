"""Checks a config before anything is loaded or compiled, so a typo costs one line, not a traceback."""
from __future__ import annotations

from sparsenet_jax.data import datasets
from sparsenet_jax.errors import ConfigError
from sparsenet_jax.model import network
from sparsenet_jax.model import presets
from sparsenet_jax.model.spec import PRECISIONS
from sparsenet_jax.training import optimizer



def _positive(config, field, integer=True):
  value = config[field]
  ok = isinstance(value, int) if integer else isinstance(value, (int, float))
  if isinstance(value, bool) or not ok or value <= 0:
    kind = 'integer' if integer else 'number'
    raise ConfigError(f'config.{field} must be a positive {kind}, got {value!r}')


def validate(config, device_count: int) -> None:
  if config.dataset.name not in datasets.SOURCES:
    raise ConfigError(f'config.dataset.name={config.dataset.name!r}; allowed: {", ".join(datasets.SOURCES)}')
  for field in ('batch_size', 'eval_batch_size', 'log_every_steps', 'eval_every_epochs',
                'checkpoint_every_epochs', 'keep_checkpoints'):
    _positive(config, field)
  _positive(config, 'num_epochs', integer=False)
  if config.batch_size % device_count:
    raise ConfigError(f'config.batch_size={config.batch_size} is not divisible by the {device_count} '
                      'devices: use a multiple of the device count')
  if config.eval_batch_size % device_count:
    raise ConfigError(f'config.eval_batch_size={config.eval_batch_size} is not divisible by the '
                      f'{device_count} devices')
  if config.precision not in PRECISIONS:
    raise ConfigError(f'config.precision={config.precision!r}; allowed: {", ".join(PRECISIONS)}')
  bounds = tuple(config.lr_boundaries_epochs)
  if any(b <= 0 for b in bounds) or any(b <= a for a, b in zip(bounds, bounds[1:])):
    raise ConfigError(f'config.lr_boundaries_epochs={bounds} must be positive and strictly increasing')
  if len(config.learning_rates) != len(bounds) + 1:
    raise ConfigError(f'config.learning_rates has {len(config.learning_rates)} values; it needs '
                      f'len(lr_boundaries_epochs) + 1 = {len(bounds) + 1}')
  if any(not isinstance(v, (int, float)) or v < 0 for v in config.learning_rates):
    raise ConfigError(f'config.learning_rates={tuple(config.learning_rates)} must be non-negative numbers')
  if config.weight_decay < 0:
    raise ConfigError(f'config.weight_decay must be >= 0, got {config.weight_decay}')
  if config.dataset.validation_size < 0:
    raise ConfigError(f'config.dataset.validation_size must be >= 0, got {config.dataset.validation_size}')
  try:
    optimizer.make(config.optimizer.name, config.optimizer.kwargs, 0.1, config.weight_decay)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  check_model(config)


def check_model(config) -> None:
  """The model builds: its preset exists and every field it sets is allowed (no data needed)."""
  if config.model.name not in presets.PRESETS:
    raise ConfigError(f'config.model.name={config.model.name!r} is not a preset; known: '
                      f'{", ".join(presets.names())}')
  try:
    network.block_plans(presets.from_config(config))
  except ValueError as e:
    raise ConfigError(f'config.model: {e}') from None
