"""Pictures people would rather look at than read. Matplotlib with the Agg backend (no display)."""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Tuple

import matplotlib

matplotlib.use('Agg')
import matplotlib.patches  # noqa: E402
import matplotlib.ticker  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sparsenet_jax.model import connectivity  # noqa: E402


def connection_matrix(rows: Sequence[Sequence[Tuple[int, int]]], output_row: Sequence[Tuple[int, int]],
                      input_width: int) -> np.ndarray:
  """Rows: the block's layers then its transition; columns: its stacked channels, oldest first.

  1 marks a channel of the block input read, 2 one of an earlier layer's output, 0 nothing.
  """
  rows = list(rows) + [output_row]
  total = max(b for row in rows for _, b in row)
  m = np.zeros((len(rows), total), np.int8)
  for r, row in enumerate(rows):
    for a, b in row:
      m[r, a:min(b, input_width)] = 1
      m[r, max(a, input_width):b] = 2
  return m


def draw_connections(plans, title: str, filename: str) -> None:
  """The picture of the paper's Fig. 2 and 5: one panel per block, layer x source channel, one tick per
  piece (a k-channel group, or the whole input where it is not whole groups)."""
  fig, axes = plt.subplots(1, len(plans), figsize=(4.2 * len(plans), 4.6), squeeze=False)
  cmap = matplotlib.colors.ListedColormap(['#f4f4f4', '#e6a23c', '#2b6cb0'])
  for b, (ax, plan) in enumerate(zip(axes[0], plans)):
    m = connection_matrix(plan.rows, plan.output_row, plan.input_width)
    ax.imshow(m, cmap=cmap, vmin=0, vmax=2, interpolation='nearest', aspect='auto',
              extent=(0, m.shape[1], len(plan.rows) + 0.5, -0.5))
    connections = connectivity.num_connections(plan.rows, plan.input_width, plan.growth_rate)
    ax.set_title(f'block {b + 1}: {len(plan.rows)} layers, {connections} connections', fontsize=9)
    bounds = connectivity.pieces(plan.input_width, plan.growth_rate, m.shape[1])
    ax.set_xticks([a for a, _ in bounds] + [m.shape[1]], minor=True)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.grid(axis='x', which='minor', color='white', lw=0.5)
    ax.set_xlabel('source channel (oldest first)')
    ax.set_ylabel('layer (last row: transition / head)')
  handles = [matplotlib.patches.Patch(color='#e6a23c', label='block input'),
             matplotlib.patches.Patch(color='#2b6cb0', label='earlier layer')]
  fig.legend(handles=handles, loc='lower center', ncol=2, frameon=False)
  fig.suptitle(title)
  fig.tight_layout(rect=(0, 0.06, 1, 0.95))
  fig.savefig(filename, dpi=110)
  plt.close(fig)


# ----------------------------------------------------------------------------------------------------
# Results: what `report_page.write` draws. Errors are in percent.


class Curves(NamedTuple):
  """One run's metrics over training, epochs on the x axis."""
  label: str
  train_epoch: Sequence[float]
  train_loss: Sequence[float]
  learning_rate: Sequence[float]
  eval_epoch: Sequence[float]
  eval_error: Sequence[float]


class Point(NamedTuple):
  """One group of runs for the paper's Fig. 8 and 9: its cost and final test error."""
  dataset: str
  label: str
  params: int
  flops: int
  error: float  # mean over seeds
  std: float
  paper: Optional[float]  # the paper's error for the same model, if it reports one


def training_curves(runs: Sequence[Curves], title: str, filename: str) -> None:
  """Train loss, test error and learning rate against epochs, one line per run (seed)."""
  fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
  for i, run in enumerate(runs):
    color = f'C{i % 10}'
    axes[0].plot(run.train_epoch, run.train_loss, color=color, lw=1, label=run.label)
    axes[1].plot(run.eval_epoch, run.eval_error, color=color, lw=1, marker='.', label=run.label)
    axes[2].plot(run.train_epoch, run.learning_rate, color=color, lw=1, label=run.label)
  for ax, ylabel in zip(axes, ('train loss', 'test error (%)', 'learning rate')):
    ax.set_xlabel('epoch')
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
  if any(lr > 0 for run in runs for lr in run.learning_rate):
    axes[2].set_yscale('log')
  axes[1].legend(fontsize=7, loc='upper right')
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  fig.savefig(filename, dpi=90)
  plt.close(fig)


