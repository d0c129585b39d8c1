"""Training and evaluation, top to bottom: config -> data -> model -> step -> checkpoint -> metrics.

The step is written once, for one device, and run data-parallel with `jax.shard_map` over a 1-D `data`
mesh inside `jax.jit`: pmap's semantics (the global batch is split across devices, each device keeps its
own BatchNorm statistics unless `config.sync_batch_norm`, gradients are averaged) without pmap. Parameters
are ordinary replicated global arrays.
"""
from __future__ import annotations

import functools
import os
import signal
import time
from typing import Any, Dict, Optional

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from sparsenet_jax.data import augment
from sparsenet_jax.training import checkpoints
from sparsenet_jax.training import config_validation
from sparsenet_jax.data import datasets
from sparsenet_jax.data import input_pipeline
from sparsenet_jax.training import metrics as metrics_lib
from sparsenet_jax.model import network
from sparsenet_jax.training import optimizer
from sparsenet_jax.model import presets

DTYPES = {'fp32': jnp.float32, 'bf16': jnp.bfloat16}


class NonFiniteLossError(RuntimeError):
  """The loss became NaN or infinite; the last good checkpoint is kept."""


class WorkdirError(RuntimeError):
  """The workdir cannot be created or written; found before any work is done."""


class PreemptedError(RuntimeError):
  """SIGTERM/SIGINT arrived: a checkpoint was saved and the same command resumes the run."""


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array  # raw uint32 key data, so a checkpoint holds plain arrays


# ----------------------------------------------------------------------------------------------------
# Model and optimiser from the config.


def model_hyperparameters(config, num_classes: int) -> Dict[str, Any]:
  hp = {k: v for k, v in config.model.items() if k in network.HYPERPARAMETERS}
  hp['num_classes'] = num_classes
  if hp.get('blocks') is not None:
    hp['blocks'] = tuple(hp['blocks'])
  return hp


def build_model(config, num_classes: int, axis_name: Optional[str] = None) -> network.SparseNet:
  return presets.build(config.model.name, **model_hyperparameters(config, num_classes),
                       dtype=DTYPES[config.precision], axis_name=axis_name)


def make_optimizer(config, steps_per_epoch: int):
  schedule = optimizer.learning_rate_schedule(config.learning_rates, config.lr_boundaries_epochs,
                                              steps_per_epoch)
  tx = optimizer.sgd(schedule, config.momentum, config.nesterov, config.weight_decay)
  return tx, schedule


def create_train_state(seed: int, model, tx, image_shape, mesh, abstract: bool = False) -> TrainState:
  """Initialises replicated on every device of `mesh`; `abstract` gives only shapes and shardings."""
  def init():
    rng = jax.random.key(seed)
    variables = model.init(jax.random.fold_in(rng, 1), jnp.zeros((1, *image_shape), jnp.float32),
                           train=False)
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


# ----------------------------------------------------------------------------------------------------
# The steps.


def make_train_step(model, tx, schedule, mesh, mean, std, augment_kind: str):
  """A jitted step on a global batch of uint8 images; the train state is donated."""

  def per_device(state: TrainState, x, labels):
    def loss_fn(params):
      logits, updates = model.apply({'params': params, 'batch_stats': state.batch_stats}, x,
                                    train=True, mutable=['batch_stats'])
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

  sharded = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P('data'), P('data')),
                          out_specs=(P(), P()))

  @functools.partial(jax.jit, donate_argnums=0)
  def train_step(state: TrainState, images, labels):
    # Augmenting the global batch with one key makes the result independent of the device count.
    key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    x = augment.preprocess(key, images, mean, std, augment_kind, train=True)
    x = jax.lax.with_sharding_constraint(x, NamedSharding(mesh, P('data')))
    new_state, metrics = sharded(state, x, labels)
    metrics['learning_rate'] = schedule(state.step)
    return new_state, metrics

  return train_step


def make_eval_step(model, mesh, mean, std):
  """Sums of loss and correct predictions over the unmasked examples of a global batch."""

  def per_device(params, batch_stats, x, labels, mask):
    logits = model.apply({'params': params, 'batch_stats': batch_stats}, x, train=False)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    correct = jnp.argmax(logits, -1) == labels
    return (jax.lax.psum(jnp.sum(jnp.where(mask, loss, 0.0)), 'data'),
            jax.lax.psum(jnp.sum(jnp.where(mask, correct, 0)), 'data'))

  sharded = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(), P('data'), P('data'), P('data')),
                          out_specs=(P(), P()))

  @jax.jit
  def eval_step(state: TrainState, images, labels, mask):
    x = augment.preprocess(None, images, mean, std, 'none', train=False)
    return sharded(state.params, state.batch_stats, x, labels, mask)

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


