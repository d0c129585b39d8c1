"""Tests see 4 CPU devices, so multi-device code runs here; the flags must precede `import jax`."""
import os
import shutil
import tempfile

import pytest

# The tests compile far more than they run, and XLA:CPU spends most of a compile in LLVM's optimiser:
# without it (level 0) the suite needs about 40% less CPU. The code compiled is the same program; only its
# machine code is slower, and float rounding can differ in the last bits (FMA contraction). Speed is
# measured by launch/bench.py, which keeps XLA's defaults.
TEST_XLA_FLAGS = '--xla_backend_optimization_level=0'
os.environ.setdefault('XLA_FLAGS', f'--xla_force_host_platform_device_count=4 {TEST_XLA_FLAGS}')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

# One persistent XLA compilation cache per test session, shared by the pytest-xdist workers (which
# inherit this environment) and by the launch scripts the tests start: the tests build the same tiny
# models again and again, and most of the suite's time is XLA compiling them. Fresh for every session
# (removed at its end), so no test depends on what an earlier session left; a cache the caller set is used
# as it is.
_OWN_CACHE = 'JAX_COMPILATION_CACHE_DIR' not in os.environ
if _OWN_CACHE:
  os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(prefix='sparsenet_jax_tests_xla_')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.1')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(ROOT, '..', 'shared', 'data')
# Subprocesses (launch scripts) run this checkout's code, whatever else is installed.
os.environ['PYTHONPATH'] = os.pathsep.join(filter(None, [ROOT, os.environ.get('PYTHONPATH')]))


def cpu_env(devices=1, **extra):
  """The environment of a launch script a test starts: `devices` CPU devices, the tests' XLA flags."""
  count = f'--xla_force_host_platform_device_count={devices} '  # always: else main.py takes one per core
  return dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS=count + TEST_XLA_FLAGS, **extra)


def pytest_collection_modifyitems(items):
  """Slow tests first (a stable sort: otherwise in file order): pytest-xdist hands the first tests out
  round robin, so the long ones run side by side instead of one of them alone at the end."""
  items.sort(key=lambda item: item.get_closest_marker('slow') is None)


def pytest_sessionfinish(session):
  if _OWN_CACHE and not hasattr(session.config, 'workerinput'):  # the xdist controller, or a plain run
    shutil.rmtree(os.environ['JAX_COMPILATION_CACHE_DIR'], ignore_errors=True)


def override(config, changes):
  """`config` with each dotted field of `changes` set ({'model.growth_rate': 4}); returns it."""
  for key, value in changes.items():
    node = config
    *parents, leaf = key.split('.')
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  return config


def build(config, num_classes, steps_per_epoch, axis_name=None):
  """(model, optimiser, schedule) of a training config, as the training loop makes them."""
  from sparsenet_jax.model import network
  from sparsenet_jax.model import presets
  from sparsenet_jax.training import optimizer
  spec = presets.from_config(config, num_classes, axis_name)
  tx, schedule = optimizer.from_config(config, steps_per_epoch)
  return network.make(spec), tx, schedule


def restored_state(workdir, config, num_classes, steps_per_epoch, image_shape):
  """The train state of `workdir`'s latest checkpoint of `config`'s model, on this process's devices (a
  checkpoint written by other processes names devices that do not exist here)."""
  from sparsenet_jax.model import network
  from sparsenet_jax.training import checkpoints
  from sparsenet_jax.training import steps
  model, tx, _ = build(config, num_classes, steps_per_epoch)
  mesh = steps.make_mesh()
  state, _, _ = checkpoints.restore(
      checkpoints.manager(str(workdir), read_only=True),
      lambda s: steps.create_train_state(0, network.make(s), tx, image_shape, mesh, abstract=True),
      model.spec, image_shape, mesh)
  return state


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


@pytest.fixture(scope='session')
def faults(tmp_path_factory, request):
  """The fault table's harness (tests/fault_table.py), its trained run shared by the pytest workers."""
  import fault_table  # pylint: disable=import-outside-toplevel
  base = tmp_path_factory.getbasetemp()
  shared = base.parent if hasattr(request.config, 'workerinput') else base  # this session's, all workers
  harness = fault_table.train_once(str(shared))
  yield harness
  harness.close()
