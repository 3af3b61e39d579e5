r"""The paper's Table III: which RAFT weights the pixel tracker uses.

  python experiments/raft_checkpoints.py --config configs/cityscapes_vps.py:small \
      --config.data.root=/data/cityscapes_vps --config.flow.checkpoint=/ckpt/raft_sintel \
      --workdir /tmp/hybrid_city_small \
      --checkpoints chairs=/ckpt/raft_chairs,kitti=/ckpt/raft_kitti,sintel=/ckpt/raft_sintel,small=/ckpt/raft_small,things=/ckpt/raft_things
  python experiments/raft_checkpoints.py --config configs/synthetic.py --workdir /tmp/demo \
      --checkpoints run=/tmp/demo/flow/final,sintel=/ckpt/raft_sintel

Each entry of --checkpoints is NAME=PATH (or PATH: named after its folder), a converted RAFT
(`python -m hybrid_jax.cli.convert raft raft-sintel.pth OUT [--variant small]`; the variant is
read from the checkpoint). The segmenter runs once per clip; each checkpoint's RAFT runs once
per clip with config.flow.iters; the pixel tracker (no temporal memory,
config.track.mutual_check) tracks with that flow. Columns as the paper's: PQ (= mean VPQ over
k), PQ_Th, PQ_St, and FPS. Writes <workdir>/experiments/raft_checkpoints.md.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import common  # noqa: E402
from hybrid_jax import errors  # noqa: E402

NAME = 'raft_checkpoints'


def parse_checkpoints(entries) -> list[tuple[str, str]]:
  """['a=/x', '/y/raft_sintel'] -> [('a', '/x'), ('raft_sintel', '/y/raft_sintel')]."""
  out = []
  for entry in entries:
    name, sep, path = str(entry).partition('=')
    if not sep:
      name, path = os.path.basename(os.path.normpath(entry)), entry
    if not name or not path:
      raise errors.ConfigError(f'--checkpoints entry {entry!r}: give NAME=PATH or PATH.')
    if not os.path.exists(path):
      raise errors.CheckpointError(f'--checkpoints {name}: {path} does not exist (convert the '
                                   'official weights with python -m hybrid_jax.cli.convert '
                                   'raft raft-sintel.pth OUT).')
    out.append((name, path))
  if not out:
    raise errors.ConfigError('--checkpoints is empty: give NAME=PATH entries, comma-separated.')
  names = [n for n, _ in out]
  if len(set(names)) != len(names):
    raise errors.ConfigError(f'--checkpoints names must be distinct, got {names}.')
  return out


def settings(checkpoints, mutual_check: bool = True) -> list[common.Setting]:
  return [common.Setting(name, 'pixel', temporal=False, mutual_check=mutual_check,
                         flow_checkpoint=path) for name, path in checkpoints]


def table(rows: list[dict]) -> list[str]:
  return common.pq_table(rows, 'version', lambda r: r['name'])


def markdown(rows: list[dict], config, num_clips: int) -> str:
  lines = common.header('RAFT weights for the pixel tracker (paper Table III)', config,
                        num_clips)
  lines += [f'{config.flow.iters} RAFT iterations; PQ = VPQ averaged over k = 0, 5, 10, 15. '
            'FPS: segmenter + RAFT + pixel tracker, first clip excluded (compilation).', '']
  lines += ['Checkpoints: ' + ', '.join(f'{r["name"]} = `{r["setting"].flow_checkpoint}`'
                                        for r in rows), '']
  lines += table(rows)
  return '\n'.join(lines) + '\n'


if __name__ == '__main__':
  from absl import flags
  _CKPTS = flags.DEFINE_list('checkpoints', None,
                             'Converted RAFT checkpoints, NAME=PATH or PATH, comma-separated.')
  flags.mark_flag_as_required('checkpoints')
  common.run_cli(
      NAME, lambda config: settings(parse_checkpoints(_CKPTS.value), config.track.mutual_check),
      markdown, sweeps_flow=True)
