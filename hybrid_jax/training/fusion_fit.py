"""Fitting the 1x1 fusion conv's three numbers on matrices of training pairs (full batch)."""

from __future__ import annotations

import jax
import optax

from hybrid_jax.losses import fusion as fusion_losses
from hybrid_jax.models import fusion


def fit_fusion(inst, pix, target, valid_prev, valid_cur, *, steps: int = 200,
               learning_rate: float = 1e-2, params=None):
  """Trains the fusion conv on ground-truth matches (full-batch Adam); returns (params, losses).

  Inputs as `losses.fusion.fusion_loss` (batched [B, M, N] matrices, [B, M] targets). The
  matrices come from running the instance and pixel trackers on training pairs, so the three
  numbers learn how much to trust each cue. Starts from the paper's plain sum.
  """
  params = fusion.init_fusion_params() if params is None else params
  opt = optax.adam(learning_rate)
  state = opt.init(params)

  def loss_fn(p):
    return fusion_losses.fusion_loss(p, inst=inst, pix=pix, target=target,
                                     valid_prev=valid_prev, valid_cur=valid_cur)

  @jax.jit
  def step(params, state):
    (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state, loss

  losses = []
  for _ in range(steps):
    params, state, loss = step(params, state)
    losses.append(float(loss))
  return params, losses
