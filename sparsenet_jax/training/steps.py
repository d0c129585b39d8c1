"""The train state, the device mesh, the jitted train and eval steps, and how global batches are fed.

The step is written once, for one device, and run data-parallel with `jax.shard_map` over a 1-D `data`
mesh inside `jax.jit`: pmap's semantics (the global batch is split across devices, each device keeps its
own BatchNorm statistics unless the model's `axis_name` is set, gradients are averaged) without pmap.
Parameters are ordinary replicated global arrays. `launch/bench.py` times exactly these steps.
"""
from __future__ import annotations

import functools
from typing import Any, Dict, Iterator, Sequence

from absl import logging
import flax
import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from sparsenet_jax.data import augment
from sparsenet_jax.data import datasets
from sparsenet_jax.data import input_pipeline
from sparsenet_jax.data import stream
from sparsenet_jax.model import kernels
from sparsenet_jax.model import layout
from sparsenet_jax.model import network
from sparsenet_jax.training import cpu_devices


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array  # raw uint32 key data, so a checkpoint holds plain arrays


def variables(state: TrainState) -> Dict[str, Any]:
  """What a forward pass needs: {'params', 'batch_stats'}."""
  return {'params': state.params, 'batch_stats': state.batch_stats}


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def create_train_state(seed: int, model, tx, image_shape, mesh, abstract: bool = False) -> TrainState:
  """Initialises replicated on every device of `mesh`; `abstract` gives only shapes and shardings.

  The variables are drawn in the canonical (unrolled) layout and then moved to the model's, so a seed
  gives the same network whatever `scan` / `scan_chunk` say.
  """
  def init():
    rng = jax.random.key(seed)
    canonical = network.make(model.spec.canonical())
    variables = canonical.init(jax.random.fold_in(rng, 1), jnp.zeros((1, *image_shape), jnp.float32),
                               train=False)
    variables = layout.to_scanned(model.spec, variables)
    params = variables['params']
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get('batch_stats', {}), opt_state=tx.init(params),
                      rng=jax.random.key_data(jax.random.fold_in(rng, 2)))
  replicated = NamedSharding(mesh, P())
  if abstract:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                        jax.eval_shape(init))
  return jax.jit(init, out_shardings=replicated)()


def make_mesh() -> jax.sharding.Mesh:
  """A 1-D `data` mesh over every device of every process, in process order, so that process p's
  devices hold the p-th slice of each global batch (what `Feeder` hands them)."""
  devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
  return jax.sharding.Mesh(np.array(devices), ('data',), axis_types=(jax.sharding.AxisType.Auto,))


def batch_norm_axis(sync_batch_norm: bool):
  """The mesh axis the train step's BatchNorm statistics are averaged over ('data'), or None for per-device
  statistics: `config.sync_batch_norm`, and always on a CPU split into one device per core
  (`cpu_devices`), which is one device to the run. The model of the eval step takes None: it reads the
  running statistics."""
  return 'data' if sync_batch_norm or cpu_devices.active() else None


# ----------------------------------------------------------------------------------------------------
# The steps.


def make_train_step(model, tx, schedule, mesh, mean, std, augment_kind: str):
  """A jitted step on a global batch of uint8 images; the train state is donated."""

  def per_device(state: TrainState, x, labels, key):
    # Dropout masks (model.spec.dropout > 0) differ per device, like the devices' examples.
    dropout_key = jax.random.fold_in(jax.random.wrap_key_data(key), jax.lax.axis_index('data'))

    def loss_fn(params):
      logits, updates = model.apply({'params': params, 'batch_stats': state.batch_stats}, x,
                                    train=True, mutable=['batch_stats'], rngs={'dropout': dropout_key})
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
      return loss, (logits, updates['batch_stats'])

    # Differentiate a per-device copy of the parameters, then average: pmap's gradient semantics.
    params = jax.lax.pcast(state.params, 'data', to='varying')
    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    grads = jax.lax.pmean(grads, 'data')
    # Averaging each device's running statistics every step equals averaging them once at the end
    # (they are linear in the batch statistics), and keeps the state replicated.
    batch_stats = jax.lax.pmean(batch_stats, 'data')
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == labels)
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                              opt_state=opt_state)
    return new_state, {'train_loss': jax.lax.pmean(loss, 'data'),
                       'train_accuracy': jax.lax.pmean(accuracy, 'data')}

  sharded = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P('data'), P('data'), P()),
                          out_specs=(P(), P()))

  @functools.partial(jax.jit, donate_argnums=0,
                     compiler_options=kernels.compiler_options(model.spec.conv_impl, 'train'))
  def train_step(state: TrainState, images, labels):
    # Augmenting the global batch with one key makes the result independent of the device count.
    key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    x = augment.preprocess(key, images, mean, std, augment_kind, train=True)
    x = jax.lax.with_sharding_constraint(x, NamedSharding(mesh, P('data')))
    # The dropout key, like the augmentation's, is a function of (state rng, step): resume stays exact.
    dropout_key = jax.random.key_data(jax.random.fold_in(key, 1))
    new_state, metrics = sharded(state, x, labels, dropout_key)
    metrics['learning_rate'] = schedule(state.step)
    return new_state, metrics

  return train_step


