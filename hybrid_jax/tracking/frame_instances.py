"""The padded per-frame instance set: what a segmenter emits and what the tracker consumes.

Every per-frame predictor (our PanopticFCN, ground truth, or any external model's panoptic
PNGs) is reduced to one `FrameInstances`: a fixed number N of slots, of which `valid` marks
the real ones. Fixed N keeps every jitted association function at one compiled shape; an
empty frame is simply `valid.any() == False`.

Box convention: ``(x0, y0, x1, y1)`` in pixels, ``x0, y0`` inclusive and ``x1, y1`` exclusive
(``x1 = last column + 1``), so ``x1 - x0`` is the box width; padding slots hold zeros.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence
import warnings

import jax.numpy as jnp
import numpy as np

from hybrid_jax import errors
from hybrid_jax.data import categories as categories_lib


class FrameInstances(NamedTuple):
  """N padded instance slots of one frame (numpy or jax arrays; a pytree).

  Attributes:
    masks: bool [N, H, W] instance masks (all False in padding slots).
    classes: int32 [N] category ids (-1 in padding slots).
    scores: float32 [N] confidence (1 for ground truth; 0 in padding slots).
    boxes: float32 [N, 4] (x0, y0, x1, y1), see the module docstring.
    valid: bool [N] which slots hold a real instance.
    kernels: optional float32 [N, D] per-instance vectors (e.g. PanopticFCN kernels).
  """
  masks: np.ndarray
  classes: np.ndarray
  scores: np.ndarray
  boxes: np.ndarray
  valid: np.ndarray
  kernels: Optional[np.ndarray] = None

  @property
  def max_instances(self) -> int:
    return int(self.masks.shape[0])

  @property
  def hw(self) -> tuple[int, int]:
    return int(self.masks.shape[1]), int(self.masks.shape[2])

  def num_valid(self) -> int:
    return int(np.asarray(self.valid).sum())


def boxes_from_masks(masks):
  """Tight boxes of masks, jittable. bool [N, H, W] -> float32 [N, 4]; zeros for empty masks."""
  masks = jnp.asarray(masks, bool)
  _, h, w = masks.shape
  rows = masks.any(axis=2)   # [N, H]
  cols = masks.any(axis=1)   # [N, W]
  ry = jnp.arange(h)
  rx = jnp.arange(w)
  y0 = jnp.min(jnp.where(rows, ry, h), axis=1)
  y1 = jnp.max(jnp.where(rows, ry + 1, 0), axis=1)
  x0 = jnp.min(jnp.where(cols, rx, w), axis=1)
  x1 = jnp.max(jnp.where(cols, rx + 1, 0), axis=1)
  nonempty = rows.any(axis=1)
  boxes = jnp.stack([x0, y0, x1, y1], axis=1).astype(jnp.float32)
  return jnp.where(nonempty[:, None], boxes, 0.0)


def _np_boxes(masks: np.ndarray) -> np.ndarray:
  """NumPy twin of `boxes_from_masks` (host-side conversion, no device round trip)."""
  n = masks.shape[0]
  boxes = np.zeros((n, 4), np.float32)
  for k in range(n):  # N is small; each step is a vectorised any()
    rows = np.flatnonzero(masks[k].any(axis=1))
    if rows.size == 0:
      continue
    cols = np.flatnonzero(masks[k].any(axis=0))
    boxes[k] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
  return boxes


def empty(max_instances: int, height: int, width: int, kernel_dim: int | None = None
          ) -> FrameInstances:
  """A frame with no instances (all slots padding)."""
  n = max_instances
  return FrameInstances(
      masks=np.zeros((n, height, width), bool), classes=np.full((n,), -1, np.int32),
      scores=np.zeros((n,), np.float32), boxes=np.zeros((n, 4), np.float32),
      valid=np.zeros((n,), bool),
      kernels=None if kernel_dim is None else np.zeros((n, kernel_dim), np.float32))


def keep_order(scores: np.ndarray, areas: np.ndarray, max_instances: int, *, what: str = 'instances'
               ) -> np.ndarray:
  """Indices of the instances to keep (all when they fit), with a warning counting the dropped.

  Ranks by score, ties (and score-less input, where all scores are equal) by area. The kept
  indices are returned in their original order so that slot order stays stable.
  """
  n = len(scores)
  if n <= max_instances:
    return np.arange(n)
  order = np.lexsort((-np.asarray(areas, np.float64), -np.asarray(scores, np.float64)))
  kept = np.sort(order[:max_instances])
  warnings.warn(
      f'{n} {what} in one frame but max_instances={max_instances}: kept the '
      f'{max_instances} with the highest scores (largest areas when no scores are given) and '
      f'dropped {n - max_instances}. Raise max_instances (config data.max_instances) to keep '
      f'them all.', stacklevel=3)
  return kept


def from_arrays(masks, classes, scores=None, *, max_instances: int, kernels=None
                ) -> FrameInstances:
  """Pads (or trims, by score) a variable-size instance list to `max_instances` slots.

  Args:
    masks: bool [K, H, W] (K may be 0 or exceed max_instances).
    classes: int [K].
    scores: float [K] or None (then 1 for every instance and areas decide what to drop).
    max_instances: the number of slots N.
    kernels: optional float [K, D].

  Returns:
    FrameInstances with N = max_instances slots; instances in their input order first.
  """
  masks = np.asarray(masks).astype(bool)
  if masks.ndim != 3:
    raise errors.FormatError(f'Instance masks must be [K, H, W], got shape {masks.shape}.')
  k, h, w = masks.shape
  classes = np.asarray(classes, np.int32).reshape(-1)
  has_scores = scores is not None
  scores = (np.ones((k,), np.float32) if scores is None
            else np.asarray(scores, np.float32).reshape(-1))
  if classes.shape[0] != k or scores.shape[0] != k:
    raise errors.FormatError(
        f'{k} masks but {classes.shape[0]} classes and {scores.shape[0]} scores; one each.')
  areas = masks.reshape(k, h * w).sum(axis=1)
  keep = keep_order(scores if has_scores else np.zeros_like(scores), areas, max_instances)
  out = empty(max_instances, h, w, None if kernels is None else np.shape(kernels)[-1])
  m = len(keep)
  out.masks[:m] = masks[keep]
  out.classes[:m] = classes[keep]
  out.scores[:m] = scores[keep]
  out.boxes[:m] = _np_boxes(masks[keep])
  out.valid[:m] = areas[keep] > 0
  if kernels is not None:
    out.kernels[:m] = np.asarray(kernels, np.float32)[keep]
  return out


def pad_to(inst: FrameInstances, max_instances: int) -> FrameInstances:
  """Re-pads a FrameInstances to another slot count (dropping low scores with a warning)."""
  valid = np.asarray(inst.valid)
  idx = np.flatnonzero(valid)
  return from_arrays(np.asarray(inst.masks)[idx], np.asarray(inst.classes)[idx],
                     np.asarray(inst.scores)[idx], max_instances=max_instances,
                     kernels=None if inst.kernels is None else np.asarray(inst.kernels)[idx])


def instances_from_panoptic(panoptic, categories: Sequence[categories_lib.Category] | None,
                            max_instances: int, scores=None, *, include_stuff: bool = False,
                            label_divisor: int = categories_lib.LABEL_DIVISOR):
  """Splits a panoptic map (category*1000 + instance) into padded instance slots.

  Args:
    panoptic: int [H, W]; -1 (or any negative) is void.
    categories: the category table, to tell things from stuff. None: every segment with a
      non-zero instance id is a thing.
    max_instances: the number of slots N.
    scores: optional {segment_id: score}; without it ranking (when over the maximum) is by area.
    include_stuff: also emit one slot per stuff class present (the tracker tracks things only;
      stuff keeps one fixed id per class).
    label_divisor: 1000 by the data contract.

  Returns:
    (FrameInstances, segment_ids int64 [N]): segment_ids[k] is the panoptic value of slot k,
    -1 for padding. Slots are in increasing segment-id order (before any dropping).
  """
  pan = np.asarray(panoptic)
  if pan.ndim != 2:
    raise errors.FormatError(f'A panoptic map must be [H, W], got shape {pan.shape}.')
  ids = np.unique(pan)
  ids = ids[ids >= 0]
  if categories is None:
    thing = ids % label_divisor != 0
  else:
    thing_cats = set(categories_lib.thing_ids(categories))
    known = {c.id for c in categories}
    bad = sorted({int(i) // label_divisor for i in ids} - known)
    if bad:
      raise errors.FormatError(
          f'Panoptic map holds category ids {bad} that are not in the category table '
          f'{sorted(known)}; check the dataset/category config.')
    thing = np.array([int(i) // label_divisor in thing_cats for i in ids], bool)
  ids = ids if include_stuff else ids[thing]
  k = len(ids)
  h, w = pan.shape
  masks = pan[None] == ids[:, None, None] if k else np.zeros((0, h, w), bool)
  classes = (ids // label_divisor).astype(np.int32)
  score_arr = None
  if scores is not None:
    score_arr = np.array([float(scores.get(int(i), 0.0)) for i in ids], np.float32)
  # Reuse from_arrays for the keep-by-score rule; recover which ids survived from the masks.
  areas = masks.reshape(k, h * w).sum(axis=1)
  keep = keep_order(np.zeros(k) if score_arr is None else score_arr, areas, max_instances,
                    what='segments')
  inst = from_arrays(masks[keep], classes[keep], None if score_arr is None else score_arr[keep],
                     max_instances=max_instances)
  seg_ids = np.full((max_instances,), -1, np.int64)
  seg_ids[:len(keep)] = ids[keep]
  return inst, seg_ids
