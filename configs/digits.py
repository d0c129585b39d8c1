r"""A small SparseNet-bc on scikit-learn's bundled 8x8 digits: real data, no download, about a minute on
two CPU cores. The README's first command.

  python launch/main.py --config=configs/digits.py --workdir=runs/digits
"""
from configs import default


def get_config(arg=None):
  default.parse_arg(arg, {})  # takes no arguments: refuse any rather than ignore it
  config = default.get_config()
  config.model = default.model_config('sparsenet_bc_v1')
  config.model.growth_rate = 12
  config.model.blocks = (4, 4, 4)
  config.model.path = 4
  config.dataset.name = 'digits'
  config.num_epochs = 30.0
  config.learning_rates = (0.1, 0.01, 0.001)
  config.lr_boundaries_epochs = (15.0, 25.0)
  config.log_every_steps = 50
  config.eval_every_epochs = 5
  config.checkpoint_every_epochs = 10
  config.eval_batch_size = 200
  return config
