"""PanopticFCN inference with static shapes: peaks, kernel fusion, masks, panoptic merge.

Reference panoptic_fcn.md §1.7, §1.8, §1.10. Every variable-length step of the official code
is a fixed-size buffer plus a ``valid`` mask, so one jit compilation serves every frame.

Per-frame output (`postprocess`, batched over B; N = ``InferenceConfig.max_instances``):

  ``panoptic``      int32 [B, H, W]: category_id * 1000 + running instance index (>= 1, in
                    paint order = descending score) for things, category_id * 1000 for stuff,
                    -1 void. Ids are per frame; the tracker assigns track ids later.
  ``valid``         bool [B, N]: slot n holds the thing with index n + 1.
  ``masks``         bool [B, N, H, W]: the pixels painted for that thing (non-overlapping).
  ``classes``       int32 [B, N]: dataset category id (-1 in invalid slots).
  ``scores``        float32 [B, N]: maskness-rescored score (0 in invalid slots).
  ``boxes``         float32 [B, N, 4]: (x0, y0, x1, y1) pixel extent of the mask, x1/y1
                    exclusive (max index + 1); zeros in invalid slots.
  ``kernels``       float32 [B, N, E]: fused (64-d) thing kernel, an appearance embedding.
  ``instance_ids``  int32 [B, N]: the slot's value in ``panoptic`` (-1 in invalid slots).

H, W is the output size (by default the un-padded input size).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from hybrid_jax.data import categories as cat_lib
from hybrid_jax.losses import panoptic as panoptic_losses
from hybrid_jax.models.panoptic_fcn import targets as targets_lib

OUTPUT_KEYS = ('panoptic', 'valid', 'masks', 'classes', 'scores', 'boxes', 'kernels',
               'instance_ids')


@dataclasses.dataclass(frozen=True)
class InferenceConfig:
  """Static inference settings (defaults: the official R50 config)."""
  thing_threshold: float = 0.05        # POSITION_HEAD.THING.THRES
  stuff_threshold: float = 0.05        # POSITION_HEAD.STUFF.THRES
  top_k_per_level: int = 50            # TOP_NUM // 2
  smooth_sizes: tuple[int, ...] = (3, 3, 3, 5, 5)
  similarity_threshold: float = 0.9    # INFERENCE.SIMILAR_THRES (cosine)
  class_specific: bool = True
  mask_threshold: float = 0.4          # INFERENCE.INST_THRES
  min_score: float = 0.05              # hard-coded in the official process_inst
  max_instances: int = 100             # TOP_NUM: output slots
  combine_score_threshold: float = 0.2  # COMBINE.INST_THRESH
  overlap_threshold: float = 0.5       # COMBINE.OVERLAP_THRESH
  stuff_area_limit: int = 4096         # COMBINE.STUFF_AREA_LIMIT, pixels at output size
  # False (official): masks are upsampled x4 as probabilities. True (seg.mask_resolution=
  # 'full'): as logits, the sigmoid taken at output size, as the segmenter was trained.
  upsample_logits: bool = False


# The 1/4-grid value of a stuff channel found on no level when masks travel as logits.
ABSENT_LOGIT = -1e4


def _smooth_and_peaks(prob: jax.Array, size: int) -> jax.Array:
  """Box-filter (zero padding, divide by size^2) then keep 3x3 local maxima. [h,w,C]."""
  pad = size // 2
  summed = jax.lax.reduce_window(prob, 0.0, jax.lax.add, (size, size, 1), (1, 1, 1),
                                 ((pad, pad), (pad, pad), (0, 0)))
  smooth = summed / (size * size)
  local_max = jax.lax.reduce_window(smooth, -jnp.inf, jax.lax.max, (3, 3, 1), (1, 1, 1),
                                    ((1, 1), (1, 1), (0, 0)))
  return jnp.where(smooth == local_max, smooth, 0.0)


def thing_candidates(inst_logits, thing_kernels, *, cfg: InferenceConfig):
  """Peaks of all levels of one frame.

  Args:
    inst_logits: tuple of L [h_l, w_l, Nth]; thing_kernels: tuple of L [h_l, w_l, E].
  Returns:
    scores [K], classes int32 [K] (thing channel), kernels [K, E], valid [K], sorted by score
    descending; K = sum_l min(h_l * w_l, top_k_per_level).
  """
  scores, classes, kernels = [], [], []
  for l, (logits, kmap) in enumerate(zip(inst_logits, thing_kernels)):
    h, w, c = logits.shape
    peaks = _smooth_and_peaks(jax.nn.sigmoid(logits), cfg.smooth_sizes[l])
    k = min(h * w, cfg.top_k_per_level)
    vals, idx = jax.lax.top_k(peaks.reshape(-1), k)
    scores.append(vals)
    classes.append((idx % c).astype(jnp.int32))
    kernels.append(kmap.reshape(h * w, -1)[idx // c])
  scores = jnp.concatenate(scores)
  classes = jnp.concatenate(classes)
  kernels = jnp.concatenate(kernels)
  valid = scores > cfg.thing_threshold
  order = jnp.argsort(-jnp.where(valid, scores, -1.0))
  return scores[order], classes[order], kernels[order], valid[order]


def fuse_kernels(kernels, classes, valid, *, similarity_threshold: float = 0.9,
                 class_specific: bool = True):
  """Greedy kernel-space NMS with averaging (official ``kernel_fusion``), on score-sorted input.

  Pair (i, j), i <= j, is marked when both are valid, cosine >= threshold and (if
  class_specific) the classes agree. j stays a representative iff no i < j marks it; each
  representative becomes the plain mean of the kernels it is the first to mark.

  Args:
    kernels [K, E]; classes int [K]; valid bool [K] (sorted by descending score).
  Returns:
    fused kernels [K, E] (rows of non-representatives are meaningless) and keep bool [K].
  """
  k = kernels.shape[0]
  norm = kernels / jnp.maximum(jnp.linalg.norm(kernels, axis=-1, keepdims=True), 1e-12)
  sim = norm @ norm.T
  marked = (sim >= similarity_threshold) & jnp.triu(jnp.ones((k, k), bool))
  marked &= valid[:, None] & valid[None, :]
  if class_specific:
    marked &= classes[:, None] == classes[None, :]
  first = marked & (jnp.cumsum(marked, axis=0) < 2)     # i is the first row to mark j
  keep = valid & (jnp.diagonal(jnp.cumsum(marked, axis=0)) < 2)
  members = first & keep[:, None]
  fused = (members.astype(kernels.dtype) @ kernels) / jnp.maximum(
      members.sum(-1, keepdims=True), 1)
  return fused, keep


upsample4 = targets_lib.upsample4  # the x4 bilinear filter (it lives beside downsample4)


def _upsample_crop(mask_q: jax.Array, image_hw, output_hw, *, logits: bool = False
                   ) -> jax.Array:
  """[..., Hq, Wq] -> x4 bilinear -> crop to image_hw -> resize to output_hw -> probabilities.

  `mask_q` holds probabilities, or logits when `logits` (then the sigmoid comes last).
  """
  up = targets_lib.upsample4_2d(mask_q)
  up = up[..., :image_hw[0], :image_hw[1]]
  if tuple(output_hw) != tuple(image_hw):
    up = jax.image.resize(up, up.shape[:-2] + tuple(output_hw), 'linear', antialias=False)
  return jax.nn.sigmoid(up) if logits else up


def _boxes(masks: jax.Array) -> jax.Array:
  """bool [N,H,W] -> float [N,4] (x0, y0, x1, y1), x1/y1 exclusive; zeros for empty masks."""
  h, w = masks.shape[1:]
  rows = masks.any(axis=2)
  cols = masks.any(axis=1)
  y0 = jnp.argmax(rows, axis=1)
  y1 = h - jnp.argmax(rows[:, ::-1], axis=1)
  x0 = jnp.argmax(cols, axis=1)
  x1 = w - jnp.argmax(cols[:, ::-1], axis=1)
  box = jnp.stack([x0, y0, x1, y1], axis=-1).astype(jnp.float32)
  return jnp.where(rows.any(axis=1)[:, None], box, 0.0)


def thing_proposals(outputs: dict, *, cfg: InferenceConfig) -> dict:
  """One frame's best `cfg.max_instances` thing proposals at the model's 1/4 grid.

  Peaks, kernel fusion, masks and maskness rescoring (official ``process_inst``).

  Args:
    outputs: model outputs of one frame (no batch axis), with ``stuff_bias``.
  Returns a dict (N = cfg.max_instances, [Hq, Wq] the padded 1/4 grid):
    ``scores`` [N] rescored, descending; ``ok`` bool [N] (above min_score and the combine
    threshold); ``mask`` [N, Hq, Wq] mask probabilities (logits with cfg.upsample_logits);
    ``classes`` int32 [N] thing channel; ``kernels`` [N, E] fused kernels.
  """
  enc = outputs['encode_feat']                                  # [Hq,Wq,E]
  n = cfg.max_instances
  scores, classes, kernels, valid = thing_candidates(outputs['inst_logits'],
                                                     outputs['thing_kernels'], cfg=cfg)
  fused, keep = fuse_kernels(kernels, classes, valid,
                             similarity_threshold=cfg.similarity_threshold,
                             class_specific=cfg.class_specific)
  logits = jnp.einsum('ke,hwe->khw', fused, enc)                # [K,Hq,Wq]
  prob = jax.nn.sigmoid(logits)
  # Maskness is measured on the 1/4 grid in both modes (official process_inst).
  binary = prob > cfg.mask_threshold
  area = binary.sum(axis=(1, 2))
  maskness = (prob * binary).sum(axis=(1, 2)) / jnp.maximum(area, 1)
  rescored = jnp.where(keep & (area > 0), scores * maskness, 0.0)
  top = min(n, rescored.shape[0])
  top_scores, top_idx = jax.lax.top_k(rescored, top)
  if top < n:  # fewer candidates than output slots: pad
    top_scores = jnp.pad(top_scores, (0, n - top))
    top_idx = jnp.pad(top_idx, (0, n - top))
  ok = (top_scores >= cfg.min_score) & (top_scores >= cfg.combine_score_threshold)
  mask = logits if cfg.upsample_logits else prob
  return {'scores': top_scores, 'ok': ok, 'mask': mask[top_idx],
          'classes': classes[top_idx], 'kernels': fused[top_idx]}


def stuff_probabilities(outputs: dict, *, cfg: InferenceConfig) -> jax.Array:
  """One frame's stuff mask probabilities [S, Hq, Wq] (0 for channels found on no level);
  with cfg.upsample_logits their logits (ABSENT_LOGIT for channels found on no level).

  Per level, kernels are pooled over the arg-max regions of the stuff maps; a channel's
  kernel is the mean over the levels where it is present with score > stuff_threshold.
  """
  enc = outputs['encode_feat']
  s_ker, s_keep = [], []
  for logits, kmap in zip(outputs['stuff_logits'], outputs['stuff_kernels']):
    p = jax.nn.sigmoid(logits)                                  # [h,w,S]
    onehot = jax.nn.one_hot(jnp.argmax(p, axis=-1), p.shape[-1], dtype=p.dtype)
    region = onehot.sum(axis=(0, 1))
    score = (p * onehot).sum(axis=(0, 1)) / jnp.maximum(region, 1.0)
    s_keep.append((region > 0) & (score > cfg.stuff_threshold))
    s_ker.append(panoptic_losses.stuff_kernels_from_masks(
        kernel_map=kmap[None], bias=outputs['stuff_bias'], masks=onehot[None])[0])
  s_keep = jnp.stack(s_keep).astype(jnp.float32)                # [L,S]
  n_lvl = s_keep.sum(0)
  stuff_kernels = (jnp.stack(s_ker) * s_keep[..., None]).sum(0) / jnp.maximum(n_lvl, 1)[:, None]
  logits = jnp.einsum('se,hwe->shw', stuff_kernels, enc)
  found = (n_lvl > 0)[:, None, None]
  if cfg.upsample_logits:
    return jnp.where(found, logits, ABSENT_LOGIT)
  return jax.nn.sigmoid(logits) * found


def merge_panoptic(things: dict, stuff_prob: jax.Array, *, image_hw, output_hw,
                   layout: targets_lib.ClassLayout, cfg: InferenceConfig) -> dict:
  """Panoptic merge of one frame: things pasted in score order, then stuff in the free pixels.

  Args:
    things: `thing_proposals` output (N proposals sorted by descending score); its ``mask``
      and `stuff_prob` [S, Hq, Wq] (`stuff_probabilities`) live on the 1/4 grid of the
      (padded) input of size image_hw; both are logits with cfg.upsample_logits.
  Returns the per-frame dict of the module docstring at output_hw.
  """
  oh, ow = output_hw
  n = things['scores'].shape[0]
  cand_ok, cand_mask, top_scores = things['ok'], things['mask'], things['scores']
  to_output = lambda m: _upsample_crop(m, image_hw, output_hw, logits=cfg.upsample_logits)
  thing_cats = jnp.asarray(np.array(layout.thing_ids or (0,), np.int32))
  cand_cat = thing_cats[things['classes']]

  # ---- sequential paste (order-dependent, as panopticapi's combine) ------------------------
  def paint(i, state):
    pan, painted, count = state
    mask = to_output(cand_mask[i]) > cfg.mask_threshold
    area = mask.sum()
    taken = pan != cat_lib.VOID
    overlap = (mask & taken).sum()
    ok = cand_ok[i] & (area > 0) & (overlap <= cfg.overlap_threshold * area)
    seg_id = cand_cat[i] * cat_lib.LABEL_DIVISOR + count + 1
    pan = jnp.where(ok & mask & ~taken, seg_id, pan)
    return pan, painted.at[i].set(ok), count + ok.astype(jnp.int32)

  pan0 = jnp.full((oh, ow), cat_lib.VOID, jnp.int32)
  pan, painted, count = jax.lax.fori_loop(0, n, paint, (pan0, jnp.zeros((n,), bool),
                                                        jnp.int32(0)))
  order = jnp.argsort(~painted, stable=True)        # painted first, in score order
  slot_valid = jnp.arange(n) < count
  inst_ids = jnp.where(slot_valid, cand_cat[order] * cat_lib.LABEL_DIVISOR + jnp.arange(n) + 1,
                       -1)
  masks = (pan[None] == inst_ids[:, None, None]) & slot_valid[:, None, None]

  # ---- stuff in the pixels no thing took ---------------------------------------------------
  stuff_full = to_output(stuff_prob)                             # [S,oh,ow]
  sem = jnp.argmax(stuff_full, axis=0)
  has_sem = stuff_full.max(axis=0) > 0
  stuff_cats = jnp.asarray(np.array(layout.stuff_channel_ids, np.int32))
  free = (pan == cat_lib.VOID) & has_sem
  area_s = jnp.bincount(sem.reshape(-1), weights=free.reshape(-1).astype(jnp.float32),
                        length=layout.num_stuff)
  ok_s = (area_s >= cfg.stuff_area_limit) & (stuff_cats >= 0)
  pan = jnp.where(free & ok_s[sem], stuff_cats[sem] * cat_lib.LABEL_DIVISOR, pan)

  return {
      'panoptic': pan, 'valid': slot_valid, 'masks': masks,
      'classes': jnp.where(slot_valid, cand_cat[order], -1),
      'scores': jnp.where(slot_valid, top_scores[order], 0.0),
      'boxes': _boxes(masks),
      'kernels': jnp.where(slot_valid[:, None], things['kernels'][order], 0.0),
      'instance_ids': inst_ids,
  }


def postprocess_single(outputs: dict, *, image_hw, output_hw, layout: targets_lib.ClassLayout,
                       cfg: InferenceConfig) -> dict:
  """One frame: model outputs without the batch axis -> the per-frame dict (module docstring)."""
  return merge_panoptic(thing_proposals(outputs, cfg=cfg),
                        stuff_probabilities(outputs, cfg=cfg), image_hw=image_hw,
                        output_hw=output_hw, layout=layout, cfg=cfg)


def to_reference_grid(x: jax.Array, *, ref_hw, image_hw, scaled_hw) -> jax.Array:
  """Maps [..., hq, wq] values on the 1/4 grid of a frame resized to `scaled_hw` onto the 1/4
  grid `ref_hw` of the same frame at `image_hw` (bilinear, exact geometry).

  Quarter-grid coordinates scale like pixel coordinates, so a point at continuous coordinate
  u of the scaled grid sits at u * image / scaled on the reference one. Reference cells beyond
  the scaled frame's padded grid get 0 (they lie in the padding and are cropped later).
  """
  ref_hw = tuple(int(v) for v in ref_hw)
  if tuple(scaled_hw) == tuple(image_hw) and x.shape[-2:] == ref_hw:
    return x
  scale = jnp.asarray([image_hw[0] / scaled_hw[0], image_hw[1] / scaled_hw[1]], jnp.float32)
  return jax.image.scale_and_translate(
      x, x.shape[:-2] + ref_hw, (x.ndim - 2, x.ndim - 1), scale, jnp.zeros((2,), jnp.float32),
      method='linear', antialias=False)


def postprocess_multiscale(outputs_per_scale, *, scaled_hws, image_hw,
                           layout: targets_lib.ClassLayout, cfg: InferenceConfig = InferenceConfig(),
                           output_hw=None) -> dict:
  """Test-time multi-scale inference of a batch: one frame seen at several input sizes.

  PanopticFCN itself tests at one scale; HybridTracker tests at VPSNet-Track's scales
  (§IV). Kernels only apply to the feature map of their own scale, so every scale makes its
  own thing proposals (masks + rescored scores) and stuff probabilities; both are mapped onto
  the 1/4 grid of the original frame. Thing proposals of all scales then compete in one
  score-ordered paste, whose overlap rule drops the copies of an object found at several
  scales (the best-scoring copy wins); stuff probabilities are averaged over the scales.

  Args:
    outputs_per_scale: sequence of model output dicts, batch B, one per scale.
    scaled_hws: the un-padded input size (h, w) of each scale's frames.
    image_hw: the original frame size (the reference); output at output_hw (default image_hw).
  Returns the batched per-frame dict of the module docstring.
  """
  image_hw = tuple(int(v) for v in image_hw)
  output_hw = image_hw if output_hw is None else tuple(int(v) for v in output_hw)
  scaled_hws = [tuple(int(v) for v in hw) for hw in scaled_hws]
  if len(scaled_hws) != len(outputs_per_scale) or not scaled_hws:
    raise ValueError('Give one (h, w) per scale, and at least one scale.')
  pad = lambda v: -(-v // 32) * 32
  ref_hw = (pad(image_hw[0]) // 4, pad(image_hw[1]) // 4)
  n = cfg.max_instances

  def one(per_scale):
    things, stuff, found = [], [], []
    for o, hw in zip(per_scale, scaled_hws):
      t = thing_proposals(o, cfg=cfg)
      t['mask'] = to_reference_grid(t['mask'], ref_hw=ref_hw, image_hw=image_hw, scaled_hw=hw)
      things.append(t)
      s = stuff_probabilities(o, cfg=cfg)
      if cfg.upsample_logits:  # which channels this scale found (for the mean below)
        found.append((s.max(axis=(1, 2)) > ABSENT_LOGIT / 2).astype(jnp.float32))
      stuff.append(to_reference_grid(s, ref_hw=ref_hw, image_hw=image_hw, scaled_hw=hw))
    pooled = {k: jnp.concatenate([t[k] for t in things]) for k in things[0]}
    _, best = jax.lax.top_k(jnp.where(pooled['ok'], pooled['scores'], -1.0), n)
    merged = {k: v[best] for k, v in pooled.items()}
    if cfg.upsample_logits:
      # Logits: the mean over the scales where a channel was found (an absent scale's
      # ABSENT_LOGIT would otherwise erase it); probabilities average with their zeros.
      w = jnp.stack(found)[:, :, None, None]                    # [scales,S,1,1]
      total = w.sum(0)
      stuff_mean = jnp.where(total > 0, (jnp.stack(stuff) * w).sum(0) / jnp.maximum(total, 1),
                             ABSENT_LOGIT)
    else:
      stuff_mean = jnp.mean(jnp.stack(stuff), axis=0)
    return merge_panoptic(merged, stuff_mean, image_hw=image_hw,
                          output_hw=output_hw, layout=layout, cfg=cfg)

  per_frame = [{k: v for k, v in o.items() if k != 'stuff_bias'} for o in outputs_per_scale]
  biases = [o['stuff_bias'] for o in outputs_per_scale]
  return jax.vmap(lambda frames: one([{**f, 'stuff_bias': b} for f, b in zip(frames, biases)])
                  )(per_frame)


def postprocess(outputs: dict, *, image_hw, layout: targets_lib.ClassLayout,
                cfg: InferenceConfig = InferenceConfig(), output_hw=None) -> dict:
  """Batched `postprocess_single` (vmapped). image_hw: the un-padded input size (h, w)."""
  image_hw = tuple(int(v) for v in image_hw)
  output_hw = image_hw if output_hw is None else tuple(int(v) for v in output_hw)
  per_frame = {k: v for k, v in outputs.items() if k != 'stuff_bias'}
  bias = outputs['stuff_bias']

  def one(o):
    return postprocess_single({**o, 'stuff_bias': bias}, image_hw=image_hw,
                              output_hw=output_hw, layout=layout, cfg=cfg)
  return jax.vmap(one)(per_frame)
