"""The end-to-end HybridTracker pipeline and its modes (train stages, track, eval, all).

``train_and_evaluate(config, workdir)`` runs: prepare data -> train the segmenter -> train
RAFT (when the data has ground-truth flow; else converted weights) -> train the embedding
head and fit the fusion -> track the val clips with the paper's tracker variants -> VPQ/STQ
with the official-format evaluator -> ``<workdir>/report.md``. Every stage resumes or is
skipped when done, so rerunning the command continues where it stopped.
"""

from __future__ import annotations

import json
import logging
import os
import time

import numpy as np

from hybrid_jax import errors
from hybrid_jax import report as report_lib
from hybrid_jax import video
from hybrid_jax import visualize
from hybrid_jax.data import categories as categories_lib
from hybrid_jax.data import datasets
from hybrid_jax.data import export as export_lib
from hybrid_jax.data import official_format
from hybrid_jax.evaluation import evaluate_official
from hybrid_jax.evaluation import report as eval_report
from hybrid_jax.models import raft as raft_lib
from hybrid_jax.stages import common
from hybrid_jax.stages import flow as flow_stage
from hybrid_jax.stages import segmenter as seg_stage
from hybrid_jax.stages import tracker as track_stage

# The rows of the paper's Table I: (name, tracker variant, temporal consistency).
VARIANTS = (
    ('Instance Tracker', 'instance', False),
    ('Pixel Tracker', 'pixel', False),
    ('HybridTracker', 'hybrid', False),
    ('HybridTracker + w/ Temporal', 'hybrid', True),
)


def _data_dir(config, workdir):
  from hybrid_jax import run
  return run.data_dir(config, workdir)


# ---- stages -------------------------------------------------------------------------------

def train_seg(config, workdir):
  return seg_stage.train_segmenter(config, workdir, _data_dir(config, workdir))


def flow_variables(config, workdir):
  """RAFT weights: trained here on ground-truth flow (synthetic), or converted (real data)."""
  if config.flow.source == 'flo':
    raise errors.ConfigError(
        "flow.source='flo' reads .flo files, which only the external-prediction command takes: "
        'python -m hybrid_jax.track --pred-dir ... --flow-dir DIR. Use raft or gt here.')
  if config.flow.source != 'raft':
    return None
  source = datasets.get_source(config, 'val', _data_dir(config, workdir))
  if 'flow' in source[0]:
    return flow_stage.train_flow(config, workdir, _data_dir(config, workdir))
  if not config.flow.checkpoint:
    raise errors.ConfigError(
        f'{config.data.name} has no ground-truth flow to train RAFT on, so the pixel tracker '
        'needs converted weights: python -m hybrid_jax.convert raft raft-sintel.pth '
        'weights/raft_sintel, then --config.flow.checkpoint=weights/raft_sintel.')
  return raft_lib.load_raft(config.flow.checkpoint, variant=config.flow.variant)[0]


def train_flow(config, workdir):
  return flow_variables(config, workdir)


def train_track(config, workdir, *, flow_vars=None):
  # The fusion is fitted on pixel matrices from the flow the tracker will use at test time.
  if flow_vars is None:
    flow_vars = flow_variables(config, workdir)
  flow_fn = None
  if flow_vars is not None:
    flow_fn = lambda a, b: raft_lib.estimate_flow(  # noqa: E731
        flow_vars, a, b, variant=config.flow.variant, iters=config.flow.iters,
        corr=config.flow.corr)
  return track_stage.train_tracker(config, workdir, _data_dir(config, workdir), flow_fn=flow_fn)


