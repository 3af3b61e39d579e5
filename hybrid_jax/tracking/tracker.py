"""Online video tracker: per-frame instances in, video-consistent track ids out.

`VideoTracker` consumes one frame at a time — an image plus a `FrameInstances` from any
per-frame predictor (our segmenter, ground truth, another model's panoptic PNGs via
`update_panoptic`) — and assigns each instance a track id that is stable over the clip:

1. association matrix between the previous frame (t-δ) and frame t, by `variant`:
   'instance' p(j|i) from embeddings (softmax of dot products), 'pixel' dice of flow-warped
   masks, 'hybrid' both fused by the 1×1 conv (plain sum until trained);
2. matching (`matcher`, default the paper's greedy row arg-max + threshold + mutual check);
   only instances of the same category may match (a track id lives within one category);
3. temporal consistency (optional, §III.E): unmatched instances of t are compared with the
   frames in memory (newest first) and take a stored id when the score exceeds
   `temporal_threshold`; with `temporal_backward` a memory match must also be confirmed in the
   reverse direction (`backward_confirms`);
4. everything still unmatched starts a new track (per-category counter, 1..999).

Output panoptic values follow the data contract: category*1000 + track id for things, the
per-frame map's stuff segments unchanged (category*1000: one fixed id per stuff class), -1 void.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from hybrid_jax import errors
from hybrid_jax.data import categories as categories_lib
from hybrid_jax.models import fusion
from hybrid_jax.tracking import flow_sources
from hybrid_jax.tracking import instance as instance_assoc
from hybrid_jax.tracking import pixel
from hybrid_jax.tracking import frame_instances as instances_lib
from hybrid_jax.tracking import matching
from hybrid_jax.tracking import temporal_consistency as temporal_lib
from hybrid_jax.tracking import memory as memory_lib
from hybrid_jax.tracking.frame_instances import FrameInstances
# §III.E's helpers, also importable from here.
from hybrid_jax.tracking.temporal_consistency import TEMPORAL_SIMILARITIES  # noqa: F401
from hybrid_jax.tracking.temporal_consistency import association_probability
from hybrid_jax.tracking.temporal_consistency import backward_confirms  # noqa: F401

VARIANTS = ('instance', 'pixel', 'hybrid')


class TrackResult(NamedTuple):
  """ids int32 [N] per slot (-1 padding); panoptic int32 [H, W]; the padded instances used."""
  ids: np.ndarray
  panoptic: np.ndarray
  instances: FrameInstances


_fuse = jax.jit(fusion.fuse)


def association_scores(fusion_params, emb_prev, emb_cur, masks_prev, masks_cur, valid_prev,
                       valid_cur, *, variant: str, dustbin_logit=None):
  """The m×n matching matrix of one tracker variant.

  Args:
    fusion_params: FusionConv params (used by 'hybrid').
    emb_prev, emb_cur: [M, D], [N, D] embeddings (None for 'pixel').
    masks_prev: bool [M, H, W] previous masks already warped into frame t (None for
      'instance'); masks_cur: bool [N, H, W].
    valid_prev, valid_cur: bool [M], [N].
    variant: 'instance' | 'pixel' | 'hybrid'.
    dustbin_logit: optional learned "no counterpart" logit (instance_assoc.instance_similarity).

  Returns:
    float32 [M, N].
  """
  # Not one jit: each piece is jitted on its own (see pixel.dice_matrix for why).
  if variant in ('instance', 'hybrid'):
    inst = instance_assoc.instance_similarity(emb_prev, emb_cur, valid_prev, valid_cur,
                                           dustbin_logit)
  if variant in ('pixel', 'hybrid'):
    pix = pixel.dice_matrix(masks_prev, masks_cur, valid_prev, valid_cur)
  if variant == 'instance':
    return inst
  if variant == 'pixel':
    return pix
  return _fuse(fusion_params, inst, pix)


class _Frame(NamedTuple):
  index: int
  image: object
  instances: FrameInstances
  embeddings: Optional[np.ndarray]
  ids: np.ndarray


class VideoTracker:
  """Online tracker over one clip; call `reset()` between clips.

  Args:
    variant: 'instance' | 'pixel' | 'hybrid' (config track.variant).
    temporal: use the temporal-consistency memory (track.temporal).
    mutual_check: keep only mutual best matches (track.mutual_check).
    threshold: minimum fused score of a match (track.threshold, 1e-5).
    temporal_threshold: θ, minimum score of a match against memory (track.temporal_threshold).
    memory_frames: frames kept in memory besides the previous one (track.memory_frames):
      an instance missing for up to this many frames can get its id back.
    max_instances: slots per frame (data.max_instances); more instances are dropped by score
      with a warning.
    temporal_backward: the backward direction of §III.E ("applied backward from t + δ to t"):
      a memory match (stored instance i -> instance j of frame t) is kept only when the reverse
      association, frame t -> the stored frame, also picks i for j above θ
      (`backward_confirms`). The paper gives no formula for it; this reading is an online
      cycle check, the one form that needs no future frame. The reverse instance cue is p(i|j),
      the softmax over the stored frame's instances; the reverse pixel cue is the dice of the
      same flow-warped masks (dice is symmetric, so the pixel cue's reverse adds only the
      column-wise arg-max), hence no backward flow is needed. The other reading is
      `temporal_backward_flow`.
    temporal_backward_flow: the reverse pixel cue of the backward check from real backward
      flow: frame t's masks are warped back to the stored frame with the flow from frame t to
      that frame (`backward_flow_fn`, or the flow source when it is a flow model) and compared
      (dice) with the stored frame's own masks. Costs one flow estimate per memory frame
      looked up. Needs a flow model: precomputed forward flows, .flo files and ground truth
      cannot give it (ConfigError); not with temporal_similarity='chained' (its reverse is the
      chain itself). Only the pixel and hybrid variants have a pixel cue to change.
    temporal_similarity: how a memory frame is compared with frame t (§III.E, eq. 8).
      'direct' (default): the tracker's association between the two frames, as Fig. 7 shows
      it (the instance may be missing in between, which breaks any chain through the middle
      frames). 'chained': eq. 8 read literally, the product of the consecutive frames'
      associations (`association_probability`) from the stored frame to t, summing over the
      instances of every frame in between; θ then applies to that product, and the backward
      check reads it column-wise.
    matcher: a key of matching.MATCHERS ('greedy' = paper, 'hungarian', 'sinkhorn').
    same_class: only instances of one category may match.
    embed_fn: ``embed(image, FrameInstances) -> [N, D]`` (embedding_head.make_embed_fn);
      required by 'instance' and 'hybrid'.
    flow_source: anything `flow_sources.as_flow_source` accepts; required by 'pixel' and
      'hybrid' unless each `update` passes `flow=`.
    fusion_params: trained FusionConv params; default the plain sum.
    categories: category table; needed by `update_panoptic` and to tell stuff from things in
      a given per-frame panoptic map (else instance id 0 means stuff).
    dustbin_logit: the head's learned 'dustbin_logit' (params['dustbin_logit']) when it was
      trained with no_match='dustbin'; adds the "no counterpart" column to the instance
      softmax. Without it p(j|i) >= ~1/n, so the 1e-5 and θ thresholds never reject an
      instance-tracker match (the paper's rule; the pixel part does reject: dice 0).
    backward_flow_fn: ``fn(image_from, image_to) -> flow [H, W, 2]`` for
      `temporal_backward_flow` (default: the flow source's, when it is a flow model).
  """

  def __init__(self, variant: str = 'hybrid', *, temporal: bool = True,
               mutual_check: bool = True, threshold: float = 1e-5,
               temporal_threshold: float = 0.01, memory_frames: int = 5,
               temporal_backward: bool = False, max_instances: int = 32, matcher: str = 'greedy',
               same_class: bool = True, temporal_similarity: str = 'direct',
               temporal_backward_flow: bool = False,
               embed_fn: Callable | None = None, flow_source=None, fusion_params=None,
               categories=None, dustbin_logit=None, backward_flow_fn: Callable | None = None):
    if variant not in VARIANTS:
      raise errors.ConfigError(f'Unknown tracker variant {variant!r}; choose one of {VARIANTS}.')
    if variant in ('instance', 'hybrid') and embed_fn is None:
      raise errors.ConfigError(
          f"Tracker variant {variant!r} needs the instance embedding head: pass "
          f"embed_fn=embedding_head.make_embed_fn(EmbeddingHead(...), params) (train it with "
          f"mode=train_track or load its checkpoint), or use variant='pixel'.")
    if max_instances < 1:
      raise errors.ConfigError(f'max_instances must be >= 1, got {max_instances}.')
    if temporal_similarity not in TEMPORAL_SIMILARITIES:
      raise errors.ConfigError(f'Unknown temporal_similarity {temporal_similarity!r}; choose '
                               f'one of {TEMPORAL_SIMILARITIES}.')
    self.temporal_similarity = temporal_similarity
    self.variant = variant
    self.temporal = bool(temporal)
    self.mutual_check = bool(mutual_check)
    self.threshold = float(threshold)
    self.temporal_threshold = float(temporal_threshold)
    self.temporal_backward = bool(temporal_backward)
    self.max_instances = int(max_instances)
    self.matcher_name = matcher
    self.matcher = matching.get_matcher(matcher)
    self.same_class = bool(same_class)
    self.embed_fn = embed_fn
    self.flow_source = flow_sources.as_flow_source(flow_source)
    self.fusion_params = fusion.init_fusion_params() if fusion_params is None else fusion_params
    self.categories = categories
    self.dustbin_logit = None if dustbin_logit is None else float(dustbin_logit)
    self.memory = memory_lib.TrackMemory(memory_frames if temporal else 0)
    # The backward check's reverse pixel cue from backward flow: only where it changes a result.
    self.backward_flow_fn = None
    if (temporal_backward_flow and self.temporal and self.temporal_backward
        and self.memory.max_frames > 0 and self.needs_flow):
      if temporal_similarity == 'chained':
        raise errors.ConfigError(
            "track.temporal_backward_flow=True cannot go with track.temporal_similarity="
            "'chained': the chained similarity's reverse direction is the chain itself. Use "
            "temporal_similarity='direct' or temporal_backward_flow=False.")
      self.backward_flow_fn = backward_flow_fn or flow_sources.pair_flow_fn(self.flow_source)
      if self.backward_flow_fn is None:
        source = ('flows passed to update()' if self.flow_source is None
                  else type(self.flow_source).__name__)
        raise errors.ConfigError(
            f'track.temporal_backward_flow=True needs flow from frame t back to an earlier '
            f'frame, which only a flow model (RAFT) can give; this tracker\'s flow source '
            f'({source}: precomputed forward flow, .flo files or ground truth) has forward flow '
            f'only. Give a flow model (flow.source=raft; --raft on the command line) or set '
            f'--config.track.temporal_backward_flow=False (the reverse pixel cue then reads '
            f'the forward-warped dice column-wise).')
    self.reset()

  def reset(self) -> None:
    """Forgets the clip: ids restart at 1 per category."""
    self._prev: Optional[_Frame] = None
    self._next_id: dict[int, int] = {}
    self._wrapped: set[int] = set()
    self._count = 0
    self.memory.reset()

  # ------------------------------------------------------------------------------------------

  @property
  def needs_flow(self) -> bool:
    return self.variant in ('pixel', 'hybrid')

  @property
  def needs_embed(self) -> bool:
    return self.variant in ('instance', 'hybrid')

  def _new_id(self, cls: int, active: set) -> int:
    """Next free id of category `cls` in 1..999 (ids of ended tracks reused after 999)."""
    limit = categories_lib.LABEL_DIVISOR - 1
    start = self._next_id.get(cls, 1)
    for k in range(limit):
      cand = (start - 1 + k) % limit + 1
      if (cls, cand) in active:
        continue
      if start + k > limit and cls not in self._wrapped:
        self._wrapped.add(cls)
        warnings.warn(f'Category {cls}: more than {limit} tracks in this clip; ids of tracks '
                      'no longer in memory are reused from now on.', stacklevel=3)
      self._next_id[cls] = cand + 1
      return cand
    raise errors.FormatError(f'Category {cls} has {limit} live tracks; no track id is left.')

  def allowed_pairs(self, a: FrameInstances, b: FrameInstances) -> np.ndarray:
    allowed = np.asarray(a.valid)[:, None] & np.asarray(b.valid)[None, :]
    if self.same_class:
      allowed &= np.asarray(a.classes)[:, None] == np.asarray(b.classes)[None, :]
    return allowed

  def pair_scores(self, emb_a, emb_b, masks_a, a: FrameInstances, b: FrameInstances, *,
              masks_b=None):
    """Scores of a's instances (rows; masks `masks_a`, already in b's frame) against b's
    (columns; masks `masks_b`, default b's own)."""
    if masks_b is None and self.needs_flow:
      masks_b = jnp.asarray(b.masks)
    return np.asarray(association_scores(
        self.fusion_params, None if emb_a is None else jnp.asarray(emb_a),
        None if emb_b is None else jnp.asarray(emb_b),
        None if masks_a is None else jnp.asarray(masks_a),
        masks_b if self.needs_flow else None,
        jnp.asarray(a.valid), jnp.asarray(b.valid), variant=self.variant,
        dustbin_logit=self.dustbin_logit))

  def match(self, score, allowed, threshold):
    match = self.matcher(score, allowed=allowed, threshold=threshold,
                         mutual_check=self.mutual_check)
    if not self.mutual_check:
      match = matching.resolve_conflicts(match, score)
    return match

  def update(self, image, instances: FrameInstances, *, panoptic=None, flow=None,
             frame_index: int | None = None) -> TrackResult:
    """Tracks one frame.

    Args:
      image: uint8/float [H, W, 3] (used by the embedding head and by callable flow sources).
      instances: FrameInstances of this frame (any slot count; re-padded to max_instances).
      panoptic: optional per-frame panoptic map [H, W] whose stuff segments are copied to the
        output (its thing pixels are replaced by the tracked instances).
      flow: optional forward flow [H, W, 2] from the previous frame to this one (overrides
        the flow source).
      frame_index: index in the clip (default: a counter from 0).

    Returns:
      TrackResult(ids per slot, panoptic map with track ids, the padded instances).
    """
    index = self._count if frame_index is None else int(frame_index)
    self._count = index + 1
    inst = instances
    if inst.max_instances != self.max_instances or inst.num_valid() > self.max_instances:
      inst = instances_lib.pad_to(inst, self.max_instances)
    h, w = inst.hw
    emb = np.asarray(self.embed_fn(image, inst)) if self.needs_embed else None
    ids = np.full((self.max_instances,), -1, np.int32)
    valid = np.asarray(inst.valid)
    classes = np.asarray(inst.classes)
    prev = self._prev

    if prev is not None:
      if prev.instances.hw != (h, w):
        raise errors.FormatError(
            f'Frame {index}: instance masks of size {(h, w)} differ from the previous frame\'s '
            f'{prev.instances.hw}; all frames of a clip must share one size.')
      warped_prev = None
      if self.needs_flow:
        if flow is None:
          if self.flow_source is None:
            raise errors.ConfigError(
                f"Tracker variant {self.variant!r} needs optical flow: give flow_source= "
                f"(RAFT callable, precomputed array, .flo files) or pass flow= to update().")
          flow = self.flow_source.flow(prev.index, index, prev.image, image)
        pixel.check_flow_shape(np.shape(flow), (h, w))
        flow = jnp.asarray(flow, jnp.float32)
        warped_prev = pixel.warp_masks(jnp.asarray(prev.instances.masks), flow)
        self.memory.advance(flow)
      score = self.pair_scores(prev.embeddings, emb, warped_prev, prev.instances, inst)
      match = self.match(score, self.allowed_pairs(prev.instances, inst), self.threshold)
      for i in np.flatnonzero(match >= 0):
        ids[match[i]] = prev.ids[i]

      chained = self.temporal_similarity == 'chained' and self.memory.max_frames > 0
      forward = (association_probability(score, self.allowed_pairs(prev.instances, inst),
                                         self.variant) if chained else None)
      if self.temporal and len(self.memory) and (valid & (ids < 0)).any():
        temporal_lib.relink_from_memory(self, image, inst, emb, ids, forward)

      if self.memory.max_frames > 0:
        prev_masks = (np.asarray(warped_prev) if warped_prev is not None
                      else np.asarray(prev.instances.masks))
        keep_own = self.backward_flow_fn is not None
        self.memory.push(memory_lib.MemoryEntry(
            prev.index, prev.instances._replace(masks=prev_masks), prev.embeddings, prev.ids,
            forward, image=prev.image if keep_own else None,
            own_masks=np.asarray(prev.instances.masks) if keep_own else None))

    active = self.memory.active_ids() | {
        (int(c), int(t)) for c, t, v in zip(classes, ids, valid) if v and t >= 0}
    for j in np.flatnonzero(valid & (ids < 0)):
      ids[j] = self._new_id(int(classes[j]), active)
      active.add((int(classes[j]), int(ids[j])))

    self._prev = _Frame(index, image, inst, emb, ids)
    return TrackResult(ids, self._paint(inst, ids, panoptic), inst)

  def _paint(self, inst: FrameInstances, ids, panoptic) -> np.ndarray:
    """Panoptic map: stuff from `panoptic` (if given), thing pixels from the tracked masks."""
    h, w = inst.hw
    if panoptic is None:
      out = np.full((h, w), categories_lib.VOID, np.int32)
    else:
      pan = np.asarray(panoptic)
      if pan.shape != (h, w):
        raise errors.FormatError(
            f'Panoptic map of shape {pan.shape} does not match instance masks {(h, w)}.')
      cat = np.where(pan >= 0, pan // categories_lib.LABEL_DIVISOR, -1)
      if self.categories is not None:
        is_thing = np.isin(cat, categories_lib.thing_ids(self.categories))
      else:
        is_thing = (pan >= 0) & (pan % categories_lib.LABEL_DIVISOR != 0)
      out = np.where(is_thing, categories_lib.VOID, pan).astype(np.int32)
    valid = np.asarray(inst.valid)
    order = np.argsort(np.asarray(inst.scores)[valid], kind='stable')  # high scores paint last
    masks = np.asarray(inst.masks)
    for j in np.flatnonzero(valid)[order]:
      out[masks[j]] = int(inst.classes[j]) * categories_lib.LABEL_DIVISOR + int(ids[j])
    return out

  def update_panoptic(self, image, panoptic, *, scores=None, flow=None,
                      frame_index: int | None = None) -> TrackResult:
    """Tracks a per-frame panoptic map (per-frame instance ids) -> video-consistent ids.

    The entry point for external predictors: `scores` is an optional {segment id: score}.
    """
    if self.categories is None:
      raise errors.ConfigError('update_panoptic needs the category table: '
                               'VideoTracker(..., categories=categories.get_categories(name)).')
    inst, _ = instances_lib.instances_from_panoptic(panoptic, self.categories,
                                                    self.max_instances, scores)
    return self.update(image, inst, panoptic=panoptic, flow=flow, frame_index=frame_index)
