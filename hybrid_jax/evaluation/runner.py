"""Public entry points: VPQ / STQ over arrays in memory, (id map, segments_info) pairs, or the
official on-disk layout, all through one per-video implementation.

Each video is reduced to per-frame tables (`counting`, the only pass over pixels), from which
every VPQ window (`vpq`, `pq`) and the STQ sequence state (`stq`) are computed.  Videos are
independent, so with ``workers > 1`` they are evaluated in worker processes; ``workers=1`` runs
in-process.

In-memory inputs (the data contract): a video is a sequence of labelled frames, each an int
panoptic map [H, W] = category_id * 1000 + track id (stuff: instance 0; void: -1), track ids
consistent over the video.  In the ground truth a thing-class pixel with instance 0 marks a
crowd region; in the prediction it is an ordinary segment.
"""

from __future__ import annotations

import multiprocessing
import sys
from typing import Any, Callable, Sequence

import numpy as np
import tqdm

from hybrid_jax import errors
from hybrid_jax.data import panoptic_png
from hybrid_jax.evaluation import counting
from hybrid_jax.data import official_format
from hybrid_jax.evaluation import pq as pq_lib
from hybrid_jax.evaluation import protocols
from hybrid_jax.evaluation import stq as stq_lib
from hybrid_jax.evaluation import vpq as vpq_lib

METRICS = ('vpq', 'stq')


class _Context:
  """What every video task needs besides its own data (small, picklable)."""

  def __init__(self, cats: pq_lib.CategorySet, protocol: protocols.Protocol, metrics):
    self.cats = cats
    self.protocol = protocol
    self.metrics = tuple(metrics)


def _video_result(frames: list, ctx: _Context) -> dict:
  out = {}
  if 'vpq' in ctx.metrics:
    out['vpq'] = vpq_lib.video_counts(frames, ctx.cats, ctx.protocol)
  if 'stq' in ctx.metrics:
    num_classes = int(ctx.cats.ids.max()) + 1
    out['stq'] = stq_lib.video_state(frames, num_classes, ctx.cats.thing_ids)
  return out


def _arrays_task(ctx: _Context, item) -> dict:
  v, gt_video, pred_video = item
  frames = [counting.frame_stats_from_panoptic(
      g, p, known_categories=ctx.cats.ids, thing_ids=ctx.cats.thing_ids,
      gt_where=f'ground truth video {v} frame {t}', pred_where=f'prediction video {v} frame {t}')
            for t, (g, p) in enumerate(zip(gt_video, pred_video))]
  return _video_result(frames, ctx)


def _segments_task(ctx: _Context, item) -> dict:
  v, gt_video, pred_video = item
  frames = []
  for t, ((g_map, g_seg), (p_map, p_seg)) in enumerate(zip(gt_video, pred_video)):
    frames.append(counting.frame_stats_from_segments(
        g_map, g_seg, p_map, p_seg, known_categories=ctx.cats.ids,
        gt_where=f'ground truth video {v} frame {t}',
        pred_where=f'prediction video {v} frame {t}'))
  return _video_result(frames, ctx)


def _files_task(ctx: _Context, item) -> dict:
  _, frame_files = item
  frames = []
  for f in frame_files:
    frames.append(counting.frame_stats_from_segments(
        panoptic_png.read_id_png(f.gt_png), f.gt_segments,
        panoptic_png.read_id_png(f.pred_png), f.pred_segments,
        known_categories=ctx.cats.ids, gt_where=f.gt_png, pred_where=f.pred_png))
  return _video_result(frames, ctx)


# Forked workers read their inputs from here (inherited memory) instead of receiving pickles
# of ~100 MB per full-resolution video.
_SHARED: tuple | None = None


def _shared_call(i: int):
  fn, ctx, items = _SHARED
  return fn(ctx, items(i))


def _direct_call(args):
  fn, ctx, item = args
  return fn(ctx, item)


