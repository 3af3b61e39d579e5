r"""The paper's Table VII: the temporal threshold θ for the instance, pixel and hybrid trackers.

  python experiments/temporal_threshold.py --config configs/synthetic.py --workdir /tmp/demo
  python experiments/temporal_threshold.py --config configs/cityscapes_vps.py:small \
      --config.data.root=/data/cityscapes_vps --config.flow.checkpoint=/ckpt/raft_sintel \
      --workdir /tmp/hybrid_city_small [--thetas=0.001,0.01] [--max-clips 10]

Every tracker runs with the temporal memory on and config.track.mutual_check; one column per
θ, each cell the mean VPQ / VPQ_Th / VPQ_St over k = 0, 5, 10, 15 (three decimals, as the
paper prints them). Writes <workdir>/experiments/temporal_threshold.md.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import common  # noqa: E402

NAME = 'temporal_threshold'
THETAS = (0.001, 0.005, 0.01, 0.015, 0.02)
TRACKERS = (('Instance Tracker', 'instance'), ('Pixel Tracker', 'pixel'),
            ('HybridTracker', 'hybrid'))


def setting_name(tracker: str, theta: float) -> str:
  return f'{tracker} θ={theta:g}'


def settings(thetas=THETAS, mutual_check: bool = True) -> list[common.Setting]:
  return [common.Setting(setting_name(name, th), variant, temporal=True,
                         mutual_check=mutual_check, temporal_threshold=float(th))
          for name, variant in TRACKERS for th in thetas]


def table(rows: list[dict], thetas=THETAS) -> list[str]:
  by_name = {r['name']: r for r in rows}
  lines = ['| Method | ' + ' | '.join(f'θ = {th:g}' for th in thetas) + ' |',
           '|---|' + '---|' * len(thetas)]
  for name, _ in TRACKERS:
    cells = [common.vpq_cell(by_name[setting_name(name, th)]['results']['vpq']['final'],
                             digits=3) for th in thetas]
    lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  return lines


def markdown(rows: list[dict], config, num_clips: int, thetas=THETAS) -> str:
  lines = common.header('Temporal threshold θ (paper Table VII)', config, num_clips)
  lines += ['Each cell: VPQ / VPQ_Th / VPQ_St, the mean over k = 0, 5, 10, 15; temporal '
            f'memory on ({config.track.memory_frames} frames), mutual check '
            f'{"on" if config.track.mutual_check else "off"}.', '']
  lines += table(rows, thetas)
  return '\n'.join(lines) + '\n'


if __name__ == '__main__':
  from absl import flags
  _THETAS = flags.DEFINE_list('thetas', [f'{t:g}' for t in THETAS], 'Temporal thresholds θ.')

  def _thetas():
    return tuple(float(t) for t in _THETAS.value)

  common.run_cli(NAME, lambda config: settings(_thetas(), config.track.mutual_check),
                 lambda rows, config, n: markdown(rows, config, n, _thetas()))
