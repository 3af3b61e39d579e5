r"""The paper's Table IV: RAFT refinement iterations for the pixel tracker.

  python experiments/raft_iterations.py --config configs/synthetic.py --workdir /tmp/demo
  python experiments/raft_iterations.py --config configs/cityscapes_vps.py:small \
      --config.data.root=/data/cityscapes_vps --config.flow.checkpoint=/ckpt/raft_sintel \
      --workdir /tmp/hybrid_city_small [--iters=1,5,20] [--max-clips 10]

The segmenter runs once per clip; RAFT runs once per clip and iteration count (the run's
weights: trained on synthetic data, converted for real data; needs flow.source=raft). The
pixel tracker (no temporal memory, config.track.mutual_check) then tracks with that flow.
Columns: PQ (= mean VPQ over k), PQ_Th, PQ_St and FPS (segmenter + RAFT + tracker).
Writes <workdir>/experiments/raft_iterations.md.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import common  # noqa: E402

NAME = 'raft_iterations'
ITERATIONS = (1, 5, 10, 15, 20, 25)


def settings(iterations=ITERATIONS, mutual_check: bool = True) -> list[common.Setting]:
  return [common.Setting(f'{int(n)}', 'pixel', temporal=False, mutual_check=mutual_check,
                         flow_iters=int(n)) for n in iterations]


def table(rows: list[dict]) -> list[str]:
  return common.pq_table(rows, 'Iterations', lambda r: str(r['setting'].flow_iters))


def markdown(rows: list[dict], config, num_clips: int) -> str:
  lines = common.header('RAFT iterations for the pixel tracker (paper Table IV)', config,
                        num_clips)
  lines += [f'RAFT {config.flow.variant}; PQ = VPQ averaged over k = 0, 5, 10, 15. FPS: '
            'segmenter + RAFT + pixel tracker, first clip excluded (compilation).', '']
  lines += table(rows)
  return '\n'.join(lines) + '\n'


if __name__ == '__main__':
  from absl import flags
  _ITERS = flags.DEFINE_list('iters', [str(n) for n in ITERATIONS], 'RAFT iteration counts.')
  common.run_cli(
      NAME, lambda config: settings([int(n) for n in _ITERS.value], config.track.mutual_check),
      markdown, sweeps_flow=True)
