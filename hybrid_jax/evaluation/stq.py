"""Segmentation and Tracking Quality (STQ; Weber et al., STEP), with deeplab2's semantics.

Written from the definition (reference §4): STQ = sqrt(AQ * SQ) where
  AQ = 1 / #GT tracks * sum_g 1/|g| * sum_{p : |p & g| > 0} TPA(p, g) * IoU_id(p, g)
over thing tracks of whole sequences (no windows, no threshold), and SQ is the class mIoU of the
summed confusion matrix with GT-void rows removed.  Labels are ``semantic << bit_shift +
instance``; a GT thing pixel with instance 0 is crowd and is removed from both the GT and the
prediction masks for AQ.  Predicted-thing pixels on GT stuff or void count towards |p|.

The accumulator is fed (label, label, pixel count) triples, so a frame can come from label maps
(`update_state`, deeplab2's interface) or from the per-frame segment tables of `counting`
(`frame_label_pairs`, the VPS-format conversion of §4.6), without a second pass over pixels.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Hashable, Sequence

import numpy as np

from hybrid_jax import errors
from hybrid_jax.evaluation import counting

_EPS = 1e-15


@dataclasses.dataclass
class SequenceState:
  """Accumulated statistics of one sequence (mergeable across processes).

  Attributes:
    confusion: int64 [M, M] semantic confusion (rows GT, columns prediction).
    length: number of frames added.
    gt_keys/gt_area, pred_keys/pred_area, inter_keys/inter_area: lists of int64 arrays, reduced
      lazily (np.unique) when the result is computed.
  """
  confusion: np.ndarray
  length: int = 0
  gt_keys: list = dataclasses.field(default_factory=list)
  gt_area: list = dataclasses.field(default_factory=list)
  pred_keys: list = dataclasses.field(default_factory=list)
  pred_area: list = dataclasses.field(default_factory=list)
  inter_keys: list = dataclasses.field(default_factory=list)
  inter_area: list = dataclasses.field(default_factory=list)


def _reduce(keys: list, area: list):
  if not keys:
    return np.zeros(0, np.int64), np.zeros(0, np.int64)
  k = np.concatenate(keys)
  u, inv = np.unique(k, return_inverse=True)
  return u, np.bincount(inv, weights=np.concatenate(area), minlength=u.size).astype(np.int64)


class STQuality:
  """STQ accumulator, interface of deeplab2's numpy `STQuality` (reimplemented, vectorised).

  Args:
    num_classes: number of semantic classes (labels 0..num_classes-1).
    things_list: semantic ids of thing classes.
    ignore_label: semantic id of void (e.g. 255).
    label_bit_shift: label = (semantic << label_bit_shift) + instance (e.g. 16).
    offset: intersection key = y_true * offset + y_pred; must be >= num_classes << bit_shift.
  """

  def __init__(self, num_classes: int, things_list: Sequence[int], ignore_label: int,
               label_bit_shift: int, offset: int):
    self.num_classes = int(num_classes)
    self.things = np.asarray(sorted(things_list), np.int64)
    self.ignore_label = int(ignore_label)
    self.bit_shift = int(label_bit_shift)
    self.bit_mask = (1 << self.bit_shift) - 1
    self.offset = int(offset)
    if self.offset < (self.num_classes << self.bit_shift):
      raise ValueError(f'offset {offset} is smaller than num_classes << label_bit_shift ='
                       f' {self.num_classes << self.bit_shift}.')
    # An ignore label outside the class range gets its own last row/column.
    if self.ignore_label >= self.num_classes:
      self.matrix_size = self.num_classes + 1
      self.include = np.arange(self.num_classes)
    else:
      self.matrix_size = self.num_classes
      self.include = np.asarray([c for c in range(self.num_classes) if c != self.ignore_label],
                                np.int64)
    self.reset_states()

  def reset_states(self) -> None:
    self.sequences: 'collections.OrderedDict[Hashable, SequenceState]' = (
        collections.OrderedDict())

  def _state(self, sequence_id) -> SequenceState:
    if sequence_id not in self.sequences:
      self.sequences[sequence_id] = SequenceState(
          np.zeros((self.matrix_size, self.matrix_size), np.int64))
    return self.sequences[sequence_id]

  def _semantic(self, labels: np.ndarray) -> np.ndarray:
    sem = labels >> self.bit_shift
    if self.ignore_label > self.num_classes:
      sem = np.where(sem == self.ignore_label, self.num_classes, sem)
    if sem.size and (sem.min() < 0 or sem.max() >= self.matrix_size):
      bad = int(sem[(sem < 0) | (sem >= self.matrix_size)][0])
      raise errors.FormatError(
          f'Semantic label {bad} is outside [0, {self.num_classes}) and is not the ignore'
          f' label {self.ignore_label}.')
    return sem

  def update_counts(self, y_true: np.ndarray, y_pred: np.ndarray, count: np.ndarray,
                    sequence_id: Hashable = 0) -> None:
    """Adds one frame given as (gt label, predicted label, pixel count) triples [K]."""
    y_true = np.asarray(y_true, np.int64)
    y_pred = np.asarray(y_pred, np.int64)
    count = np.asarray(count, np.int64)
    state = self._state(sequence_id)
    state.length += 1
    sem_t = self._semantic(y_true)
    sem_p = self._semantic(y_pred)
    state.confusion += np.bincount(sem_t * self.matrix_size + sem_p, weights=count,
                                   minlength=self.matrix_size ** 2).astype(np.int64).reshape(
                                       self.matrix_size, self.matrix_size)
    gt_thing = np.isin(sem_t, self.things)
    crowd = gt_thing & ((y_true & self.bit_mask) == 0)
    gt_mask = gt_thing & ~crowd
    pred_mask = np.isin(sem_p, self.things) & ~crowd
    both = gt_mask & pred_mask
    state.gt_keys.append(y_true[gt_mask])
    state.gt_area.append(count[gt_mask])
    state.pred_keys.append(y_pred[pred_mask])
    state.pred_area.append(count[pred_mask])
    state.inter_keys.append(y_true[both] * self.offset + y_pred[both])
    state.inter_area.append(count[both])

  def update_state(self, y_true: np.ndarray, y_pred: np.ndarray,
                   sequence_id: Hashable = 0) -> None:
    """Adds one frame given as label maps [H, W] (semantic << bit_shift + instance)."""
    y_true = np.asarray(y_true, np.int64).reshape(-1)
    y_pred = np.asarray(y_pred, np.int64).reshape(-1)
    if y_true.shape != y_pred.shape:
      raise errors.FormatError(f'Label maps differ in size: {y_true.shape} vs {y_pred.shape}.')
    # Pair counting via a joint key; labels fit the offset by construction.
    keys, counts = np.unique(y_true * self.offset + y_pred, return_counts=True)
    self.update_counts(keys // self.offset, keys % self.offset, counts, sequence_id)

  def merge_sequence(self, sequence_id: Hashable, state: SequenceState) -> None:
    """Adds a sequence accumulated elsewhere (another process)."""
    if sequence_id in self.sequences:
      raise ValueError(f'Sequence {sequence_id!r} was already added.')
    self.sequences[sequence_id] = state

  def _aq(self, state: SequenceState):
    """(sum over GT tracks of the inner AQ term, number of GT tracks)."""
    gt_ids, gt_size = _reduce(state.gt_keys, state.gt_area)
    pr_ids, pr_size = _reduce(state.pred_keys, state.pred_area)
    keys, tpa = _reduce(state.inter_keys, state.inter_area)
    g = keys // self.offset
    p = keys % self.offset
    gs = gt_size[np.searchsorted(gt_ids, g)].astype(np.float64)
    ps = pr_size[np.searchsorted(pr_ids, p)].astype(np.float64)
    tpa = tpa.astype(np.float64)
    # TPA * IoU_id / |g| with IoU_id = TPA / (TPA + FPA + FNA) = TPA / (|p| + |g| - TPA).
    total = float(np.sum(tpa * (tpa / (ps + gs - tpa)) / gs)) if keys.size else 0.0
    return total, gt_ids.size

  def _miou(self, confusion: np.ndarray) -> float:
    tp = np.diagonal(confusion).astype(np.float64)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - tp
    n = np.count_nonzero(union)
    return float(np.sum(tp / np.maximum(union, _EPS)) / n) if n else 0.0

  def result(self) -> dict:
    """{'STQ', 'AQ', 'IoU', 'STQ_per_seq', 'AQ_per_seq', 'IoU_per_seq', 'ID_per_seq',
    'Length_per_seq'} like deeplab2 (fractions)."""
    removal = np.zeros((self.matrix_size, self.matrix_size), np.int64)
    removal[self.include, :] = 1  # drop GT-void rows
    total_conf = np.zeros_like(removal)
    aq_sum, tubes = 0.0, 0
    aq_seq, iou_seq, ids, lengths = [], [], [], []
    for seq_id, state in self.sequences.items():
      s, n = self._aq(state)
      aq_sum += s
      tubes += n
      aq_seq.append(s / max(n, _EPS))
      conf = state.confusion * removal
      total_conf += conf
      iou_seq.append(self._miou(conf))
      ids.append(seq_id)
      lengths.append(state.length)
    aq = aq_sum / max(tubes, _EPS)
    iou = self._miou(total_conf)
    aq_seq = np.asarray(aq_seq, np.float64)
    iou_seq = np.asarray(iou_seq, np.float64)
    return {'STQ': float(np.sqrt(aq * iou)), 'AQ': float(aq), 'IoU': iou,
            'STQ_per_seq': np.sqrt(aq_seq * iou_seq), 'AQ_per_seq': aq_seq,
            'IoU_per_seq': iou_seq, 'ID_per_seq': ids, 'Length_per_seq': lengths}


# ----------------------------------------------------------------------------------------------
# VPS format -> STQ labels (reference §4.6).

VPS_BIT_SHIFT = 16
VPS_OFFSET = 1 << 24
VPS_IGNORE = 255


def vps_stq(num_classes: int, thing_ids: Sequence[int]) -> STQuality:
  """The STQuality used for VPS data: ignore 255, bit shift 16, offset 2**24."""
  return STQuality(num_classes, thing_ids, VPS_IGNORE, VPS_BIT_SHIFT, VPS_OFFSET)


class TrackNumbering:
  """Per-video instance numbers for segment ids: thing tracks 1, 2, ... in first-seen order.

  deeplab2 treats thing instance 0 as crowd, so a real thing track must never get 0; stuff gets
  0 (its instance does not enter STQ); GT crowd segments get 0 on purpose.
  """

  def __init__(self):
    self._index: dict = {}

  def numbers(self, ids: np.ndarray) -> np.ndarray:
    out = np.empty(ids.size, np.int64)
    for i, seg_id in enumerate(ids.tolist()):
      if seg_id not in self._index:
        self._index[seg_id] = len(self._index) + 1
      out[i] = self._index[seg_id]
    if out.size and out.max() > (1 << VPS_BIT_SHIFT) - 1:
      raise errors.FormatError('More than 65535 distinct segment ids in one video.')
    return out


def _labels(table: counting.SegmentTable, numbering: TrackNumbering,
            thing_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(sorted ids with 0 first, labels) for one side of one frame."""
  thing = np.isin(table.category, thing_ids) & ~table.iscrowd
  inst = np.zeros(table.ids.size, np.int64)
  inst[thing] = numbering.numbers(table.ids[thing])
  labels = (table.category << VPS_BIT_SHIFT) + inst
  return (np.concatenate([[counting.VOID_ID], table.ids]),
          np.concatenate([[VPS_IGNORE << VPS_BIT_SHIFT], labels]))


