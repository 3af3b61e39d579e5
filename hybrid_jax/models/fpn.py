"""FPN with P6/P7 from P5 (PanopticFCN's ``LastLevelP6P7fromP5``) and the Semantic-FPN merge.

FPN: L5 = lateral5(C5); L_k = lateral_k(C_k) + nearest_x2(L_{k+1}); P_k = output_k(L_k)
(upsampling uses L, not P); P6 = conv3x3 s2 (P5); P7 = conv3x3 s2 (relu(P6)); P6 is returned
without ReLU. No norm, so every conv has a bias (Detectron2 ``FPN.NORM=""``).

Semantic FPN: per input P_k a tower of max(1, log2(stride) - 2) blocks of conv3x3 -> GN -> ReLU,
each followed by a bilinear x2 upsample for strides > 4; the four outputs are summed
(no predictor conv). Output: ``dim`` channels at stride 4.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from hybrid_jax.models import layers


class FPN(nn.Module):
  """res2..res5 -> {'p2': stride 4, ..., 'p7': stride 128}, each [B, h, w, dim].

  Parameters: ``lateral{2..5}``, ``output{2..5}``, ``p6``, ``p7`` (each ``kernel`` + ``bias``).
  """
  dim: int = 256
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, feats: dict[str, jax.Array]) -> dict[str, jax.Array]:
    conv = lambda k, s, name: nn.Conv(self.dim, (k, k), strides=s,
                                      padding=((k // 2, k // 2),) * 2,
                                      kernel_init=layers.XAVIER_FILL, dtype=self.dtype, name=name)
    out = {}
    prev = None
    for lvl in (5, 4, 3, 2):
      lat = conv(1, 1, f'lateral{lvl}')(feats[f'res{lvl}'])
      if prev is not None:
        up = layers.upsample_nearest2x(prev)
        if up.shape[1:3] != lat.shape[1:3]:
          raise ValueError(f'FPN sizes do not match ({up.shape} vs {lat.shape}): pad the input '
                           'to a multiple of 32.')
        lat = lat + up
      prev = lat
      out[f'p{lvl}'] = conv(3, 1, f'output{lvl}')(lat)
    p6 = conv(3, 2, 'p6')(out['p5'])
    out['p6'] = p6
    out['p7'] = conv(3, 2, 'p7')(nn.relu(p6))
    return {k: out[k] for k in ('p2', 'p3', 'p4', 'p5', 'p6', 'p7')}


class SemanticFPN(nn.Module):
  """P2..P5 -> [B, H/4, W/4, dim].

  Parameters: ``p{2..5}_{j}`` (``conv/kernel``, ``norm/{scale,bias}``), j = block index.
  """
  dim: int = 256
  norm: str = 'gn'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, feats: dict[str, jax.Array]) -> jax.Array:
    total = None
    for lvl in (2, 3, 4, 5):
      x = feats[f'p{lvl}']
      for j in range(max(1, lvl - 2)):
        x = layers.ConvNormAct(self.dim, 3, 1, norm=self.norm, act=True, use_bias=False,
                               dtype=self.dtype, name=f'p{lvl}_{j}')(x)
        if lvl > 2:
          x = layers.resize_bilinear(x, 2 * x.shape[1], 2 * x.shape[2])
      total = x if total is None else total + x
    return total