def evaluate_split(eval_step, state, split: datasets.Split, mesh, batch_size: int) -> Dict[str, float]:
  """Every example counted exactly once: the last batch is padded and masked."""
  feeder = Feeder(split, mesh, max_bytes=0)
  sums = []  # kept on the device until the end: no host sync per batch
  n = len(split.labels)
  for idx, mask in input_pipeline.eval_batches(n, batch_size):
    images, labels, mask = feeder.batch(idx, mask)
    sums.append(eval_step(state, images, labels, mask))
  sums = jax.device_get(sums)
  loss_sum = float(sum(float(l) for l, _ in sums))
  correct = int(sum(int(c) for _, c in sums))
  accuracy = correct / n
  return {'eval_loss': loss_sum / n, 'eval_accuracy': accuracy, 'eval_error': 1.0 - accuracy,
          'num_examples': n}


# ----------------------------------------------------------------------------------------------------
# The run.


def model_meta(model: network.SparseNet) -> Dict[str, Any]:
  """The hyperparameters a checkpoint was trained with (JSON-ready)."""
  hp = {k: getattr(model, k) for k in network.HYPERPARAMETERS if k not in ('axis_name', 'dtype')}
  hp['blocks'] = list(hp['blocks'])
  return hp


def final_row(workdir: str) -> Optional[Dict[str, Any]]:
  """The final evaluation of a finished run, or None."""
  rows = [r for r in metrics_lib.read(workdir) if r.get('final')]
  return rows[-1] if rows else None


class _StopSignal:
  """Remembers SIGTERM/SIGINT so the loop can finish its step and save before exiting."""

  def __init__(self):
    self.received = None
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread: leave signals alone
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    self.received = signal.Signals(signum).name

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def check_workdir(workdir: str) -> None:
  """Fails at start, not at the first save, when the workdir cannot hold a run."""
  probe = os.path.join(workdir, f'.write_test_{os.getpid()}')
  try:
    os.makedirs(workdir, exist_ok=True)
    with open(probe, 'w') as f:
      f.write('ok')
    os.remove(probe)
  except OSError as e:
    raise WorkdirError(f'cannot write to workdir {workdir}: {e.strerror or e}') from None


