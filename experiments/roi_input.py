r"""What the embedding head crops: the masked image, the segmenter's features, or both.

  python experiments/roi_input.py --config configs/synthetic.py --workdir /tmp/demo \
      [--inputs image,features,both] [--every 100]

The paper's Fig. 4 labels the head's input "RoI feats"; `track.roi_input` offers the masked
RGB image (our default), the frozen segmenter's encoder features, and both
(models/embedding_head.py). For each input the head is trained from the same seed on the same
pairs (config.track.train, ground-truth instances) in <workdir>/roi_input/<input>/, and every
`--every` steps the instance tracker alone (no mutual check, no memory) tracks the val clips'
labelled frames on their ground-truth segments (`hybrid_jax.training.head_learning_curve`),
so the numbers measure the embedding only. The features come from the workdir's trained
segmenter (run `--config.mode=train_seg` first; the message says so). Writes
<workdir>/experiments/roi_input.md (VPQ / VPQ_Th per step and input) and roi_input.png.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import common  # noqa: E402
from experiments import dml_losses  # noqa: E402
from hybrid_jax import errors  # noqa: E402

NAME = 'roi_input'
INPUTS = ('image', 'features', 'both')


def run(config, workdir: str, *, inputs=INPUTS, every: int = 100, out: str | None = None
        ) -> tuple[str, dict]:
  """Trains one head per RoI input with the learning curve on; returns (markdown path, curves)."""
  from hybrid_jax import config_checks
  from hybrid_jax import workdirs
  from hybrid_jax.data import datasets
  from hybrid_jax.training.stages import train_tracker
  unknown = [name for name in inputs if name not in INPUTS]
  if unknown or not inputs:
    raise errors.ConfigError(f'--inputs {",".join(inputs)}: choose among {",".join(INPUTS)}.')
  if every < 1:
    raise errors.ConfigError(f'--every must be >= 1, got {every}.')
  config_checks.check_config(config)
  workdir = workdirs.ensure_writable_dir(workdir)
  data_dir = workdirs.data_dir(config, workdir)
  curves = {}
  with workdirs.locked(workdir):
    datasets.prepare(config, data_dir)
    for name in inputs:
      c = config.copy_and_resolve_references()
      c.track.roi_input, c.track.eval_every_steps, c.track.head_segments = name, int(every), 'gt'
      features = train_tracker.feature_fn_for(c, workdir)  # the workdir's segmenter
      sub = os.path.join(workdir, NAME, name)
      train_tracker.train_tracker(c, sub, data_dir, features=features, with_fusion=False)
      curves[name] = dml_losses.curve(os.path.join(sub, train_tracker.STAGE))
  path = out or os.path.join(workdir, 'experiments', f'{NAME}.md')
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  png = dml_losses.plot(os.path.splitext(path)[0] + '.png', curves)
  text = markdown(curves, config) + f'\n![VPQ against steps]({os.path.basename(png)})\n'
  with open(path, 'w') as f:
    f.write(text)
  print(text)
  print(f'Wrote {path} and {png}')
  return path, curves


def markdown(curves: dict, config) -> str:
  t = config.track
  lines = ['# The embedding head\'s RoI input: image vs segmenter features vs both', '',
           f'{config.data.name} val, instance tracker (no mutual check, no memory) on '
           'ground-truth segments, VPQ / VPQ_Th (mean over k) against training steps; one head '
           f'per input, {t.train.steps} steps, batch {t.train.batch_size}, lr {t.train.lr}, '
           f'canvas {tuple(t.canvas)}, pool {t.pool}, features projected to {t.feature_dim} '
           'channels.', ''] + dml_losses.curve_table(curves)
  return '\n'.join(lines) + '\n'


if __name__ == '__main__':
  from absl import app
  from absl import flags
  from ml_collections import config_flags
  _CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
  _WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory with a trained segmenter.')
  _INPUTS = flags.DEFINE_list('inputs', list(INPUTS), 'RoI inputs to compare.')
  _EVERY = flags.DEFINE_integer('every', 100, 'Evaluate every N training steps.')
  _OUT = flags.DEFINE_string('out', None, 'Markdown output (a PNG is written beside it).')
  flags.mark_flags_as_required(['config', 'workdir'])

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
    common.quiet_log(_WORKDIR.value)
    try:
      run(_CONFIG.value, _WORKDIR.value, inputs=_INPUTS.value, every=_EVERY.value,
          out=_OUT.value)
    except errors.HybridJaxError as exc:
      print(f'error: {exc}', file=sys.stderr)
      sys.exit(2)

  app.run(main, flags_parser=common._parse_flags)
