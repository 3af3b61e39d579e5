"""ResNet backbones (NHWC) returning res2..res5 (strides 4, 8, 16, 32).

Selected by name through `RESNETS`:

- ``resnet50``: Detectron2/torchvision ResNet-50 (bottleneck blocks 3-4-6-3) with
  FrozenBatchNorm, for converted ImageNet / PanopticFCN weights. ``stride_in_1x1`` places the
  stride-2 of the first block of res3..res5 in the 1x1 conv (Detectron2 MSRA weights) or in
  the 3x3 conv (torchvision); it must follow the source of the weights.
- ``resnet_small``: ResNet-18-like basic blocks (2-2-2-2) with widths 32..256 and GroupNorm,
  for CPU training from scratch (FrozenBN with identity statistics would be no norm at all).
- ``resnet_tiny``: one basic block per stage, widths 8..32, GroupNorm (tests).

Variable layout (Detectron2 names with '.' -> '_' at block level), e.g.
``params/res3_0/conv1/conv/kernel`` [1,1,256,128] and
``batch_stats/res3_0/conv1/norm/{scale,bias,mean,var}`` [128] (FrozenBN), or
``params/res3_0/conv1/norm/{scale,bias}`` (GroupNorm).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from hybrid_jax import errors
from hybrid_jax.models import layers


@dataclasses.dataclass(frozen=True)
class ResNetSpec:
  block: str                        # 'bottleneck' | 'basic'
  depths: tuple[int, int, int, int]
  stem_width: int
  widths: tuple[int, int, int, int]  # inner (bottleneck) width per stage
  expansion: int                    # out channels = width * expansion
  norm: str                         # default norm: 'frozen_bn' | 'gn'

  @property
  def out_channels(self) -> dict[str, int]:
    return {f'res{i + 2}': w * self.expansion for i, w in enumerate(self.widths)}


RESNETS: dict[str, ResNetSpec] = {
    'resnet50': ResNetSpec('bottleneck', (3, 4, 6, 3), 64, (64, 128, 256, 512), 4, 'frozen_bn'),
    'resnet_small': ResNetSpec('basic', (2, 2, 2, 2), 32, (32, 64, 128, 256), 1, 'gn'),
    'resnet_tiny': ResNetSpec('basic', (1, 1, 1, 1), 8, (8, 16, 16, 32), 1, 'gn'),
}


def get_spec(name: str) -> ResNetSpec:
  if name not in RESNETS:
    raise errors.ConfigError(f'Unknown backbone {name!r}; choose one of {sorted(RESNETS)}.')
  return RESNETS[name]


class Bottleneck(nn.Module):
  """1x1 -> 3x3 -> 1x1 (+ projection shortcut where shapes change), ReLU after the sum."""
  width: int
  out_channels: int
  stride: int
  stride_in_1x1: bool
  norm: str
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    s1, s3 = (self.stride, 1) if self.stride_in_1x1 else (1, self.stride)
    cna = lambda f, k, s, act, name: layers.ConvNormAct(
        f, k, s, norm=self.norm, act=act, use_bias=False, dtype=self.dtype, name=name)
    if x.shape[-1] != self.out_channels or self.stride != 1:
      shortcut = cna(self.out_channels, 1, self.stride, False, 'shortcut')(x)
    else:
      shortcut = x
    y = cna(self.width, 1, s1, True, 'conv1')(x)
    y = cna(self.width, 3, s3, True, 'conv2')(y)
    y = cna(self.out_channels, 1, 1, False, 'conv3')(y)
    return nn.relu(y + shortcut)


class BasicBlock(nn.Module):
  """3x3 (stride) -> 3x3 (+ projection shortcut where shapes change)."""
  width: int
  out_channels: int
  stride: int
  stride_in_1x1: bool  # unused: there is no 1x1 conv in the main path
  norm: str
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    cna = lambda f, k, s, act, name: layers.ConvNormAct(
        f, k, s, norm=self.norm, act=act, use_bias=False, dtype=self.dtype, name=name)
    if x.shape[-1] != self.out_channels or self.stride != 1:
      shortcut = cna(self.out_channels, 1, self.stride, False, 'shortcut')(x)
    else:
      shortcut = x
    y = cna(self.width, 3, self.stride, True, 'conv1')(x)
    y = cna(self.out_channels, 3, 1, False, 'conv2')(y)
    return nn.relu(y + shortcut)


class ResNet(nn.Module):
  """ResNet trunk: stem (7x7 s2 + 3x3 s2 max-pool) and res2..res5.

  Attributes:
    arch: a key of `RESNETS`.
    stride_in_1x1: True for Detectron2 MSRA weights (R-50.pkl, PanopticFCN), False for
      torchvision weights.
    norm: override of the spec's norm ('frozen_bn' | 'gn'), '' for the default.
    remat: recompute each block's activations in the backward pass instead of keeping them
      (training memory for compute; config.train.remat).
  """
  arch: str = 'resnet50'
  stride_in_1x1: bool = True
  norm: str = ''
  dtype: Any = jnp.float32
  remat: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
    """x: normalised float [B,H,W,3] -> {'res2': [B,H/4,W/4,C2], ..., 'res5': [B,H/32,W/32,C5]}."""
    spec = get_spec(self.arch)
    norm = self.norm or spec.norm
    block_cls = Bottleneck if spec.block == 'bottleneck' else BasicBlock
    if self.remat:
      block_cls = nn.remat(block_cls)  # same parameter names: checkpoints load either way
    x = layers.ConvNormAct(spec.stem_width, 7, 2, norm=norm, act=True, use_bias=False,
                           dtype=self.dtype, name='stem_conv1')(x.astype(self.dtype))
    x = layers.max_pool_3x3_s2(x)
    outs = {}
    for stage, (depth, width) in enumerate(zip(spec.depths, spec.widths)):
      out_c = width * spec.expansion
      for i in range(depth):
        stride = 2 if (i == 0 and stage > 0) else 1
        x = block_cls(width, out_c, stride, self.stride_in_1x1, norm, dtype=self.dtype,
                      name=f'res{stage + 2}_{i}')(x)
      outs[f'res{stage + 2}'] = x
    return outs


def count_parameters(variables: dict) -> int:
  """Trainable-equivalent parameter count: ``params`` plus FrozenBN ``scale``/``bias``.

  FrozenBN affine terms are buffers here but parameters in torchvision's BatchNorm, so this is
  the number comparable with ``sum(p.numel() for p in torch_model.parameters())``.
  """
  total = sum(int(a.size) for a in jax.tree_util.tree_leaves(variables.get('params', {})))
  flat = jax.tree_util.tree_flatten_with_path(variables.get('batch_stats', {}))[0]
  for path, leaf in flat:
    if getattr(path[-1], 'key', None) in ('scale', 'bias'):
      total += int(leaf.size)
  return total
