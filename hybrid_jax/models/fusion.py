"""Fusion module: a 1×1 convolution that merges the instance and pixel matrices (§III.D).

The two m×n matrices are stacked as two channels of an m×n "image" and mixed by a 1×1
convolution (2 channels -> 1). Initialised to the paper's plain sum (weights (1, 1), bias 0),
so an untrained fusion is exactly "instance probability + dice". `training.fusion_fit` fits
the three numbers on held-out train clips (`losses.fusion.fusion_row_loss`); a fitted fusion's
output is a logit whose sign is the match decision, so the tracker's thresholds (1e-5, θ) then
mean "more likely a match than none".
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


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


def fusion_params(instance: float, pixel: float, bias: float = 0.0):
  """Parameters of w_inst * instance + w_pix * pixel + bias (e.g. one cue alone, to compare)."""
  return {'conv': {'kernel': np.array([instance, pixel], np.float32).reshape(1, 1, 2, 1),
                   'bias': np.array([bias], np.float32)}}


def fuse(params, inst, pix):
  """Applies the fusion conv; `params` from `init_fusion_params` or training."""
  return FusionConv().apply({'params': params}, inst, pix)