def frame_label_pairs(frame: counting.FrameStats, gt_numbering: TrackNumbering,
                      pred_numbering: TrackNumbering, thing_ids: np.ndarray):
  """(gt labels, predicted labels, counts) [K] of one frame in the §4.6 encoding.

  Semantic = the segment's category, 255 on void (both sides: a predicted void pixel on labelled
  GT therefore lowers SQ, as in deeplab2); instance = the per-video track number.
  """
  g_ids, g_lab = _labels(frame.gt, gt_numbering, thing_ids)
  p_ids, p_lab = _labels(frame.pred, pred_numbering, thing_ids)
  return (g_lab[np.searchsorted(g_ids, frame.pair_gt)],
          p_lab[np.searchsorted(p_ids, frame.pair_pred)], frame.pair_count)


def video_state(frames: Sequence[counting.FrameStats], num_classes: int,
                thing_ids: np.ndarray) -> SequenceState:
  """The STQ state of one video (one sequence) from its per-frame tables."""
  metric = vps_stq(num_classes, thing_ids)
  gt_num, pred_num = TrackNumbering(), TrackNumbering()
  for frame in frames:
    metric.update_counts(*frame_label_pairs(frame, gt_num, pred_num, thing_ids), sequence_id=0)
  if not frames:
    metric._state(0)  # an empty sequence still exists
  return metric.sequences[0]


def summarize(metric: STQuality) -> dict:
  """JSON-ready STQ results: {'stq', 'aq', 'sq', 'per_sequence': {id: {...}}} (fractions)."""
  res = metric.result()
  per_seq = {}
  for i, seq_id in enumerate(res['ID_per_seq']):
    per_seq[str(seq_id)] = {'stq': float(res['STQ_per_seq'][i]),
                            'aq': float(res['AQ_per_seq'][i]),
                            'sq': float(res['IoU_per_seq'][i]),
                            'length': int(res['Length_per_seq'][i])}
  return {'stq': res['STQ'], 'aq': res['AQ'], 'sq': res['IoU'], 'per_sequence': per_seq}
