"""Pictures people would rather look at than read. Matplotlib with the Agg backend (no display)."""
from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use('Agg')
import matplotlib.patches  # noqa: E402
import matplotlib.ticker  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def connection_matrix(table: Sequence[Sequence[int]], output_sources: Sequence[int],
                      input_groups: int) -> np.ndarray:
  """Rows: the block's layers then its transition; columns: groups, oldest first.

  1 marks a group read from the block input, 2 a group read from an earlier layer, 0 nothing.
  """
  rows = list(table) + [output_sources]
  num_groups = input_groups + len(table)
  m = np.zeros((len(rows), num_groups), np.int8)
  for r, row in enumerate(rows):
    for g in row:
      m[r, g] = 1 if g < input_groups else 2
  return m


def draw_connections(plans, title: str, filename: str) -> None:
  """The picture of the paper's Fig. 2 and 5: one panel per block, layer x source group."""
  fig, axes = plt.subplots(1, len(plans), figsize=(4.2 * len(plans), 4.6), squeeze=False)
  cmap = matplotlib.colors.ListedColormap(['#f4f4f4', '#e6a23c', '#2b6cb0'])
  for b, (ax, plan) in enumerate(zip(axes[0], plans)):
    m = connection_matrix(plan.table, plan.output_sources, plan.input_groups)
    ax.imshow(m, cmap=cmap, vmin=0, vmax=2, interpolation='nearest', aspect='auto')
    ax.set_title(f'block {b + 1}: {len(plan.table)} layers, '
                 f'{sum(len(r) for r in plan.table)} connections', fontsize=9)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel('source group (oldest first)')
    ax.set_ylabel('layer (last row: transition / head)')
  handles = [matplotlib.patches.Patch(color='#e6a23c', label='block input'),
             matplotlib.patches.Patch(color='#2b6cb0', label='earlier layer')]
  fig.legend(handles=handles, loc='lower center', ncol=2, frameon=False)
  fig.suptitle(title)
  fig.tight_layout(rect=(0, 0.06, 1, 0.95))
  fig.savefig(filename, dpi=110)
  plt.close(fig)
