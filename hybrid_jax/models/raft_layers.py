"""RAFT building blocks (Flax Linen, NHWC): convs with PyTorch padding, encoders, update block.

Module and parameter names mirror the official PyTorch code (reference raft.md §1) so that the
converter is a rename: ``fnet/layer2_0/downsample_0/kernel`` is
``module.fnet.layer2.0.downsample.0.weight``. Every conv pads explicitly as PyTorch does
(k//2 on each side; Flax 'SAME' with stride 2 would pad asymmetrically and shift features).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array


def _torch_uniform(fan_in: int):
  """PyTorch's default Conv2d init, U(+-1/sqrt(fan_in)), for weights and biases alike."""
  bound = 1.0 / math.sqrt(max(fan_in, 1))

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


class ConvParams(nn.Module):
  """Holds one conv's `kernel` [kh, kw, in, out] and `bias` [out]; returns them.

  Kept apart from the application (`conv2d`) so that convs sharing an input can be run as one
  wider conv (GRU gates) while the parameter tree still mirrors the PyTorch modules.
  """
  features: int
  kernel_size: tuple[int, int]
  init: str = 'default'  # 'kaiming' (encoders, official) | 'default' (PyTorch default)

  @nn.compact
  def __call__(self, in_features: int) -> tuple[Array, Array]:
    kh, kw = self.kernel_size
    fan_in = in_features * kh * kw
    if self.init == 'kaiming':  # kaiming_normal_(mode='fan_out', nonlinearity='relu')
      k_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')
    else:
      k_init = _torch_uniform(fan_in)
    kernel = self.param('kernel', k_init, (kh, kw, in_features, self.features))
    bias = self.param('bias', _torch_uniform(fan_in), (self.features,))
    return kernel, bias


