"""Temporal consistency (§III.E): instances of frame t that found no match in the previous
frame are compared with the frames kept in `memory.TrackMemory` and take a stored id.

`relink_from_memory` is that step of `VideoTracker.update`: memory frames newest first, the
tracker's own association and matching rule with θ (`temporal_threshold`), optionally the
backward direction as a cycle check (`backward_confirms`; the reverse pixel cue either the
forward-warped dice read column-wise or, with `temporal_backward_flow`, frame t's masks
warped back with backward flow) and optionally eq. 8's chained similarity
(`association_probability`). `VideoTracker`'s docstring says which reading is which.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from hybrid_jax.tracking import memory as memory_lib
from hybrid_jax.tracking import pixel

TEMPORAL_SIMILARITIES = ('direct', 'chained')


def backward_confirms(match, reverse, allowed_reverse, threshold: float) -> np.ndarray:
  """The forward matches that the reverse association confirms (a cycle check).

  Args:
    match: int [M] forward matches, stored instance i -> column j of frame t, or -1.
    reverse: float [N, M] the association from frame t (rows) back to the stored frame.
    allowed_reverse: bool [N, M] entries that may match (the forward `allowed`, transposed).
    threshold: θ, the reverse score has to reach it too.

  Returns:
    int32 [M]: `match` with -1 where the reverse arg-max of column j is not i or below θ.
  """
  out = np.asarray(match, np.int32).copy()
  rev = np.where(allowed_reverse, np.asarray(reverse), -np.inf)
  for i in np.flatnonzero(out >= 0):
    j = out[i]
    if int(np.argmax(rev[j])) != i or rev[j, i] < threshold:
      out[i] = -1
  return out


def association_probability(score, allowed, variant: str) -> np.ndarray:
  """A variant's m×n association as the factor Eq. 8 multiplies: float [M, N] in [0, 1].

  'instance': p(j|i) itself; 'pixel': the dice (a similarity in [0, 1], not a distribution);
  'hybrid': the fused logits read as the matching rule the fusion is fitted to
  (`losses.fusion`): a softmax over the row's allowed entries and a "no match" option at 0.
  Entries that may not match are 0.
  """
  score = np.asarray(score, np.float64)
  allowed = np.asarray(allowed, bool)
  if variant != 'hybrid':
    return np.where(allowed, np.clip(score, 0.0, 1.0), 0.0)
  top = np.maximum(np.max(np.where(allowed, score, -np.inf), axis=1, keepdims=True), 0.0)
  e = np.where(allowed, np.exp(score - top), 0.0)
  return e / (e.sum(axis=1, keepdims=True) + np.exp(-top))


def reverse_by_backward_flow(tracker, image, inst, emb, entry: memory_lib.MemoryEntry):
  """The association frame t -> stored frame [N, M] with the pixel cue from backward flow:
  frame t's masks warped to the stored frame, dice against the stored frame's own masks."""
  flow = tracker.backward_flow_fn(image, entry.image)
  pixel.check_flow_shape(np.shape(flow), inst.hw)
  back = pixel.warp_masks(jnp.asarray(inst.masks), jnp.asarray(flow, jnp.float32))
  return tracker.pair_scores(emb, entry.embeddings, back, inst, entry.instances,
                             masks_b=jnp.asarray(entry.own_masks))


def relink_from_memory(tracker, image, inst, emb, ids: np.ndarray, forward) -> None:
  """Gives unmatched instances of frame t (ids -1) the ids of stored instances; in place.

  Args:
    tracker: the `VideoTracker` (its memory, settings and association).
    image, inst, emb: frame t, its padded instances and their embeddings (or None).
    ids: int32 [N] frame t's ids so far (-1: unmatched); updated in place.
    forward: [M, N] the previous frame's association with frame t as a probability (the
      chain's last factor), or None unless temporal_similarity='chained'.
  """
  valid = np.asarray(inst.valid)
  classes = np.asarray(inst.classes)
  chained = tracker.temporal_similarity == 'chained'
  used = {(int(c), int(t)) for c, t, v in zip(classes, ids, valid) if v and t >= 0}
  through = forward  # eq. 8: the chain from the entry's frame to t, built newest first
  for entry in tracker.memory.newest_first():
    if chained:
      through = entry.forward @ through
    free_cur = valid & (ids < 0)
    if not free_cur.any():
      break
    mem = entry.instances
    free_mem = np.array([bool(v) and (int(c), int(t)) not in used
                         for c, t, v in zip(np.asarray(mem.classes), entry.ids,
                                            np.asarray(mem.valid))])
    allowed = tracker.allowed_pairs(mem, inst) & free_mem[:, None] & free_cur[None, :]
    if not allowed.any():
      continue
    masks_mem = jnp.asarray(mem.masks) if tracker.needs_flow else None
    if chained:
      mem_score = through
      reverse = through.T
    else:
      mem_score = tracker.pair_scores(entry.embeddings, emb, masks_mem, mem, inst)
    match = tracker.match(mem_score, allowed, tracker.temporal_threshold)
    if tracker.temporal_backward:
      if tracker.backward_flow_fn is not None:
        reverse = reverse_by_backward_flow(tracker, image, inst, emb, entry)
      elif not chained:
        rev_masks = jnp.asarray(inst.masks) if tracker.needs_flow else None
        reverse = tracker.pair_scores(emb, entry.embeddings, rev_masks, inst, mem,
                                      masks_b=masks_mem)
      match = backward_confirms(match, reverse, allowed.T, tracker.temporal_threshold)
    for i in np.flatnonzero(match >= 0):
      ids[match[i]] = entry.ids[i]
      used.add((int(mem.classes[i]), int(entry.ids[i])))