def error_vs_cost(points: Sequence[Point], cost: str, filename: str) -> None:
  """The paper's Fig. 8 (cost='params') or Fig. 9 (cost='flops'): one panel per dataset, our error
  with its std as a filled marker, the paper's for the same model as a hollow one."""
  datasets = list(dict.fromkeys(p.dataset for p in points))
  fig, axes = plt.subplots(1, len(datasets), figsize=(5.2 * len(datasets), 4.6), squeeze=False)
  for ax, dataset in zip(axes[0], datasets):
    here = [p for p in points if p.dataset == dataset]
    xs = [(p.params if cost == 'params' else p.flops) / 1e6 for p in here]
    for i, (p, x) in enumerate(zip(here, xs)):
      color, marker = f'C{i % 10}', 'osD^v<>ph*'[i // 10 % 10]
      ax.errorbar(x, p.error, yerr=p.std, color=color, marker=marker, capsize=3, ls='none',
                  label=p.label)
      if p.paper is not None:
        ax.plot(x, p.paper, color=color, marker=marker, mfc='none', ls='none')
    if max(xs) > 3 * min(xs):  # a log axis over less than a few-fold range has no readable ticks
      ax.set_xscale('log')
      ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
      ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f'{v:g}'))
      ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel('parameters (M)' if cost == 'params' else 'MFLOPs per image')
    ax.set_ylabel('test error (%)')
    ax.set_title(dataset, fontsize=10)
    ax.grid(alpha=0.3, which='both')
    ax.legend(fontsize=6, loc='upper center', bbox_to_anchor=(0.5, -0.15), ncol=1, frameon=False)
  fig.suptitle('filled: ours (mean ± std over seeds); hollow: paper', fontsize=9)
  fig.tight_layout()
  fig.savefig(filename, dpi=90, bbox_inches='tight')
  plt.close(fig)


def attention_curves(series: Sequence[Tuple[str, Sequence[float], Sequence[float], Sequence[float]]],
                     title: str, filename: str, legend: str = 'attention') -> None:
  """The paper's Fig. 7 (and Fig. 3, `legend='network'`): test error against epochs for each attention
  module (network), as (label, epochs, mean error, std over seeds)."""
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  for label, epochs, mean, std in series:
    mean, std = np.asarray(mean), np.asarray(std)
    line, = ax.plot(epochs, mean, lw=1.2, marker='.', label=label)
    ax.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.2, lw=0)
  ax.set_xlabel('epoch')
  ax.set_ylabel('test error (%)')
  ax.set_title(title, fontsize=9)
  ax.grid(alpha=0.3)
  ax.legend(title=legend, fontsize=8)
  fig.tight_layout()
  fig.savefig(filename, dpi=90)
  plt.close(fig)


def drop_position(bars: Sequence[Tuple[str, float, float]], title: str, filename: str) -> None:
  """The paper's Fig. 10: final test error for each far-near split, as (label, mean, std)."""
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  labels = [b[0] for b in bars]
  ax.bar(labels, [b[1] for b in bars], yerr=[b[2] for b in bars], capsize=4, color='#2b6cb0')
  ax.set_xlabel('connections kept: farthest-nearest')
  ax.set_ylabel('test error (%)')
  ax.set_title(title, fontsize=9)
  ax.grid(alpha=0.3, axis='y')
  fig.tight_layout()
  fig.savefig(filename, dpi=90)
  plt.close(fig)


class ConnectionPoint(NamedTuple):
  """One group of Fig. 1: its connections (`path`; the dense run at the right end), final errors (%)."""
  connections: int
  label: str
  test: float
  test_std: float
  train: Optional[float]  # the final model's error over the training set in eval mode; None if unknown
  train_std: float


def error_vs_connections(points: Sequence[ConnectionPoint], title: str, filename: str) -> None:
  """The paper's Fig. 1: final test and training error against the connections per layer."""
  points = sorted(points, key=lambda p: p.connections)
  fig, ax = plt.subplots(figsize=(7.2, 4.2))
  xs = [p.connections for p in points]
  ax.errorbar(xs, [p.test for p in points], yerr=[p.test_std for p in points], marker='o', capsize=3,
              color='C0', label='test error')
  trained = [p for p in points if p.train is not None]
  if trained:
    ax.errorbar([p.connections for p in trained], [p.train for p in trained],
                yerr=[p.train_std for p in trained], marker='s', capsize=3, color='C1', ls='--',
                label='training error (eval mode)')
  best = min(points, key=lambda p: p.test)
  ax.annotate(f'lowest test: {best.test:.2f}%', (best.connections, best.test), textcoords='offset points',
              xytext=(0, -16), ha='center', fontsize=8)
  ax.set_xticks(xs)
  ax.set_xticklabels([p.label for p in points], fontsize=7, rotation=45)
  ax.set_xlabel('connections per layer (path); the last point is fully dense')
  ax.set_ylabel('error (%)')
  ax.set_title(title, fontsize=9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(filename, dpi=90)
  plt.close(fig)
