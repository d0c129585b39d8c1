r"""A small SparseNet-bc for 3 epochs on CIFAR-10 images kept in an .npz file (real data, no download):
the local experiment the README reports, and the shape of a config for your own npz data.

  python launch/main.py --config=configs/cifar10_npz.py --workdir=runs/c10_npz \
      --config.dataset.train_path=/path/to/cifar10_train_10k.npz

The file holds arrays `image` (uint8, N x H x W x C) and `label`; there is no default path. With no
test_path, `validation_size` images are held out of the training file and evaluated on.
"""
from configs import default


def get_config(arg=None):
  default.parse_arg(arg, {})  # takes no arguments: refuse any rather than ignore it
  config = default.get_config()
  config.model = default.model_config('sparsenet_bc_v1')
  config.model.growth_rate = 12
  config.model.blocks = (6, 6, 6)
  config.model.path = 6
  config.dataset.name = 'npz'
  config.dataset.validation_size = 1000
  config.num_epochs = 3.0
  config.learning_rates = (0.1, 0.01)
  config.lr_boundaries_epochs = (2.5,)
  config.log_every_steps = 20
  config.eval_every_epochs = 1
  config.checkpoint_every_epochs = 1
  return config
