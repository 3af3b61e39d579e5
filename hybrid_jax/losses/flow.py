"""RAFT training pieces: the sequence loss, EPE metrics and the official optimiser recipe.

Reference raft.md §2.9-2.10 (princeton-vl/RAFT train.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

MAX_FLOW = 400.0


def flow_valid_mask(flow_gt: jax.Array, valid: jax.Array | None = None, *,
                    max_flow: float = MAX_FLOW) -> jax.Array:
  """bool [B, H, W]: valid >= 0.5 and |flow_gt| < max_flow (official)."""
  mag = jnp.sqrt(jnp.sum(jnp.square(flow_gt.astype(jnp.float32)), axis=-1))
  ok = mag < max_flow
  if valid is not None:
    ok = ok & (valid.astype(jnp.float32) >= 0.5)
  return ok


def epe_metrics(flow: jax.Array, flow_gt: jax.Array, mask: jax.Array) -> dict[str, jax.Array]:
  """EPE and the fractions of valid pixels with EPE < 1, 3, 5 px.

  Args:
    flow, flow_gt: float [B, H, W, 2]; mask: bool [B, H, W] (pixels that count).
  Returns:
    {'epe', '1px', '3px', '5px'}: float32 scalars (0 when no pixel is valid).
  """
  epe = jnp.sqrt(jnp.sum(jnp.square(flow.astype(jnp.float32) - flow_gt), axis=-1))
  w = mask.astype(jnp.float32)
  n = jnp.maximum(w.sum(), 1.0)
  out = {'epe': (epe * w).sum() / n}
  for t in (1, 3, 5):
    out[f'{t}px'] = ((epe < t) * w).sum() / n
  return out


def sequence_loss(flow_preds: jax.Array, flow_gt: jax.Array, valid: jax.Array | None = None,
                  *, gamma: float = 0.8, max_flow: float = MAX_FLOW
                  ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """gamma-weighted L1 over the refinement iterations (official `sequence_loss`).

  L = sum_t gamma^(N-1-t) * mean_{b,y,x,c}(valid * |flow_t - flow_gt|), t = 0..N-1: the mean
  runs over ALL pixels and both channels (invalid ones count as zeros; the official does not
  renormalise by the number of valid pixels); the last prediction has weight 1.

  Args:
    flow_preds: float [N, B, H, W, 2] up-sampled predictions of every iteration (px).
    flow_gt: float [B, H, W, 2] ground truth, x first.
    valid: optional bool/float [B, H, W]; pixels with valid < 0.5 are ignored.
    gamma: decay (0.8; 0.85 in the official Sintel/KITTI fine-tuning).
    max_flow: ground-truth magnitudes >= this are ignored (400 px).
  Returns:
    (loss scalar float32, metrics of the last prediction: epe, 1px, 3px, 5px).
  """
  flow_gt = flow_gt.astype(jnp.float32)
  mask = flow_valid_mask(flow_gt, valid, max_flow=max_flow)
  n = flow_preds.shape[0]
  weights = gamma ** jnp.arange(n - 1, -1, -1, dtype=jnp.float32)
  err = jnp.abs(flow_preds.astype(jnp.float32) - flow_gt[None]) * mask[None, ..., None]
  per_iter = err.reshape(n, -1).mean(axis=1)
  loss = jnp.sum(weights * per_iter)
  return loss, epe_metrics(flow_preds[-1], flow_gt, mask)
