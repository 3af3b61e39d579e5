"""RAFT training pieces: the sequence loss, EPE metrics and the official optimiser recipe.

Reference raft.md §2.9-2.10 (princeton-vl/RAFT train.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

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


def onecycle_schedule(*, peak_lr: float, total_steps: int, pct_start: float = 0.05,
                      div_factor: float = 25.0, final_div_factor: float = 1e4) -> optax.Schedule:
  """torch.optim.lr_scheduler.OneCycleLR(anneal_strategy='linear', three_phase=False).

  Rises linearly from peak/div_factor to peak until step pct_start*T - 1, then falls linearly
  to peak/div_factor/final_div_factor at step T - 1 (step = optimizer updates done so far).
  """
  init_lr = peak_lr / div_factor
  min_lr = init_lr / final_div_factor
  end_up = float(pct_start * total_steps) - 1.0
  end_down = float(total_steps - 1)

  def schedule(count):
    s = jnp.asarray(count, jnp.float32)
    up = init_lr + (peak_lr - init_lr) * s / max(end_up, 1e-12)
    down = peak_lr + (min_lr - peak_lr) * (s - end_up) / (end_down - end_up)
    return jnp.where(s <= end_up, up, down)
  return schedule


def raft_optimizer(*, learning_rate: float, num_steps: int, weight_decay: float,
                   epsilon: float = 1e-8, grad_clip: float = 1.0, pct_start: float = 0.05,
                   extra_steps: int = 100) -> optax.GradientTransformation:
  """The official recipe: clip global norm, AdamW(eps) with a linear one-cycle schedule.

  The official builds OneCycleLR with total_steps = num_steps + 100 (`extra_steps`), so the rate
  never reaches its floor. Weight decay applies to every parameter (biases and BN included).
  Official stages: chairs lr 4e-4 wd 1e-4; things 1.25e-4 / 1e-4; sintel 1.25e-4 / 1e-5;
  kitti 1e-4 / 1e-5 (100k steps each, kitti 50k); gamma 0.8 then 0.85 for sintel/kitti.
  """
  sched = onecycle_schedule(peak_lr=learning_rate, total_steps=num_steps + extra_steps,
                            pct_start=pct_start)
  return optax.chain(optax.clip_by_global_norm(grad_clip),
                     optax.adamw(sched, b1=0.9, b2=0.999, eps=epsilon, weight_decay=weight_decay))
