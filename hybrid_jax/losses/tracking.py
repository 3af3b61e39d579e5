"""Instance-tracker losses: the differentiable matching layer (DML) and its comparisons.

DML (§III.B, eqs. 4–6): p(j | i) = softmax over the valid instances j of frame t of M_i·N_j,
trained with cross-entropy against the ground-truth counterpart of each instance i of frame
t-δ (eq. 6 with y = 1 at the true column: -log p(j* | i), averaged over rows).

Instances of frame t-δ with no counterpart in frame t (left the view, occluded) are handled
by `no_match`:
  'mask'    (default) their rows are left out of the loss. Faithful to eq. 4, whose softmax
            runs over frame-t instances only and so has no slot for "none"; at inference the
            threshold, mutual check and temporal memory deal with such instances.
  'dustbin' an extra column with a learned logit (``dustbin_logit``, stored in the
            embedding head's params) is appended to every row, and rows without a
            counterpart target it, so the embedding also learns to be dissimilar to everything.

Comparison losses for the paper's Fig. 5, same signature: 'contrastive' (pairwise,
margin-hinged squared distance) and 'triplet' (hardest negative per anchor). `LOSSES` maps
names to functions; every loss returns ``(loss, metrics)`` with ``metrics['count']`` the
number of rows (or pairs) that contributed, used to weight the batched mean.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from hybrid_jax import errors
from hybrid_jax.tracking import frame_instances as instances_lib

_NEG = jnp.finfo(jnp.float32).min


def masked_row_ce(scores, target, valid_prev, valid_cur):
  """Mean over rows with a target of -log softmax_j(scores[i])[target[i]] over valid columns.

  Args:
    scores: float [M, N] logits; target: int [M] in 0..N-1, or -1 (row ignored);
    valid_prev: bool [M]; valid_cur: bool [N].

  Returns:
    (loss, accuracy, count): scalars; count = number of rows that contributed.
  """
  logits = jnp.where(valid_cur[None, :], scores.astype(jnp.float32), _NEG)
  logp = jax.nn.log_softmax(logits, axis=-1)
  rows = valid_prev & (target >= 0)
  safe_t = jnp.clip(target, 0, scores.shape[1] - 1)
  nll = -jnp.take_along_axis(logp, safe_t[:, None], axis=1)[:, 0]
  count = rows.sum()
  denom = jnp.maximum(count, 1)
  loss = jnp.where(rows, nll, 0.0).sum() / denom
  acc = ((jnp.argmax(logits, axis=-1) == target) & rows).sum() / denom
  return loss, acc, count


def dml_loss(emb_prev, emb_cur, *, valid_prev, valid_cur, target, no_match: str = 'mask',
             dustbin_logit=0.0):
  """DML cross-entropy for one frame pair.

  Args:
    emb_prev: float [M, D] embeddings of frame t-δ; emb_cur: float [N, D] of frame t.
    valid_prev: bool [M]; valid_cur: bool [N].
    target: int [M] index of the counterpart in 0..N-1, or -1 for "no counterpart".
    no_match: 'mask' or 'dustbin' (module docstring).
    dustbin_logit: scalar logit of the "no counterpart" column (used by 'dustbin').

  Returns:
    (loss, {'accuracy', 'count'}).
  """
  logits = jnp.matmul(emb_prev.astype(jnp.float32), emb_cur.astype(jnp.float32).T,
                      precision=jax.lax.Precision.HIGHEST)
  if no_match == 'mask':
    loss, acc, count = masked_row_ce(logits, target, valid_prev, valid_cur)
  elif no_match == 'dustbin':
    m, n = logits.shape
    bin_col = jnp.broadcast_to(jnp.asarray(dustbin_logit, jnp.float32), (m, 1))
    logits = jnp.concatenate([logits, bin_col], axis=1)
    target = jnp.where(target >= 0, target, n)
    loss, acc, count = masked_row_ce(logits, target, valid_prev,
                                     jnp.concatenate([valid_cur, jnp.ones((1,), bool)]))
  else:
    raise errors.ConfigError(f"Unknown no_match {no_match!r}; use 'mask' or 'dustbin'.")
  return loss, {'accuracy': acc, 'count': count}


def _sq_dists(a, b):
  """Squared euclidean distances [M, N] between rows of a [M, D] and b [N, D]."""
  a = a.astype(jnp.float32)
  b = b.astype(jnp.float32)
  d = (jnp.sum(a * a, 1)[:, None] + jnp.sum(b * b, 1)[None, :]
       - 2.0 * jnp.matmul(a, b.T, precision=jax.lax.Precision.HIGHEST))
  return jnp.maximum(d, 0.0)


def contrastive_loss(emb_prev, emb_cur, *, valid_prev, valid_cur, target, margin: float = 1.0,
                     **unused):
  """Pairwise contrastive loss over all valid (i, j): y d² + (1 - y) max(0, margin - d)².

  y = 1 for the ground-truth pair. A row without a counterpart contributes negatives only.
  """
  del unused
  d2 = _sq_dists(emb_prev, emb_cur)
  d = jnp.sqrt(d2 + 1e-12)
  n = emb_cur.shape[0]
  pos = target[:, None] == jnp.arange(n)[None, :]
  pair_ok = valid_prev[:, None] & valid_cur[None, :]
  per = jnp.where(pos, d2, jnp.square(jnp.maximum(margin - d, 0.0)))
  count = pair_ok.sum()
  loss = jnp.where(pair_ok, per, 0.0).sum() / jnp.maximum(count, 1)
  nearest = jnp.argmin(jnp.where(valid_cur[None, :], d2, jnp.inf), axis=1)
  rows = valid_prev & (target >= 0)
  acc = ((nearest == target) & rows).sum() / jnp.maximum(rows.sum(), 1)
  return loss, {'accuracy': acc, 'count': count}


def triplet_loss(emb_prev, emb_cur, *, valid_prev, valid_cur, target, margin: float = 1.0,
                 **unused):
  """Triplet loss with the hardest negative: max(0, d(i, j*) - min_{j != j*} d(i, j) + margin).

  Anchors are rows with a counterpart and at least one other valid instance in frame t.
  """
  del unused
  d = jnp.sqrt(_sq_dists(emb_prev, emb_cur) + 1e-12)
  n = emb_cur.shape[0]
  pos = target[:, None] == jnp.arange(n)[None, :]
  d_pos = jnp.where(pos & valid_cur[None, :], d, 0.0).sum(1)
  negs = valid_cur[None, :] & ~pos
  d_neg = jnp.min(jnp.where(negs, d, jnp.inf), axis=1)
  rows = valid_prev & (target >= 0) & negs.any(1)
  per = jnp.maximum(d_pos - jnp.where(rows, d_neg, 0.0) + margin, 0.0)
  count = rows.sum()
  loss = jnp.where(rows, per, 0.0).sum() / jnp.maximum(count, 1)
  acc = (rows & (d_pos < d_neg)).sum() / jnp.maximum(count, 1)
  return loss, {'accuracy': acc, 'count': count}


LOSSES: dict[str, Callable] = {
    'dml': dml_loss,
    'contrastive': contrastive_loss,
    'triplet': triplet_loss,
}


def get_loss(name: str) -> Callable:
  if name not in LOSSES:
    raise errors.ConfigError(f'Unknown tracking loss {name!r}; choose one of {sorted(LOSSES)}.')
  return LOSSES[name]


def batched_loss(name: str, emb_prev, emb_cur, *, valid_prev, valid_cur, target, **kwargs):
  """The named loss over a batch of frame pairs ([B, M, D], [B, N, D], [B, M], [B, N], [B, M]).

  Pairs are weighted by how many rows (pairs, for contrastive) they contribute, so a frame pair
  with many instances counts more than an almost empty one, and an empty pair counts zero.
  """
  fn = get_loss(name)
  loss, metrics = jax.vmap(lambda a, b, va, vb, t: fn(a, b, valid_prev=va, valid_cur=vb,
                                                      target=t, **kwargs))(
      emb_prev, emb_cur, valid_prev, valid_cur, target)
  count = metrics['count']
  total = jnp.maximum(count.sum(), 1)
  return (loss * count).sum() / total, {
      'accuracy': (metrics['accuracy'] * count).sum() / total, 'count': count.sum()}


def track_loss_fn(params, batch, rng, *, model, loss_name: str = 'dml', no_match: str = 'mask',
                  **loss_kwargs):
  """Loss of the embedding head on a batch of frame pairs; for jax.value_and_grad.

  Args:
    params: the EmbeddingHead parameters (holds 'dustbin_logit' for no_match='dustbin').
    batch: dict of arrays, B frame pairs (see `make_pair_batch`): image_prev, image_cur
      [B, H, W, 3]; masks_prev, masks_cur bool [B, N, H, W]; boxes_prev, boxes_cur [B, N, 4];
      valid_prev, valid_cur bool [B, N]; target int32 [B, N] (-1: no counterpart); with a
      head whose roi_input is not 'image', features_prev, features_cur float [B, h, w, E]
      (the frozen segmenter's maps of the two frames).
    rng: unused (the head has no dropout); kept for the common loss-function signature.
    model: the EmbeddingHead module.
    loss_name: a key of LOSSES.
    no_match: DML no-counterpart rule ('mask' | 'dustbin').
    **loss_kwargs: e.g. margin for contrastive/triplet.

  Returns:
    (loss, metrics).
  """
  del rng
  embed = jax.vmap(lambda img, m, b, v, f: model.apply({'params': params}, img, m, b, v, f))
  emb_prev = embed(batch['image_prev'], batch['masks_prev'], batch['boxes_prev'],
                   batch['valid_prev'], batch.get('features_prev'))
  emb_cur = embed(batch['image_cur'], batch['masks_cur'], batch['boxes_cur'], batch['valid_cur'],
                  batch.get('features_cur'))
  if loss_name == 'dml':
    loss_kwargs = dict(loss_kwargs, no_match=no_match,
                       dustbin_logit=params.get('dustbin_logit', 0.0))
  return batched_loss(loss_name, emb_prev, emb_cur, valid_prev=batch['valid_prev'],
                      valid_cur=batch['valid_cur'], target=batch['target'], **loss_kwargs)


def pair_targets(seg_ids_prev, seg_ids_cur) -> np.ndarray:
  """Ground-truth correspondence: for each slot of t-δ, the slot of t with the same segment id.

  Args:
    seg_ids_prev: int [M] panoptic ids per slot (-1 padding); seg_ids_cur: int [N].

  Returns:
    int32 [M]: index into frame t's slots, or -1 (padding, or no counterpart).
  """
  prev = np.asarray(seg_ids_prev)
  cur = np.asarray(seg_ids_cur)
  eq = (prev[:, None] == cur[None, :]) & (prev[:, None] >= 0)
  return np.where(eq.any(1), eq.argmax(1), -1).astype(np.int32)


def make_pair_batch(frames, panoptic, pairs, *, categories, max_instances: int):
  """A training batch of frame pairs from one or more clips' ground truth (numpy).

  Args:
    frames: uint8 [T, H, W, 3] (or a list of such clips, one per pair).
    panoptic: int [T, H, W] (or a list) with track ids consistent over the clip.
    pairs: list of (t_prev, t_cur) frame indices (or (clip, t_prev, t_cur) with lists).
    categories: category table (things are tracked; stuff is not an instance).
    max_instances: slot count N.

  Returns:
    dict as `track_loss_fn` expects.
  """
  keys = ('image_prev', 'image_cur', 'masks_prev', 'masks_cur', 'boxes_prev', 'boxes_cur',
          'valid_prev', 'valid_cur', 'target')
  out = {k: [] for k in keys}
  for pair in pairs:
    if len(pair) == 3:
      c, tp, tc = pair
      fr, pan = frames[c], panoptic[c]
    else:
      tp, tc = pair
      fr, pan = frames, panoptic
    ip, sp = instances_lib.instances_from_panoptic(pan[tp], categories, max_instances)
    ic, sc = instances_lib.instances_from_panoptic(pan[tc], categories, max_instances)
    out['image_prev'].append(np.asarray(fr[tp]))
    out['image_cur'].append(np.asarray(fr[tc]))
    for suffix, inst in (('prev', ip), ('cur', ic)):
      out[f'masks_{suffix}'].append(inst.masks)
      out[f'boxes_{suffix}'].append(inst.boxes)
      out[f'valid_{suffix}'].append(inst.valid)
    out['target'].append(pair_targets(sp, sc))
  return {k: np.stack(v) for k, v in out.items()}
