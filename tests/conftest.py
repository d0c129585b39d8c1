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
