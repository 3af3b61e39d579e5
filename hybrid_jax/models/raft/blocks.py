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

from hybrid_jax.models.raft import winograd

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


def conv2d(x: Array, kernel: Array, bias: Array | None = None, *, stride: int = 1) -> Array:
  """NHWC conv with PyTorch's symmetric padding (k-1)//2; x [B,H,W,I], kernel [kh,kw,I,O]."""
  kh, kw = kernel.shape[:2]
  y = jax.lax.conv_general_dilated(
      x, kernel.astype(x.dtype), (stride, stride),
      ((((kh - 1) // 2,) * 2), (((kw - 1) // 2,) * 2)),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return y if bias is None else y + bias.astype(x.dtype)


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


# ---- the update block: parameters declared once, iterations as pure functions -------------
#
# The refinement loop runs as a plain `jax.lax.scan` over functions of these arrays (not over
# Flax modules), so that work that does not change between iterations is done once before
# the loop (`prepare_update_block`): the context's share of every GRU gate, the kernel slices
# and the Winograd transforms of the kernels.


def update_block_specs(*, small: bool, hidden: int, context: int, corr_channels: int
                       ) -> dict[str, tuple[tuple[str, int, tuple[int, int], int], ...]]:
  """{group: ((conv name, out features, kernel size, in features), ...)} of the official
  update block without its mask head (motion encoder 'encoder', 'gru', 'flow_head')."""
  if small:
    motion = 82  # 80 conv features + the 2 flow channels
    encoder = (('convc1', 96, (1, 1), corr_channels), ('convf1', 64, (7, 7), 2),
               ('convf2', 32, (3, 3), 64), ('conv', 80, (3, 3), 96 + 32))
    passes = (('', (3, 3)),)
    head = 128
  else:
    motion = 128
    encoder = (('convc1', 256, (1, 1), corr_channels), ('convc2', 192, (3, 3), 256),
               ('convf1', 128, (7, 7), 2), ('convf2', 64, (3, 3), 128),
               ('conv', 126, (3, 3), 192 + 64))
    passes = (('1', (1, 5)), ('2', (5, 1)))
    head = 256
  gru = tuple(('conv' + gate + suffix, hidden, ks, hidden + context + motion)
              for suffix, ks in passes for gate in 'zrq')
  flow_head = (('conv1', head, (3, 3), hidden), ('conv2', 2, (3, 3), head))
  return {'encoder': encoder, 'gru': gru, 'flow_head': flow_head}


class _ConvGroup(nn.Module):
  """Declares the convs of `specs` under their own names; returns {name: (kernel, bias)}."""
  specs: tuple[tuple[str, int, tuple[int, int], int], ...]

  @nn.compact
  def __call__(self) -> dict[str, tuple[Array, Array]]:
    return {name: ConvParams(features, ks, name=name)(in_features)
            for name, features, ks, in_features in self.specs}


class UpdateBlockParams(nn.Module):
  """The update block's parameters (official names, e.g. update_block/gru/convz1/kernel).

  Returns {'encoder' | 'gru' | 'flow_head': {conv name: (kernel, bias)}}.
  """
  small: bool
  hidden: int
  context: int
  corr_channels: int

  @nn.compact
  def __call__(self) -> dict[str, dict[str, tuple[Array, Array]]]:
    specs = update_block_specs(small=self.small, hidden=self.hidden, context=self.context,
                               corr_channels=self.corr_channels)
    return {group: _ConvGroup(s, name=group)() for group, s in specs.items()}


def apply_conv(x: Array, kernel: Array | winograd.Kernel, bias: Array | None = None) -> Array:
  """A prepared conv (`prepare_kernel`): direct for an HWIO kernel, Winograd for a
  `winograd.Kernel`."""
  if isinstance(kernel, winograd.Kernel):
    return winograd.conv(x, kernel, bias)
  return conv2d(x, kernel, bias)


def prepare_kernel(kernel: Array, *, use_winograd: bool) -> Array | winograd.Kernel:
  """The kernel `apply_conv` should get: 3x3, 1x5 and 5x1 kernels in the Winograd domain if
  asked, others as they are."""
  if use_winograd and winograd.supports(kernel.shape):
    return winograd.transform(kernel)
  return kernel


def prepare_update_block(p: dict, inp: Array, *, small: bool, use_winograd: bool) -> dict:
  """The update block's loop-invariant state: {'encoder', 'flow_head': {conv: (kernel,
  bias)}, 'gru': `gru_prepare`}, kernels as `prepare_kernel` makes them."""
  def convs(group):
    return {name: (prepare_kernel(k, use_winograd=use_winograd), b)
            for name, (k, b) in group.items()}
  return {'encoder': convs(p['encoder']), 'flow_head': convs(p['flow_head']),
          'gru': gru_prepare(p['gru'], inp, small=small, use_winograd=use_winograd)}


def motion_features(p: dict, flow: Array, corr: Array, *, small: bool) -> Array:
  """Motion encoder: (flow [B,h,w,2], corr [B,h,w,L]) -> [B,h,w,128] (small: 82), flow last.

  `p`: the prepared 'encoder' convs of `prepare_update_block`.
  """
  relu = jax.nn.relu
  if small:
    cor = relu(apply_conv(corr, *p['convc1']))
  else:
    cor = relu(apply_conv(relu(apply_conv(corr, *p['convc1'])), *p['convc2']))
  flo = relu(apply_conv(relu(apply_conv(flow, *p['convf1'])), *p['convf2']))
  out = relu(apply_conv(jnp.concatenate([cor, flo], -1), *p['conv']))
  return jnp.concatenate([out, flow], -1)


def gru_prepare(p: dict, inp: Array, *, small: bool, use_winograd: bool = False
                ) -> list[dict[str, Array]]:
  """Loop-invariant parts of the GRU, one dict per pass (small: one 3x3; standard: 1x5, 5x1).

  Each gate reads concat([h, inp, motion]) (official channel order). A conv is linear in its
  input channels (zero padding included), so the context's share of the z, r, q gates plus
  their biases is one conv of `inp` computed once ('ctx' [B,h,w,3*hidden]); the loop convolves
  only h and the motion features, with the kernels' matching input rows ('k_zr', 'k_q').
  """
  out = []
  for suffix in ([''] if small else ['1', '2']):
    (kz, bz), (kr, br), (kq, bq) = (p['conv' + g + suffix] for g in 'zrq')
    hidden = kz.shape[-1]
    context = inp.shape[-1]
    ctx_rows = slice(hidden, hidden + context)

    def own_rows(k):  # rows of h and of the motion features
      return jnp.concatenate([k[:, :, :hidden], k[:, :, hidden + context:]], axis=2)
    ctx = conv2d(inp, jnp.concatenate([kz[:, :, ctx_rows], kr[:, :, ctx_rows],
                                       kq[:, :, ctx_rows]], -1), jnp.concatenate([bz, br, bq]))
    k_zr = jnp.concatenate([own_rows(kz), own_rows(kr)], -1)
    out.append({'ctx': ctx, 'k_zr': prepare_kernel(k_zr, use_winograd=use_winograd),
                'k_q': prepare_kernel(own_rows(kq), use_winograd=use_winograd)})
  return out


def gru_step(prepared: list[dict[str, Array]], h: Array, motion: Array) -> Array:
  """One ConvGRU / SepConvGRU update of h [B,h,w,hidden] (`prepared` from `gru_prepare`)."""
  for p in prepared:
    hidden = h.shape[-1]
    zr = jax.nn.sigmoid(apply_conv(jnp.concatenate([h, motion], -1), p['k_zr'])
                        + p['ctx'][..., :2 * hidden])
    z, r = zr[..., :hidden], zr[..., hidden:]
    q = jnp.tanh(apply_conv(jnp.concatenate([r * h, motion], -1), p['k_q'])
                 + p['ctx'][..., 2 * hidden:])
    h = (1.0 - z) * h + z * q
  return h


def flow_head(p: dict, net: Array) -> Array:
  """Flow update [B,h,w,2] (1/8 px) from the hidden state (`p`: prepared 'flow_head')."""
  return apply_conv(jax.nn.relu(apply_conv(net, *p['conv1'])), *p['conv2'])


class MaskHead(nn.Module):
  """Convex-upsampling mask (standard only): 0.25 * conv1x1(relu(conv3x3(net))) -> 576 ch."""

  @nn.compact
  def __call__(self, net: Array) -> Array:
    m = nn.relu(conv(net, 256, 3, name='conv_0'))
    return 0.25 * conv(m, 576, 1, name='conv_2')


def count_params(tree: Any) -> int:
  return int(sum(x.size for x in jax.tree_util.tree_leaves(tree)))
