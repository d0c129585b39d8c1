r"""The paper's training recipe (docs/model.md section 4) and the config fields every experiment shares.

Experiment files import this and override a few fields; every field can also be overridden on the
command line, e.g. `--config.num_epochs=1 --config.model.growth_rate=12`.

`config.model` is a preset name plus one field per `ModelSpec` field, all None ("as the preset says"):
the spec owns the fields and their defaults, the config holds only what an experiment changes.
"""
from typing import Dict, Optional

import ml_collections
from ml_collections import config_dict

from sparsenet_jax.model import presets
from sparsenet_jax.model import spec as spec_lib
from sparsenet_jax.training import recipes



def model_config(name: str, **overrides) -> ml_collections.ConfigDict:
  """config.model: the preset's name, and every spec field the training code does not set, as None
  (typed, so the command line can set it) unless given in `overrides`."""
  model = ml_collections.ConfigDict({'name': name})
  for field in spec_lib.FIELDS:
    if spec_lib.KIND[field] == spec_lib.RUNTIME:
      continue  # dtype and axis_name come from `precision` and `sync_batch_norm`
    model[field] = config_dict.FieldReference(overrides.pop(field, None), field_type=spec_lib.field_type(field))
  if overrides:
    raise ValueError(f'unknown model field(s) {sorted(overrides)}')
  return model


def get_config(arg: Optional[str] = None) -> ml_collections.ConfigDict:
  parse_arg(arg, {})
  config = ml_collections.ConfigDict()
  config.model = model_config('sparsenet_abc_v1')

  config.dataset = ml_collections.ConfigDict()
  config.dataset.name = 'cifar10'
  # cifar10/cifar100/svhn: None = $SPARSENET_DATA_DIR or ~/.cache/sparsenet_jax/datasets (README: Datasets)
  config.dataset.data_dir = config_dict.placeholder(str)
  config.dataset.download = True  # False: never fetch; say which files to put where instead
  config.dataset.mirror = config_dict.placeholder(str)  # base URL serving the canonical files by name
  config.dataset.train_path = config_dict.placeholder(str)  # npz
  config.dataset.test_path = config_dict.placeholder(str)   # npz
  config.dataset.root = config_dict.placeholder(str)        # image_folder, imagenet_folder
  config.dataset.image_size = 224  # imagenet_folder: the train and eval crop (docs/data.md)
  config.dataset.num_workers = config_dict.placeholder(int)  # imagenet_folder: Grain workers; None: cores - 1
  config.dataset.validation_size = 0  # > 0: evaluate on this many held-out training images instead
  config.dataset.augment = config_dict.placeholder(str)     # None: the dataset's default ('cifar'/'none')
  config.dataset.num_classes = config_dict.placeholder(int)  # npz: None infers max label + 1

  # SGD with Nesterov momentum, global batch 64, L2 1e-4 on every parameter (authors' scripts).
  config.batch_size = 64  # global, split across all devices
  config.num_epochs = 280.0
  config.num_train_steps = -1  # > 0 overrides num_epochs (smoke tests)
  config.learning_rates = (0.1, 0.01, 0.001, 0.0002)
  config.lr_boundaries_epochs = (150.0, 200.0, 250.0)
  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = 'sgd'  # any optax optimiser: optax.<name>(learning_rate=schedule, **kwargs)
  config.optimizer.kwargs = ml_collections.ConfigDict({'momentum': 0.9, 'nesterov': True})
  config.weight_decay = 1e-4      # L2: decay * params added to the gradient before the optimiser
  config.sync_batch_norm = False  # the paper: per-device BatchNorm statistics
  config.precision = 'fp32'       # or 'bf16': bf16 compute, fp32 parameters and BN statistics

  config.init_from = config_dict.placeholder(str)  # an exported .npz or a workdir: start from its weights
  config.seed = 0
  config.log_every_steps = 100
  config.eval_every_epochs = 10
  config.checkpoint_every_epochs = 5
  config.keep_checkpoints = 3
  config.eval_batch_size = 500
  config.max_device_dataset_bytes = 2 ** 31  # larger training sets stream from the host
  return config


def parse_arg(arg: Optional[str], allowed: Dict[str, tuple]) -> Dict[str, str]:
  """'variant=bc' -> {'variant': 'bc'}; every key and value must be in `allowed`."""
  out = {}
  for item in filter(None, (arg or '').split(',')):
    key, sep, value = item.partition('=')
    if not allowed:
      raise ValueError(f'config argument {item!r}: this config file takes no arguments')
    if not sep or key not in allowed:
      raise ValueError(f'config argument {item!r} is not one of {", ".join(f"{k}=..." for k in allowed)}')
    if allowed[key] and value not in allowed[key]:
      raise ValueError(f'config argument {key}={value!r}: allowed values are {", ".join(allowed[key])}')
    out[key] = value
  return out


def paper_config(dataset: str, model: str) -> ml_collections.ConfigDict:
  """One cell of the paper's Table 2: `model` trained on `dataset` with the paper's recipe."""
  config = get_config()
  config.model = model_config(model)
  config.dataset.name = dataset
  for key, value in recipes.SPARSENET[dataset].items():
    config[key] = value
  if dataset == 'svhn':
    config.eval_every_epochs = 2
    config.checkpoint_every_epochs = 1  # an SVHN epoch is 9,443 steps
  return config


_VARIANTS = {'basic': 'sparsenet', 'bc': 'sparsenet_bc', 'abc': 'sparsenet_abc'}  # presets' families


def sparsenet_config(dataset: str, version: str, arg: Optional[str]) -> ml_collections.ConfigDict:
  """`:variant=basic|bc|abc` picks SparseNet, SparseNet-bc or SparseNet-abc (default abc)."""
  variant = parse_arg(arg, {'variant': tuple(_VARIANTS)}).get('variant', 'abc')
  return paper_config(dataset, f'{_VARIANTS[variant]}_{version}')


def densenet_config(dataset: str, arg: Optional[str]) -> ml_collections.ConfigDict:
  """`:model=NAME`, any preset (default densenet_bc_100: the DenseNet-BC baselines are densenet_bc_100,
  densenet_bc_250, densenet_bc_190 and densenet_40), trained with DenseNet's recipe (`recipes.DENSENET`,
  dropout on SVHN)."""
  name = parse_arg(arg, {'model': tuple(presets.names())}).get('model', 'densenet_bc_100')
  config = paper_config(dataset, name)
  for key, value in recipes.DENSENET[dataset].items():
    config[key] = value
  if dataset in recipes.DENSENET_DROPOUT:
    config.model.dropout = recipes.DENSENET_DROPOUT[dataset]
  return config
