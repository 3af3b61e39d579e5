"""The matrices the fusion conv is fitted on: consecutive pairs of held-out train clips.

The fusion has to learn how far each cue can be trusted *at test time*, so its examples are
built the way the tracker will see them: on clips the embedding head did not train on (a head
is over-confident on its own training clips), on the segmenter's predicted instances (with the
targets of `prediction_targets`; a row whose instance has a ground-truth segment but no
counterpart in frame t is a "no match" row, a row of a prediction without a ground-truth
segment is left out), with the pixel cue from the run's own flow, between consecutive frames (labelled
frames on datasets labelled sparsely), exactly as `tracking.tracker.association_scores` forms
them.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from hybrid_jax import errors
from hybrid_jax import inference
from hybrid_jax.losses import tracking as track_losses
from hybrid_jax.tracking import frame_instances as instances_lib
from hybrid_jax.tracking import instance as instance_assoc
from hybrid_jax.tracking import pixel
from hybrid_jax.training import prediction_targets

SEGMENTS = ('predicted', 'gt')
# Which predicted instance carries a ground-truth object's identity (track.fusion_targets):
# 'iou' the one overlapping it with IoU > 0.5 (`prediction_targets.assign_ground_truth`, the
# head's targets); 'ownership' every prediction the object holds more than half of, the
# fragments of an object included (`ownership_targets`).
TARGETS = ('iou', 'ownership')


class PairMatrices(NamedTuple):
  """Stacked over pairs: inst, pix float32 [B, M, N]; allowed bool [B, M, N]; target int32
  [B, M] (true column or -1)."""
  inst: np.ndarray
  pix: np.ndarray
  allowed: np.ndarray
  target: np.ndarray

  @property
  def num_pairs(self) -> int:
    return len(self.inst)


def _frame_segments(frames, panoptic, *, table, max_instances, segment: Callable | None,
                    targets: str = 'iou'):
  """(instances per frame, segment ids per frame, ground truth (instances, ids) per frame):
  predicted (ids by IoU > 0.5 or by ownership) or GT."""
  gts = [instances_lib.instances_from_panoptic(p, table, max_instances) for p in panoptic]
  if segment is None:
    return [g for g, _ in gts], [np.asarray(ids) for _, ids in gts], gts
  seg = segment(frames)
  preds = [inference.frame_instances(seg, t, max_instances) for t in range(len(frames))]
  assign = (prediction_targets.assign_by_ownership if targets == 'ownership'
            else prediction_targets.assign_ground_truth)
  ids = [assign(p, g, gid) for p, (g, gid) in zip(preds, gts)]
  return preds, ids, gts


def ownership_targets(owner_prev, owner_cur, cur: instances_lib.FrameInstances,
                      gt_cur: instances_lib.FrameInstances, gt_ids_cur):
  """Targets of a pair when identities go by ownership; fragments share their object's id.

  A row (an instance of t-δ owned by object g) should match, among frame t's instances owned
  by g, the one holding most of g's pixels at t. When g owns none at t, the row has no
  counterpart if g is gone or no instance of t overlaps it (a miss); if some instance of t
  overlaps g but belongs to another object, what the row should do is not known and it is
  left out.

  Args:
    owner_prev: int [M] owner id per slot of t-δ (-1: none); owner_cur: int [N] of t.
    cur: frame t's instances; gt_cur, gt_ids_cur: its ground-truth instances and their ids.

  Returns:
    (target int32 [M] column or -1, known bool [M]: rows whose answer is known).
  """
  owner_prev, owner_cur = np.asarray(owner_prev), np.asarray(owner_cur)
  valid = np.asarray(cur.valid, bool)
  masks = np.asarray(cur.masks, bool)
  gt_ids = np.asarray(gt_ids_cur)
  gt_masks = np.asarray(gt_cur.masks, bool)
  target = np.full(owner_prev.shape, -1, np.int32)
  known = np.zeros(owner_prev.shape, bool)
  for r in np.flatnonzero(owner_prev >= 0):
    g = owner_prev[r]
    slot = np.flatnonzero((gt_ids == g) & np.asarray(gt_cur.valid, bool))
    g_mask = gt_masks[slot[0]] if slot.size else np.zeros(masks.shape[1:], bool)
    owned = np.flatnonzero(valid & (owner_cur == g))
    if owned.size:
      target[r] = owned[np.argmax((masks[owned] & g_mask).sum((1, 2)))]
      known[r] = True
    else:
      known[r] = not (masks[valid] & g_mask).any()
  return target, known


def pair_matrices(clips: Sequence[dict], *, embed: Callable, dustbin_logit, table,
                  max_instances: int, labels_on_every_frame: bool,
                  segment: Callable | None = None, flow_fn: Callable | None = None,
                  targets: str = 'iou') -> PairMatrices:
  """The instance / pixel matrices and targets of every consecutive pair of `clips`.

  Args:
    clips: clip dicts (frames [T, H, W, 3], panoptic [T, H, W], labelled [T], flow [T-1, ...]
      on the synthetic data).
    embed: ``embed(image, FrameInstances) -> [N, D]`` (the trained head).
    dustbin_logit: the head's "no counterpart" logit, or None.
    table: category table; max_instances: slots per frame.
    labels_on_every_frame: pair consecutive frames (else consecutive labelled frames).
    segment: ``segment(frames [T, H, W, 3]) -> segmenter outputs`` for predicted segments;
      None: ground-truth segments.
    flow_fn: batched RAFT ``(prev [B,H,W,3], cur) -> [B,H,W,2]``; None: the clips' ground-truth
      flow (consecutive frames only).
    targets: `TARGETS`, how predicted instances get their identity (with `segment` only).
  """
  if targets not in TARGETS:
    raise errors.ConfigError(f'Unknown fusion targets {targets!r}; choose one of {TARGETS}.')
  sim = jax.jit(instance_assoc.instance_similarity)
  out = {k: [] for k in PairMatrices._fields}
  for clip in clips:
    idx = (np.arange(len(clip['frames'])) if labels_on_every_frame
           else np.flatnonzero(np.asarray(clip['labelled'], bool)))
    if len(idx) < 2:
      continue
    frames = np.asarray(clip['frames'])[idx]
    insts, ids, gts = _frame_segments(frames, np.asarray(clip['panoptic'])[idx], table=table,
                                      max_instances=max_instances, segment=segment,
                                      targets=targets)
    by_ownership = segment is not None and targets == 'ownership'
    if flow_fn is not None:
      flows, _ = inference.clip_flows(flow_fn, frames)
    elif 'flow' in clip and np.all(np.diff(idx) == 1):
      flows = np.asarray(clip['flow'], np.float32)[idx[:-1]]
    else:
      raise errors.ConfigError(
          'Fitting the fusion needs flow between the paired frames: these clips have no '
          'ground-truth flow for them, so use flow.source=raft.')
    embs = [np.asarray(embed(f, inst)) for f, inst in zip(frames, insts)]
    for t in range(1, len(idx)):
      a, b = insts[t - 1], insts[t]
      va, vb = jnp.asarray(a.valid), jnp.asarray(b.valid)
      out['inst'].append(np.asarray(sim(jnp.asarray(embs[t - 1]), jnp.asarray(embs[t]), va, vb,
                                        dustbin_logit)))
      warped = pixel.warp_masks(jnp.asarray(a.masks), jnp.asarray(flows[t - 1]))
      out['pix'].append(np.asarray(pixel.dice_matrix(warped, jnp.asarray(b.masks), va, vb)))
      allowed = (np.asarray(a.valid)[:, None] & np.asarray(b.valid)[None, :]
                 & (np.asarray(a.classes)[:, None] == np.asarray(b.classes)[None, :]))
      # A prediction of t-δ without a ground-truth segment has no known answer (a fragment
      # of an object is still that object), so its row is left out; as a column of frame t
      # it stays a competitor of the true counterpart.
      allowed &= (ids[t - 1] >= 0)[:, None]
      if by_ownership:
        target, known = ownership_targets(np.where(np.asarray(a.valid), ids[t - 1], -1),
                                          ids[t], b, *gts[t])
        allowed &= known[:, None]
        target = np.where(known, target, -1).astype(np.int32)
      else:
        target = track_losses.pair_targets(np.where(np.asarray(a.valid), ids[t - 1], -1),
                                           np.where(np.asarray(b.valid), ids[t], -1))
      out['allowed'].append(allowed)
      out['target'].append(target)
  if not out['inst']:
    m = int(max_instances)
    return PairMatrices(np.zeros((0, m, m), np.float32), np.zeros((0, m, m), np.float32),
                        np.zeros((0, m, m), bool), np.zeros((0, m), np.int32))
  return PairMatrices(*(np.stack(out[k]) for k in PairMatrices._fields))
