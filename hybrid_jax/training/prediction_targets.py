"""Training targets on the segmenter's *predicted* instances (the paper fine-tunes the tracker
with a frozen segmenter, so its head and fusion see predicted masks, not ground truth).

Each predicted instance is given the ground-truth segment it overlaps with IoU > 0.5 (same
category). As in COCO-style panoptic matching, IoU > 0.5 makes the assignment unique: two
predictions cannot both overlap one ground-truth segment by more than half. A prediction with no
such segment (a false positive, a merge of two objects, a fragment) gets id -1: in a training
pair it is a row with no counterpart. Ground-truth segment ids are the panoptic values, which
keep one track id over the clip, so `losses.tracking.pair_targets` turns the ids of two frames
into the DML / fusion targets.
"""

from __future__ import annotations

import numpy as np

from hybrid_jax.tracking.frame_instances import FrameInstances

IOU_THRESHOLD = 0.5


def mask_iou(masks_a, masks_b) -> np.ndarray:
  """float64 [A, B] intersection over union of boolean masks [A, H, W] and [B, H, W]."""
  a = np.asarray(masks_a, bool).reshape(len(masks_a), -1).astype(np.float64)
  b = np.asarray(masks_b, bool).reshape(len(masks_b), -1).astype(np.float64)
  inter = a @ b.T
  union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
  return np.where(union > 0, inter / np.maximum(union, 1.0), 0.0)


def assign_ground_truth(pred: FrameInstances, gt: FrameInstances, gt_ids, *,
                        iou_threshold: float = IOU_THRESHOLD) -> np.ndarray:
  """The ground-truth segment id of each predicted slot, or -1.

  Args:
    pred: the segmenter's instances of one frame (any slot count).
    gt: the ground-truth instances of the same frame (`instances_from_panoptic`).
    gt_ids: int [G] the panoptic value of each ground-truth slot (-1 padding).
    iou_threshold: a prediction takes a segment only with IoU strictly above this (0.5).

  Returns:
    int32 [P]: for each predicted slot the matched ground-truth id; -1 for padding and for
    predictions that overlap no segment of their category by more than the threshold.
  """
  out = np.full((pred.max_instances,), -1, np.int32)
  pv = np.flatnonzero(np.asarray(pred.valid))
  gv = np.flatnonzero(np.asarray(gt.valid) & (np.asarray(gt_ids) >= 0))
  if pv.size == 0 or gv.size == 0:
    return out
  iou = mask_iou(np.asarray(pred.masks)[pv], np.asarray(gt.masks)[gv])
  same = np.asarray(pred.classes)[pv][:, None] == np.asarray(gt.classes)[gv][None, :]
  iou = np.where(same, iou, 0.0)
  best = iou.argmax(1)
  ok = iou[np.arange(len(pv)), best] > iou_threshold
  out[pv[ok]] = np.asarray(gt_ids)[gv[best[ok]]]
  return out


def assign_by_ownership(pred: FrameInstances, gt: FrameInstances, gt_ids, *,
                        fraction: float = 0.5) -> np.ndarray:
  """The ground-truth segment that owns each predicted slot, or -1.

  A prediction is owned by the same-category segment holding more than `fraction` of its
  pixels. Unlike `assign_ground_truth` several predictions may share an owner (the fragments
  of one object), and a fragment too small for IoU > 0.5 still has one: the identity a tracker
  should carry through it. Used for the oracle instance cue of
  `experiments/instance_cue_ceiling.py`.

  Returns:
    int32 [P]: the owning ground-truth id per predicted slot; -1 for padding and for
    predictions no segment of their category owns.
  """
  out = np.full((pred.max_instances,), -1, np.int32)
  pv = np.flatnonzero(np.asarray(pred.valid))
  gv = np.flatnonzero(np.asarray(gt.valid) & (np.asarray(gt_ids) >= 0))
  if pv.size == 0 or gv.size == 0:
    return out
  a = np.asarray(pred.masks, bool)[pv].reshape(len(pv), -1).astype(np.float64)
  b = np.asarray(gt.masks, bool)[gv].reshape(len(gv), -1).astype(np.float64)
  share = (a @ b.T) / np.maximum(a.sum(1), 1.0)[:, None]
  same = np.asarray(pred.classes)[pv][:, None] == np.asarray(gt.classes)[gv][None, :]
  share = np.where(same, share, 0.0)
  best = share.argmax(1)
  ok = share[np.arange(len(pv)), best] > fraction
  out[pv[ok]] = np.asarray(gt_ids)[gv[best[ok]]]
  return out
