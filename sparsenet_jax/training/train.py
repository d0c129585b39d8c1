"""Training and evaluation, top to bottom: config -> data -> model -> step -> checkpoint -> metrics.

The pieces live in their own modules and are called here in that order: `datasets.load` (data),
`presets.from_config` and `network.make` (model), `record.Description` (the run's description, written
to run.json and into every checkpoint), `optimizer.from_config` and `steps` (the jitted,
`shard_map`-ed train and eval steps), `checkpoints` (Orbax, canonical layout), `metrics` and `record`
(the workdir's metrics.jsonl, TensorBoard and progress line).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from typing import Any, Dict

import jax
from jax.experimental import multihost_utils
import numpy as np

from sparsenet_jax import signals
from sparsenet_jax.data import datasets
from sparsenet_jax.errors import ArgumentError, CheckpointError, NonFiniteLossError, PreemptedError, WorkdirError
from sparsenet_jax.model import layout
from sparsenet_jax.model import network
from sparsenet_jax.model import presets
from sparsenet_jax.model import spec as spec_lib
from sparsenet_jax.model.spec import PRECISIONS
from sparsenet_jax.training import checkpoints
from sparsenet_jax.training import config_validation
from sparsenet_jax.training import cpu_devices
from sparsenet_jax.training import host_memory
from sparsenet_jax.training import metrics as metrics_lib
from sparsenet_jax.training import optimizer
from sparsenet_jax.training import record
from sparsenet_jax.training import restore
from sparsenet_jax.training import steps
from sparsenet_jax.training import workdir_lock


# ----------------------------------------------------------------------------------------------------
# The run.


class _StopSignal(signals.deferred):
  """The training loop's section of `signals.deferred`: a SIGTERM/SIGINT lets the loop finish its step and
  save before it stops (`received`).

  With several processes, a signal to one of them must stop all of them at the same step: SIGTERM is
  left to JAX's preemption service (`jax.distributed.initialize` installs its notifier), which tells
  every process and agrees on the step `agreed(step)` then reports; SIGINT is turned into SIGTERM to
  this process so that it takes the same path.
  """

  def __init__(self):
    self._multi = jax.process_count() > 1
    super().__init__(() if self._multi else signals.SIGNALS)
    self._agreed = None
    self._sigint = None

  def __enter__(self):
    super().__enter__()
    if self._multi:
      try:
        self._sigint = signal.signal(signal.SIGINT, lambda *_: os.kill(os.getpid(), signal.SIGTERM))
      except ValueError:  # not the main thread: leave signals alone
        pass
    return self

  @property
  def received(self):
    return self._agreed or super().received

  def agreed(self, step: int) -> None:
    """Every process calls this after each step: with several processes, `received` is set on all of
    them at the same step once any of them got SIGTERM (or SIGINT)."""
    if self._multi and not self._agreed and multihost_utils.reached_preemption_sync_point(step):
      self._agreed = 'preemption notice (SIGTERM to one of the processes)'

  def __exit__(self, *exc):
    if self._sigint is not None:
      signal.signal(signal.SIGINT, self._sigint)
    return super().__exit__(*exc)


@contextlib.contextmanager
def _workdir_held(workdir: str, purpose: str):
  """`workdir`'s lock (workdir_lock) for the processes of one run: process 0 holds it for them all, and
  every process stops, before anything is written, when it could not."""
  lock, refusal = workdir_lock.Lock(''), None
  if jax.process_index() == 0:
    try:
      lock = workdir_lock.acquire(workdir, purpose)
    except WorkdirError as e:
      refusal = e
  if jax.process_count() > 1 and not multihost_utils.broadcast_one_to_all(np.int32(refusal is None)):
    refusal = refusal or WorkdirError(f'process 0 of this run could not lock workdir {workdir}; its line says why')
  if refusal is not None:
    raise refusal
  with lock:
    yield


def _interrupted(e: KeyboardInterrupt, workdir: str) -> KeyboardInterrupt:
  """A signal that stopped the run outside the loop's safe points (signals.raising), saying what now."""
  if not os.path.isdir(workdir):
    return type(e)(f'{e or "SIGINT received"}: stopped before anything was saved; the same command starts '
                   'the run again')
  return type(e)(f'{e or "SIGINT received"}: stopped; the same command resumes the run in {workdir}')


def train_and_evaluate(config, workdir: str, extend: bool = False, restart: bool = False) -> Dict[str, Any]:
  """Trains per `config`, resuming from the latest checkpoint in `workdir`; returns the final eval row.

  A resume may change only the fields `record.RESUMABLE` names (a finished run is trained further only
  with `extend`); others raise record.DriftError before anything is written. A run whose record shows a
  checkpoint that is gone is refused, unless `restart`: then its record is moved aside and it starts
  again from step 0. A run that fails before it recorded anything removes the workdir it created, so no
  empty workdir is left behind. Another command in `workdir` refuses it (workdir_lock), before anything
  is read or written.
  """
  created = not os.path.exists(workdir)
  workdir_lock.check_writable(workdir)
  with _workdir_held(workdir, 'train'):
    if restart:
      start_over(workdir)
    return _start(config, workdir, extend, created)