TOP5_MIN_CLASSES = 100  # from this many classes on, evaluation also counts top-5 hits (ImageNet's second number)


def make_eval_step(model, mesh, mean, std):
  """Sums of loss and correct predictions over the unmasked examples of a global batch, and of top-5 hits
  for models of `TOP5_MIN_CLASSES` classes or more (one `lax.top_k` of the logits: cheap)."""
  top5 = model.spec.num_classes >= TOP5_MIN_CLASSES

  def per_device(params, batch_stats, x, labels, mask):
    logits = model.apply({'params': params, 'batch_stats': batch_stats}, x, train=False)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    hits = [jnp.argmax(logits, -1) == labels]
    if top5:
      hits.append(jnp.any(jax.lax.top_k(logits, 5)[1] == labels[:, None], axis=-1))
    return (jax.lax.psum(jnp.sum(jnp.where(mask, loss, 0.0)), 'data'),
            *(jax.lax.psum(jnp.sum(jnp.where(mask, h, 0)), 'data') for h in hits))

  sharded = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(), P('data'), P('data'), P('data')),
                          out_specs=(P(),) * (3 if top5 else 2))

  @functools.partial(jax.jit, compiler_options=kernels.compiler_options(model.spec.conv_impl, 'eval'))
  def eval_step(variables, images, labels, mask):
    x = augment.preprocess(None, images, mean, std, 'none', train=False)
    return sharded(variables['params'], variables['batch_stats'], x, labels, mask)

  return eval_step


# ----------------------------------------------------------------------------------------------------
# Feeding global batches.


class Feeder:
  """Turns host indices into global batches sharded over the mesh.

  Single-process runs whose training set fits `max_bytes` keep it on the devices and gather there;
  otherwise (or multi-process) each process gathers its part of the batch on the host and hands it over
  with `jax.make_array_from_process_local_data`.
  """

  def __init__(self, split: datasets.Split, mesh, max_bytes: int):
    self.split = split
    self.sharding = NamedSharding(mesh, P('data'))
    self.on_device = jax.process_count() == 1 and split.images.nbytes <= max_bytes
    if self.on_device:
      replicated = NamedSharding(mesh, P())
      self.images = jax.device_put(split.images, replicated)
      self.labels = jax.device_put(split.labels, replicated)
      self._gather = jax.jit(lambda a, b, i: (a[i], b[i]), out_shardings=(self.sharding, self.sharding))

  def _local(self, arr):
    n = jax.process_count()
    return arr.reshape(n, -1, *arr.shape[1:])[jax.process_index()] if n > 1 else arr

  def batch(self, idx: np.ndarray, *extra: np.ndarray):
    if self.on_device and not extra:
      return self._gather(self.images, self.labels, idx)
    local = self._local(idx)
    arrays = (self.split.images[local], self.split.labels[local]) + tuple(self._local(e) for e in extra)
    return tuple(jax.make_array_from_process_local_data(self.sharding, a) for a in arrays)