def load_models(config, workdir) -> video.TrainedModels:
  """The trained networks of this run (training whatever is missing)."""
  seg_model, _ = seg_stage.build(config)
  seg_vars = train_seg(config, workdir)
  flow_vars = flow_variables(config, workdir)
  track = train_track(config, workdir, flow_vars=flow_vars)
  return video.TrainedModels(
      seg_model=seg_model, seg_variables=seg_vars, flow_variables=flow_vars,
      flow_variant=config.flow.variant, flow_iters=int(config.flow.iters),
      flow_corr=config.flow.corr, head_model=track_stage.build_head(config),
      head_params=track['head'], fusion_params=track['fusion'],
      dustbin_logit=track['dustbin_logit'])


# ---- tracking the val split ------------------------------------------------------------------

def _image_ids_by_video(gt_json: str) -> dict[str, list[str]]:
  with open(gt_json) as f:
    ids = sorted(img['id'] for img in json.load(f)['images'])
  out: dict[str, list[str]] = {}
  for iid in ids:
    out.setdefault(official_format.video_id_of(iid), []).append(iid)
  return out


def _gt_layout(config, workdir):
  """The val split's ground truth in the official layout (exported once)."""
  root = os.path.join(workdir, 'export')
  paths = official_format.json_paths(root, 'val')
  if not os.path.exists(paths['gt']):
    export_lib.export_split(config, workdir, _data_dir(config, workdir), split='val',
                            out_root=root)
  return os.path.join(root, 'val', 'panoptic_video'), paths['gt']


def track(config, workdir, *, models: video.TrainedModels | None = None) -> dict:
  """Tracks every val clip with the paper's variants; writes official-format predictions.

  Returns {variant name: {'pred_dir', 'seconds_tracking', 'frames'}} plus timing of the
  shared networks under '_networks'.
  """
  models = models or load_models(config, workdir)
  table = categories_lib.get_categories(config.data.categories)
  source = datasets.get_source(config, 'val', _data_dir(config, workdir))
  _, gt_json = _gt_layout(config, workdir)
  ids_by_video = _image_ids_by_video(gt_json)
  use_gt_flow = config.flow.source == 'gt'
  segment_fn, embed_fn = models.segment_fn(), models.embed_fn()
  flow_fn = None if use_gt_flow else models.flow_fn()
  trackers = {}
  for name, variant, temporal in VARIANTS:
    trackers[name] = video.tracker_lib.VideoTracker(
        variant, temporal=temporal, mutual_check=config.track.mutual_check,
        threshold=config.track.threshold, temporal_threshold=config.track.temporal_threshold,
        memory_frames=config.track.memory_frames, max_instances=config.data.max_instances,
        matcher=config.track.matcher, embed_fn=embed_fn, fusion_params=models.fusion_params,
        categories=table, dustbin_logit=models.dustbin_logit)
  # The same trackers on ground-truth per-frame segments (an oracle segmenter), so the
  # tracker comparison is readable even when the CPU-trained segmenter is weak.
  oracle = {f'{name} (GT segments)': name for name in trackers}
  preds = {name: ([], []) for name in list(trackers) + list(oracle)}
  seconds = {name: 0.0 for name in preds}
  net_seconds = {'seg': 0.0, 'flow': 0.0}
  frames_total = 0
  gif_clip = None
  from tqdm import tqdm
  import sys
  for i in tqdm(range(len(source)), desc='track', disable=not sys.stderr.isatty()):
    clip = source[i]
    frames = np.asarray(clip['frames'])
    p = video.predict_clip(models, frames, segment_fn=segment_fn, flow_fn=flow_fn,
                           given_flow=clip.get('flow') if use_gt_flow else None)
    if i > 0 or len(source) == 1:  # the first clip pays for compilation
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
    for name, tracker in trackers.items():
      pan, sec = video.track_clip(tracker, frames, p)
      if i > 0 or len(source) == 1:
        seconds[name] += sec
      preds[name][0].extend(image_ids)
      preds[name][1].extend(pan[lab])
      if i == 0 and name == VARIANTS[-1][0]:
        gif_clip = (frames, pan, clip['panoptic'])
    if common.labels_on_every_frame(config):  # ground truth on every frame: synthetic data
      gt_seg = video.ground_truth_segments(clip['panoptic'], table, config.data.max_instances)
      gt_pred = video.ClipPredictions(gt_seg, p.flow, 0.0, p.flow_seconds)
      for name, base in oracle.items():
        pan, sec = video.track_clip(trackers[base], frames, gt_pred)
        if i > 0 or len(source) == 1:
          seconds[name] += sec
        preds[name][0].extend(image_ids)
        preds[name][1].extend(pan[lab])
  out = {'_networks': {**net_seconds, 'frames': frames_total}}
  for name, (ids, maps) in preds.items():
    if not ids:
      continue
    pred_dir = os.path.join(workdir, 'predictions', _slug(name))
    official_format.write_predictions(pred_dir, ids, maps, table)
    out[name] = {'pred_dir': pred_dir, 'seconds_tracking': seconds[name]}
  if gif_clip is not None:
    out['_gif'] = _write_tracking_gif(workdir, *gif_clip, table)
  with open(os.path.join(workdir, 'predictions', 'timing.json'), 'w') as f:
    json.dump(out, f, indent=2)
  return out


