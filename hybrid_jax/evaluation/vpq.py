"""Video panoptic quality (VPQ) as the official evaluators compute it (reference §2 and §3).

Cityscapes-VPS (`tools/eval_vpq.py` of the VPS code): each video has 6 labelled frames, 5 raw
frames apart; for k = 0, 5, 10, 15 a window holds k/5 + 1 consecutive labelled frames and slides
over every start index.  Per-class TP/FP/FN/IoU sums are accumulated over all windows of all
videos, then averaged over classes (`pq.class_averages`); the final VPQ is the mean over k.

VIPER (`Viper.evaluate_panoptic`): every frame is labelled; windows of 1, 5, 10 and 15
consecutive frames (reported under the keys '0', '5', '10', '15'), GT tubes under 32**2 = 1024
pixels are ignored, GT tube areas are pixel counts, and class 11 (mobilebarrier) is left out of
the All / Stuff means.

VIPSeg (`eval_vpq_vspw.py`): windows of 1, 2, 4, 6 and 8 consecutive frames (keys '0', '5',
'15', '25', '35'), otherwise the Cityscapes-VPS rules; the window keys of a result are its
protocol's (`protocols`).

The public entry points that take arrays or files live in `hybrid_jax.evaluation.runner`;
this module holds the per-video / final arithmetic; the protocols are in `protocols`.
"""

from __future__ import annotations

from typing import Sequence
import warnings

from hybrid_jax.evaluation import counting
from hybrid_jax.evaluation import pq as pq_lib
from hybrid_jax.evaluation import protocols

def video_counts(frames: Sequence[counting.FrameStats], cats: pq_lib.CategorySet,
                 protocol: protocols.Protocol) -> dict:
  """k -> PQCounts summed over every window of one video (a fresh tube set per window)."""
  out = {}
  for k, nframes in protocol.window_frames.items():
    total = pq_lib.PQCounts.zeros(cats.ids.size)
    for start in range(0, len(frames) - nframes + 1):
      total += pq_lib.match_window(frames[start:start + nframes], cats,
                                   min_gt_area=protocol.min_gt_area,
                                   use_gt_pixels=protocol.use_gt_pixels)
      total.windows += 1
    out[k] = total
  return out


def finalize(counts: dict, cats: pq_lib.CategorySet, protocol: protocols.Protocol) -> dict:
  """Per-k class averages plus 'final' = the mean over k of All/Things/Stuff PQ, SQ, RQ.

  A k whose window is longer than every video has no window at all; it is reported with
  'windows': 0 and left out of the mean, with a warning (the official tools would average in
  a 0 there; on Cityscapes-VPS and VIPER every window exists, so their numbers are unchanged).

  Returns {'0'|'5'|'10'|'15': {'window_frames', 'windows', 'all', 'things', 'stuff',
  'per_class'}, 'final': {'all'|'things'|'stuff': {'pq', 'sq', 'rq'}, 'ks': [k averaged]}},
  all in percent.
  """
  out = {}
  for k in protocol.window_frames:
    out[k] = {'window_frames': protocol.window_frames[k], 'windows': int(counts[k].windows),
              **pq_lib.class_averages(counts[k], cats)}
  ks = [k for k in protocol.window_frames if counts[k].windows > 0] or list(
      protocol.window_frames)
  missing = [k for k in protocol.window_frames if k not in ks]
  if missing:
    warnings.warn(
        f'VPQ: no video has {[protocol.window_frames[k] for k in missing]} labelled frames, so '
        f'the windows k = {", ".join(missing)} do not exist; the mean VPQ is over k = '
        f'{", ".join(ks)} only.', stacklevel=2)
  out['final'] = {
      group: {m: sum(out[k][group][m] for k in ks) / len(ks) for m in ('pq', 'sq', 'rq')}
      for group in ('all', 'things', 'stuff')}
  out['final']['ks'] = ks
  return out
