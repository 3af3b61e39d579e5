r"""The paper's Fig. 5: the embedding head's loss, DML vs contrastive vs triplet, by VPQ over steps.

  python experiments/dml_losses.py --config configs/synthetic.py --workdir /tmp/demo \
      [--losses dml,contrastive,triplet] [--every 50]

For each loss the embedding head is trained from the same initialisation on the same pairs
(config.track.train) in <workdir>/dml_losses/<loss>/, and every `--every` steps the instance
tracker alone (no mutual check, no memory) tracks the val clips' labelled frames on their
ground-truth segments (`hybrid_jax.training.head_learning_curve`), so the curve measures the
embedding only. The run's data is shared (prepared when missing); no segmenter or RAFT is
needed. Writes <workdir>/experiments/dml_losses.md (VPQ and VPQ_Th per step and loss) and
dml_losses.png.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import common  # noqa: E402
from hybrid_jax import errors  # noqa: E402

NAME = 'dml_losses'
LOSSES = ('dml', 'contrastive', 'triplet')


def curve(stage_dir: str) -> list[dict]:
  """[{'step', 'vpq', 'vpq_things'}] from a track stage's metrics.jsonl."""
  out = []
  path = os.path.join(stage_dir, 'metrics.jsonl')
  if not os.path.exists(path):
    return out
  for line in open(path):
    rec = json.loads(line)
    if 'eval/val_vpq' in rec:
      out.append({'step': int(rec['step']), 'vpq': float(rec['eval/val_vpq']),
                  'vpq_things': float(rec['eval/val_vpq_things'])})
  return out


def run(config, workdir: str, *, losses=LOSSES, every: int = 50, out: str | None = None
        ) -> tuple[str, dict]:
  """Trains one head per loss with the learning curve on; returns (markdown path, curves)."""
  from hybrid_jax import config_checks
  from hybrid_jax import workdirs
  from hybrid_jax.data import datasets
  from hybrid_jax.losses import tracking as track_losses
  from hybrid_jax.training.stages import train_tracker
  unknown = [name for name in losses if name not in track_losses.LOSSES]
  if unknown or not losses:
    raise errors.ConfigError(f'--losses {",".join(losses)}: choose among '
                             f'{",".join(track_losses.LOSSES)}.')
  if every < 1:
    raise errors.ConfigError(f'--every must be >= 1, got {every}.')
  config_checks.check_config(config)
  workdir = workdirs.ensure_writable_dir(workdir)
  data_dir = workdirs.data_dir(config, workdir)
  curves = {}
  with workdirs.locked(workdir):
    datasets.prepare(config, data_dir)
    for name in losses:
      c = config.copy_and_resolve_references()
      c.track.loss, c.track.eval_every_steps, c.track.head_segments = name, int(every), 'gt'
      sub = os.path.join(workdir, NAME, name)
      train_tracker.train_tracker(c, sub, data_dir, with_fusion=False)
      curves[name] = curve(os.path.join(sub, train_tracker.STAGE))
  path = out or os.path.join(workdir, 'experiments', f'{NAME}.md')
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  png = plot(os.path.splitext(path)[0] + '.png', curves)
  text = markdown(curves, config) + f'\n![VPQ against steps]({os.path.basename(png)})\n'
  with open(path, 'w') as f:
    f.write(text)
  print(text)
  print(f'Wrote {path} and {png}')
  return path, curves


def curve_table(curves: dict) -> list[str]:
  """Markdown rows: one per evaluated step, 'VPQ / VPQ_Th' per curve ('—' where missing)."""
  names = list(curves)
  steps = sorted({p['step'] for c in curves.values() for p in c})
  lines = ['| step | ' + ' | '.join(names) + ' |', '|---|' + '---|' * len(names)]
  for step in steps:
    cells = []
    for name in names:
      p = next((p for p in curves[name] if p['step'] == step), None)
      cells.append('—' if p is None else f'{p["vpq"]:.1f} / {p["vpq_things"]:.1f}')
    lines.append(f'| {step} | ' + ' | '.join(cells) + ' |')
  return lines


def markdown(curves: dict, config) -> str:
  lines = ['# Embedding loss: DML vs contrastive vs triplet (paper Fig. 5)', '',
           f'{config.data.name} val, instance tracker (no mutual check, no memory) on '
           'ground-truth segments, VPQ / VPQ_Th (mean over k) against training steps; one head '
           f'per loss, {config.track.train.steps} steps, batch {config.track.train.batch_size}, '
           f'lr {config.track.train.lr}.', ''] + curve_table(curves)
  return '\n'.join(lines) + '\n'


def plot(path: str, curves: dict) -> str:
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
  for loss, c in curves.items():
    for ax, key in zip(axes, ('vpq', 'vpq_things')):
      ax.plot([p['step'] for p in c], [p[key] for p in c], marker='o', label=loss)
  for ax, title in zip(axes, ('VPQ (all)', 'VPQ (things)')):
    ax.set_xlabel('training step')
    ax.set_title(title)
    ax.grid(alpha=0.3)
  axes[0].set_ylabel('VPQ (%)')
  axes[1].legend(fontsize=8, loc='best')
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


if __name__ == '__main__':
  from absl import app
  from absl import flags
  from ml_collections import config_flags
  _CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
  _WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory (its data is shared).')
  _LOSSES = flags.DEFINE_list('losses', list(LOSSES), 'Embedding losses to compare.')
  _EVERY = flags.DEFINE_integer('every', 50, 'Evaluate every N training steps.')
  _OUT = flags.DEFINE_string('out', None, 'Markdown output (a PNG is written beside it).')
  flags.mark_flags_as_required(['config', 'workdir'])

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
    common.quiet_log(_WORKDIR.value)
    try:
      run(_CONFIG.value, _WORKDIR.value, losses=_LOSSES.value, every=_EVERY.value,
          out=_OUT.value)
    except errors.HybridJaxError as exc:
      print(f'error: {exc}', file=sys.stderr)
      sys.exit(2)

  app.run(main, flags_parser=common._parse_flags)
