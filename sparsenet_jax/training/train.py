"""Training and evaluation, top to bottom: config -> data -> model -> step -> checkpoint -> metrics.

The pieces live in their own modules and are called here in that order: `datasets.load` (data),
`presets.from_config` and `network.make` (model), `record.Description` (the run's description, written
to run.json and into every checkpoint), `optimizer.from_config` and `steps` (the jitted,
`shard_map`-ed train and eval steps), `checkpoints` (Orbax, canonical layout), `metrics` and `record`
(the workdir's metrics.jsonl, TensorBoard and progress line).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import time
from typing import Any, Dict

import jax
from jax.experimental import multihost_utils
import numpy as np

from sparsenet_jax.data import datasets
from sparsenet_jax.data import input_pipeline
from sparsenet_jax.errors import NonFiniteLossError, PreemptedError, WorkdirError
from sparsenet_jax.model import network
from sparsenet_jax.model import presets
from sparsenet_jax.model.spec import PRECISIONS
from sparsenet_jax.training import checkpoints
from sparsenet_jax.training import config_validation
from sparsenet_jax.training import cpu_devices
from sparsenet_jax.training import metrics as metrics_lib
from sparsenet_jax.training import optimizer
from sparsenet_jax.training import record
from sparsenet_jax.training import restore
from sparsenet_jax.training import steps


# ----------------------------------------------------------------------------------------------------
# The run.


class _StopSignal:
  """Remembers SIGTERM/SIGINT so the loop can finish its step and save before exiting.

  With several processes, a signal to one of them must stop all of them at the same step: SIGTERM is
  left to JAX's preemption service (`jax.distributed.initialize` installs its notifier), which tells
  every process and agrees on the step `agreed(step)` then reports; SIGINT is turned into SIGTERM to
  this process so that it takes the same path.
  """

  def __init__(self):
    self.received = None
    self._previous = {}
    self._multi = jax.process_count() > 1

  def __enter__(self):
    for sig in (signal.SIGINT,) if self._multi else (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread: leave signals alone
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    if self._multi:
      os.kill(os.getpid(), signal.SIGTERM)  # to JAX's preemption notifier
    else:
      self.received = signal.Signals(signum).name

  def agreed(self, step: int) -> None:
    """Every process calls this after each step: with several processes, `received` is set on all of
    them at the same step once any of them got SIGTERM (or SIGINT)."""
    if self._multi and not self.received and multihost_utils.reached_preemption_sync_point(step):
      self.received = 'preemption notice (SIGTERM to one of the processes)'

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


def train_and_evaluate(config, workdir: str, extend: bool = False) -> Dict[str, Any]:
  """Trains per `config`, resuming from the latest checkpoint in `workdir`; returns the final eval row.

  A resume may change only the fields `record.RESUMABLE` names (a finished run is trained further only
  with `extend`); others raise record.DriftError before anything is written. A run that fails before it
  recorded anything removes the workdir it created, so no empty workdir is left behind.
  """
  changes = record.check_resume(workdir, json.loads(config.to_json_best_effort()), extend)
  if record.status(workdir) == 'done' and not any(f in record.LENGTH for f in changes):  # nothing to train
    final = record.final_row(workdir)
    metrics_lib.Progress(0, 0).message(f'already finished: step {final["step"]}, eval_accuracy '
                                       f'{final["eval_accuracy"]:.4f} (--extend with a longer num_epochs '
                                       'trains it further)')
    return final
  created = not os.path.exists(workdir)
  try:
    return _train(config, workdir, changes)
  except BaseException:
    if _nothing_recorded(workdir, created):
      shutil.rmtree(workdir, ignore_errors=True)
    raise


def _nothing_recorded(workdir: str, created: bool) -> bool:
  """This process created `workdir` and no step was recorded in it (no metrics row, no checkpoint)."""
  d = os.path.join(workdir, record.CHECKPOINTS)
  return (created and jax.process_index() == 0 and os.path.isdir(workdir) and not record.raw_rows(workdir)
          and (not os.path.isdir(d) or not any(n.isdigit() for n in os.listdir(d))))


def _train(config, workdir: str, changes) -> Dict[str, Any]:
  check_workdir(workdir)
  # Config and data.
  data = datasets.load(config.dataset)
  image_shape = data.train.images.shape[1:]
  mesh = steps.make_mesh()
  if config.batch_size % mesh.size:
    raise config_validation.ConfigError(f'config.batch_size={config.batch_size} is not divisible by the '
                                        f'{mesh.size} devices')
  if len(data.train) < config.batch_size:
    raise config_validation.ConfigError(f'config.batch_size={config.batch_size} is larger than the '
                                        f'training set ({len(data.train)} examples)')
  steps_per_epoch = optimizer.steps_per_epoch(len(data.train), config.batch_size)
  total_steps = (config.num_train_steps if config.num_train_steps > 0
                 else optimizer.total_steps(config.num_epochs, steps_per_epoch))

  # Model, the run's description, optimiser, state. A CPU split into one device per core is one device
  # to the run: its BatchNorm statistics are synchronised.
  sync = config.sync_batch_norm or cpu_devices.active()
  try:
    spec = presets.from_config(config, data.num_classes, axis_name='data' if sync else None)
  except ValueError as e:
    raise config_validation.ConfigError(f'config.model: {e}') from None
  model = network.make(spec)
  description = record.Description(
      preset=config.model.name, model=spec.architecture(), dataset=data.name, fingerprint=data.fingerprint,
      image_shape=list(image_shape), num_classes=spec.num_classes, class_names=list(data.class_names or []),
      mean=list(data.mean), std=list(data.std), augment=data.augment, train_size=len(data.train),
      steps_per_epoch=steps_per_epoch)
  record.check_data(workdir, description)
  tx, schedule = optimizer.from_config(config, steps_per_epoch)

  def abstract_state(s):
    return steps.create_train_state(config.seed, network.make(s), tx, image_shape, mesh, abstract=True)

  # Checkpoints and metrics.
  mgr = checkpoints.manager(workdir, config.keep_checkpoints)
  if mgr.latest_step() is not None:
    state, _, failed = checkpoints.restore(mgr, abstract_state, spec, image_shape, mesh)
    checkpoints.set_aside(mgr, workdir, failed)  # never trained on, overwritten or rotated into
  else:
    state = steps.create_train_state(config.seed, model, tx, image_shape, mesh)
  start_step = int(state.step)
  if start_step > total_steps:
    raise record.DriftError(f'{workdir} holds a checkpoint at step {start_step}, past the {total_steps} steps '
                            'this config gives; use another --workdir or a longer num_epochs')
  if jax.process_index() == 0:
    record.write_config(workdir, config.to_json_best_effort(indent=2, sort_keys=True))
    record.write_description(workdir, description)
    record.append_start(workdir, start_step, changes)
  writer = metrics_lib.MetricWriter(workdir)
  progress = metrics_lib.Progress(total_steps, start_step)
  if cpu_devices.active():
    progress.message(cpu_devices.describe())
  if start_step:
    progress.message(f'resumed from step {start_step} in {workdir}')

  train_step = steps.make_train_step(model, tx, schedule, mesh, data.mean, data.std, data.augment)
  eval_step = steps.make_eval_step(network.make(spec.replace(axis_name=None)), mesh, data.mean, data.std)
  feeder = steps.Feeder(data.train, mesh, config.max_device_dataset_bytes)

  def save(step):
    # The step is the data position (batch order is a function of seed and epoch); spelled out for people.
    epoch, batch = divmod(step, steps_per_epoch)
    checkpoints.save(mgr, step, state, spec, description,
                     {'data_position': {'epoch': epoch, 'batch_in_epoch': batch}}, mesh)

  def evaluate(step, final=False):
    row = {'step': step, 'epoch': step / steps_per_epoch,
           **steps.evaluate_split(eval_step, steps.variables(state), data.test, mesh,
                                  config.eval_batch_size)}
    if final:
      # The paper's Fig. 1 plots training error too: the final model in eval mode over the training set
      # (un-augmented, running BatchNorm statistics), as the test error is measured.
      train = steps.evaluate_split(eval_step, steps.variables(state), data.train, mesh, config.eval_batch_size)
      row.update(final_train_error=train['eval_error'], final_train_loss=train['eval_loss'], final=True)
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
      if step == start_step:
        progress.message('compiling the train step ...', end='')
        compile_start = time.time()
      state, step_metrics = train_step(state, images, labels)
      window.append(step_metrics)
      step += 1
      stop.agreed(step)
      if step == start_step + 1:  # the first step includes compilation: keep it out of img/s and the ETA
        jax.block_until_ready(step_metrics)
        progress.message(f' {time.time() - compile_start:.1f} s')
        progress.restart(step)
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
    final = record.final_row(workdir) if step == start_step else None
    if final is None:
      final = evaluate(step, final=True)
    if mgr.latest_step() != step:
      save(step)
  checkpoints.wait(mgr)
  writer.close()
  progress.message(f'done: step {step}, eval_accuracy {final["eval_accuracy"]:.4f}')
  return final


def evaluate(config, workdir: str, show=None) -> Dict[str, Any]:
  """Restores the latest checkpoint in `workdir` that verifies and evaluates it on the configured test
  split; `show(row)` is called before the row is appended to metrics.jsonl, so a workdir that cannot be
  written still shows the result (then WorkdirError says the record failed).

  The model is the checkpoint's (the config's architecture must agree, with the class count of the
  trained run unless the config names one; its layout may differ), and normalisation uses the statistics
  of the data it was trained on, from the run's description, so another test file is judged exactly as
  the original test split was.
  """
  mesh = steps.make_mesh()
  model, variables, meta = restore.restore_run(workdir, expect=lambda d: presets.from_config(config, d.num_classes))
  described = record.Description.from_json(meta)
  model = network.make(model.spec.replace(dtype=PRECISIONS[config.precision]))  # dtype is runtime
  num_classes = model.spec.num_classes
  data = datasets.load(config.dataset)
  if data.test.labels.size and int(data.test.labels.max()) >= num_classes:
    raise datasets.DataError(f'test labels go up to {int(data.test.labels.max())} but the model in {workdir} '
                             f'has {num_classes} classes')
  if list(data.test.images.shape[1:]) != list(described.image_shape):
    raise datasets.DataError(f'the test images are {list(data.test.images.shape[1:])} but the model in '
                             f'{workdir} was trained on {described.image_shape}')
  variables = jax.device_put(variables, steps.replicated(mesh))
  eval_batch = config.eval_batch_size - config.eval_batch_size % mesh.size or mesh.size
  eval_step = steps.make_eval_step(model, mesh, described.mean, described.std)
  row = {'step': meta['step'], 'epoch': meta['step'] / described.steps_per_epoch, 'mode': 'eval',
         **steps.evaluate_split(eval_step, variables, data.test, mesh, eval_batch)}
  if show is not None:
    show(row)
  try:
    writer = metrics_lib.MetricWriter(workdir, tensorboard=False)
    writer.write(row)
    writer.close()
  except OSError as e:
    raise WorkdirError(f'the result was not recorded in {record.metrics_path(workdir)}: '
                       f'{e.strerror or e}') from None
  return row
