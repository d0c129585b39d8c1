"""A connection pattern registered from outside the package: every third layer.

Nothing in sparsenet_jax knows this pattern. Registering it by name is all it takes for the spec, the
network (unrolled and scanned), the parameter and FLOP counts and a real train step, on DenseNet-40's
blocks (a 16-channel stem at k=12: read by channel counts) and on SparseNet-bc-V1's (whole groups).
"""
import jax
import numpy as np
import optax
import pytest

from sparsenet_jax.model import connectivity
from sparsenet_jax.model import counting
from sparsenet_jax.model import layout
from sparsenet_jax.model import network
from sparsenet_jax.model import presets
from sparsenet_jax.model.spec import ModelSpec
from sparsenet_jax.training import steps
from test_scan import _variables  # random weights and positive BN variances, in a model's layout


@connectivity.register('every_third')
def every_third(total, growth_rate, input_width, *, every=3):
  """The block input and the outputs 1, 1 + every, 1 + 2 * every, ... layers back (the newest always)."""
  layers = (total - input_width) // growth_rate
  read = [(0, input_width)]
  for distance in range(1, layers + 1, every):
    start = input_width + (layers - distance) * growth_rate
    read.append((start, start + growth_rate))
  return read


SPECS = {  # small blocks for speed: the first two layers of a block grow, the third reads a window
    'densenet_40': presets.get('densenet_40', connectivity='every_third', blocks=(3, 2), num_classes=5),
    'sparsenet_bc_v1': presets.get('sparsenet_bc_v1', connectivity='every_third', blocks=(3, 2),
                                   num_classes=5),
}
# The third layer reads the input and the newest output: a prefix of whole groups and a window in
# SparseNet-bc-V1's first block, a prefix of 16 channels (not whole groups, so unrolled) in DenseNet-40's.
SCHEDULES = {'densenet_40': [['grow', 'layer'], ['grow']], 'sparsenet_bc_v1': [['grow', 'steady'], ['grow']]}
IMAGE = (8, 8, 3)


def test_rows_by_hand():
  rows, out = connectivity.block_rows(10, 5, 4, 'every_third')  # 10 input channels, k=4
  assert rows == (((0, 10),), ((0, 14),), ((0, 10), (14, 18)), ((0, 10), (18, 22)), ((0, 14), (22, 26)))
  assert out == ((0, 10), (14, 18), (26, 30))  # layers 5 and 2: distances 1 and 4


def test_the_spec_names_it_and_keeps_no_path_or_near():
  spec = SPECS['sparsenet_bc_v1']
  assert (spec.connectivity, spec.path, spec.near) == ('every_third', None, None)
  assert ModelSpec.from_json(spec.to_json()) == spec
  assert presets.from_config({'model': {'name': 'densenet_40', 'connectivity': 'every_third', 'blocks': (3, 2),
                                        'num_classes': 5}}) == SPECS['densenet_40']


def test_a_pattern_keeps_and_checks_only_the_parameters_it_declares(monkeypatch):
  monkeypatch.setattr(connectivity, 'PATTERNS', dict(connectivity.PATTERNS))

  def positive_path(path):
    if not isinstance(path, int) or path < 1:
      raise ValueError(f'path must be a positive integer, got {path!r}')
    return dict(path=path)

  @connectivity.register('newest', params=('path',), resolve=positive_path)
  def read_newest(total, growth_rate, input_width, *, path):  # the input and the `path` newest layers
    return [(0, input_width), (max(input_width, total - path * growth_rate), total)]

  spec = ModelSpec(growth_rate=4, blocks=(4,), connectivity='newest', path=2, near=1)
  assert (spec.path, spec.near) == (2, None)
  assert spec.pattern_params() == {'path': 2}
  assert network.block_plans(spec)[0].rows[3] == ((0, 8), (12, 20))
  with pytest.raises(ValueError, match='path must be a positive integer'):
    ModelSpec(growth_rate=4, blocks=(4,), connectivity='newest', path=0)


def expected_counts(spec, image):
  """Parameters and FLOPs (docs/model.md section 3) by hand from the plans' rows: what each conv reads."""
  k, bias = spec.growth_rate, spec.conv_bias
  size, stem = image[0] * image[1], spec.stem_features or 2 * k

  def conv(size, cin, cout, window):
    return window * cin * cout + cout * bias, 2 * size * window * cin * cout

  counts = [conv(size, 3, stem, 9)]
  for plan in network.block_plans(spec):
    for w in map(connectivity.width, plan.rows):
      if spec.bottleneck:
        counts += [(2 * w, 0), conv(size, w, 4 * k, 1), (8 * k, 0), conv(size, 4 * k, k, 9)]
      else:
        counts += [(2 * w, 0), conv(size, w, k, 9)]
    w = plan.output_width
    if plan.transition_width is not None:
      counts += [(2 * w, 0), conv(size, w, plan.transition_width, 1)]
      size //= 4
  counts += [(2 * w, 0), (w * spec.num_classes + spec.num_classes, 2 * w * spec.num_classes)]  # head
  return sum(p for p, _ in counts), sum(f for _, f in counts)


@pytest.mark.parametrize('name', sorted(SPECS))
def test_counts_follow_the_rows(name):
  spec = SPECS[name]
  model = network.make(spec)
  assert counting.summarize(model, IMAGE, with_xla=False) == dict(zip(('params', 'flops'),
                                                                     expected_counts(spec, IMAGE)))


def test_the_full_preset_counts_follow_the_rows():
  spec = presets.get('sparsenet_bc_v1', connectivity='every_third')
  params, flops = expected_counts(spec, (32, 32, 3))
  assert counting.summarize(network.make(spec), with_xla=False) == {'params': params, 'flops': flops}
  assert params < 828_442  # fewer reads than path 14's (docs/model.md section 3)


@pytest.mark.parametrize('name', sorted(SPECS))
def test_scanned_runs_as_unrolled(name):
  unrolled, scanned = network.make(SPECS[name]), network.make(SPECS[name], scan=True)
  kinds = [[s.kind for s in network.block_schedule(p, scanned.spec)] for p in scanned.plans()]
  assert kinds == SCHEDULES[name]
  x = jax.random.normal(jax.random.key(0), (2, *IMAGE))
  v = _variables(unrolled, x)
  forward = jax.jit(lambda model, v: model.apply(v, x, train=True, mutable=['batch_stats']), static_argnums=0)
  logits, updates = forward(unrolled, v)
  logits_s, updates_s = forward(scanned, layout.to_scanned(scanned.spec, v))
  np.testing.assert_allclose(np.asarray(logits), np.asarray(logits_s), rtol=1e-4, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5),
               updates, layout.to_unrolled(scanned.spec, updates_s))


@pytest.mark.parametrize('name', sorted(SPECS))
def test_trains(name):
  """Real train steps on one tiny batch: the loss is finite and falls."""
  model = network.make(SPECS[name])
  tx = optax.sgd(0.05, momentum=0.9)
  mesh = steps.make_mesh()
  rng = np.random.default_rng(0)
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  images = jax.device_put(rng.integers(0, 256, (8, *IMAGE), dtype=np.uint8), sharding)
  labels = jax.device_put(rng.integers(0, 5, 8).astype(np.int32), sharding)
  step = steps.make_train_step(model, tx, lambda s: 0.05, mesh, (127.5,) * 3, (64.,) * 3, 'none')
  state = steps.create_train_state(0, model, tx, IMAGE, mesh)
  losses = []
  for _ in range(4):
    state, metrics = step(state, images, labels)
    losses.append(float(metrics['train_loss']))
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