def _start(config, workdir: str, extend: bool, created: bool) -> Dict[str, Any]:
  changes = record.check_resume(workdir, json.loads(config.to_json_best_effort()), extend)
  if record.status(workdir) == 'done' and not any(f in record.LENGTH for f in changes):  # nothing to train
    final = record.final_row(workdir)
    metrics_lib.Progress(0, 0).message(f'already finished: step {final["step"]}, eval_accuracy '
                                       f'{final["eval_accuracy"]:.4f} (--extend with a longer num_epochs '
                                       'trains it further)')
    return final
  try:
    return _train(config, workdir, changes)
  except BaseException as e:
    if _nothing_recorded(workdir, created):
      shutil.rmtree(workdir, ignore_errors=True)
    if isinstance(e, KeyboardInterrupt):
      raise _interrupted(e, workdir) from None
    raise


def start_over(workdir: str) -> None:
  """`--restart`: a run whose checkpoints are gone starts again from step 0, its record moved aside."""
  saved = checkpoints.saved_steps(workdir)
  if saved:
    raise ArgumentError(f'--restart starts again only a run whose checkpoints are gone, but '
                        f'{checkpoints.directory(workdir)} holds step {saved[-1]}: leave out --restart to '
                        'resume it, or use another --workdir')
  if jax.process_index() == 0 and os.path.isdir(workdir):
    moved = record.start_over(workdir)
    if moved:
      metrics_lib.Progress(0, 0).message(f'--restart: starting {workdir} again from step 0; its record was '
                                         f'moved aside to {", ".join(os.path.basename(m) for m in moved)}')
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('sparsenet_restart')


def _nothing_recorded(workdir: str, created: bool) -> bool:
  """This process created `workdir` and no step was recorded in it (no metrics row, no checkpoint)."""
  d = os.path.join(workdir, record.CHECKPOINTS)
  return (created and jax.process_index() == 0 and os.path.isdir(workdir) and not record.raw_rows(workdir)
          and (not os.path.isdir(d) or not any(n.isdigit() for n in os.listdir(d))))


