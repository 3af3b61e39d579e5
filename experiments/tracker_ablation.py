r"""The paper's Table I / V: tracker variants with the mutual check and temporal memory on/off.

  python experiments/tracker_ablation.py --config configs/synthetic.py --workdir /tmp/demo
  python experiments/tracker_ablation.py --config configs/cityscapes_vps.py:small \
      --config.data.root=/data/cityscapes_vps --config.flow.checkpoint=/ckpt/raft_sintel \
      --workdir /tmp/hybrid_city_small [--max-clips 10] [--stq]
  python experiments/tracker_ablation.py --config configs/synthetic.py --workdir /tmp/seeds \
      --seeds 0,1,2

Rows (Table V): Instance, Instance + Mutual, Instance + Temporal, Instance + Mutual + Temporal,
Pixel, Pixel + Temporal, Hybrid, Hybrid + Temporal. As in the paper, the plain instance rows
toggle the mutual check; pixel and hybrid rows use config.track.mutual_check. Two comparisons
of ours follow: the hybrid with the paper's plain sum instead of the fitted fusion, the
temporal rows with the forward direction only (the others use config.track.temporal_backward),
the hybrid's memory compared through eq. 8's chain instead of directly, and the backward
check's reverse pixel cue from real backward flow (RAFT from frame t to the stored frame)
instead of the forward-warped dice read column-wise. Columns:
VPQ / VPQ_Th / VPQ_St at k = 0, 5, 10, 15, their mean, (STQ with --stq) and FPS.
Writes <workdir>/experiments/tracker_ablation.md. With --seeds, one run per seed (data and
training) and <workdir>/experiments/tracker_ablation_seeds.md with mean ± std per row and the
paper's claims checked (`COMPARISONS`), saying when two rows differ by less than their spread.
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
      s('HybridTracker (plain sum)', 'hybrid', temporal=False, mutual_check=mutual_check,
        plain_sum=True),
      s('HybridTracker + w/ Temporal (plain sum)', 'hybrid', temporal=True,
        mutual_check=mutual_check, plain_sum=True),
      s('Pixel Tracker + w/ Temporal (forward only)', 'pixel', temporal=True,
        mutual_check=mutual_check, temporal_backward=False),
      s('HybridTracker + w/ Temporal (forward only)', 'hybrid', temporal=True,
        mutual_check=mutual_check, temporal_backward=False),
      s('HybridTracker + w/ Temporal (chained, eq. 8)', 'hybrid', temporal=True,
        mutual_check=mutual_check, temporal_similarity='chained', temporal_backward_flow=False),
      s('HybridTracker + w/ Temporal (backward flow)', 'hybrid', temporal=True,
        mutual_check=mutual_check, temporal_backward=True, temporal_similarity='direct',
        temporal_backward_flow=True),
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


# (a, b): "a's VPQ_Th is above b's", the claims of Tables I and V and of our two comparisons.
COMPARISONS = (
    ('HybridTracker', 'Pixel Tracker'),
    ('HybridTracker', 'Instance Tracker'),
    ('HybridTracker + w/ Temporal', 'HybridTracker'),
    ('HybridTracker', 'HybridTracker (plain sum)'),
    ('HybridTracker + w/ Temporal', 'HybridTracker + w/ Temporal (forward only)'),
    ('HybridTracker + w/ Temporal (chained, eq. 8)', 'HybridTracker + w/ Temporal'),
    ('HybridTracker + w/ Temporal (backward flow)', 'HybridTracker + w/ Temporal'),
)

if __name__ == '__main__':
  common.run_cli(NAME, lambda config: settings(config.track.mutual_check), markdown,
                 comparisons=COMPARISONS)
