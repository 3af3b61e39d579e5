"""PanopticFCN losses: sigmoid focal loss on position maps, (weighted) Dice on masks.

Reference panoptic_fcn.md §2.1-2.4. The total is

  loss = pos_weight * (focal_th / max(N_th, 1) + focal_st / B)
       + seg_weight * (dice_th / max(N_th, 1) + dice_st / max(N_st, 1))

with N_th the number of (image, level, instance) assignments and N_st the number of
(image, level, present stuff channel) entries. Normalisation runs over the whole batch given
(the official code normalises per GPU with 2 images each, so numbers differ slightly).
Thing masks use k kernels per assignment, taken at the top-k predicted centre scores inside
the object's level mask and weighted by those scores normalised to sum 1; the weights are not
detached (as in the official code), so the Dice term also trains the centre logits.

Mask resolution (``mask_resolution``). PanopticFCN compares masks on the 1/4 grid ('quarter':
the targets are the masks downsampled x4) and upsamples mask *probabilities* at test time.
A thing a few pixels wide then cannot be represented: on the synthetic demo's val persons
(median 14.5x5 px), even the exact 1/4-grid target, upsampled and thresholded at 0.4, overlaps
its own mask by IoU > 0.5 only 26% of the time. 'full' (not official) upsamples the 1/4-grid
mask *logits* x4 with the fixed bilinear filter, takes the sigmoid there and compares with the
input-resolution masks; inference upsamples the logits the same way
(`postprocess.InferenceConfig.upsample_logits`). Logits are unbounded, so two neighbouring
cells can place a mask edge anywhere between them: fitted per mask, 87% of those persons
then reach IoU > 0.5 (median 0.73). To keep the step cheap, 'full' evaluates only the
(instance, level) assignments that exist, at most ``mask_pairs`` per image (the first ones by
instance and level; the rest are counted in ``mask_pairs_dropped``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hybrid_jax import errors
from hybrid_jax.models.panoptic_fcn import inputs
from hybrid_jax.models.panoptic_fcn import targets as targets_lib


def sigmoid_focal_loss(*, logits: jax.Array, targets: jax.Array, alpha: float = 0.25,
                       gamma: float = 2.0) -> jax.Array:
  """RetinaNet focal loss with soft targets, element-wise (same shape as the inputs).

  ce = BCE-with-logits(x, t); p_t = p t + (1 - p)(1 - t); loss = alpha_t (1 - p_t)^gamma ce with
  alpha_t = alpha t + (1 - alpha)(1 - t) (no alpha weighting when alpha < 0).
  """
  x = logits.astype(jnp.float32)
  t = targets.astype(jnp.float32)
  p = jax.nn.sigmoid(x)
  ce = jnp.maximum(x, 0.0) - x * t + jnp.log1p(jnp.exp(-jnp.abs(x)))
  p_t = p * t + (1 - p) * (1 - t)
  loss = ce * (1 - p_t) ** gamma
  if alpha >= 0:
    loss = loss * (alpha * t + (1 - alpha) * (1 - t))
  return loss


def dice_loss(*, logits: jax.Array, targets: jax.Array) -> jax.Array:
  """1 - 2 sum(p y) / max(sum p^2 + sum y^2, 1e-8) over the last axis; p = sigmoid(logits).

  Args:
    logits: [..., N] mask logits (flattened pixels).
    targets: [..., N] soft targets in [0, 1].
  Returns:
    [...] Dice losses.
  """
  p = jax.nn.sigmoid(logits.astype(jnp.float32))
  y = targets.astype(jnp.float32)
  inter = jnp.sum(p * y, axis=-1)
  denom = jnp.sum(p * p, axis=-1) + jnp.sum(y * y, axis=-1)
  return 1.0 - 2.0 * inter / jnp.maximum(denom, 1e-8)


def select_thing_kernels(*, center_logits: jax.Array, kernel_map: jax.Array,
                         classes: jax.Array, candidates: jax.Array, k: int
                         ) -> tuple[jax.Array, jax.Array]:
  """Top-k kernels per instance inside its candidate region, weighted by predicted score.

  Args:
    center_logits: [B, h, w, Nth] thing-centre logits of one level.
    kernel_map: [B, h, w, E] projected thing kernels of that level.
    classes: int [B, M] thing channel per instance.
    candidates: bool [B, M, h, w] candidate positions (level mask > 0.1).
    k: kernels per instance (POS_NUM).
  Returns:
    kernels [B, M, k', E] and weights [B, M, k'] summing to 1 (or 0 without candidates),
    k' = min(k, h*w).
  """
  b, h, w, nth = center_logits.shape
  scores = jax.nn.sigmoid(center_logits).reshape(b, h * w, nth)
  scores = jnp.take_along_axis(jnp.swapaxes(scores, 1, 2), classes[..., None], axis=1)
  scores = scores * candidates.reshape(b, -1, h * w)                       # [B,M,P]
  vals, idx = jax.lax.top_k(scores, min(k, h * w))
  weights = vals / jnp.maximum(vals.sum(-1, keepdims=True), 1e-8)
  m, kk = idx.shape[1:]
  kern = jnp.take_along_axis(kernel_map.reshape(b, h * w, -1), idx.reshape(b, m * kk, 1),
                             axis=1)
  return kern.reshape(b, m, kk, -1), weights


def stuff_kernels_from_masks(*, kernel_map: jax.Array, bias: jax.Array, masks: jax.Array
                             ) -> jax.Array:
  """Stuff kernels: mean over the whole level map of mask * kernel map, plus the bias.

  Args:
    kernel_map: [B, h, w, E] projected (bias-free) stuff kernel map.
    bias: [E] projection bias.
    masks: [B, h, w, Nst] region masks (binary in training, one-hot argmax in inference).
  Returns:
    [B, Nst, E].
  """
  h, w = kernel_map.shape[1:3]
  pooled = jnp.einsum('bhws,bhwe->bse', masks.astype(kernel_map.dtype), kernel_map) / (h * w)
  return pooled + bias


MASK_RESOLUTIONS = targets_lib.MASK_RESOLUTIONS


def _full_thing_dice(kernels, weights, levels, encode, full_masks, *, mask_pairs: int
                     ) -> tuple[jax.Array, jax.Array]:
  """Summed weighted Dice of the thing assignments at input resolution ('full').

  Args:
    kernels: [B, M, L, k, E] selected kernels; weights: [B, M, L, k].
    levels: float [B, M, L] assignments (1 where instance m is trained on level l).
    encode: [B, Hq, Wq, E]; full_masks: float [B, M, 4 Hq, 4 Wq].
    mask_pairs: assignments evaluated per image (P).
  Returns:
    (sum over evaluated assignments of the weighted Dice, assignments dropped for lack of room).
  """
  b, m, nl, k, e = kernels.shape
  flat = levels.reshape(b, m * nl)
  p = min(mask_pairs, m * nl)
  # The first P existing assignments in (instance, level) order: a stable, static selection.
  order = jnp.argsort(-flat, axis=1, stable=True)[:, :p]                 # [B,P]
  chosen = jnp.take_along_axis(flat, order, axis=1)                      # [B,P] 1/0
  kern = jnp.take_along_axis(kernels.reshape(b, m * nl, k, e), order[:, :, None, None], axis=1)
  wts = jnp.take_along_axis(weights.reshape(b, m * nl, k), order[:, :, None], axis=1)
  target = jnp.take_along_axis(full_masks, (order // nl)[:, :, None, None], axis=1)  # [B,P,H,W]
  logits_q = jnp.einsum('bpke,byxe->bpkyx', kern, encode)
  logits = targets_lib.upsample4_2d(logits_q)                            # [B,P,k,H,W]
  dice = dice_loss(logits=logits.reshape(b, p, k, -1),
                   targets=target.reshape(b, p, 1, -1))                  # [B,P,k]
  total = ((dice * wts).sum(-1) * chosen).sum()
  return total, flat.sum() - chosen.sum()


def panoptic_fcn_loss(outputs: dict, targets: dict, *, pos_num: int = 7,
                      pos_weight: float = 1.0, seg_weight: float = 4.0,
                      focal_alpha: float = 0.25, focal_gamma: float = 2.0,
                      mask_resolution: str = 'quarter', mask_pairs: int = 32
                      ) -> tuple[jax.Array, dict]:
  """Total PanopticFCN loss and its parts.

  Args:
    outputs: the model output dict (see `hybrid_jax.models.panoptic_fcn`), batch B.
    targets: `models.panoptic_fcn.targets.build_batch_targets` output for the same (padded) frames.
    pos_num: k, kernels per thing assignment (7 default, 3 in the 400/512 configs).
    pos_weight, seg_weight: lambda_pos (1) and lambda_seg (3 COCO, 4 Cityscapes).
    focal_alpha, focal_gamma: focal loss settings.
    mask_resolution: 'quarter' (official) or 'full' (module docstring; needs the targets'
      ``inst_masks_full`` / ``stuff_masks_full``); mask_pairs: 'full' only.
  Returns:
    (scalar loss, metrics dict of scalars: loss, loss_pos_th, loss_pos_st, loss_seg_th,
    loss_seg_st, num_things (N_th), num_stuff (N_st); with 'full' also mask_pairs_dropped).
  """
  if mask_resolution not in MASK_RESOLUTIONS:
    raise errors.ConfigError(f'seg.mask_resolution={mask_resolution!r}; use one of '
                             f'{MASK_RESOLUTIONS}.')
  full = mask_resolution == 'full'
  if full and 'inst_masks_full' not in targets:
    raise errors.ConfigError("mask_resolution='full' needs targets built with "
                             'TargetSpec(full_masks=True).')
  encode = outputs['encode_feat']
  b, hq, wq, e = encode.shape
  enc = encode.reshape(b, hq * wq, e)
  inst_masks = targets['inst_masks'].reshape(b, -1, hq * wq)             # [B,M,Q]
  stuff_masks = jnp.swapaxes(targets['stuff_masks'].reshape(b, hq * wq, -1), 1, 2)  # [B,S,Q]
  levels = targets['inst_levels'].astype(jnp.float32)                     # [B,M,L]
  present = targets['stuff_present'].astype(jnp.float32)                  # [B,L,S]
  n_th = levels.sum()
  n_st = present.sum()

  if full:
    stuff_full = jnp.moveaxis(targets['stuff_masks_full'], -1, 1)        # [B,S,H,W]
    stuff_full = stuff_full.reshape(b, stuff_full.shape[1], -1)
  pos_th = pos_st = seg_th = seg_st = 0.0
  all_kern, all_weights = [], []
  for l, (inst_logits, stuff_logits) in enumerate(zip(outputs['inst_logits'],
                                                      outputs['stuff_logits'])):
    pos_th += sigmoid_focal_loss(logits=inst_logits, targets=targets['thing_heatmaps'][l],
                                 alpha=focal_alpha, gamma=focal_gamma).sum()
    st = sigmoid_focal_loss(logits=stuff_logits, targets=targets['stuff_maps'][l],
                            alpha=focal_alpha, gamma=focal_gamma)
    pos_st += st.mean(axis=(1, 2)).sum()

    kern, weights = select_thing_kernels(
        center_logits=inst_logits, kernel_map=outputs['thing_kernels'][l],
        classes=targets['inst_classes'], candidates=targets['inst_candidates'][l], k=pos_num)
    if full:  # pad k' = min(k, h*w) to k (weight 0) so that the levels stack
      pad = pos_num - kern.shape[2]
      all_kern.append(jnp.pad(kern, ((0, 0), (0, 0), (0, pad), (0, 0))))
      all_weights.append(jnp.pad(weights, ((0, 0), (0, 0), (0, pad))))
    else:
      logits = jnp.einsum('bmke,bqe->bmkq', kern, enc)
      dice = dice_loss(logits=logits, targets=inst_masks[:, :, None, :])   # [B,M,k]
      seg_th += ((dice * weights).sum(-1) * levels[:, :, l]).sum()

    region = targets['stuff_maps'][l] > 0
    skern = stuff_kernels_from_masks(kernel_map=outputs['stuff_kernels'][l],
                                     bias=outputs['stuff_bias'], masks=region)
    if full:
      slogits = targets_lib.upsample4_2d(jnp.einsum('bse,byxe->bsyx', skern, encode))
      sdice = dice_loss(logits=slogits.reshape(b, slogits.shape[1], -1), targets=stuff_full)
    else:
      slogits = jnp.einsum('bse,bqe->bsq', skern, enc)
      sdice = dice_loss(logits=slogits, targets=stuff_masks)              # [B,S]
    seg_st += (sdice * present[:, l, :]).sum()

  extra = {}
  if full:
    seg_th, dropped = _full_thing_dice(
        jnp.stack(all_kern, axis=2), jnp.stack(all_weights, axis=2), levels, encode,
        targets['inst_masks_full'], mask_pairs=mask_pairs)
    extra['mask_pairs_dropped'] = dropped

  loss_pos_th = pos_weight * pos_th / jnp.maximum(n_th, 1.0)
  loss_pos_st = pos_weight * pos_st / b
  loss_seg_th = seg_weight * seg_th / jnp.maximum(n_th, 1.0)
  loss_seg_st = seg_weight * seg_st / jnp.maximum(n_st, 1.0)
  loss = loss_pos_th + loss_pos_st + loss_seg_th + loss_seg_st
  metrics = {'loss': loss, 'loss_pos_th': loss_pos_th, 'loss_pos_st': loss_pos_st,
             'loss_seg_th': loss_seg_th, 'loss_seg_st': loss_seg_st,
             'num_things': n_th, 'num_stuff': n_st, **extra}
  return loss, metrics


def segmenter_loss_fn(params, batch_stats, batch: dict, rng: jax.Array | None = None, *,
                      model, spec=None
                      ) -> tuple[jax.Array, dict]:
  """PanopticFCN training loss of a batch (differentiate w.r.t. `params`).

  Args:
    params, batch_stats: the model variables (batch_stats: FrozenBN buffers, unchanged).
    batch: {'image': uint8 [B,H,W,3] RGB, 'panoptic': int32 [B,H,W]} (data contract ids).
    rng: unused (no dropout); accepted for a uniform stage signature.
    model: from `models.panoptic_fcn.build.build_segmenter`; spec: its `SegmenterSpec`
      (default ``model.spec``).
  Returns:
    (loss, metrics) as `hybrid_jax.losses.panoptic.panoptic_fcn_loss`.
  """
  del rng
  spec = spec or getattr(model, 'spec', None)
  if spec is None:
    raise errors.ConfigError('This model was not made by build_segmenter; pass its spec.')
  image, pan = batch['image'], batch['panoptic']
  if pan.shape != image.shape[:3]:
    raise errors.FormatError(f"batch['panoptic'] {pan.shape} does not match batch['image'] "
                             f'{image.shape}.')
  x = inputs.preprocess_images(image, spec.input)
  targets = targets_lib.build_batch_targets(inputs.pad_panoptic(pan.astype(jnp.int32)),
                                            spec=spec.targets)
  outputs = model.apply({'params': params, 'batch_stats': batch_stats}, x)
  # A bfloat16 model (mixed precision) computes its loss in float32.
  outputs = jax.tree.map(lambda a: a.astype(jnp.float32)
                         if jnp.issubdtype(a.dtype, jnp.floating) else a, outputs)
  return panoptic_fcn_loss(
      outputs, targets, pos_num=spec.pos_num, pos_weight=spec.pos_weight,
      seg_weight=spec.seg_weight, mask_resolution=spec.mask_resolution,
      mask_pairs=spec.mask_pairs)
