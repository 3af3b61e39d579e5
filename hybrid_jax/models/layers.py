"""Small building blocks shared by the ResNet, the FPN and the PanopticFCN heads (NHWC).

Padding is always explicit and symmetric (``(k - 1) // 2`` on each side), as in PyTorch:
``'SAME'`` pads asymmetrically for stride 2 on even sizes, which would break weight parity.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

Initializer = Callable[..., Any]

# Caffe2 / Detectron2 initialisers, written as flax variance-scaling rules.
# c2_msra_fill: kaiming normal, fan_out, ReLU gain (ResNet and GN-tower convs).
MSRA_FILL = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')
# c2_xavier_fill: kaiming uniform with a=1, i.e. U(+-sqrt(3 / fan_in)) (FPN, P6/P7).
XAVIER_FILL = nn.initializers.variance_scaling(1.0, 'fan_in', 'uniform')
# PyTorch's default Conv2d init: kaiming uniform with a=sqrt(5) -> U(+-sqrt(1 / fan_in)).
TORCH_DEFAULT = nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')
# Output layers of the heads: normal(0, 0.01).
NORMAL_001 = nn.initializers.normal(0.01)

NORM_KINDS = ('frozen_bn', 'gn', 'none')


def gn_groups(channels: int, max_groups: int = 32) -> int:
  """Number of GroupNorm groups: 32 for the R50 widths, fewer for narrow CPU models."""
  return math.gcd(channels, max_groups)


class FrozenBatchNorm(nn.Module):
  """Detectron2's FrozenBatchNorm2d: y = (x - mean) / sqrt(var + eps) * scale + bias.

  All four arrays live in the non-trainable ``batch_stats`` collection (they are buffers in
  Detectron2 too), so an optimiser over ``params`` never touches them. The initial values make
  the layer the identity (var = 1 - eps, as Detectron2 does).
  """
  eps: float = 1e-5

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    scale = self.variable('batch_stats', 'scale', lambda: jnp.ones((c,), jnp.float32))
    bias = self.variable('batch_stats', 'bias', lambda: jnp.zeros((c,), jnp.float32))
    mean = self.variable('batch_stats', 'mean', lambda: jnp.zeros((c,), jnp.float32))
    var = self.variable('batch_stats', 'var', lambda: jnp.full((c,), 1.0 - self.eps, jnp.float32))
    s = scale.value * jax.lax.rsqrt(var.value + self.eps)
    shift = bias.value - mean.value * s
    return x * s.astype(x.dtype) + shift.astype(x.dtype)


def make_norm(kind: str, channels: int, *, name: str = 'norm', max_groups: int = 32) -> nn.Module:
  """'frozen_bn' -> FrozenBatchNorm, 'gn' -> GroupNorm (eps 1e-5 as PyTorch)."""
  if kind == 'frozen_bn':
    return FrozenBatchNorm(name=name)
  if kind == 'gn':
    return nn.GroupNorm(num_groups=gn_groups(channels, max_groups), epsilon=1e-5,
                        use_fast_variance=False, name=name)
  raise ValueError(f'Unknown norm {kind!r}; expected one of {NORM_KINDS}.')


class ConvNormAct(nn.Module):
  """Conv (symmetric padding) -> optional norm -> optional ReLU.

  Parameters: ``conv/kernel`` [k,k,Cin,Cout] (HWIO), ``conv/bias`` when there is no norm,
  ``norm/...``.
  """
  features: int
  kernel_size: int = 3
  stride: int = 1
  norm: str = 'none'
  act: bool = True
  use_bias: bool | None = None      # default: bias only without a norm (Detectron2 rule)
  kernel_init: Initializer = MSRA_FILL
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    p = (self.kernel_size - 1) // 2
    use_bias = (self.norm == 'none') if self.use_bias is None else self.use_bias
    x = nn.Conv(self.features, (self.kernel_size, self.kernel_size), strides=self.stride,
                padding=((p, p), (p, p)), use_bias=use_bias, kernel_init=self.kernel_init,
                dtype=self.dtype, name='conv')(x)
    if self.norm != 'none':
      x = make_norm(self.norm, self.features)(x)
    if self.act:
      x = nn.relu(x)
    return x


def append_coords(x: jax.Array) -> jax.Array:
  """[B,H,W,C] -> [B,H,W,C+2]: channel C = linspace(-1,1,H) (row), C+1 = linspace(-1,1,W).

  The order (features first, then row, then column coordinate) matches PanopticFCN's CoordConv,
  so input-channel slices of converted weights line up.
  """
  b, h, w, _ = x.shape
  ys = jnp.linspace(-1.0, 1.0, h, dtype=x.dtype)
  xs = jnp.linspace(-1.0, 1.0, w, dtype=x.dtype)
  yy = jnp.broadcast_to(ys[None, :, None, None], (b, h, w, 1))
  xx = jnp.broadcast_to(xs[None, None, :, None], (b, h, w, 1))
  return jnp.concatenate([x, yy, xx], axis=-1)


def upsample_nearest2x(x: jax.Array) -> jax.Array:
  """Nearest-neighbour x2 upsampling of [B,H,W,C] (the FPN top-down path)."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def resize_bilinear(x: jax.Array, height: int, width: int) -> jax.Array:
  """Bilinear resize of [..., H, W, C] like torch ``align_corners=False`` without antialias."""
  shape = x.shape[:-3] + (height, width, x.shape[-1])
  return jax.image.resize(x, shape, method='linear', antialias=False)


def max_pool_3x3_s2(x: jax.Array) -> jax.Array:
  """The ResNet stem pool: 3x3, stride 2, padding 1 (-inf padding)."""
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


def bilinear_sample(img, x, y):
  """Samples img [H, W, C] at float pixel coordinates x, y [...] -> [..., C]; border-clamped."""
  img = jnp.asarray(img)
  h, w, _ = img.shape
  x = jnp.clip(x, 0.0, w - 1.0)
  y = jnp.clip(y, 0.0, h - 1.0)
  x0 = jnp.floor(x).astype(jnp.int32)
  y0 = jnp.floor(y).astype(jnp.int32)
  x1 = jnp.minimum(x0 + 1, w - 1)
  y1 = jnp.minimum(y0 + 1, h - 1)
  fx = (x - x0)[..., None]
  fy = (y - y0)[..., None]
  top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
  bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
  return top * (1 - fy) + bottom * fy
