"""Tests see 4 CPU devices, so multi-device code runs here; the flag must precede `import jax`."""
import os

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=4')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(ROOT, '..', 'shared', 'data')
# Subprocesses (launch scripts) run this checkout's code, whatever else is installed.
os.environ['PYTHONPATH'] = os.pathsep.join(filter(None, [ROOT, os.environ.get('PYTHONPATH')]))


def build(config, num_classes, steps_per_epoch, axis_name=None):
  """(model, optimiser, schedule) of a training config, as the training loop makes them."""
  from sparsenet_jax.model import network
  from sparsenet_jax.training import config_validation
  from sparsenet_jax.training import optimizer
  spec = config_validation.model_spec(config, num_classes, axis_name)
  tx, schedule = optimizer.from_config(config, steps_per_epoch)
  return network.make(spec), tx, schedule


CIFAR10_CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck')


def write_image_folder(root, classes=CIFAR10_CLASSES, counts=(('train', 20), ('test', 10)), size=32, seed=0):
  """An image folder (root/<split>/<class>/<n>.jpg) of JPEGs whose colour depends on the class, with
  noise: learnable, and built from nothing a fresh clone lacks. Returns the root."""
  import numpy as np
  from PIL import Image
  rng = np.random.default_rng(seed)
  colours = rng.integers(40, 216, (len(classes), 3))
  for split, count in counts:
    for c, name in enumerate(classes):
      os.makedirs(os.path.join(root, split, name), exist_ok=True)
      for i in range(count):
        pixels = np.clip(colours[c] + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(os.path.join(root, split, name, f'{i}.jpg'), quality=95)
  return root
