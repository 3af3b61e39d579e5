r"""The paper's Table I / V: tracker variants with the mutual check and temporal memory on/off.

  python experiments/tracker_ablation.py --config configs/synthetic.py --workdir /tmp/demo
  python experiments/tracker_ablation.py --config configs/cityscapes_vps.py:small \
      --config.data.root=/data/cityscapes_vps --config.flow.checkpoint=/ckpt/raft_sintel \
      --workdir /tmp/hybrid_city_small [--max-clips 10] [--stq]

Rows (Table V): Instance, Instance + Mutual, Instance + Temporal, Instance + Mutual + Temporal,
Pixel, Pixel + Temporal, Hybrid, Hybrid + Temporal. As in the paper, the plain instance rows
toggle the mutual check; pixel and hybrid rows use config.track.mutual_check. Columns:
VPQ / VPQ_Th / VPQ_St at k = 0, 5, 10, 15, their mean, (STQ with --stq) and FPS.
Writes <workdir>/experiments/tracker_ablation.md.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import common  # noqa: E402

NAME = 'tracker_ablation'


def settings(mutual_check: bool = True) -> list[common.Setting]:
  """Table V's rows; `mutual_check` is the pixel / hybrid rows' setting (config.track)."""
  s = common.Setting
  return [
      s('Instance Tracker', 'instance', temporal=False, mutual_check=False),
      s('Instance Tracker + w/ Mutual Check', 'instance', temporal=False, mutual_check=True),
      s('Instance Tracker + w/ Temporal', 'instance', temporal=True, mutual_check=False),
      s('Instance Tracker + w/ Mutual + Temporal', 'instance', temporal=True, mutual_check=True),
      s('Pixel Tracker', 'pixel', temporal=False, mutual_check=mutual_check),
      s('Pixel Tracker + w/ Temporal', 'pixel', temporal=True, mutual_check=mutual_check),
      s('HybridTracker', 'hybrid', temporal=False, mutual_check=mutual_check),
      s('HybridTracker + w/ Temporal', 'hybrid', temporal=True, mutual_check=mutual_check),
  ]


def table(rows: list[dict]) -> list[str]:
  """Markdown lines in Table I/V's layout (an STQ column when the rows have STQ)."""
  with_stq = any('stq' in r['results'] for r in rows)
  cols = ['Method', 'k = 0', 'k = 5', 'k = 10', 'k = 15', 'VPQ'] + (['STQ'] if with_stq else [])
  cols.append('FPS')
  lines = ['| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
  for r in rows:
    vpq = r['results']['vpq']
    cells = [r['name']] + [common.vpq_cell(vpq[k]) for k in common.KS]
    cells.append(common.vpq_cell(vpq['final'], digits=2))
    if with_stq:
      cells.append(f'{100 * r["results"]["stq"]["stq"]:.1f}' if 'stq' in r['results'] else '—')
    cells.append(common.fps_cell(r['fps']))
    lines.append('| ' + ' | '.join(cells) + ' |')
  return lines


def markdown(rows: list[dict], config, num_clips: int) -> str:
  lines = common.header('Tracker ablation (paper Tables I and V)', config, num_clips)
  lines += ['Each cell: VPQ / VPQ_Th / VPQ_St. FPS: segmenter + flow (pixel, hybrid) + tracker '
            'on this machine, first clip excluded (compilation).', '']
  lines += table(rows)
  return '\n'.join(lines) + '\n'


if __name__ == '__main__':
  common.run_cli(NAME, lambda config: settings(config.track.mutual_check), markdown)