def _train(config, workdir: str, changes) -> Dict[str, Any]:
  # Config and data.
  data = datasets.load(config.dataset, config.max_device_dataset_bytes)
  image_shape = data.image_shape
  mesh = steps.make_mesh()
  if config.batch_size % mesh.size:
    raise config_validation.ConfigError(f'config.batch_size={config.batch_size} is not divisible by the '
                                        f'{mesh.size} devices')
  if len(data.train) < config.batch_size:
    raise config_validation.ConfigError(f'config.batch_size={config.batch_size} is larger than the '
                                        f'training set ({len(data.train)} examples)')
  steps_per_epoch = optimizer.steps_per_epoch(len(data.train), config.batch_size)
  config_validation.check_steps(config, steps_per_epoch)
  total_steps = (config.num_train_steps if config.num_train_steps > 0
                 else optimizer.total_steps(config.num_epochs, steps_per_epoch))

  # Model, the run's description, optimiser, state. A CPU split into one device per core is one device
  # to the run: its BatchNorm statistics are synchronised.
  try:
    spec = presets.from_config(config, data.num_classes, axis_name=steps.batch_norm_axis(config.sync_batch_norm))
    spec_lib.check_image_size(spec, image_shape)  # the data's images, before anything is traced
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
  if not checkpoints.saved_steps(workdir):
    first_save = min(config.checkpoint_every_epochs * steps_per_epoch, total_steps)
    removed = not checkpoints.present(workdir)  # process 0's view: the others may see its new directory
    evidence = record.progress(workdir, first_save, removed)
    if evidence:
      raise CheckpointError(f'{evidence}, but {checkpoints.directory(workdir)} holds no checkpoint (deleted or '
                            'moved?): put them back to resume, or add --restart to train it again from step 0 '
                            '(its record is kept, moved aside)')
  mgr = checkpoints.manager(workdir, config.keep_checkpoints)
  init_note = None
  if mgr.latest_step() is not None:
    state, _, failed = checkpoints.restore(mgr, abstract_state, spec, image_shape, mesh)
    checkpoints.set_aside(mgr, workdir, failed)  # never trained on, overwritten or rotated into
  else:
    state = steps.create_train_state(config.seed, model, tx, image_shape, mesh)
    if config.get('init_from'):
      state, init_note = start_from(state, config.init_from, spec, mesh)
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
  progress.message(f'data: {data.name}, {steps.feed_summary(data.train, config.max_device_dataset_bytes)}')
  for line in (cpu_devices.describe(), host_memory.describe()):
    if line:
      progress.message(line)
  if start_step:
    progress.message(f'resumed from step {start_step} in {workdir}')
  elif config.get('init_from'):
    progress.message(init_note or f'init_from {config.init_from}: every weight from there')

  train_step = steps.make_train_step(model, tx, schedule, mesh, data.mean, data.std, data.augment)
  eval_step = steps.make_eval_step(network.make(spec.replace(axis_name=None)), mesh, data.mean, data.std)
  batches = steps.train_batches(data.train, mesh, config.seed, steps_per_epoch, config.batch_size, start_step,
                                total_steps, data.augment, config.max_device_dataset_bytes)

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
      latest = mgr.latest_step()
      kept = (f'the last good checkpoint (step {latest}) in {workdir} is kept' if latest is not None else
              f'no checkpoint was saved before it, so {workdir} holds none to resume from')
      raise NonFiniteLossError(f'non-finite training loss at step {bad}; {kept}')
    means = {'train_loss': float(np.mean(losses)),
             'train_accuracy': float(np.mean([r['train_accuracy'] for r in rows]))}
    timed = len(rows) - untimed
    images_per_sec = timed * config.batch_size / (time.time() - window_start) if timed else float('nan')
    writer.write({'step': step, 'epoch': step / steps_per_epoch, **means,
                  'learning_rate': float(rows[-1]['learning_rate']), 'images_per_sec': images_per_sec})
    progress.update(step, step / steps_per_epoch, means['train_loss'], images_per_sec)
    window, window_start, untimed = [], time.time(), 0

  step = start_step
  with _StopSignal() as stop, contextlib.closing(batches):
    while step < total_steps:
      images, labels = next(batches)
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
      if stop.received:
        break
    flush(step)
    if mgr.latest_step() != step:
      save(step)
    checkpoints.wait(mgr)
    if stop.received:
      writer.close()
      raise PreemptedError(f'{stop.received} received: saved checkpoint at step {step} in {workdir}; '
                           'run the same command to resume')
  # From here a signal stops the final evaluation at once: the last step's checkpoint is on disk, and the
  # same command evaluates it. With several processes one cannot stop alone (the others would wait in the
  # evaluation's collectives): SIGINT waits for its end, SIGTERM stays with JAX's preemption service.
  with signals.deferred((signal.SIGINT,)) if jax.process_count() > 1 else contextlib.nullcontext():
    final = record.final_row(workdir) if step == start_step else None
    if final is None:
      final = evaluate(step, final=True)
  writer.close()
  progress.message(f'done: step {step}, eval_accuracy {final["eval_accuracy"]:.4f}')
  return final


def start_from(state: steps.TrainState, source: str, spec, mesh):
  """(the fresh train state with the weights of `source` in the run's layout, the note of
  `restore.pretrained`): `config.init_from`. A new classifier (another class count) keeps its fresh
  initialisation; the optimiser state stays fresh."""
  variables, note = restore.pretrained(source, spec)
  loaded = jax.tree.map(lambda x: np.asarray(x, np.float32), layout.to_scanned(spec, variables))
  loaded = jax.device_put(loaded, steps.replicated(mesh))
  loaded['params'].setdefault('classifier', state.params['classifier'])
  return state.replace(params=loaded['params'], batch_stats=loaded.get('batch_stats', {})), note


def evaluate(config, workdir: str, show=None) -> Dict[str, Any]:
  """Restores the latest checkpoint in `workdir` that verifies and evaluates it on the configured test
  split; `show(row)` is called before the row is appended to metrics.jsonl, so a workdir that cannot be
  written still shows the result (then WorkdirError says the record failed).

  The model is the checkpoint's (the config's architecture must agree, with the class count of the
  trained run unless the config names one; its layout may differ), and normalisation uses the statistics
  of the data it was trained on, from the run's description, so another test file is judged exactly as
  the original test split was. A command training in `workdir` refuses it (workdir_lock).
  """
  with _workdir_held(workdir, 'eval'):
    return _evaluate(config, workdir, show)


def _evaluate(config, workdir: str, show) -> Dict[str, Any]:
  mesh = steps.make_mesh()
  model, variables, meta = restore.restore_run(workdir, expect=lambda d: presets.from_config(config, d.num_classes))
  described = record.Description.from_json(meta)
  model = network.make(model.spec.replace(dtype=PRECISIONS[config.precision]))  # dtype is runtime
  num_classes = model.spec.num_classes
  data = datasets.load(config.dataset, config.max_device_dataset_bytes)
  if data.test.labels.size and int(data.test.labels.max()) >= num_classes:
    raise datasets.DataError(f'test labels go up to {int(data.test.labels.max())} but the model in {workdir} '
                             f'has {num_classes} classes')
  if list(data.test.image_shape) != list(described.image_shape):
    raise datasets.DataError(f'the test images are {list(data.test.image_shape)} but the model in '
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