def _map_videos(fn: Callable, ctx: _Context, items: Callable[[int], Any], n: int, *,
                workers: int, progress: bool) -> list:
  """[fn(ctx, items(i)) for i in range(n)], in worker processes when workers > 1."""
  bar = dict(total=n, desc='evaluating videos', unit='video', disable=not progress or None,
             leave=False)
  if workers <= 1 or n <= 1:
    return [fn(ctx, items(i)) for i in tqdm.tqdm(range(n), **bar)]
  workers = min(workers, n)
  # fork shares the inputs without copying; it is unsafe once JAX's threads exist, so processes
  # started from a JAX program are spawned and receive their video by pickle instead.
  use_fork = ('fork' in multiprocessing.get_all_start_methods() and 'jax' not in sys.modules)
  global _SHARED
  if use_fork:
    _SHARED = (fn, ctx, items)
    try:
      with multiprocessing.get_context('fork').Pool(workers) as pool:
        return list(tqdm.tqdm(pool.imap(_shared_call, range(n)), **bar))
    finally:
      _SHARED = None
  with multiprocessing.get_context('spawn').Pool(workers) as pool:
    args = ((fn, ctx, items(i)) for i in range(n))
    return list(tqdm.tqdm(pool.imap(_direct_call, args), **bar))


def _combine(results: list, video_ids: Sequence[str], ctx: _Context) -> dict:
  out = {'dataset': ctx.protocol.name, 'num_videos': len(results)}
  if 'vpq' in ctx.metrics:
    counts = {k: pq_lib.PQCounts.zeros(ctx.cats.ids.size) for k in ctx.protocol.window_frames}
    for r in results:
      for k in counts:
        counts[k] += r['vpq'][k]
    out['vpq'] = vpq_lib.finalize(counts, ctx.cats, ctx.protocol)
  if 'stq' in ctx.metrics:
    metric = stq_lib.vps_stq(int(ctx.cats.ids.max()) + 1, ctx.cats.thing_ids)
    for vid, r in zip(video_ids, results):
      metric.merge_sequence(vid, r['stq'])
    out['stq'] = stq_lib.summarize(metric)
  return out


def _context(categories, dataset: str, metrics) -> _Context:
  protocol = protocols.get_protocol(dataset)
  metrics = tuple(metrics)
  unknown = set(metrics) - set(METRICS)
  if unknown or not metrics:
    raise errors.ConfigError(f'Unknown metrics {sorted(unknown)}; choose from {METRICS}.')
  if 'vpq' in metrics and not protocol.has_vpq:
    raise errors.ConfigError(protocol.vpq_note)
  cats = pq_lib.as_category_set(categories, excluded=protocol.excluded)
  if 'stq' in metrics and int(cats.ids.min()) < 0:
    raise errors.FormatError('STQ needs category ids >= 0.')
  return _Context(cats, protocol, metrics)


def _video_ids(video_ids, n: int) -> list:
  if video_ids is None:
    return [f'video_{v:04d}' for v in range(n)]
  if len(video_ids) != n or len(set(map(str, video_ids))) != n:
    raise errors.FormatError(f'video_ids must be {n} distinct names, got {list(video_ids)}.')
  return [str(v) for v in video_ids]


def evaluate_arrays(gt_videos: Sequence[Sequence[np.ndarray]],
                    pred_videos: Sequence[Sequence[np.ndarray]], categories: Any, *,
                    dataset: str = 'cityscapes_vps', metrics: Sequence[str] = METRICS,
                    workers: int = 1, video_ids: Sequence[str] | None = None,
                    progress: bool = False) -> dict:
  """VPQ and/or STQ of videos given as panoptic maps (category*1000 + track, -1 void).

  Args:
    gt_videos: per video, its labelled frames, each int [H, W] (or an array [T, H, W]).
    pred_videos: the same layout; a prediction's ids need only be consistent within a video.
    categories: a table name ('cityscapes_vps', 'viper', 'synthetic'), a tuple of `Category` or
      a COCO `categories` json list.
    dataset: 'cityscapes_vps' (or 'synthetic': same protocol) or 'viper' (VPQ variant).
    metrics: any of 'vpq', 'stq'.
    workers: processes; 1 = in-process.
    video_ids: names for the per-sequence STQ values (default video_0000, ...).
    progress: show a progress bar on a terminal.

  Returns:
    {'dataset', 'num_videos', 'vpq': {'0'|'5'|'10'|'15': {'window_frames', 'all'|'things'|'stuff':
    {pq, sq, rq, n}, 'per_class': {cat id: {...}}}, 'final': {'all'|'things'|'stuff': {pq, sq,
    rq}}} (percent), 'stq': {'stq', 'aq', 'sq', 'per_sequence'} (fractions)}.
  """
  ctx = _context(categories, dataset, metrics)
  counting.check_video_lengths(gt_videos, pred_videos)
  n = len(gt_videos)
  results = _map_videos(_arrays_task, ctx, lambda i: (i, gt_videos[i], pred_videos[i]), n,
                        workers=workers, progress=progress)
  return _combine(results, _video_ids(video_ids, n), ctx)


