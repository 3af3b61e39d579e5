"""Deformable convolution (DCN v1 and modulated v2) in JAX: gather-based, NHWC.

Conventions follow Detectron2's CUDA kernel and ``torchvision.ops.deform_conv2d`` so that
converted weights and offsets mean the same thing:

- offsets ``[B, Ho, Wo, 2 * G * kh * kw]``: for offset group g and kernel tap k = i * kw + j
  (row-major), channel ``g*2*K + 2*k`` is dy (rows) and ``g*2*K + 2*k + 1`` is dx (columns),
  in input pixels;
- modulation mask ``[B, Ho, Wo, G * K]``, channel ``g*K + k`` (v2 only; v1 uses 1);
- the sample of tap (i, j) at output (ho, wo) is read at
  ``y = ho*stride - pad + i*dilation + dy``, ``x = wo*stride - pad + j*dilation + dx``
  by bilinear interpolation with zeros outside the image (corners outside contribute 0, the
  weights are not renormalised);
- input channels are split into G contiguous offset groups.

The implementation gathers the four bilinear corners of every tap (``[B, Ho*Wo*K, G, C/G]``
each) and contracts with the kernel reshaped to ``[K*C, O]``; it is differentiable in the
input, the offsets, the mask and the kernel.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from hybrid_jax.models import layers


def _out_size(size: int, k: int, stride: int, padding: int, dilation: int) -> int:
  return (size + 2 * padding - dilation * (k - 1) - 1) // stride + 1


def deform_conv2d(x: jax.Array, offset: jax.Array, kernel: jax.Array, *,
                  mask: jax.Array | None = None, bias: jax.Array | None = None,
                  stride: int = 1, padding: int = 1, dilation: int = 1) -> jax.Array:
  """Deformable convolution.

  Args:
    x: input [B, H, W, C].
    offset: [B, Ho, Wo, 2*G*kh*kw], interleaved (dy, dx) per tap (see module docstring).
    kernel: [kh, kw, C, O] (HWIO; ``torch_weight.transpose(2, 3, 1, 0)``).
    mask: optional modulation [B, Ho, Wo, G*kh*kw] (DCNv2); None for DCNv1.
    bias: optional [O].
    stride, padding, dilation: as in torch (symmetric padding).

  Returns:
    [B, Ho, Wo, O].
  """
  b, h, w, c = x.shape
  kh, kw, cin, o = kernel.shape
  if cin != c:
    raise ValueError(f'kernel expects {cin} input channels, x has {c}.')
  k = kh * kw
  ho = _out_size(h, kh, stride, padding, dilation)
  wo = _out_size(w, kw, stride, padding, dilation)
  if offset.shape[:3] != (b, ho, wo) or offset.shape[-1] % (2 * k):
    raise ValueError(f'offset shape {offset.shape} does not fit output {(b, ho, wo)} and {k} taps.')
  g = offset.shape[-1] // (2 * k)
  if c % g:
    raise ValueError(f'{c} input channels cannot be split into {g} offset groups.')
  off = offset.reshape(b, ho, wo, g, k, 2).astype(jnp.float32)
  taps_i = (jnp.arange(k) // kw) * dilation
  taps_j = (jnp.arange(k) % kw) * dilation
  base_y = (jnp.arange(ho) * stride - padding)[:, None, None, None] + taps_i  # [ho,1,1,K]
  base_x = (jnp.arange(wo) * stride - padding)[None, :, None, None] + taps_j  # [1,wo,1,K]
  py = base_y[None] + off[..., 0]   # [B,ho,wo,G,K]
  px = base_x[None] + off[..., 1]

  # Samples entirely outside (y <= -1 or y >= H, ...) are 0 (the kernels' rule).
  inside = (py > -1) & (py < h) & (px > -1) & (px < w)
  y0 = jnp.floor(py)
  x0 = jnp.floor(px)
  ly = py - y0
  lx = px - x0
  y0 = y0.astype(jnp.int32)
  x0 = x0.astype(jnp.int32)

  xg = x.reshape(b, h * w, g, c // g)

  def gather(yi, xi, wgt):
    valid = inside & (yi >= 0) & (yi < h) & (xi >= 0) & (xi < w)
    idx = jnp.clip(yi, 0, h - 1) * w + jnp.clip(xi, 0, w - 1)        # [B,ho,wo,G,K]
    idx = jnp.moveaxis(idx, 3, -1).reshape(b, ho * wo * k, g)        # [B,N,G]
    vals = jnp.take_along_axis(xg, idx[..., None], axis=1)            # [B,N,G,Cg]
    wgt = jnp.where(valid, wgt, 0.0)
    wgt = jnp.moveaxis(wgt, 3, -1).reshape(b, ho * wo * k, g, 1)
    return vals * wgt.astype(x.dtype)

  cols = (gather(y0, x0, (1 - ly) * (1 - lx)) + gather(y0, x0 + 1, (1 - ly) * lx)
          + gather(y0 + 1, x0, ly * (1 - lx)) + gather(y0 + 1, x0 + 1, ly * lx))
  cols = cols.reshape(b, ho, wo, k, g, c // g)
  if mask is not None:
    if mask.shape != (b, ho, wo, g * k):
      raise ValueError(f'mask shape {mask.shape} != {(b, ho, wo, g * k)}.')
    m = jnp.swapaxes(mask.reshape(b, ho, wo, g, k), 3, 4)             # [B,ho,wo,K,G]
    cols = cols * m[..., None].astype(x.dtype)
  cols = cols.reshape(b, ho, wo, k * c)                               # (tap, channel) order
  out = jnp.einsum('bhwk,ko->bhwo', cols, kernel.reshape(k * c, o).astype(x.dtype))
  if bias is not None:
    out = out + bias.astype(out.dtype)
  return out


class DeformConv(nn.Module):
  """A 3x3 (stride 1, pad 1) deformable conv with its own offset(/mask) predictor.

  ``modulated=True`` is DCNv2 (Detectron2's ``ModulatedDeformConv`` as used by PanopticFCN's
  position head): a plain 3x3 conv predicts 27 channels = 18 offsets + 9 mask logits (sigmoid).
  ``modulated=False`` is DCNv1: 18 offset channels, mask 1.

  Parameters: ``offset/{kernel,bias}`` (the offset conv), ``kernel`` [3,3,Cin,features],
  ``bias`` [features] if use_bias.

  The offset conv is zero-initialised (regular sampling at the start), unlike the official
  PyTorch-default init, because issue #33 reports NaN losses with the latter at small batch.
  """
  features: int
  modulated: bool = True
  use_bias: bool = False
  kernel_init: layers.Initializer = layers.MSRA_FILL
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = 9
    n_off = 3 * k if self.modulated else 2 * k
    om = nn.Conv(n_off, (3, 3), padding=((1, 1), (1, 1)), kernel_init=nn.initializers.zeros,
                 dtype=self.dtype, name='offset')(x)
    offset = om[..., :2 * k]
    mask = jax.nn.sigmoid(om[..., 2 * k:]) if self.modulated else None
    kernel = self.param('kernel', self.kernel_init, (3, 3, x.shape[-1], self.features))
    bias = self.param('bias', nn.initializers.zeros, (self.features,)) if self.use_bias else None
    return deform_conv2d(x, offset, kernel, mask=mask, bias=bias, stride=1, padding=1)
