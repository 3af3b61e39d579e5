"""A direct per-segment VPQ loop: the reference the evaluator is checked against.

Written the way the official evaluator's rules read (reference §3.5: IoU > 0.5 matching within
a class, GT thing instance 0 = crowd, void and crowd overlap not counted against a prediction),
with one boolean mask per segment and an intersection per (gt, pred) pair. Slow and obvious on
purpose; `benchmarks/eval_speed.py` times it as the peer.
"""

from __future__ import annotations

import collections

import numpy as np

WINDOWS = {'0': 1, '5': 2, '10': 3, '15': 4}


def loop_vpq_video(gt_frames, pred_frames, thing_ids, *, windows=WINDOWS, min_gt_area=0):
  """Per-segment-pair boolean-mask VPQ of one video: {k: {category: [tp, fp, fn, iou]}}.

  Same rules as reference §3.5 (GT thing instance 0 = crowd), written the direct way.
  """
  out = {}
  for k, nframes in windows.items():
    stats = collections.defaultdict(lambda: [0, 0, 0, 0.0])
    for start in range(len(gt_frames) - nframes + 1):
      g = np.stack(gt_frames[start:start + nframes])
      p = np.stack(pred_frames[start:start + nframes])
      void = g == -1
      gt_vals = [int(v) for v in np.unique(g) if v >= 0]
      pred_vals = [int(v) for v in np.unique(p) if v >= 0]
      gt_mask = {v: g == v for v in gt_vals}
      pred_mask = {v: p == v for v in pred_vals}
      gt_area = {v: int(m.sum()) for v, m in gt_mask.items()}
      pred_area = {v: int(m.sum()) for v, m in pred_mask.items()}
      crowd = {v: (v // 1000 in thing_ids and v % 1000 == 0) for v in gt_vals}
      small = {v: gt_area[v] < min_gt_area for v in gt_vals}
      gt_matched, pred_matched = set(), set()
      for gv in gt_vals:
        if crowd[gv] or small[gv]:
          continue
        for pv in pred_vals:
          if gv // 1000 != pv // 1000:
            continue
          inter = int((gt_mask[gv] & pred_mask[pv]).sum())
          if inter == 0:
            continue
          void_inter = int((void & pred_mask[pv]).sum())
          iou = inter / (gt_area[gv] + pred_area[pv] - inter - void_inter)
          if iou > 0.5:
            stats[gv // 1000][0] += 1
            stats[gv // 1000][3] += iou
            gt_matched.add(gv)
            pred_matched.add(pv)
      crowd_of = {}
      for gv in gt_vals:
        if gv in gt_matched:
          continue
        if crowd[gv]:
          crowd_of[gv // 1000] = gv
          continue
        if not small[gv]:
          stats[gv // 1000][2] += 1
      for pv in pred_vals:
        if pv in pred_matched:
          continue
        ignored = int((void & pred_mask[pv]).sum())
        if pv // 1000 in crowd_of:
          ignored += int((gt_mask[crowd_of[pv // 1000]] & pred_mask[pv]).sum())
        if ignored / pred_area[pv] > 0.5:
          continue
        stats[pv // 1000][1] += 1
    out[k] = dict(stats)
  return out