def train_batches(split, mesh, seed: int, steps_per_epoch: int, batch_size: int, start_step: int,
                  total_steps: int, augment: str, max_bytes: int) -> Iterator[tuple]:
  """Global (images, labels) of steps start_step, start_step + 1, ... < total_steps: gathered from the arrays
  (`Feeder`), or, for a streamed split (`stream.Streamed`), decoded and cropped by Grain's workers. Either way
  batch s depends on (seed, s) only, so a resume continues with the batch the interrupted run would have used."""
  if isinstance(split, stream.Streamed):
    dataset = stream.train_dataset(split, seed, batch_size, steps_per_epoch, total_steps, augment,
                                   jax.process_index(), jax.process_count())
    yield from _streamed(dataset[start_step:], split, mesh, ('image', 'label'))
    return
  feeder = Feeder(split, mesh, max_bytes)
  for step in range(start_step, total_steps):
    yield feeder.batch(input_pipeline.train_batch_indices(seed, step, steps_per_epoch, batch_size, len(split)))


def feed_summary(split, max_bytes: int) -> str:
  """How the training examples reach the step, for the log: the choice is made from the data's size."""
  if isinstance(split, stream.Streamed):
    decoded = len(split) * int(np.prod(split.image_shape))
    return (f'{len(split):,} training images streamed from {split.root} by Grain, {split.num_workers} worker '
            'processes per host decoding ' + ('and cropping each batch' if split.crop else
                                              f'each batch ({decoded / 2**20:,.1f} MiB decoded > {max_bytes:,} '
                                              'bytes, max_device_dataset_bytes)'))
  where = ('held in device memory' if jax.process_count() == 1 and split.images.nbytes <= max_bytes
           else 'held in host memory, each batch copied to the devices')
  return f'{len(split):,} training images ({split.images.nbytes / 2**20:,.1f} MiB) {where}'


def _streamed(dataset, split: stream.Streamed, mesh, keys: Sequence[str]) -> Iterator[tuple]:
  """The global arrays `keys` of each element of `dataset` (this process's parts of global batches), two
  batches ahead on the devices; warns when a batch holds an unreadable file not seen before."""
  sharding = NamedSharding(mesh, P('data'))

  def put(batch):  # copied out of the workers' shared memory, which is released as soon as it is dropped
    return tuple(jax.make_array_from_process_local_data(sharding, np.array(batch[k])) for k in keys), batch['bad']

  ahead = grain.experimental.ThreadPrefetchIterDataset(stream.iterate(dataset, split.num_workers).map(put),
                                                       prefetch_buffer_size=2)
  iterator, unreadable = iter(ahead), {}
  try:
    for arrays, bad in iterator:
      new = sorted(set(int(i) for i in bad[bad >= 0]) - set(unreadable))
      if new:
        unreadable.update((i, split.path(i)) for i in new)
        logging.warning('%d unreadable file(s) under %s so far (training: each replaced by the next readable '
                        'file; evaluation: not counted), e.g. %s', len(unreadable), split.root,
                        ', '.join(list(unreadable.values())[:stream.NAMES_SHOWN]))
      yield arrays
  finally:
    iterator.close()


def evaluate_split(eval_step, variables, split: datasets.Split, mesh, batch_size: int) -> Dict[str, float]:
  """Every example counted exactly once: the last batch is padded and masked (a streamed folder's unreadable
  files are masked too, and not counted)."""
  sums, counts = [], []  # kept on the device until the end: no host sync per batch
  n = len(split)
  if isinstance(split, stream.Streamed):
    dataset = stream.eval_dataset(split, batch_size, jax.process_index(), jax.process_count())
    for images, labels, mask in _streamed(dataset, split, mesh, ('image', 'label', 'mask')):
      sums.append(eval_step(variables, images, labels, mask))
      counts.append(_count(mask))
  else:
    feeder = Feeder(split, mesh, max_bytes=0)
    for idx, mask in input_pipeline.eval_batches(n, batch_size):
      images, labels, mask = feeder.batch(idx, mask)
      sums.append(eval_step(variables, images, labels, mask))
  sums, counts = jax.device_get((sums, counts))
  n = int(sum(int(c) for c in counts)) if counts else n
  totals = [sum(float(x) for x in column) for column in zip(*sums)]
  accuracy = int(totals[1]) / n
  row = {'eval_loss': totals[0] / n, 'eval_accuracy': accuracy, 'eval_error': 1.0 - accuracy, 'num_examples': n}
  if len(totals) > 2:  # top-5 (make_eval_step: models of TOP5_MIN_CLASSES classes or more)
    row['eval_top5_error'] = 1.0 - int(totals[2]) / n
  return row


@jax.jit
def _count(mask: jax.Array) -> jax.Array:
  return jnp.sum(mask, dtype=jnp.int32)
