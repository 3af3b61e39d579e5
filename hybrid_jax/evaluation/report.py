"""`<workdir>/report.md`: the tracker variants in the layout of the paper's Table I.

Each row is one tracker variant: VPQ / VPQ_Th / VPQ_St at each window k of the protocol
(0, 5, 10, 15 on Cityscapes-VPS and VIPER; VIPSeg's five), their mean, STQ and frames per
second, followed by a plot of VPQ against k and the GIF of tracked clips. Without VPQ (KITTI-STEP
is evaluated with STQ only) a row is STQ, AQ and SQ. When the config names a reference table
(`config.eval.reference_table`, e.g. the real-dataset configs), its published rows
(`hybrid_jax.paper_tables`) are printed underneath for comparison.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from hybrid_jax import paper_tables

KS = ('0', '5', '10', '15')  # the paper's windows (its tables' columns)


def window_keys(vpq: Mapping[str, Any]) -> list[str]:
  """The window keys of a VPQ result, in its protocol's order ('final' left out)."""
  return [k for k in vpq if k != 'final']


def _cell(group: Mapping[str, Mapping[str, float]]) -> str:
  if group.get('windows', 1) == 0:
    return '—'  # the window is longer than every video: not a score of 0
  return ' / '.join(f'{group[g]["pq"]:.1f}' for g in ('all', 'things', 'stuff'))


def _ks_with_windows(vpq) -> list[str]:
  return [k for k in window_keys(vpq) if vpq[k].get('windows', 1) > 0]


def table_rows(rows: Sequence[Mapping[str, Any]]) -> list[str]:
  """Markdown lines for rows of {'name', 'results' (evaluation dict), 'fps'}."""
  if rows and 'vpq' not in rows[0]['results']:
    return _stq_rows(rows)
  ks = window_keys(rows[0]['results']['vpq']) if rows else list(KS)
  head = ['Method'] + [f'k = {k}' for k in ks] + ['VPQ', 'STQ', 'FPS']
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for row in rows:
    vpq = row['results']['vpq']
    stq = row['results'].get('stq')
    stq_cell = f'{100 * stq["stq"]:.1f}' if stq else '—'
    cells = [_cell(vpq[k]) for k in ks] + [_cell(vpq['final'])]
    lines.append(f'| {row["name"]} | ' + ' | '.join(cells) + f' | {stq_cell} | '
                 f'{_fps(row.get("fps"))} |')
  return lines


def _fps(fps) -> str:
  return f'{fps:.1f}' if fps else '—'


def _stq_rows(rows) -> list[str]:
  lines = ['| Method | STQ | AQ | SQ | FPS |', '|---|---|---|---|---|']
  for row in rows:
    stq = row['results']['stq']
    cells = [f'{100 * stq[m]:.1f}' for m in ('stq', 'aq', 'sq')]
    lines.append(f'| {row["name"]} | ' + ' | '.join(cells) + f' | {_fps(row.get("fps"))} |')
  return lines


def _reference_lines(caption: str, table: Mapping[str, Mapping[str, Any]]) -> list[str]:
  if not paper_tables.is_paper_table(table):
    return _published_lines(caption, table)
  lines = [f'Paper, {caption} (VPQ / VPQ_Th / VPQ_St):', '',
           '| Method | k = 0 | k = 5 | k = 10 | k = 15 | VPQ | FPS |', '|---|---|---|---|---|---|---|']
  for method, row in table.items():
    cells = [' / '.join(f'{v:.1f}' for v in row[k]) for k in ('k0', 'k5', 'k10', 'k15', 'vpq')]
    lines.append(f'| {method} | ' + ' | '.join(cells) + f' | {row.get("fps", "—")} |')
  return lines


def _published_lines(caption: str, table: Mapping[str, Mapping[str, Any]]) -> list[str]:
  """A benchmark table: the metrics its sources publish (VPQ as all / things / stuff where
  given), with each row's source."""
  metrics = [m for m in ('vpq', 'stq') if any(m in r for r in table.values())]
  names = {'vpq': 'VPQ (all / Th / St)', 'stq': 'STQ'}
  lines = [f'{caption} (%; other backbones and training than ours, for orientation):', '',
           '| Method | ' + ' | '.join(names[m] for m in metrics) + ' | Source |',
           '|---|' + '---|' * len(metrics) + '---|']
  for method, row in table.items():
    cells = []
    for m in metrics:
      v = row.get(m)
      cells.append('—' if v is None else ' / '.join(f'{x:.1f}' for x in v)
                   if isinstance(v, (tuple, list)) else f'{v:.1f}')
    lines.append(f'| {method} | ' + ' | '.join(cells) + f' | {row["source"]} |')
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
  ticks = window_keys(rows[0]['results']['vpq']) if rows else KS
  for ax, title in zip(axes, ('VPQ (all)', 'VPQ (things)')):
    ax.set_xlabel('temporal window k')
    ax.set_title(title)
    ax.set_xticks([int(k) for k in ticks])
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
  with_vpq = bool(rows) and 'vpq' in rows[0]['results']
  plot = plot_vpq(os.path.join(workdir, 'report_vpq.png'), rows) if with_vpq else None
  intro = ('Each cell: VPQ / VPQ_Th / VPQ_St (%), as the official evaluator computes them; STQ '
           'in %; FPS of the tracker on this machine.' if with_vpq else
           'STQ = sqrt(AQ x SQ) (%), as deeplab2 computes them over whole sequences; FPS of '
           'the tracker on this machine.')
  lines = [f'# {title}', '', intro, '']
  lines += table_rows(rows)
  if with_vpq:
    all_ks = window_keys(rows[0]['results']['vpq'])
    ks = _ks_with_windows(rows[0]['results']['vpq'])
    if len(ks) < len(all_ks):
      lines += ['', f'The val clips are too short for the windows k = '
                f'{", ".join(k for k in all_ks if k not in ks)} (—); VPQ is the mean over k = '
                f'{", ".join(ks)}.']
  ref = paper_tables.get_table(reference_table)
  if ref is not None:
    lines += [''] + _reference_lines(*ref)
  lines += ['', f'![VPQ against k]({os.path.basename(plot)})', ''] if plot else ['']
  if gif:
    lines += [f'Tracked val clip (frame | prediction | ground truth): '
              f'![tracked]({os.path.relpath(gif, workdir)})', '']
  if notes:
    lines += ['## Notes', ''] + [f'- {n}' for n in notes] + ['']
  path = os.path.join(workdir, 'report.md')
  with open(path, 'w') as f:
    f.write('\n'.join(lines))
  return path
