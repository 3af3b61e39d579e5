"""Tracking the val split with the rows of the paper's Table I (mode=all, mode=track).

Each finished clip is kept under ``<workdir>/predictions/clips/`` with the config values it
was tracked with (`run_records`), so an interrupted run continues with the next clip and a
finished one is not tracked again; the official-format predictions of every row are written
once all clips are done.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from typing import Callable, NamedTuple

import numpy as np

from hybrid_jax import console
from hybrid_jax import errors
from hybrid_jax import inference
from hybrid_jax import run_records
from hybrid_jax import trained_models
from hybrid_jax import visualize
from hybrid_jax import workdirs
from hybrid_jax.data import categories as categories_lib
from hybrid_jax.data import datasets
from hybrid_jax.data import export as export_lib
from hybrid_jax.data import official_format

class TableRow(NamedTuple):
  """A row of the paper's Table I: its name, tracker variant, temporal consistency, and the
  mutual check (None: the config's `track.mutual_check`)."""
  name: str
  variant: str
  temporal: bool
  mutual_check: bool | None = None


# The rows of the paper's Table I. Its "Instance Tracker" row is Table V's row of that name,
# without the mutual check (Table V adds "+ w/ Mutual Check" as a separate row); the pixel and
# hybrid rows carry no such qualifier in either table, so they keep the config's setting.
TABLE_I_ROWS = (
    TableRow('Instance Tracker', 'instance', False, mutual_check=False),
    TableRow('Pixel Tracker', 'pixel', False),
    TableRow('HybridTracker', 'hybrid', False),
    TableRow('HybridTracker + w/ Temporal', 'hybrid', True),
)
GT_SUFFIX = ' (GT segments)'



def make_row_tracker(config, row: TableRow, models, table):
  """The `VideoTracker` of one Table I row (the config's tracker with the row's settings)."""
  return inference.make_tracker(config.track, head=models.head,
                                max_instances=config.data.max_instances, categories=table,
                                flow_model=models.flow, flow_batch=models.frames_per_call,
                                variant=row.variant, temporal=row.temporal,
                                mutual_check=row.mutual_check)


def _image_ids_by_video(gt_json: str) -> dict[str, list[str]]:
  ids = sorted(str(img['id']) for img in official_format.read_json(gt_json)['images'])
  return {vid: v for vid, v in official_format.group_by_video(ids, where=gt_json)}


def gt_layout(config, workdir: str) -> tuple[str, str]:
  """The val split's ground truth in the official layout (exported once)."""
  root = os.path.join(workdir, 'export')
  paths = official_format.json_paths(root, 'val')
  if not os.path.exists(paths['gt']):
    export_lib.export_split(config, workdir, workdirs.data_dir(config, workdir), split='val',
                            out_root=root)
  return os.path.join(root, 'val', 'panoptic_video'), paths['gt']


def _slug(name: str) -> str:
  return ''.join(ch if ch.isalnum() else '_' for ch in name.lower()).strip('_')


def track_val(config, workdir: str, *,
              load_models: Callable[[], trained_models.TrainedModels]) -> dict:
  """Tracks every val clip with the Table I rows; writes official-format predictions.

  On the synthetic data the same trackers also run on ground-truth per-frame segments (an
  oracle segmenter), so the tracker comparison is readable when the segmenter is weak. Each
  finished clip is kept under ``predictions/clips/``, so an interrupted run continues with the
  next clip; a run whose tracking is done for this config (`run_records`) is not tracked again.
  `load_models()` gives the networks; it is called only when a clip has to be tracked.

  Returns {row name: {'pred_dir', 'seconds_tracking'}} plus the networks' timing under
  '_networks' and the GIF under '_gif'.
  """
  pred_root = os.path.join(workdir, 'predictions')
  timing_path = os.path.join(pred_root, 'timing.json')
  record = run_records.relevant(config, 'tracking')
  if (run_records.same(run_records.read(os.path.join(pred_root, run_records.RECORD_FILE)), record)
      and os.path.exists(timing_path)):
    logging.info('The val tracking of this config is done; reusing %s.', pred_root)
    return load_tracked(workdir)
  clip_dir = os.path.join(pred_root, 'clips')
  if not run_records.same(run_records.read(os.path.join(clip_dir, run_records.RECORD_FILE)),
                          record):
    shutil.rmtree(clip_dir, ignore_errors=True)  # tracked with other settings
  run_records.write(os.path.join(clip_dir, run_records.RECORD_FILE), record)
  table = categories_lib.get_categories(config.data.categories)
  source = datasets.get_source(config, 'val', workdirs.data_dir(config, workdir))
  _, gt_json = gt_layout(config, workdir)
  ids_by_video = _image_ids_by_video(gt_json)
  with_oracle = datasets.labels_on_every_frame(config)
  names = [row.name for row in TABLE_I_ROWS]
  names += [n + GT_SUFFIX for n in names] if with_oracle else []
  preds = {name: ([], []) for name in names}
  seconds = dict.fromkeys(names, 0.0)
  net_seconds = {'seg': 0.0, 'flow': 0.0}
  frames_total = 0
  gif = os.path.join(workdir, 'tracked_val_clip.gif')
  trackers = None
  layout_ids = None  # the video id the export gave each clip (it renames some; gt_split)
  for i in console.progress(range(len(source)), desc='track val', unit='clip'):
    cached = _load_clip(clip_dir, i)
    if cached is None:
      if trackers is None:  # the networks are loaded only when a clip needs them
        models = load_models()
        trackers = {row.name: make_row_tracker(config, row, models, table)
                    for row in TABLE_I_ROWS}
        layout_ids = official_format.layout_video_ids(_clip_video_ids(source))
      cached = _track_clip(config, models, trackers, source[i], table,
                           ids_by_video.get(layout_ids[i]), gt_json, with_oracle,
                           gif=gif if i == 0 else None)
      _save_clip(clip_dir, i, cached)
    if i > 0 or len(source) == 1:  # the first clip pays for compilation
      net_seconds['seg'] += cached['timing']['seg']
      net_seconds['flow'] += cached['timing']['flow']
      frames_total += cached['timing']['frames']
      for name in names:
        seconds[name] += cached['timing']['tracking'][name]
    for name in names:
      preds[name][0].extend(cached['image_ids'])
      preds[name][1].extend(cached['maps'][name])
  out = {'_networks': {**net_seconds, 'frames': frames_total}}
  for name, (ids, maps) in preds.items():
    pred_dir = os.path.join(pred_root, _slug(name))
    official_format.write_predictions(pred_dir, ids, maps, table)
    for stale in ('eval.json', run_records.RECORD_FILE):  # evaluated before these predictions
      if os.path.exists(os.path.join(pred_dir, stale)):
        os.remove(os.path.join(pred_dir, stale))
    out[name] = {'pred_dir': pred_dir, 'seconds_tracking': seconds[name]}
  if os.path.exists(gif):
    out['_gif'] = gif
  with open(timing_path, 'w') as f:
    json.dump(out, f, indent=2)
  run_records.write(os.path.join(pred_root, run_records.RECORD_FILE), record)
  return out


def load_tracked(workdir: str) -> dict:
  """What `track_val` returned, read back from ``predictions/timing.json``.

  Paths are rebuilt for this workdir, which may have been moved or copied since.
  """
  pred_root = os.path.join(workdir, 'predictions')
  path = os.path.join(pred_root, 'timing.json')
  if not os.path.exists(path):
    raise errors.WorkdirError(f'No predictions in {pred_root}; run mode=track first (or the '
                              'full pipeline, mode=all).')
  with open(path) as f:
    out = json.load(f)
  for name, entry in out.items():
    if not name.startswith('_'):
      entry['pred_dir'] = os.path.join(pred_root, _slug(name))
  if '_gif' in out:
    out['_gif'] = os.path.join(workdir, os.path.basename(out['_gif']))
  return out


def _clip_video_ids(source) -> list[str]:
  """Every clip's video id, from the source's index when it has one (no decoding)."""
  ids = getattr(source, 'video_ids', None)
  if ids is not None and len(ids) == len(source):
    return [str(v) for v in ids]
  return [str(source[i]['video_id']) for i in range(len(source))]


def _track_clip(config, models, trackers, clip, table, image_ids, gt_json, with_oracle, *,
                gif: str | None) -> dict:
  """One val clip through the networks and every row's tracker: its labelled frames' maps.

  `image_ids`: the exported ground truth's ids of this clip's labelled frames."""
  frames = np.asarray(clip['frames'])
  use_gt_flow = config.flow.source == 'gt'
  p = inference.predict_clip(models, frames, given_flow=clip.get('flow') if use_gt_flow else None)
  lab = np.flatnonzero(clip['labelled'])
  vid = str(clip['video_id'])
  if image_ids is None or len(image_ids) != len(lab):
    raise errors.DatasetError(f'Val clip {vid}: {len(lab)} labelled frames but the exported '
                              f'ground truth lists {len(image_ids or [])}; delete '
                              f'{os.path.dirname(gt_json)} and rerun.')
  runs = [(name, tracker, p) for name, tracker in trackers.items()]
  if with_oracle:
    gt_seg = inference.ground_truth_segments(clip['panoptic'], table, config.data.max_instances)
    gt_pred = inference.ClipPredictions(gt_seg, p.flow, 0.0, p.flow_seconds)
    runs += [(name + GT_SUFFIX, tracker, gt_pred) for name, tracker in trackers.items()]
  maps, tracking = {}, {}
  for name, tracker, clip_preds in runs:
    pan, sec = inference.track_clip(tracker, frames, clip_preds)
    maps[name], tracking[name] = pan[lab], sec
    if gif and name == TABLE_I_ROWS[-1].name:
      _write_tracking_gif(gif, frames, pan, clip['panoptic'], table)
  return {'image_ids': list(image_ids), 'maps': maps,
          'timing': {'seg': p.seg_seconds, 'flow': p.flow_seconds, 'frames': len(frames),
                     'tracking': tracking}}


def _save_clip(clip_dir: str, i: int, tracked: dict) -> None:
  names = list(tracked['maps'])
  arrays = {f'map_{k}': tracked['maps'][name] for k, name in enumerate(names)}
  np.savez_compressed(os.path.join(clip_dir, f'{i:05d}.tmp.npz'), **arrays)
  os.replace(os.path.join(clip_dir, f'{i:05d}.tmp.npz'), os.path.join(clip_dir, f'{i:05d}.npz'))
  run_records.write(os.path.join(clip_dir, f'{i:05d}.json'),
                    {'names': names, 'image_ids': tracked['image_ids'],
                     'timing': tracked['timing']})


def _load_clip(clip_dir: str, i: int) -> dict | None:
  meta = run_records.read(os.path.join(clip_dir, f'{i:05d}.json'))
  path = os.path.join(clip_dir, f'{i:05d}.npz')
  if meta is None or not os.path.exists(path):
    return None
  with np.load(path) as arrays:
    maps = {name: arrays[f'map_{k}'] for k, name in enumerate(meta['names'])}
  return {'image_ids': meta['image_ids'], 'maps': maps, 'timing': meta['timing']}


def _write_tracking_gif(path, frames, pred, gt, table) -> str:
  pred_rgb = visualize.overlay(frames, visualize.colorize_panoptic(pred, table), 0.5, panoptic=pred)
  gt_rgb = visualize.overlay(frames, visualize.colorize_panoptic(gt, table), 0.5, panoptic=gt)
  rows = [visualize.compose_strip([[frames[t], pred_rgb[t], gt_rgb[t]]], 2)
          for t in range(len(frames))]
  visualize.write_gif(path, rows, fps=6)
  return path