def evaluate_vpq_arrays(gt_videos, pred_videos, categories, *, dataset: str = 'cityscapes_vps',
                        workers: int = 1) -> dict:
  """Only the 'vpq' part of `evaluate_arrays` (keys '0', '5', '10', '15', 'final')."""
  return evaluate_arrays(gt_videos, pred_videos, categories, dataset=dataset, metrics=('vpq',),
                         workers=workers)['vpq']


def evaluate_stq_arrays(gt_videos, pred_videos, categories, *, workers: int = 1,
                        video_ids: Sequence[str] | None = None) -> dict:
  """Only the 'stq' part of `evaluate_arrays` (fractions, per-sequence values included)."""
  return evaluate_arrays(gt_videos, pred_videos, categories, metrics=('stq',), workers=workers,
                         video_ids=video_ids)['stq']


def evaluate_segments(gt_videos, pred_videos, categories: Any, *,
                      dataset: str = 'cityscapes_vps', metrics: Sequence[str] = METRICS,
                      workers: int = 1, video_ids: Sequence[str] | None = None,
                      progress: bool = False) -> dict:
  """Like `evaluate_arrays`, with each frame an (id map [H, W], segments_info list) pair.

  Ids follow the PNG convention (0 void, < 2**24); segments_info entries need 'id' and
  'category_id', GT entries may have 'iscrowd' and 'area' (used, as the official tool does).
  """
  ctx = _context(categories, dataset, metrics)
  counting.check_video_lengths(gt_videos, pred_videos)
  n = len(gt_videos)
  results = _map_videos(_segments_task, ctx, lambda i: (i, gt_videos[i], pred_videos[i]), n,
                        workers=workers, progress=progress)
  return _combine(results, _video_ids(video_ids, n), ctx)


def evaluate_official(gt_dir: str, gt_json: str, pred_dir: str, *,
                      dataset: str = 'cityscapes_vps', metrics: Sequence[str] = METRICS,
                      frames_per_video: int | None = -1, check_prefix: bool = True,
                      workers: int = 1, progress: bool = False) -> dict:
  """VPQ / STQ of `pred_dir` (pred.json + pan_pred/<image id>.png) against the GT layout.

  Args:
    gt_dir: folder of GT RGB-id PNGs (Cityscapes-VPS: val/panoptic_video).
    gt_json: the GT panoptic json (categories are taken from it).
    pred_dir: folder holding pred.json and pan_pred/.
    frames_per_video: frames per video; -1 = the dataset default (6 for Cityscapes-VPS, VIPER:
      by image-id prefix); None = by image-id prefix.
    check_prefix: require each chunk of frames to share one image-id video prefix.
  """
  protocol = protocols.get_protocol(dataset)
  fpv = protocol.frames_per_video if frames_per_video == -1 else frames_per_video
  layout = official_format.load_layout(gt_dir, gt_json, pred_dir, frames_per_video=fpv,
                                       check_prefix=check_prefix)
  ctx = _context(layout.categories, dataset, metrics)
  videos = layout.videos
  results = _map_videos(_files_task, ctx, lambda i: videos[i], len(videos), workers=workers,
                        progress=progress)
  out = _combine(results, [v for v, _ in videos], ctx)
  out['num_frames'] = sum(len(f) for _, f in videos)
  return out
