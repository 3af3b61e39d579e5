"""PanopticFCN (Li et al., CVPR 2021) as a Flax module: backbone, FPN, heads, encoder.

Data flow (reference panoptic_fcn.md §1): ResNet -> FPN P2..P7; Semantic FPN (P2..P5) ->
feature encoder (coords + 3 x conv/ReLU) -> ``encode_feat`` (E=64 channels, stride 4);
a position head and a kernel head with weights shared over P3..P7. The thing/stuff generators'
1x1 projections (256 -> E) are applied here to the whole kernel maps, which is exact because a
1x1 conv commutes with gathering positions; for stuff the bias is returned separately because
the stuff kernel is mean_HW(mask * map) projected, i.e. ``mean(mask * (map @ W)) + b``.

The model expects normalised float images whose H and W are multiples of 32 (see
`hybrid_jax.models.segmenter.preprocess_images`). Its output is a dict (shapes for L=5 levels
l = 3..7 with stride s_l = 2**l, Hq = H/4):

- ``encode_feat``: [B, Hq, Wq, E] (non-negative),
- ``inst_logits``: tuple of L [B, H/s_l, W/s_l, num_thing] thing-centre logits,
- ``stuff_logits``: tuple of L [B, H/s_l, W/s_l, num_stuff] stuff-region logits,
- ``thing_kernels``: tuple of L [B, H/s_l, W/s_l, E] (projected, bias included),
- ``stuff_kernels``: tuple of L [B, H/s_l, W/s_l, E] (projected, no bias),
- ``stuff_bias``: [E].
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from hybrid_jax.models import deform_conv
from hybrid_jax.models import fpn as fpn_lib
from hybrid_jax.models import layers
from hybrid_jax.models import resnet

HEAD_LEVELS = ('p3', 'p4', 'p5', 'p6', 'p7')
DEFORM_KINDS = ('v2', 'v1', 'none')
PRIOR_BIAS = -2.19  # position outputs start at sigmoid ~ 0.1


class PositionHead(nn.Module):
  """Shared over levels: 3 x ([deformable] conv -> GN -> ReLU), then two 3x3 output convs.

  Parameters: ``tower_{0,1,2}`` (``offset``, ``kernel``, ``norm`` when deformable, else
  ``conv``, ``norm``), ``out_inst`` [3,3,D,num_thing], ``out_stuff`` [3,3,D,num_stuff].
  """
  dim: int
  num_thing: int
  num_stuff: int
  num_convs: int = 3
  deform: str = 'v2'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    for i in range(self.num_convs):
      if self.deform == 'none':
        x = layers.ConvNormAct(self.dim, 3, 1, norm='gn', act=True, use_bias=False,
                               dtype=self.dtype, name=f'tower_{i}')(x)
      else:
        x = _DeformTower(self.dim, modulated=self.deform == 'v2', dtype=self.dtype,
                         name=f'tower_{i}')(x)
    out = lambda n, name: nn.Conv(n, (3, 3), padding=((1, 1), (1, 1)),
                                  kernel_init=layers.NORMAL_001,
                                  bias_init=nn.initializers.constant(PRIOR_BIAS),
                                  dtype=self.dtype, name=name)(x)
    return out(self.num_thing, 'out_inst'), out(self.num_stuff, 'out_stuff')


class _DeformTower(nn.Module):
  """Deformable conv (no bias) -> GN -> ReLU, Detectron2's ``ModulatedDeformConvWithOff``."""
  dim: int
  modulated: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    # Same maths as deform_conv.DeformConv, inlined so that the params sit flat in this module
    # (offset/{kernel,bias}, kernel, norm) like Detectron2's offset_mask_conv / dcnv2 / norm.
    k = 9
    n_off = 3 * k if self.modulated else 2 * k
    om = nn.Conv(n_off, (3, 3), padding=((1, 1), (1, 1)), kernel_init=nn.initializers.zeros,
                 dtype=self.dtype, name='offset')(x)
    mask = jax.nn.sigmoid(om[..., 2 * k:]) if self.modulated else None
    kernel = self.param('kernel', layers.MSRA_FILL, (3, 3, x.shape[-1], self.dim))
    x = deform_conv.deform_conv2d(x, om[..., :2 * k], kernel.astype(self.dtype), mask=mask)
    x = layers.make_norm('gn', self.dim)(x)
    return nn.relu(x)


class KernelHead(nn.Module):
  """Shared over levels: coords -> 3 x (conv -> GN -> ReLU) -> 3x3 out conv (no activation).

  Parameters: ``tower_{0,1,2}`` (``conv``, ``norm``; tower_0 takes D+2 inputs), ``out_conv``.
  """
  dim: int
  num_convs: int = 3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = layers.append_coords(x)
    for i in range(self.num_convs):
      x = layers.ConvNormAct(self.dim, 3, 1, norm='gn', act=True, use_bias=False,
                             dtype=self.dtype, name=f'tower_{i}')(x)
    return nn.Conv(self.dim, (3, 3), padding=((1, 1), (1, 1)), kernel_init=layers.NORMAL_001,
                   dtype=self.dtype, name='out_conv')(x)


