r"""The paper's Table V rows "VPSNet-FuseTrack + Pixel (+ w/ Temporal)": any per-frame predictor.

  python experiments/external_predictor.py --config configs/cityscapes_vps.py:small \
      --config.data.root=/data/cityscapes_vps --config.flow.checkpoint=/ckpt/raft_sintel \
      --workdir /tmp/hybrid_city_small --pred-dir /preds/vpsnet_val --name VPSNet-FuseTrack

--pred-dir holds another model's per-frame panoptic predictions of the val split in the
official format (pred.json + pan_pred/<image id>.png, per-frame segment ids; what
`python -m hybrid_jax.cli.track_predictions` takes). They are evaluated as given (ids per
frame, so the video windows see no tracks) and tracked with our pixel tracker, without and
with the temporal memory (config.track's thresholds, mutual check and backward check), on
flow from the run's RAFT between the consecutive predicted frames. The ground truth and the
frames come from the run's export of the val split (<workdir>/export, written when missing).
Writes <workdir>/experiments/external_predictor.md (Table I/V layout).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import common  # noqa: E402
from experiments import tracker_ablation  # noqa: E402
from hybrid_jax import errors  # noqa: E402

NAME = 'external_predictor'


def rows_for(name: str) -> list[tuple[str, str | None, bool]]:
  """(row name, tracker variant or None = as given, temporal)."""
  return [(f'{name} (per-frame ids)', None, False), (f'{name} + Pixel', 'pixel', False),
          (f'{name} + Pixel + w/ Temporal', 'pixel', True)]


def run(config, workdir: str, pred_dir: str, *, name: str | None = None,
        out: str | None = None) -> tuple[str, list[dict]]:
  """Tracks and evaluates `pred_dir` (see the module docstring); returns (markdown path, rows)."""
  from hybrid_jax import config_checks
  from hybrid_jax import external_predictions
  from hybrid_jax import trained_models
  from hybrid_jax import val_tracking
  from hybrid_jax import workdirs
  from hybrid_jax.data import datasets
  from hybrid_jax.evaluation import evaluate_official
  config_checks.check_config(config)
  if not os.path.isfile(os.path.join(pred_dir, 'pred.json')):
    raise errors.DatasetError(f'--pred-dir {pred_dir} has no pred.json: give a folder with '
                              'pred.json + pan_pred/<image id>.png (per-frame ids).')
  name = name or os.path.basename(os.path.normpath(pred_dir))
  workdir = workdirs.ensure_writable_dir(workdir)
  with workdirs.locked(workdir):
    datasets.prepare(config, workdirs.data_dir(config, workdir))
    gt_dir, gt_json = val_tracking.gt_layout(config, workdir)
  flow = trained_models.load_flow(config, workdir)
  if flow is None:
    raise errors.CheckpointError(
        f'No RAFT in {workdir}: train it (--config.mode=train_flow, synthetic data) or pass '
        'converted weights with --config.flow.checkpoint=DIR.')
  images = os.path.join(workdir, 'export', 'val', 'img')

  def flow_fn(prev, cur):
    return flow(prev[None], cur[None])[0]

  track = {k: config.track[k] for k in ('threshold', 'temporal_threshold', 'memory_frames',
                                        'matcher', 'temporal_backward')}
  rows = []
  for row, variant, temporal in rows_for(name):
    if variant is None:
      row_dir = pred_dir
    else:
      row_dir = os.path.join(workdir, 'experiments', NAME, val_tracking._slug(row))
      summary = external_predictions.track_predictions(
          pred_dir, row_dir, variant=variant, temporal=temporal,
          mutual_check=bool(config.track.mutual_check),
          temporal_backward=bool(config.track.temporal_backward),
          temporal_backward_flow=bool(config.track.get('temporal_backward_flow', False)),
          flow_fn=flow_fn,
          images_dir=images, dataset=config.data.categories, track_settings=track,
          progress=sys.stderr.isatty())
    res = evaluate_official(gt_dir, gt_json, row_dir, dataset=config.eval.dataset,
                            metrics=('vpq',), frames_per_video=None)
    fps = None if variant is None else summary['frames'] / max(summary['seconds'], 1e-9)
    rows.append({'name': row, 'results': res, 'fps': fps})
  lines = common.header(f'{name} + our pixel tracker (paper Table V, last rows)', config,
                        len(val_tracking._image_ids_by_video(gt_json)))
  lines += [f'Per-frame predictions: `{pred_dir}`. FPS: the tracker and RAFT only (the '
            'predictor is not timed).', '']
  lines += tracker_ablation.table(rows)
  path = out or os.path.join(workdir, 'experiments', f'{NAME}.md')
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')
  print('\n'.join(lines))
  print(f'Wrote {path}')
  return path, rows


if __name__ == '__main__':
  from absl import app
  from absl import flags
  from ml_collections import config_flags
  _CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
  _WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory (its RAFT and val export).')
  _PRED = flags.DEFINE_string('pred_dir', None, 'Per-frame predictions (official format).')
  _NAME = flags.DEFINE_string('name', None, 'Row name of the predictor (default: folder name).')
  _OUT = flags.DEFINE_string('out', None, 'Markdown output.')
  flags.mark_flags_as_required(['config', 'workdir', 'pred_dir'])

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
    common.quiet_log(_WORKDIR.value)
    try:
      run(_CONFIG.value, _WORKDIR.value, _PRED.value, name=_NAME.value, out=_OUT.value)
    except errors.HybridJaxError as exc:
      print(f'error: {exc}', file=sys.stderr)
      sys.exit(2)

  app.run(main, flags_parser=common._parse_flags)