def conv2d(x: Array, kernel: Array, bias: Array, *, stride: int = 1) -> Array:
  """NHWC conv with PyTorch's symmetric padding (k-1)//2; x [B,H,W,I], kernel [kh,kw,I,O]."""
  kh, kw = kernel.shape[:2]
  y = jax.lax.conv_general_dilated(
      x, kernel.astype(x.dtype), (stride, stride),
      ((((kh - 1) // 2,) * 2), (((kw - 1) // 2,) * 2)),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return y + bias.astype(x.dtype)


def conv(x: Array, features: int, kernel_size: int | tuple[int, int], *, name: str,
         stride: int = 1, init: str = 'default') -> Array:
  """Declares (in the calling compact module) and applies one conv with bias."""
  ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
  kb = ConvParams(features, ks, init, name=name)(x.shape[-1])
  return conv2d(x, *kb, stride=stride)


def instance_norm(x: Array, eps: float = 1e-5) -> Array:
  """PyTorch InstanceNorm2d defaults: per sample and channel over H, W; biased var; no affine."""
  x32 = x.astype(jnp.float32)
  mean = x32.mean(axis=(1, 2), keepdims=True)
  var = jnp.square(x32 - mean).mean(axis=(1, 2), keepdims=True)
  return ((x32 - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)


def norm(x: Array, kind: str, *, name: str, train: bool = False, freeze_bn: bool = False
         ) -> Array:
  """'instance' | 'batch' | 'none', as the official `norm_fn` (declared in the caller's scope)."""
  if kind == 'instance':
    return instance_norm(x)
  if kind == 'batch':
    # PyTorch momentum 0.1 == Flax momentum 0.9; frozen BN (all stages after Chairs) uses the
    # running statistics even while training.
    return nn.BatchNorm(use_running_average=not train or freeze_bn, momentum=0.9, epsilon=1e-5,
                        use_fast_variance=False, name=name)(x)
  if kind == 'none':
    return x
  raise ValueError(f'unknown norm {kind!r}')


class ResidualBlock(nn.Module):
  """Standard-encoder block: relu(shortcut + relu(n2(c2(relu(n1(c1(x))))))) (note the 2 relus)."""
  planes: int
  norm: str
  stride: int = 1
  train: bool = False
  freeze_bn: bool = False

  @nn.compact
  def __call__(self, x: Array) -> Array:
    nkw = dict(kind=self.norm, train=self.train, freeze_bn=self.freeze_bn)
    y = conv(x, self.planes, 3, stride=self.stride, name='conv1', init='kaiming')
    y = nn.relu(norm(y, **nkw, name='norm1'))
    y = conv(y, self.planes, 3, name='conv2', init='kaiming')
    y = nn.relu(norm(y, **nkw, name='norm2'))
    if self.stride != 1:
      # official: downsample = Sequential(conv1x1, norm3); norm3 is also saved as downsample.1.
      x = conv(x, self.planes, 1, stride=self.stride, name='downsample_0', init='kaiming')
      x = norm(x, **nkw, name='norm3')
    return nn.relu(x + y)


class BottleneckBlock(nn.Module):
  """Small-encoder block: 1x1 (planes/4), 3x3 (stride), 1x1 (planes), each norm + relu."""
  planes: int
  norm: str
  stride: int = 1

  @nn.compact
  def __call__(self, x: Array) -> Array:
    q = self.planes // 4
    # The small model's norms are 'instance' or 'none': parameter-free.
    y = nn.relu(norm(conv(x, q, 1, name='conv1', init='kaiming'), self.norm, name='norm1'))
    y = conv(y, q, 3, stride=self.stride, name='conv2', init='kaiming')
    y = nn.relu(norm(y, self.norm, name='norm2'))
    y = conv(y, self.planes, 1, name='conv3', init='kaiming')
    y = nn.relu(norm(y, self.norm, name='norm3'))
    if self.stride != 1:
      x = conv(x, self.planes, 1, stride=self.stride, name='downsample_0', init='kaiming')
      x = norm(x, self.norm, name='norm4')
    return nn.relu(x + y)


class Encoder(nn.Module):
  """BasicEncoder (small=False) or SmallEncoder (small=True): [B,H,W,3] -> [B,H/8,W/8,out_dim]."""
  out_dim: int
  norm: str
  small: bool = False
  dropout: float = 0.0
  train: bool = False
  freeze_bn: bool = False

  @nn.compact
  def __call__(self, x: Array) -> Array:
    if self.small:
      widths, block = (32, 64, 96), lambda p, s, n: BottleneckBlock(p, self.norm, s, name=n)
      stem = 32
    else:
      widths = (64, 96, 128)
      block = lambda p, s, n: ResidualBlock(p, self.norm, s, self.train, self.freeze_bn, name=n)
      stem = 64
    x = conv(x, stem, 7, stride=2, name='conv1', init='kaiming')
    x = nn.relu(norm(x, self.norm, name='norm1', train=self.train, freeze_bn=self.freeze_bn))
    for i, (planes, stride) in enumerate(zip(widths, (1, 2, 2)), start=1):
      x = block(planes, stride, f'layer{i}_0')(x)
      x = block(planes, 1, f'layer{i}_1')(x)
    x = conv(x, self.out_dim, 1, name='conv2', init='kaiming')
    if self.dropout > 0:  # Dropout2d: whole channels
      x = nn.Dropout(self.dropout, broadcast_dims=(1, 2), deterministic=not self.train)(x)
    return x


class MotionEncoder(nn.Module):
  """Encodes (flow, corr) -> [motion features, flow]; 128 channels (standard) or 82 (small)."""
  small: bool

  @nn.compact
  def __call__(self, flow: Array, corr: Array) -> Array:
    relu = nn.relu
    if self.small:
      cor = relu(conv(corr, 96, 1, name='convc1'))
      flo = relu(conv(flow, 64, 7, name='convf1'))
      flo = relu(conv(flo, 32, 3, name='convf2'))
      out = relu(conv(jnp.concatenate([cor, flo], -1), 80, 3, name='conv'))
    else:
      cor = relu(conv(corr, 256, 1, name='convc1'))
      cor = relu(conv(cor, 192, 3, name='convc2'))
      flo = relu(conv(flow, 128, 7, name='convf1'))
      flo = relu(conv(flo, 64, 3, name='convf2'))
      out = relu(conv(jnp.concatenate([cor, flo], -1), 126, 3, name='conv'))
    return jnp.concatenate([out, flow], -1)


class GRU(nn.Module):
  """ConvGRU (small: one 3x3 pass) or SepConvGRU (standard: a 1x5 then a 5x1 pass)."""
  hidden: int
  small: bool

  def _pass(self, h: Array, x: Array, ks: tuple[int, int], suffix: str) -> Array:
    in_f = h.shape[-1] + x.shape[-1]
    kz, bz = ConvParams(self.hidden, ks, name='convz' + suffix)(in_f)
    kr, br = ConvParams(self.hidden, ks, name='convr' + suffix)(in_f)
    kq, bq = ConvParams(self.hidden, ks, name='convq' + suffix)(in_f)
    hx = jnp.concatenate([h, x], -1)
    # z and r read the same input: one conv with 2*hidden outputs is the same arithmetic,
    # with a larger (faster) matmul.
    zr = jax.nn.sigmoid(conv2d(hx, jnp.concatenate([kz, kr], -1), jnp.concatenate([bz, br])))
    z, r = zr[..., :self.hidden], zr[..., self.hidden:]
    q = jnp.tanh(conv2d(jnp.concatenate([r * h, x], -1), kq, bq))
    return (1.0 - z) * h + z * q

  @nn.compact
  def __call__(self, h: Array, x: Array) -> Array:
    if self.small:
      return self._pass(h, x, (3, 3), '')
    h = self._pass(h, x, (1, 5), '1')
    return self._pass(h, x, (5, 1), '2')


class FlowHead(nn.Module):
  hidden: int

  @nn.compact
  def __call__(self, x: Array) -> Array:
    return conv(nn.relu(conv(x, self.hidden, 3, name='conv1')), 2, 3, name='conv2')


class MaskHead(nn.Module):
  """Convex-upsampling mask (standard only): 0.25 * conv1x1(relu(conv3x3(net))) -> 576 ch."""

  @nn.compact
  def __call__(self, net: Array) -> Array:
    m = nn.relu(conv(net, 256, 3, name='conv_0'))
    return 0.25 * conv(m, 576, 1, name='conv_2')


def count_params(tree: Any) -> int:
  return int(sum(x.size for x in jax.tree_util.tree_leaves(tree)))