class FeatureEncoder(nn.Module):
  """coords -> num_convs x (conv3x3 with bias -> ReLU); ReLU after the last conv too.

  Parameters: ``conv_{0,1,2}`` (``conv/kernel``, ``conv/bias``).
  """
  dim: int = 64
  num_convs: int = 3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = layers.append_coords(x)
    for i in range(self.num_convs):
      x = layers.ConvNormAct(self.dim, 3, 1, norm='none', act=True, use_bias=True,
                             kernel_init=layers.TORCH_DEFAULT, dtype=self.dtype,
                             name=f'conv_{i}')(x)
    return x


class Projection(nn.Module):
  """A generator's 1x1 conv 256 -> E (``kernel`` [C,E], ``bias`` [E]); returns (x @ W, b)."""
  dim: int

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    w = self.param('kernel', layers.NORMAL_001, (x.shape[-1], self.dim))
    b = self.param('bias', nn.initializers.zeros, (self.dim,))
    return jnp.einsum('...c,ce->...e', x, w.astype(x.dtype)), b


class PanopticFCN(nn.Module):
  """The whole segmenter network; see the module docstring for inputs and outputs.

  Attributes:
    backbone: a key of `resnet.RESNETS`.
    stride_in_1x1: stride placement of the ResNet (follows the weights' source).
    backbone_norm: '' (the backbone spec's default), 'frozen_bn' or 'gn'.
    fpn_dim: FPN / semantic-FPN width (256 in the paper).
    head_dim: position/kernel head width and raw kernel size (256 in the paper).
    embed_dim: E, encoder channels and projected kernel size (64 in the paper).
    num_thing: thing-centre channels (thing classes).
    num_stuff: stuff channels (stuff classes, +1 merged 'things' channel with WITH_THING).
    position_deform: 'v2' (modulated DCN, official default), 'v1' or 'none'.
  """
  backbone: str = 'resnet50'
  stride_in_1x1: bool = True
  backbone_norm: str = ''
  fpn_dim: int = 256
  head_dim: int = 256
  embed_dim: int = 64
  num_thing: int = 80
  num_stuff: int = 54
  position_deform: str = 'v2'
  num_head_convs: int = 3
  dtype: Any = jnp.float32
  remat: bool = False  # rematerialise the backbone's blocks (training memory)

  @nn.compact
  def __call__(self, images: jax.Array) -> dict[str, Any]:
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f'Expected normalised images [B,H,W,3], got {images.shape}.')
    if images.shape[1] % 32 or images.shape[2] % 32:
      raise ValueError(f'Image size {images.shape[1:3]} must be a multiple of 32; use '
                       'segmenter.preprocess_images.')
    feats = resnet.ResNet(self.backbone, self.stride_in_1x1, self.backbone_norm,
                          dtype=self.dtype, remat=self.remat, name='bottom_up')(images)
    pyr = fpn_lib.FPN(self.fpn_dim, dtype=self.dtype, name='fpn')(feats)
    sem = fpn_lib.SemanticFPN(self.fpn_dim, dtype=self.dtype, name='semantic_fpn')(pyr)
    encode = FeatureEncoder(self.embed_dim, dtype=self.dtype, name='feature_encoder')(sem)
    pos_head = PositionHead(self.head_dim, self.num_thing, self.num_stuff, self.num_head_convs,
                            self.position_deform, dtype=self.dtype, name='position_head')
    ker_head = KernelHead(self.head_dim, self.num_head_convs, dtype=self.dtype,
                          name='kernel_head')
    thing_proj = Projection(self.embed_dim, name='thing_generator')
    stuff_proj = Projection(self.embed_dim, name='stuff_generator')
    inst, stuff, tker, sker = [], [], [], []
    stuff_bias = None
    for lvl in HEAD_LEVELS:
      i_logits, s_logits = pos_head(pyr[lvl])
      kmap = ker_head(pyr[lvl])
      t, tb = thing_proj(kmap)
      s, stuff_bias = stuff_proj(kmap)
      inst.append(i_logits.astype(jnp.float32))
      stuff.append(s_logits.astype(jnp.float32))
      tker.append((t + tb).astype(jnp.float32))
      sker.append(s.astype(jnp.float32))
    return {'encode_feat': encode.astype(jnp.float32), 'inst_logits': tuple(inst),
            'stuff_logits': tuple(stuff), 'thing_kernels': tuple(tker),
            'stuff_kernels': tuple(sker), 'stuff_bias': stuff_bias}
