"""HybridTracker end to end: ``train_and_evaluate(config, workdir)`` and the mode registry.

``train_and_evaluate`` runs: prepare data -> train the segmenter -> train RAFT (when the data
has ground-truth flow; else converted weights) -> train the embedding head and fit the fusion
-> track the val clips with the paper's Table I tracker variants -> VPQ / STQ with the
official-format evaluator -> ``<workdir>/report.md``. Every stage resumes or is skipped when
done, so rerunning the command continues where it stopped.

``run(config, workdir)`` is what ``python -m hybrid_jax.main`` calls: it checks the config and
the workdir, then runs ``MODES[config.mode]``. A notebook calls the same functions::

  from configs import synthetic
  from hybrid_jax import train
  train.run(synthetic.get_config('tiny'), '/tmp/tiny')
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Callable

import numpy as np

from hybrid_jax import config_checks
from hybrid_jax import console
from hybrid_jax import errors
from hybrid_jax import inference
from hybrid_jax import trained_models
from hybrid_jax import visualize
from hybrid_jax import workdirs
from hybrid_jax.data import categories as categories_lib
from hybrid_jax.data import datasets
from hybrid_jax.data import export as export_lib
from hybrid_jax.data import official_format
from hybrid_jax.evaluation import evaluate_official
from hybrid_jax.evaluation import outputs as eval_outputs
from hybrid_jax.evaluation import report as report_lib

# The rows of the paper's Table I: (name, tracker variant, temporal consistency).
TABLE_I_ROWS = (
    ('Instance Tracker', 'instance', False),
    ('Pixel Tracker', 'pixel', False),
    ('HybridTracker', 'hybrid', False),
    ('HybridTracker + w/ Temporal', 'hybrid', True),
)
GT_SUFFIX = ' (GT segments)'


def data_dir(config, workdir: str) -> str:
  """Where TFDS files live: config.data.dir, or <workdir>/data."""
  if config.data.dir:
    return os.path.abspath(os.path.expanduser(config.data.dir))
  return os.path.join(workdir, 'data')


# ---------------------------------------------------------------------------------------------
# Training stages.

def train_seg(config, workdir: str) -> dict:
  """The segmenter of this run (trained, or loaded when its stage is done)."""
  from hybrid_jax.training.stages import train_segmenter  # pylint: disable=g-import-not-at-top
  return train_segmenter.train_segmenter(config, workdir, data_dir(config, workdir))


def train_flow(config, workdir: str) -> trained_models.FlowModel | None:
  """RAFT of this run: trained here on ground-truth flow (synthetic), else converted weights.

  None when the tracker uses no RAFT (config.flow.source='gt').
  """
  if config.flow.source == 'flo':
    raise errors.ConfigError(
        "flow.source='flo' reads .flo files, which only the external-prediction command takes: "
        'python -m hybrid_jax.cli.track_predictions --pred-dir ... --flow-dir DIR. Use raft or '
        'gt here.')
  if config.flow.source != 'raft':
    return None
  source = datasets.get_source(config, 'val', data_dir(config, workdir))
  if 'flow' in source[0]:
    from hybrid_jax.training.stages import train_flow as flow_stage  # lazy: loads RAFT
    flow_stage.train_flow(config, workdir, data_dir(config, workdir))
  elif not config.flow.checkpoint:
    raise errors.ConfigError(
        f'{config.data.name} has no ground-truth flow to train RAFT on, so the pixel tracker '
        'needs converted weights: python -m hybrid_jax.cli.convert raft raft-sintel.pth '
        'weights/raft_sintel, then --config.flow.checkpoint=weights/raft_sintel.')
  return trained_models.load_flow(config, workdir)


def train_track(config, workdir: str, *, flow: trained_models.FlowModel | None = None,
                flow_trained: bool = False) -> None:
  """The embedding head and the fusion conv (fitted on pixel matrices from the run's flow)."""
  from hybrid_jax.training.stages import train_tracker  # pylint: disable=g-import-not-at-top
  if not flow_trained:
    flow = train_flow(config, workdir)
  train_tracker.train_tracker(config, workdir, data_dir(config, workdir), flow_fn=flow)


def train_stages(config, workdir: str) -> trained_models.TrainedModels:
  """Trains every stage that is not done, then loads the run's networks (`trained_models`)."""
  train_seg(config, workdir)
  flow = train_flow(config, workdir)
  train_track(config, workdir, flow=flow, flow_trained=True)
  return trained_models.load_models(config, workdir,
                                    variants=[v for _, v, _ in TABLE_I_ROWS])


# ---------------------------------------------------------------------------------------------
# Tracking the val split.

def _image_ids_by_video(gt_json: str) -> dict[str, list[str]]:
  ids = sorted(str(img['id']) for img in official_format.read_json(gt_json)['images'])
  return {vid: v for vid, v in official_format.group_by_video(ids, where=gt_json)}


def _gt_layout(config, workdir: str) -> tuple[str, str]:
  """The val split's ground truth in the official layout (exported once)."""
  root = os.path.join(workdir, 'export')
  paths = official_format.json_paths(root, 'val')
  if not os.path.exists(paths['gt']):
    export_lib.export_split(config, workdir, data_dir(config, workdir), split='val',
                            out_root=root)
  return os.path.join(root, 'val', 'panoptic_video'), paths['gt']


def _slug(name: str) -> str:
  return ''.join(ch if ch.isalnum() else '_' for ch in name.lower()).strip('_')


def track_val(config, workdir: str, *, models: trained_models.TrainedModels | None = None
              ) -> dict:
  """Tracks every val clip with the Table I rows; writes official-format predictions.

  On the synthetic data the same trackers also run on ground-truth per-frame segments (an
  oracle segmenter), so the tracker comparison is readable when the segmenter is weak.
  Returns {row name: {'pred_dir', 'seconds_tracking'}} plus the networks' timing under
  '_networks' and the GIF under '_gif'.
  """
  models = models or train_stages(config, workdir)
  table = categories_lib.get_categories(config.data.categories)
  source = datasets.get_source(config, 'val', data_dir(config, workdir))
  _, gt_json = _gt_layout(config, workdir)
  ids_by_video = _image_ids_by_video(gt_json)
  use_gt_flow = config.flow.source == 'gt'
  trackers = {name: inference.make_tracker(
      config.track, head=models.head, max_instances=config.data.max_instances,
      categories=table, variant=variant, temporal=temporal)
              for name, variant, temporal in TABLE_I_ROWS}
  with_oracle = datasets.labels_on_every_frame(config)
  names = list(trackers) + ([n + GT_SUFFIX for n in trackers] if with_oracle else [])
  preds = {name: ([], []) for name in names}
  seconds = dict.fromkeys(names, 0.0)
  net_seconds = {'seg': 0.0, 'flow': 0.0}
  frames_total = 0
  gif_clip = None
  for i in console.progress(range(len(source)), desc='track val', unit='clip'):
    clip = source[i]
    frames = np.asarray(clip['frames'])
    p = inference.predict_clip(models, frames,
                               given_flow=clip.get('flow') if use_gt_flow else None)
    timed = i > 0 or len(source) == 1  # the first clip pays for compilation
    if timed:
      net_seconds['seg'] += p.seg_seconds
      net_seconds['flow'] += p.flow_seconds
      frames_total += len(frames)
    lab = np.flatnonzero(clip['labelled'])
    vid = str(clip['video_id'])
    image_ids = ids_by_video.get(vid)
    if image_ids is None or len(image_ids) != len(lab):
      raise errors.DatasetError(f'Val clip {vid}: {len(lab)} labelled frames but the exported '
                                f'ground truth lists {len(image_ids or [])}; delete '
                                f'{os.path.dirname(gt_json)} and rerun.')
    runs = [(name, tracker, p) for name, tracker in trackers.items()]
    if with_oracle:
      gt_seg = inference.ground_truth_segments(clip['panoptic'], table,
                                               config.data.max_instances)
      gt_pred = inference.ClipPredictions(gt_seg, p.flow, 0.0, p.flow_seconds)
      runs += [(name + GT_SUFFIX, tracker, gt_pred) for name, tracker in trackers.items()]
    for name, tracker, clip_preds in runs:
      pan, sec = inference.track_clip(tracker, frames, clip_preds)
      if timed:
        seconds[name] += sec
      preds[name][0].extend(image_ids)
      preds[name][1].extend(pan[lab])
      if i == 0 and name == TABLE_I_ROWS[-1][0]:
        gif_clip = (frames, pan, clip['panoptic'])
  out = {'_networks': {**net_seconds, 'frames': frames_total}}
  for name, (ids, maps) in preds.items():
    pred_dir = os.path.join(workdir, 'predictions', _slug(name))
    official_format.write_predictions(pred_dir, ids, maps, table)
    out[name] = {'pred_dir': pred_dir, 'seconds_tracking': seconds[name]}
  if gif_clip is not None:
    out['_gif'] = _write_tracking_gif(workdir, *gif_clip, table)
  with open(os.path.join(workdir, 'predictions', 'timing.json'), 'w') as f:
    json.dump(out, f, indent=2)
  return out


def _write_tracking_gif(workdir, frames, pred, gt, table) -> str:
  pred_rgb = visualize.overlay(frames, visualize.colorize_panoptic(pred, table), 0.5, panoptic=pred)
  gt_rgb = visualize.overlay(frames, visualize.colorize_panoptic(gt, table), 0.5, panoptic=gt)
  rows = [visualize.compose_strip([[frames[t], pred_rgb[t], gt_rgb[t]]], 2)
          for t in range(len(frames))]
  path = os.path.join(workdir, 'tracked_val_clip.gif')
  visualize.write_gif(path, rows, fps=6)
  return path


# ---------------------------------------------------------------------------------------------
# Evaluation and the report.

def evaluate(config, workdir: str, *, tracked: dict | None = None) -> list[dict]:
  """VPQ / STQ of every row's predictions (the official-file path); writes report.md."""
  if tracked is None:
    timing = os.path.join(workdir, 'predictions', 'timing.json')
    if not os.path.exists(timing):
      raise errors.WorkdirError(f'No predictions in {workdir}/predictions; run mode=track first '
                                '(or the full pipeline, mode=all).')
    with open(timing) as f:
      tracked = json.load(f)
  gt_dir, gt_json = _gt_layout(config, workdir)
  metrics = tuple(m.strip() for m in config.eval.metrics.split(',') if m.strip())
  net = tracked['_networks']
  rows = []
  names = [(name, variant) for name, variant, _ in TABLE_I_ROWS]
  names += [(name + GT_SUFFIX, variant) for name, variant, _ in TABLE_I_ROWS
            if name + GT_SUFFIX in tracked]
  for name, variant in names:
    res = evaluate_official(gt_dir, gt_json, tracked[name]['pred_dir'],
                            dataset=config.eval.dataset, metrics=metrics,
                            frames_per_video=None)  # videos by image-id prefix (VVVV_...)
    eval_outputs.write_json(res, os.path.join(tracked[name]['pred_dir'], 'eval.json'))
    seconds = tracked[name]['seconds_tracking'] + (0 if name.endswith(GT_SUFFIX) else net['seg'])
    if variant in trained_models.NEEDS_FLOW:
      seconds += net['flow']
    fps = net['frames'] / seconds if seconds > 0 and net['frames'] else None
    rows.append({'name': name, 'results': res, 'fps': fps})
  report = report_lib.write_report(
      workdir, rows, title=f'HybridTracker on {config.data.name} (val split)',
      notes=_notes(workdir), reference_table=config.eval.reference_table,
      gif=tracked.get('_gif'))
  logging.info('Wrote %s', report)
  print(f'Wrote {report}')
  for row in rows:
    print(f'{row["name"]:30s} VPQ {row["results"]["vpq"]["final"]["all"]["pq"]:.1f}')
  return rows


def _notes(workdir: str) -> list[str]:
  notes = []
  for stage, fmt in (('seg', 'Segmenter image PQ on val: {ours[all]:.1f} (things {ours[things]:.1f}, '
                             'stuff {ours[stuff]:.1f}); majority-stuff baseline {baseline[all]:.1f}.'),
                     ('flow', 'RAFT end-point error on val: {epe:.3f} px (zero-flow baseline '
                              '{epe_zero_flow:.3f} px) over {pairs} pairs.')):
    path = os.path.join(workdir, stage, 'eval.json')
    if os.path.exists(path):
      with open(path) as f:
        notes.append(fmt.format(**json.load(f)))
  notes.append('Rows marked "(GT segments)" run the same trackers on ground-truth per-frame '
               'segments with per-frame ids (an oracle segmenter; synthetic data only), so they '
               'measure the trackers alone; their FPS excludes the segmenter.')
  notes.append('FPS: frames per second of segmenter + flow (pixel/hybrid) + tracker on this '
               'machine, first clip excluded (compilation).')
  return notes


# ---------------------------------------------------------------------------------------------
# The modes.

def train_and_evaluate(config, workdir: str) -> list[dict]:
  """mode=all: the whole pipeline; resumes every stage."""
  t0 = time.time()
  datasets.prepare(config, data_dir(config, workdir))
  models = train_stages(config, workdir)
  tracked = track_val(config, workdir, models=models)
  rows = evaluate(config, workdir, tracked=tracked)
  logging.info('Pipeline finished in %.0f s.', time.time() - t0)
  return rows


def mode_data(config, workdir):
  return datasets.prepare(config, data_dir(config, workdir))


def mode_show(config, workdir):
  from hybrid_jax.data import show  # pylint: disable=g-import-not-at-top
  return show.show_clip(config, workdir, data_dir(config, workdir))


def mode_export(config, workdir):
  return export_lib.export_split(config, workdir, data_dir(config, workdir))


def mode_track(config, workdir):
  """config.input set: track that video (`user_video`); else the val split."""
  if config.input:
    from hybrid_jax import user_video  # pylint: disable=g-import-not-at-top
    return user_video.track_video(config, workdir, config.input)
  return track_val(config, workdir)


MODES: dict[str, Callable] = {
    'data': mode_data,
    'show': mode_show,
    'export': mode_export,
    'train_seg': train_seg,
    'train_flow': train_flow,
    'train_track': train_track,
    'track': mode_track,
    'eval': evaluate,
    'all': train_and_evaluate,
}
assert set(MODES) == set(config_checks.MODES)


def run(config, workdir: str):
  """Checks the config and the workdir, then runs the selected mode."""
  config_checks.check_config(config)
  workdir = workdirs.ensure_writable_dir(workdir)
  logging.info('mode=%s workdir=%s', config.mode, workdir)
  # Process 0 holds the lock for the whole job (the others share its workdir).
  with workdirs.locked(workdir, enabled=_process_index() == 0):
    return MODES[config.mode](config, workdir)


def _process_index() -> int:
  import jax  # pylint: disable=g-import-not-at-top
  return jax.process_index()