def train_and_evaluate(config, workdir: str) -> Dict[str, Any]:
  """Trains per `config`, resuming from the latest checkpoint in `workdir`; returns the final eval row."""
  check_workdir(workdir)
  # Config and data.
  data = datasets.load(config.dataset)
  image_shape = data.train.images.shape[1:]
  num_classes = config.model.num_classes or data.num_classes
  mesh = make_mesh()
  if config.batch_size % mesh.size:
    raise config_validation.ConfigError(f'config.batch_size={config.batch_size} is not divisible by the '
                                        f'{mesh.size} devices')
  if len(data.train) < config.batch_size:
    raise config_validation.ConfigError(f'config.batch_size={config.batch_size} is larger than the '
                                        f'training set ({len(data.train)} examples)')
  steps_per_epoch = optimizer.steps_per_epoch(len(data.train), config.batch_size)
  total_steps = (config.num_train_steps if config.num_train_steps > 0
                 else optimizer.total_steps(config.num_epochs, steps_per_epoch))

  # Model, optimiser, state.
  model = build_model(config, num_classes, axis_name='data' if config.sync_batch_norm else None)
  tx, schedule = make_optimizer(config, steps_per_epoch)
  state = create_train_state(config.seed, model, tx, image_shape, mesh)
  meta = {'model': model_meta(model), 'preset': config.model.name, 'num_classes': num_classes,
          'image_shape': list(image_shape), 'steps_per_epoch': steps_per_epoch,
          'dataset': config.dataset.name, 'class_names': list(data.class_names or []),
          'mean': list(data.mean), 'std': list(data.std)}

  # Checkpoints and metrics.
  mgr = checkpoints.manager(workdir, config.keep_checkpoints)
  if mgr.latest_step() is not None:
    state, _ = checkpoints.restore(mgr, state, meta)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  writer = metrics_lib.MetricWriter(workdir)
  start_step = int(state.step)
  progress = metrics_lib.Progress(total_steps, start_step)
  if start_step:
    progress.message(f'resumed from step {start_step} in {workdir}')

  train_step = make_train_step(model, tx, schedule, mesh, data.mean, data.std, data.augment)
  eval_step = make_eval_step(build_model(config, num_classes), mesh, data.mean, data.std)
  feeder = Feeder(data.train, mesh, config.max_device_dataset_bytes)

  def save(step):
    # The step is the data position (batch order is a function of seed and epoch); spelled out for people.
    epoch, batch = divmod(step, steps_per_epoch)
    checkpoints.save(mgr, step, state, {**meta, 'data_position': {'epoch': epoch, 'batch_in_epoch': batch}})

  def evaluate(step, final=False):
    row = {'step': step, 'epoch': step / steps_per_epoch,
           **evaluate_split(eval_step, state, data.test, mesh, config.eval_batch_size)}
    if final:
      row['final'] = True
    writer.write(row)
    return row

  window, window_start, untimed = [], time.time(), 0

  def flush(step):
    """Writes the mean of the metrics since the last flush; stops on a non-finite loss."""
    nonlocal window, window_start, untimed
    if not window:
      return
    rows = jax.device_get(window)
    losses = [float(r['train_loss']) for r in rows]
    if not np.all(np.isfinite(losses)):
      bad = step - len(rows) + 1 + int(np.argmin(np.isfinite(losses)))
      checkpoints.wait(mgr)
      raise NonFiniteLossError(f'non-finite training loss at step {bad}; the last good checkpoint '
                               f'(step {mgr.latest_step()}) in {workdir} is kept')
    means = {'train_loss': float(np.mean(losses)),
             'train_accuracy': float(np.mean([r['train_accuracy'] for r in rows]))}
    timed = len(rows) - untimed
    images_per_sec = timed * config.batch_size / (time.time() - window_start) if timed else float('nan')
    writer.write({'step': step, 'epoch': step / steps_per_epoch, **means,
                  'learning_rate': float(rows[-1]['learning_rate']), 'images_per_sec': images_per_sec})
    progress.update(step, step / steps_per_epoch, means['train_loss'], images_per_sec)
    window, window_start, untimed = [], time.time(), 0

  step = start_step
  with _StopSignal() as stop:
    while step < total_steps:
      idx = input_pipeline.train_batch_indices(config.seed, step, steps_per_epoch, config.batch_size,
                                               len(data.train.labels))
      images, labels = feeder.batch(idx)
      state, step_metrics = train_step(state, images, labels)
      window.append(step_metrics)
      step += 1
      if step == start_step + 1:  # the first step includes compilation: keep it out of img/s
        jax.block_until_ready(step_metrics)
        window_start, untimed = time.time(), len(window)
      epoch_end = step % steps_per_epoch == 0
      epoch = step // steps_per_epoch
      if step % config.log_every_steps == 0 or step == total_steps:
        flush(step)
      if epoch_end and step < total_steps and epoch % config.eval_every_epochs == 0:
        flush(step)
        evaluate(step)
        window_start = time.time()  # evaluation is not training throughput
      if (epoch_end and epoch % config.checkpoint_every_epochs == 0) or stop.received:
        flush(step)
        save(step)
        window_start = time.time()
      if stop.received and step < total_steps:
        checkpoints.wait(mgr)
        writer.close()
        raise PreemptedError(f'{stop.received} received: saved checkpoint at step {step} in {workdir}; '
                             'run the same command to resume')
    flush(step)
    final = final_row(workdir) if step == start_step else None
    if final is None:
      final = evaluate(step, final=True)
    if mgr.latest_step() != step:
      save(step)
  checkpoints.wait(mgr)
  writer.close()
  progress.message(f'done: step {step}, eval_accuracy {final["eval_accuracy"]:.4f}')
  return final


def evaluate(config, workdir: str) -> Dict[str, Any]:
  """Restores the latest checkpoint in `workdir` and evaluates it on the configured test split.

  Normalisation uses the statistics of the data the model was trained on (saved with the checkpoint),
  so another test file is judged exactly as the original test split was.
  """
  if not os.path.isdir(os.path.join(workdir, 'checkpoints')):
    raise checkpoints.CheckpointError(f'no checkpoints in {workdir}: train first (--mode=train)')
  mgr = checkpoints.manager(workdir, read_only=True)
  step = mgr.latest_step()
  if step is None:
    raise checkpoints.CheckpointError(f'no complete checkpoint in {workdir}/checkpoints: train first')
  saved = checkpoints.read_meta(mgr, step)
  data = datasets.load(config.dataset)
  num_classes = saved['num_classes']
  if data.test.labels.size and int(data.test.labels.max()) >= num_classes:
    raise datasets.DataError(f'test labels go up to {int(data.test.labels.max())} but the model in {workdir} '
                             f'has {num_classes} classes')
  mesh = make_mesh()
  model = build_model(config, num_classes)
  tx, _ = make_optimizer(config, saved['steps_per_epoch'])
  abstract = create_train_state(config.seed, model, tx, tuple(saved['image_shape']), mesh, abstract=True)
  meta = {'model': model_meta(model), 'num_classes': num_classes,
          'image_shape': list(data.test.images.shape[1:])}
  state, _ = checkpoints.restore(mgr, abstract, meta, step)
  eval_batch = config.eval_batch_size - config.eval_batch_size % mesh.size or mesh.size
  eval_step = make_eval_step(model, mesh, saved['mean'], saved['std'])
  row = {'step': step, 'epoch': step / saved['steps_per_epoch'], 'mode': 'eval',
         **evaluate_split(eval_step, state, data.test, mesh, eval_batch)}
  writer = metrics_lib.MetricWriter(workdir, tensorboard=False)
  writer.write(row)
  writer.close()
  return row
