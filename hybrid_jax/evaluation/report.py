"""`<workdir>/report.md`: the tracker variants in the layout of the paper's Table I.

Each row is one tracker variant: VPQ / VPQ_Th / VPQ_St at k = 0, 5, 10, 15, their mean, STQ
and frames per second, followed by a plot of VPQ against k and the GIF of tracked clips.
When the config names a paper table (`config.eval.reference_table`, e.g. the real-dataset
configs), the paper's rows (`hybrid_jax.paper_tables`) are printed underneath for comparison.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from hybrid_jax import paper_tables

KS = ('0', '5', '10', '15')


def _cell(group: Mapping[str, Mapping[str, float]]) -> str:
  if group.get('windows', 1) == 0:
    return '—'  # the window is longer than every video: not a score of 0
  return ' / '.join(f'{group[g]["pq"]:.1f}' for g in ('all', 'things', 'stuff'))


def _ks_with_windows(vpq) -> list[str]:
  return [k for k in KS if vpq[k].get('windows', 1) > 0]


def table_rows(rows: Sequence[Mapping[str, Any]]) -> list[str]:
  """Markdown lines for rows of {'name', 'results' (evaluation dict), 'fps'}."""
  lines = ['| Method | k = 0 | k = 5 | k = 10 | k = 15 | VPQ | STQ | FPS |',
           '|---|---|---|---|---|---|---|---|']
  for row in rows:
    vpq = row['results']['vpq']
    stq = row['results'].get('stq')
    stq_cell = f'{100 * stq["stq"]:.1f}' if stq else '—'
    fps = row.get('fps')
    fps_cell = f'{fps:.1f}' if fps else '—'
    cells = [_cell(vpq[k]) for k in KS] + [_cell(vpq['final'])]
    lines.append(f'| {row["name"]} | ' + ' | '.join(cells) + f' | {stq_cell} | {fps_cell} |')
  return lines


def _reference_lines(caption: str, table: Mapping[str, Mapping[str, Any]]) -> list[str]:
  lines = [f'Paper, {caption} (VPQ / VPQ_Th / VPQ_St):', '',
           '| Method | k = 0 | k = 5 | k = 10 | k = 15 | VPQ | FPS |', '|---|---|---|---|---|---|---|']
  for method, row in table.items():
    cells = [' / '.join(f'{v:.1f}' for v in row[k]) for k in ('k0', 'k5', 'k10', 'k15', 'vpq')]
    lines.append(f'| {method} | ' + ' | '.join(cells) + f' | {row.get("fps", "—")} |')
  return lines


def plot_vpq(path: str, rows: Sequence[Mapping[str, Any]]) -> str:
  """VPQ (all) against the window size k, one line per variant."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
  for row in rows:
    vpq = row['results']['vpq']
    for ax, group in zip(axes, ('all', 'things')):
      ks = _ks_with_windows(vpq)
      ax.plot([int(k) for k in ks], [vpq[k][group]['pq'] for k in ks], marker='o',
              label=row['name'])
  for ax, title in zip(axes, ('VPQ (all)', 'VPQ (things)')):
    ax.set_xlabel('temporal window k')
    ax.set_title(title)
    ax.set_xticks([int(k) for k in KS])
    ax.grid(alpha=0.3)
  axes[0].set_ylabel('VPQ (%)')
  axes[1].legend(fontsize=7, loc='best')
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def write_report(workdir: str, rows: Sequence[Mapping[str, Any]], *, title: str,
                 notes: Sequence[str] = (), reference_table: str = '',
                 gif: str | None = None) -> str:
  """Writes <workdir>/report.md (+ report_vpq.png); returns the markdown path."""
  os.makedirs(workdir, exist_ok=True)
  plot = plot_vpq(os.path.join(workdir, 'report_vpq.png'), rows)
  lines = [f'# {title}', '', 'Each cell: VPQ / VPQ_Th / VPQ_St (%), as the official evaluator '
           'computes them; STQ in %; FPS of the tracker on this machine.', '']
  lines += table_rows(rows)
  if rows:
    ks = _ks_with_windows(rows[0]['results']['vpq'])
    if len(ks) < len(KS):
      lines += ['', f'The val clips are too short for the windows k = '
                f'{", ".join(k for k in KS if k not in ks)} (—); VPQ is the mean over k = '
                f'{", ".join(ks)}.']
  ref = paper_tables.get_table(reference_table)
  if ref is not None:
    lines += [''] + _reference_lines(*ref)
  lines += ['', f'![VPQ against k]({os.path.basename(plot)})', '']
  if gif:
    lines += [f'Tracked val clip (frame | prediction | ground truth): '
              f'![tracked]({os.path.relpath(gif, workdir)})', '']
  if notes:
    lines += ['## Notes', ''] + [f'- {n}' for n in notes] + ['']
  path = os.path.join(workdir, 'report.md')
  with open(path, 'w') as f:
    f.write('\n'.join(lines))
  return path