def _slug(name: str) -> str:
  return ''.join(ch if ch.isalnum() else '_' for ch in name.lower()).strip('_')


def _write_tracking_gif(workdir, frames, pred, gt, table) -> str:
  pred_rgb = visualize.overlay(frames, visualize.colorize_panoptic(pred, table), 0.5, panoptic=pred)
  gt_rgb = visualize.overlay(frames, visualize.colorize_panoptic(gt, table), 0.5, panoptic=gt)
  rows = [visualize.compose_strip([[frames[t], pred_rgb[t], gt_rgb[t]]], 2)
          for t in range(len(frames))]
  path = os.path.join(workdir, 'tracked_val_clip.gif')
  visualize.write_gif(path, rows, fps=6)
  return path


def evaluate(config, workdir, *, tracked: dict | None = None) -> list[dict]:
  """VPQ / STQ of every variant's predictions (official-file path); writes report.md."""
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
  names = [(name, variant) for name, variant, _ in VARIANTS]
  names += [(f'{name} (GT segments)', variant) for name, variant, _ in VARIANTS
            if f'{name} (GT segments)' in tracked]
  for name, variant in names:
    res = evaluate_official(gt_dir, gt_json, tracked[name]['pred_dir'],
                            dataset=config.eval.dataset, metrics=metrics,
                            frames_per_video=None)  # videos by image-id prefix (VVVV_...)
    eval_report.write_json(res, os.path.join(tracked[name]['pred_dir'], 'eval.json'))
    seconds = tracked[name]['seconds_tracking'] + (0 if 'GT segments' in name else net['seg'])
    if variant in ('pixel', 'hybrid'):
      seconds += net['flow']
    fps = net['frames'] / seconds if seconds > 0 and net['frames'] else None
    rows.append({'name': name, 'results': res, 'fps': fps})
  notes = _notes(workdir)
  report = report_lib.write_report(
      workdir, rows, title=f'HybridTracker on {config.data.name} (val split)', notes=notes,
      reference_table=config.eval.reference_table, gif=tracked.get('_gif'))
  logging.info('Wrote %s', report)
  print(f'Wrote {report}')
  for row in rows:
    print(f'{row["name"]:30s} VPQ {row["results"]["vpq"]["final"]["all"]["pq"]:.1f}')
  return rows


def _notes(workdir) -> list[str]:
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


def train_and_evaluate(config, workdir) -> list[dict]:
  """mode=all: the whole pipeline; resumes every stage."""
  t0 = time.time()
  datasets.prepare(config, _data_dir(config, workdir))
  models = load_models(config, workdir)
  tracked = track(config, workdir, models=models)
  rows = evaluate(config, workdir, tracked=tracked)
  logging.info('Pipeline finished in %.0f s.', time.time() - t0)
  return rows
