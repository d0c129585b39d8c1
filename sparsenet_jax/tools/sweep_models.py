"""The model each run of a sweep trains, from its config file and overrides, without training it.

`launch/sweep.py --dry_run` prints every run's parameter count beside its command, so a sweep whose
runs do not build (a bad override, a block the connection table refuses) fails before anything starts,
and a sweep meant to compare models of about one size (Figs. 3 and 11) shows that it does.
Counting uses `jax.eval_shape` (no backend, no memory).
"""
from __future__ import annotations

import functools
import importlib.util
import os
import re
from typing import Any, Dict, Tuple

from sparsenet_jax.data import datasets
from sparsenet_jax.model import presets
from sparsenet_jax.model import spec as spec_lib
from sparsenet_jax.model.spec import ModelSpec
from sparsenet_jax.training import config_validation


def load_config(config: str, repo: str, overrides: Dict[str, Any]):
  """`configs/FILE.py[:arg]` (relative to `repo`) with `overrides` ({'model.path': 12}) applied: called as
  main.py's --config calls it (`get_config(arg)`, or `get_config()` without an argument) and checked as
  main.py checks it (`config_validation.check_file`). ValueError names the file and what is wrong."""
  path, colon, arg = config.partition(':')
  full = os.path.join(repo, path)
  module_spec = importlib.util.spec_from_file_location('_config_' + re.sub(r'\W', '_', full), full)
  module = importlib.util.module_from_spec(module_spec)
  try:  # whatever the file raises is one line, not a traceback
    module_spec.loader.exec_module(module)
    if not callable(getattr(module, 'get_config', None)):
      raise ValueError(f'config file {path} defines no get_config(), the function that returns its config')
    cfg = module.get_config(arg) if colon else module.get_config()
  except Exception as e:
    if isinstance(e, ValueError) and str(e).startswith(f'config file {path} '):
      raise
    raise ValueError(f'config file {path}: {type(e).__name__}: {" ".join(str(e).split())}') from None
  config_validation.check_file(cfg, path)
  for key, value in overrides.items():
    *parents, leaf = key.split('.')
    node = cfg
    for p in parents:
      node = node[p]
    if leaf not in node:
      raise ValueError(f'unknown config field {key!r}')
    node[leaf] = tuple(value) if isinstance(value, list) else value
  return cfg


def model_and_input(config: str, repo: str, overrides: Dict[str, Any]) -> Tuple[ModelSpec, Tuple[int, ...]]:
  """(the model the run trains, its input shape), as training will resolve them: the config's model on
  the data registry's facts of its data; ValueError (or datasets.DataError) if it does not build."""
  cfg = checked_config(config, repo, overrides)
  data = datasets.facts(cfg.dataset)
  if data.image_shape is None:
    raise ValueError(f'{config}: the image shape of dataset {cfg.dataset.name} is unknown before loading it')
  spec = presets.from_config(cfg, data.num_classes)
  spec_lib.check_image_size(spec, data.image_shape)
  return spec, tuple(data.image_shape)


def checked_config(config: str, repo: str, overrides: Dict[str, Any]):
  """The run's config, every value checked as main.py checks it before training (ConfigError, a
  ValueError, naming the field); the batch's divisibility by the devices is left to the run."""
  cfg = load_config(config, repo, overrides)
  config_validation.validate(cfg, None)
  return cfg


@functools.lru_cache(maxsize=None)
def _params(spec: ModelSpec, shape: Tuple[int, ...]) -> int:
  from sparsenet_jax.model import counting, network  # pylint: disable=import-outside-toplevel
  return counting.param_count(network.make(spec), shape)


def param_count(config: str, repo: str, overrides: Dict[str, Any]) -> int:
  spec, shape = model_and_input(config, repo, overrides)
  return _params(spec.canonical(), shape)


def smoke_overrides(npz: str, steps: int, validation: int = 200) -> Dict[str, Any]:
  """A sweep's runs on an npz file for `steps` steps, `validation` training images held out and
  evaluated on: the smoke test of a sweep file (its parameters `npz=...,steps=...`). Scanned: the same
  function (a layout field), compiled several times faster on a CPU than the unrolled 36-64 layers."""
  return {'dataset.name': 'npz', 'dataset.train_path': os.path.abspath(npz),
          'dataset.validation_size': validation, 'num_train_steps': steps, 'model.scan': True}
