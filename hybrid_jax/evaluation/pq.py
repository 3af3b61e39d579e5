"""Panoptic quality of one tube window, and image PQ (the k = 0 case) on its own.

`match_window` is the heart of VPQ (reference §3.5): the frames of a window are concatenated into
tubes, tubes are matched by IoU > 0.5 (strict) with void removed from the union, unmatched GT
tubes are false negatives unless crowd, unmatched predicted tubes are false positives unless more
than half of them lies on void or on the crowd tube of their category.  Image PQ is the same
with windows of one frame.  All work here is on the small per-frame tables of `counting`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np

from hybrid_jax import errors
from hybrid_jax.data import categories as categories_lib
from hybrid_jax.evaluation import counting
from hybrid_jax.evaluation import protocols

_KEY_SHIFT = 24  # pair key = gt id << 24 | pred id


@dataclasses.dataclass(frozen=True)
class CategorySet:
  """The evaluated categories, in the order of the GT json (the official per-class order).

  Attributes:
    ids: int64 [C] category ids.
    names: the names.
    isthing: bool [C].
    excluded: category ids left out of every class average (VIPER: {11}, mobilebarrier).
  """
  ids: np.ndarray
  names: tuple[str, ...]
  isthing: np.ndarray
  excluded: frozenset = frozenset()

  @property
  def thing_ids(self) -> np.ndarray:
    return self.ids[self.isthing]

  def index_of(self, category: np.ndarray) -> np.ndarray:
    """Category ids -> positions in this set (they have been validated before)."""
    order = np.argsort(self.ids)
    return order[np.searchsorted(self.ids, category, sorter=order)]


def as_category_set(categories: Any, *, excluded: Sequence[int] = ()) -> CategorySet:
  """Accepts a table name ('cityscapes_vps'), a tuple of `Category`, a COCO `categories` json
  list, or a CategorySet."""
  if isinstance(categories, CategorySet):
    return dataclasses.replace(categories, excluded=frozenset(excluded) | categories.excluded)
  if isinstance(categories, str):
    table = categories_lib.get_categories(categories)
  elif categories and isinstance(next(iter(categories)), Mapping):
    table = categories_lib.from_json(categories)
  else:
    table = tuple(categories)
  if not table:
    raise errors.FormatError('The category list is empty.')
  ids = np.asarray([c.id for c in table], np.int64)
  if np.unique(ids).size != ids.size:
    raise errors.FormatError(f'Duplicate category ids in {ids.tolist()}.')
  return CategorySet(ids=ids, names=tuple(c.name for c in table),
                     isthing=np.asarray([c.isthing for c in table], bool),
                     excluded=frozenset(int(e) for e in excluded))


@dataclasses.dataclass
class PQCounts:
  """Per-class sums: tp, fp, fn int64 [C]; iou float64 [C] (sum of matched IoUs); and the
  number of windows summed (VPQ leaves a k with no window at all out of its mean)."""
  tp: np.ndarray
  fp: np.ndarray
  fn: np.ndarray
  iou: np.ndarray
  windows: int = 0

  @classmethod
  def zeros(cls, num_classes: int) -> 'PQCounts':
    z = np.zeros(num_classes, np.int64)
    return cls(z.copy(), z.copy(), z.copy(), np.zeros(num_classes, np.float64))

  def __iadd__(self, other: 'PQCounts') -> 'PQCounts':
    self.tp += other.tp
    self.fp += other.fp
    self.fn += other.fn
    self.iou += other.iou
    self.windows += other.windows
    return self


def _tubes(tables: Sequence[counting.SegmentTable]):
  """Concatenates per-frame tables into tubes: (ids [T], category, iscrowd, area, pixels, first).

  The first frame a tube appears in fixes its category and crowd flag (np.unique's return_index
  is the first occurrence and frames are concatenated in time order); areas are summed.
  """
  ids = np.concatenate([t.ids for t in tables])
  uniq, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
  category = np.concatenate([t.category for t in tables])[first]
  iscrowd = np.concatenate([t.iscrowd for t in tables])[first]
  area, pixels = (np.bincount(inverse, weights=np.concatenate([getattr(t, f) for t in tables]),
                              minlength=uniq.size).astype(np.int64) for f in ('area', 'pixels'))
  return uniq, category, iscrowd, area, pixels, first


def match_window(frames: Sequence[counting.FrameStats], cats: CategorySet, *,
                 min_gt_area: int = 0, use_gt_pixels: bool = False) -> PQCounts:
  """TP/FP/FN/IoU-sum per class for one window of frames (one tube per segment id).

  Args:
    frames: the window's frames, in time order.
    cats: evaluated categories.
    min_gt_area: VIPER's small-object rule: a GT tube with fewer pixels over the window is
      neither matched nor a false negative (0 disables).
    use_gt_pixels: GT tube areas from pixel counts (VIPER's evaluator) instead of the declared
      json areas (Cityscapes-VPS evaluator).  They agree on consistent ground truth.
  """
  counts = PQCounts.zeros(cats.ids.size)
  g_ids, g_cat, g_crowd, g_area, g_pixels, g_first = _tubes([f.gt for f in frames])
  if use_gt_pixels:
    g_area = g_pixels
  p_ids, p_cat, _, _, p_area, _ = _tubes([f.pred for f in frames])

  keys = np.concatenate([(f.pair_gt << _KEY_SHIFT) | f.pair_pred for f in frames])
  ukeys, kinv = np.unique(keys, return_inverse=True)
  inter = np.bincount(kinv, weights=np.concatenate([f.pair_count for f in frames]),
                      minlength=ukeys.size).astype(np.int64)
  pair_g = ukeys >> _KEY_SHIFT
  pair_p = ukeys & ((1 << _KEY_SHIFT) - 1)

  # Pixels of each predicted tube on GT void (id 0): removed from the union, and part of the
  # "ignored" share when deciding false positives.
  void_inter = np.zeros(p_ids.size, np.int64)
  on_void = (pair_g == counting.VOID_ID) & (pair_p != counting.VOID_ID)
  void_inter[np.searchsorted(p_ids, pair_p[on_void])] = inter[on_void]

  real = (pair_g != counting.VOID_ID) & (pair_p != counting.VOID_ID)
  pg, pp, pi_ = pair_g[real], pair_p[real], inter[real]
  gi = np.searchsorted(g_ids, pg)
  pj = np.searchsorted(p_ids, pp)
  # VIPER: GT tubes with few pixels over the window are neither matched nor missed.
  small = g_pixels < min_gt_area

  candidate = ~g_crowd[gi] & (g_cat[gi] == p_cat[pj]) & ~small[gi]
  union = p_area[pj] + g_area[gi] - pi_ - void_inter[pj]
  with np.errstate(divide='ignore', invalid='ignore'):
    iou = np.where(candidate, pi_ / np.maximum(union, 1), 0.0)
  tp = candidate & (iou > 0.5)  # strictly greater: IoU 0.5 is not a match
  # Segments of one frame do not overlap, so IoU > 0.5 pairs are unique per tube (no Hungarian).
  tp_class = cats.index_of(g_cat[gi[tp]])
  counts.tp += np.bincount(tp_class, minlength=cats.ids.size)
  counts.iou += np.bincount(tp_class, weights=iou[tp], minlength=cats.ids.size)
  g_matched = np.zeros(g_ids.size, bool)
  g_matched[gi[tp]] = True
  p_matched = np.zeros(p_ids.size, bool)
  p_matched[pj[tp]] = True

  # False negatives: unmatched, not crowd, not small.
  fn = ~g_matched & ~g_crowd & ~small
  counts.fn += np.bincount(cats.index_of(g_cat[fn]), minlength=cats.ids.size)

  # Crowd tube per category: the official code keeps the last one in first-seen order.
  crowd_of_cat = {}
  crowd_idx = np.flatnonzero(g_crowd)
  for t in crowd_idx[np.argsort(g_first[crowd_idx], kind='stable')]:
    crowd_of_cat[int(g_cat[t])] = int(t)
  ignored = void_inter.copy()
  if crowd_of_cat:
    designated = np.asarray([crowd_of_cat.get(int(c), -1) for c in p_cat[pj]], np.int64)
    on_crowd = designated == gi
    np.add.at(ignored, pj[on_crowd], pi_[on_crowd])

  # False positives: unmatched predicted tubes unless > half of them is void or crowd.
  fp = ~p_matched & ~(ignored / p_area > 0.5)
  counts.fp += np.bincount(cats.index_of(p_cat[fp]), minlength=cats.ids.size)
  return counts


def class_averages(counts: PQCounts, cats: CategorySet) -> dict:
  """The official pq_average: {'all'|'things'|'stuff': {pq, sq, rq, n}, 'per_class': {...}}.

  Classes without TP, FP or FN are dropped from the means; values in percent (x100) as the
  official tool prints them.  A group with n = 0 reports 0.0 (the official code divides by zero).
  """
  denom = counts.tp + 0.5 * counts.fp + 0.5 * counts.fn
  present = denom > 0
  safe = np.where(present, denom, 1.0)
  pq = np.where(present, counts.iou / safe, 0.0)
  sq = np.where(counts.tp > 0, counts.iou / np.maximum(counts.tp, 1), 0.0)
  rq = np.where(present, counts.tp / safe, 0.0)
  in_mean = present & ~np.isin(cats.ids, list(cats.excluded))
  out = {}
  for group, mask in (('all', np.ones_like(in_mean)), ('things', cats.isthing),
                      ('stuff', ~cats.isthing)):
    sel = in_mean & mask
    n = int(sel.sum())
    out[group] = {key: (100.0 * float(val[sel].sum()) / n if n else 0.0)
                  for key, val in (('pq', pq), ('sq', sq), ('rq', rq))}
    out[group]['n'] = n
  out['per_class'] = {
      str(int(cats.ids[c])): {
          'name': cats.names[c], 'isthing': bool(cats.isthing[c]),
          'pq': 100.0 * float(pq[c]), 'sq': 100.0 * float(sq[c]), 'rq': 100.0 * float(rq[c]),
          'iou': float(counts.iou[c]), 'tp': int(counts.tp[c]), 'fp': int(counts.fp[c]),
          'fn': int(counts.fn[c]), 'in_mean': bool(in_mean[c]),
      } for c in range(cats.ids.size)}
  return out


def pq_counts(frames: Sequence[counting.FrameStats], cats: CategorySet, *,
              min_gt_area: int = 0, use_gt_pixels: bool = False) -> PQCounts:
  """Image PQ counts: every frame is its own window."""
  total = PQCounts.zeros(cats.ids.size)
  for frame in frames:
    total += match_window([frame], cats, min_gt_area=min_gt_area, use_gt_pixels=use_gt_pixels)
  return total


def evaluate_pq_arrays(gt_frames: Sequence[np.ndarray], pred_frames: Sequence[np.ndarray],
                       categories: Any, *, dataset: str = 'cityscapes_vps') -> dict:
  """Image PQ over frames given as panoptic maps [H, W] = category*1000 + instance (-1 void).

  Ground-truth thing pixels with instance 0 are crowd.  `dataset='viper'` applies VIPER's
  small-object rule (GT segments under 1024 pixels ignored) and leaves class 11 out of the
  averages.  Returns `class_averages` of the summed counts (percent).
  """
  protocol = protocols.get_protocol(dataset)
  cats = as_category_set(categories, excluded=protocol.excluded)
  if len(gt_frames) != len(pred_frames):
    raise errors.FormatError(
        f'The prediction has {len(pred_frames)} frames, the ground truth {len(gt_frames)}.')
  frames = [counting.frame_stats_from_panoptic(
      g, p, known_categories=cats.ids, thing_ids=cats.thing_ids,
      gt_where=f'ground-truth frame {i}', pred_where=f'predicted frame {i}')
            for i, (g, p) in enumerate(zip(gt_frames, pred_frames))]
  return class_averages(pq_counts(frames, cats, min_gt_area=protocol.min_gt_area,
                                  use_gt_pixels=protocol.use_gt_pixels), cats)
