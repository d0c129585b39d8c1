"""Where a run's numbers go: `metrics.jsonl` (one JSON object per line), TensorBoard events beside it,
and a live progress line. Only process 0 writes, so a multi-host run keeps one record."""
from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, Dict

import jax

from sparsenet_jax.training import record


def _plain(value):
  if hasattr(value, 'item'):
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)  # JSON has no NaN; keep it readable
  return value


class MetricWriter:
  """Appends rows to workdir/metrics.jsonl and scalars to TensorBoard (process 0 only)."""

  def __init__(self, workdir: str, tensorboard: bool = True):
    self.active = jax.process_index() == 0
    self.workdir = workdir
    self._tb = None
    if self.active and tensorboard:
      from tensorboardX import SummaryWriter  # light: no TensorFlow needed
      self._tb = SummaryWriter(os.path.join(workdir, 'tensorboard'))

  def write(self, row: Dict[str, Any]) -> None:
    if not self.active:
      return
    row = {k: _plain(v) for k, v in row.items()}
    record.append_row(self.workdir, row)
    if self._tb is not None:
      for k, v in row.items():
        if k != 'step' and isinstance(v, (int, float)) and not isinstance(v, bool):
          self._tb.add_scalar(k, v, row['step'])
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def format_eta(seconds: float) -> str:
  seconds = max(0, int(seconds))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f'{h}:{m:02d}:{s:02d}' if h else f'{m:02d}:{s:02d}'


class Progress:
  """A one-line progress report: epoch, step/steps, loss, img/s and ETA (on stderr, process 0)."""

  def __init__(self, total_steps: int, start_step: int, stream=None):
    self.total = total_steps
    self.start_step = start_step
    self.start = time.time()
    self.stream = stream or sys.stderr
    self.active = jax.process_index() == 0
    self.tty = hasattr(self.stream, 'isatty') and self.stream.isatty()
    self._open = False  # a message without its end of line

  def update(self, step: int, epoch: float, loss: float, images_per_sec: float, extra: str = '') -> None:
    if not self.active:
      return
    done = step - self.start_step
    elapsed = time.time() - self.start
    eta = elapsed / done * (self.total - step) if done else float('nan')
    speed = f'{images_per_sec:,.0f}' if math.isfinite(images_per_sec) else '--'
    line = (f'epoch {epoch:7.2f}  step {step}/{self.total}  loss {loss:.4f}  {speed} img/s  '
            f'ETA {format_eta(eta) if math.isfinite(eta) else "--:--"}{extra}')
    if self.tty:
      self.stream.write('\r' + line.ljust(100))
    else:
      self.stream.write(line + '\n')
    self.stream.flush()

  def restart(self, step: int) -> None:
    """The ETA counts from here (after compilation, from the steps of this start only)."""
    self.start, self.start_step = time.time(), step

  def message(self, text: str, end: str = '\n') -> None:
    if self.active:
      self.stream.write(('\n' if self.tty and not self._open else '') + text + end)
      self._open = not end
      self.stream.flush()
