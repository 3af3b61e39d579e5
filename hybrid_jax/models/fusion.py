"""Fusion module: a 1×1 convolution that merges the instance and pixel matrices (§III.D).

The two m×n matrices are stacked as two channels of an m×n "image" and mixed by a 1×1
convolution (2 channels -> 1). Initialised to the paper's plain sum (weights (1, 1), bias 0),
so an untrained fusion is exactly "instance probability + dice"; `fusion_loss` trains the
three numbers on ground-truth matches.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from hybrid_jax.losses.tracking import masked_row_ce


class FusionConv(nn.Module):
  """[M, N] instance matrix and [M, N] pixel matrix -> fused [M, N] (1×1 conv, 2 -> 1)."""

  @nn.compact
  def __call__(self, inst, pix):
    x = jnp.stack([inst, pix], axis=-1)[None].astype(jnp.float32)  # NHWC [1, M, N, 2]
    y = nn.Conv(1, (1, 1), kernel_init=nn.initializers.ones, bias_init=nn.initializers.zeros,
                name='conv')(x)
    return y[0, ..., 0]


def init_fusion_params():
  """Parameters of the plain sum: conv kernel [1, 1, 2, 1] = 1, bias [1] = 0."""
  return FusionConv().init(jax.random.PRNGKey(0), jnp.zeros((1, 1)), jnp.zeros((1, 1)))['params']


def fuse(params, inst, pix):
  """Applies the fusion conv; `params` from `init_fusion_params` or training."""
  return FusionConv().apply({'params': params}, inst, pix)


def fusion_loss(params, inst, pix, target, valid_prev, valid_cur):
  """Row-softmax cross-entropy of the fused matrix against ground-truth matches.

  Batched over a leading axis: inst, pix [B, M, N]; target [B, M] (-1: no counterpart, row
  ignored); valid_prev [B, M]; valid_cur [B, N]. Softmax is shift-invariant, so the bias keeps
  its initial 0 and the 1e-5 threshold keeps its meaning (a score above it needs evidence).
  """
  fused = jax.vmap(lambda a, b: fuse(params, a, b))(inst, pix)
  loss, acc, count = jax.vmap(masked_row_ce)(fused, target, valid_prev, valid_cur)
  total = jnp.maximum(count.sum(), 1)
  return (loss * count).sum() / total, {'accuracy': (acc * count).sum() / total}


def fit_fusion(inst, pix, target, valid_prev, valid_cur, *, steps: int = 200,
               learning_rate: float = 1e-2, params=None):
  """Trains the fusion conv on ground-truth matches (full-batch Adam); returns (params, losses).

  Inputs as `fusion_loss` (batched). The matrices come from running the instance and pixel
  trackers on training clips with ground-truth instances, so the three numbers learn how much
  to trust each cue.
  """
  params = init_fusion_params() if params is None else params
  opt = optax.adam(learning_rate)
  state = opt.init(params)

  @jax.jit
  def step(params, state):
    (loss, _), grads = jax.value_and_grad(fusion_loss, has_aux=True)(
        params, inst, pix, target, valid_prev, valid_cur)
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state, loss

  losses = []
  for _ in range(steps):
    params, state, loss = step(params, state)
    losses.append(float(loss))
  return params, losses
