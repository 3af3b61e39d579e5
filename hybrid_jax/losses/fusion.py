"""The fusion conv's loss: row-softmax cross-entropy of the fused matrix (§III.D)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hybrid_jax.losses import tracking as tracking_losses
from hybrid_jax.models import fusion


def fusion_loss(params, *, inst, pix, target, valid_prev, valid_cur):
  """Row-softmax cross-entropy of the fused matrix against ground-truth matches.

  Args:
    params: FusionConv params.
    inst, pix: float [B, M, N] instance and pixel matrices.
    target: int [B, M] matched column per row (-1: no counterpart, row ignored).
    valid_prev: bool [B, M]; valid_cur: bool [B, N].

  Returns:
    (mean loss over counted rows, {'accuracy'}). Softmax is shift-invariant, so the bias
    keeps its initial 0 and the 1e-5 threshold keeps its meaning (a score above it needs
    evidence).
  """
  fused = jax.vmap(lambda a, b: fusion.fuse(params, a, b))(inst, pix)
  loss, acc, count = jax.vmap(tracking_losses.masked_row_ce)(fused, target, valid_prev,
                                                             valid_cur)
  total = jnp.maximum(count.sum(), 1)
  return (loss * count).sum() / total, {'accuracy': (acc * count).sum() / total}
