r"""ImageNet (an image folder in ImageNet's layout, streamed with Grain: docs/data.md) with DenseNet's ImageNet
recipe (docs/imagenet.md).

  python launch/main.py --config=configs/imagenet.py:model=densenet_121 --workdir=runs/in_d121 \
      --config.dataset.root=/path/to/imagenet
  (a tfds ArrayRecord copy instead: --config.dataset.name=imagenet_tfds --config.dataset.data_dir=/path/to/tfds)
  (model=densenet_121 | densenet_169 | densenet_201 | densenet_161 | sparsenet_imagenet_121 | sparsenet_imagenet_169, or
  any preset with the ImageNet stem), `:model=NAME,batch_size=1024` for another global batch: the rate is
  0.1 x batch / 256 (`recipes.imagenet_learning_rates`), which `--config.batch_size` alone would not rescale.

Batch 256, SGD with Nesterov momentum 0.9, weight decay 1e-4, 90 epochs, the rate divided by 10 at epochs 30
and 60 (`recipes.IMAGENET`); bf16 compute, for accelerators (`--config.precision=fp32` on a CPU);
`--config.model.remat=True` recomputes every layer in the backward pass (BENCHMARKS.md: the memory it saves).
"""
from configs import default
from sparsenet_jax.model import presets
from sparsenet_jax.training import recipes


def get_config(arg=None):
  imagenet = tuple(n for n in presets.names() if presets.get(n).stem == 'imagenet')
  args = default.parse_arg(arg, {'model': imagenet, 'batch_size': ()})
  name = args.get('model', 'densenet_121')
  try:
    batch_size = int(args.get('batch_size', recipes.IMAGENET['batch_size']))
  except ValueError:
    raise ValueError(f'config argument batch_size={args["batch_size"]!r} is not an integer') from None
  if batch_size < 1:
    raise ValueError(f'config argument batch_size={batch_size} must be positive')
  config = default.get_config()
  config.model = default.model_config(name)
  config.dataset.name = 'imagenet_folder'  # train/<class>/*.JPEG and val/<class>/*.JPEG under dataset.root
  # dataset.image_size (224) and dataset.num_workers (None: every core but one) keep default.py's values.
  for key, value in recipes.IMAGENET.items():
    config[key] = value
  config.batch_size = batch_size
  config.learning_rates = recipes.imagenet_learning_rates(batch_size)
  config.precision = 'bf16'
  config.log_every_steps = 100
  config.eval_every_epochs = 1
  config.checkpoint_every_epochs = 1  # an epoch is 5,004 steps at batch 256
  config.eval_batch_size = 512
  return config
