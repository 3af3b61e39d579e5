"""RAFT optical flow (Teed & Deng 2020) as a Flax Linen module, NHWC, official numerics.

Two variants (reference raft.md §1.1): 'standard' (5,257,536 parameters; instance-norm fnet,
batch-norm cnet, SepConvGRU, convex upsampling) and 'small' (990,162; instance-norm fnet,
norm-free cnet, ConvGRU, bilinear x8 upsampling). torchvision's raft_large / raft_small have
the same numerics (checked against its source and by the parity tests); only the key names
and the preprocessing location differ, which the converter handles.

Typical use::

  variables, variant = load_raft('ckpt_dir')            # converted with python -m hybrid_jax.cli.convert
  flow = estimate_flow(variables, img1, img2, variant=variant, iters=12)   # [B, H, W, 2]

Module output:
  * ``train=False``: (flow_low [B, H'/8, W'/8, 2] in 1/8 px of the padded frame, flow_up
    [B, H, W, 2] in px, cropped back to the input size), upsampling only the last iteration.
  * ``train=True`` (or ``all_iterations=True``): flow_up of every iteration, [iters, B, H, W, 2].
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from hybrid_jax import backend_choices
from hybrid_jax import errors
from hybrid_jax.models.raft import corr as raft_corr
from hybrid_jax.models.raft.blocks import (Encoder, MaskHead, UpdateBlockParams, count_params,
                                           flow_head, gru_step, motion_features,
                                           prepare_update_block)

Array = jax.Array

VARIANTS = {
    # hidden (GRU state), context, corr radius, fnet dim
    'standard': dict(hidden=128, context=128, radius=4, fdim=256, small=False),
    'small': dict(hidden=96, context=64, radius=3, fdim=128, small=True),
}
CORR_LEVELS = 4
NUM_PARAMS = {'standard': 5_257_536, 'small': 990_162}
ARCHITECTURES = {'standard': 'raft_standard', 'small': 'raft_small'}


# ---- input padding (official InputPadder) -------------------------------------------------

def padding_for(height: int, width: int, *, mode: str = 'sintel') -> tuple[int, int, int, int]:
  """(top, bottom, left, right) that make H, W multiples of 8, as the official InputPadder.

  'sintel' splits the rows evenly (extra row at the bottom); 'kitti' pads only at the bottom.
  Columns are always split evenly (extra column on the right).
  """
  pad_h = (((height // 8) + 1) * 8 - height) % 8
  pad_w = (((width // 8) + 1) * 8 - width) % 8
  left, right = pad_w // 2, pad_w - pad_w // 2
  if mode == 'sintel':
    return pad_h // 2, pad_h - pad_h // 2, left, right
  return 0, pad_h, left, right


def pad_images(images: Array, pads: tuple[int, int, int, int]) -> Array:
  """Edge-replicates [B, H, W, C] by `pads` (top, bottom, left, right)."""
  t, b, l, r = pads
  if not any(pads):
    return images
  return jnp.pad(images, ((0, 0), (t, b), (l, r), (0, 0)), mode='edge')


def unpad(x: Array, pads: tuple[int, int, int, int]) -> Array:
  """Crops the margins added by `pad_images` from [..., H, W, C]."""
  t, b, l, r = pads
  h, w = x.shape[-3], x.shape[-2]
  return x[..., t:h - b, l:w - r, :]


# ---- upsampling -----------------------------------------------------------------------------

def convex_upsample(flow: Array, mask: Array) -> Array:
  """Convex x8 upsampling: flow [B,h,w,2] (1/8 px), mask [B,h,w,576] -> [B,8h,8w,2] px.

  Mask channel = k*64 + a*8 + b (neighbour k, sub-row a, sub-col b); softmax over k; the 3x3
  neighbourhood (k = 3*(dy+1) + (dx+1)) of 8*flow is zero padded, as the official unfold.
  """
  b, h, w, _ = flow.shape
  m = jax.nn.softmax(mask.astype(jnp.float32).reshape(b, h, w, 9, 8, 8), axis=3)
  f = jnp.pad(8.0 * flow, ((0, 0), (1, 1), (1, 1), (0, 0)))
  nb = jnp.stack([f[:, dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)], axis=3)
  up = jnp.einsum('bijkxy,bijkc->bixjyc', m, nb, precision=jax.lax.Precision.HIGHEST)
  return up.reshape(b, 8 * h, 8 * w, 2)


def _align_corners_matrix(n_in: int, n_out: int) -> np.ndarray:
  """[n_out, n_in] linear interpolation weights with align_corners=True."""
  m = np.zeros((n_out, n_in), np.float32)
  src = np.arange(n_out) * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
  i0 = np.clip(np.floor(src).astype(int), 0, n_in - 1)
  i1 = np.minimum(i0 + 1, n_in - 1)
  frac = (src - i0).astype(np.float32)
  m[np.arange(n_out), i0] += 1.0 - frac
  m[np.arange(n_out), i1] += frac
  return m


def bilinear_upsample8(flow: Array) -> Array:
  """8 * bilinear x8 resize with align_corners=True (official upflow8): [B,h,w,2] -> [B,8h,8w,2]."""
  _, h, w, _ = flow.shape
  ry = jnp.asarray(_align_corners_matrix(h, 8 * h))
  rx = jnp.asarray(_align_corners_matrix(w, 8 * w))
  hp = jax.lax.Precision.HIGHEST
  return 8.0 * jnp.einsum('yi,bijc,xj->byxc', ry, flow, rx, precision=hp)


# ---- the model --------------------------------------------------------------------------------

def coords_grid(batch: int, height: int, width: int) -> Array:
  """[B, h, w, 2] pixel coordinates, x (column) first."""
  ys, xs = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32),
                        jnp.arange(width, dtype=jnp.float32), indexing='ij')
  return jnp.broadcast_to(jnp.stack([xs, ys], -1), (batch, height, width, 2))


class RAFT(nn.Module):
  """RAFT. Call with uint8/float RGB images [B, H, W, 3] in 0..255 (any H, W >= 8).

  Attributes:
    variant: 'standard' | 'small'.
    corr: 'all_pairs' (official) | 'on_demand' (memory-bounded, same values).
    remat: rematerialise each iteration in the backward pass (saves training memory).
    dropout: Dropout2d rate after the encoders (official default 0).
    freeze_bn: use BN running statistics while training (official: all stages after Chairs).
    pad_mode: 'sintel' | 'kitti' InputPadder placement.
    unroll: refinement iterations unrolled per scan step. The values are identical; on CPU
      the backward pass of a rolled scan runs ~8x slower than unrolled (measured 8.1 s vs
      0.95 s per RAFT-small step at 64x128, batch 4, 8 iterations), so training unrolls.
    winograd: run the refinement loop's 3x3 convs as Winograd F(2x2, 3x3) and the GRU's
      1x5 / 5x1 convs as F(4, 5) (models/winograd.py): same values up to float rounding,
      fewer multiplications; faster at inference on XLA:CPU, slower on training crops' tiny
      grids. None: `backend_choices.raft_winograd()` (on CPU only).
    dtype: activation dtype of the feature and context encoders (bfloat16 for mixed-precision
      training); the correlation volume, the refinement loop and the flow stay float32.
  """
  variant: str = 'standard'
  corr: str = 'all_pairs'
  remat: bool = False
  dropout: float = 0.0
  freeze_bn: bool = False
  pad_mode: str = 'sintel'
  unroll: int = 1
  winograd: bool | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, image1: Array, image2: Array, *, iters: int = 12,
               flow_init: Array | None = None, train: bool = False,
               all_iterations: bool | None = None):
    if self.variant not in VARIANTS:
      raise errors.ConfigError(f"RAFT variant must be 'standard' or 'small', got {self.variant!r}")
    if self.corr not in raft_corr.CORR_MODES:
      raise errors.ConfigError(f'RAFT corr must be one of {raft_corr.CORR_MODES}, got {self.corr!r}')
    cfg = VARIANTS[self.variant]
    small = cfg['small']
    all_iterations = train if all_iterations is None else all_iterations
    height, width = image1.shape[1:3]
    pads = padding_for(height, width, mode=self.pad_mode)

    def prep(img):
      img = 2.0 * (img.astype(jnp.float32) / 255.0) - 1.0
      return pad_images(img, pads)
    image1, image2 = prep(image1), prep(image2)
    bsz = image1.shape[0]

    fnet = Encoder(cfg['fdim'], 'instance', small, self.dropout, train, name='fnet')
    # instance norm: per sample, so one call for both frames is harmless
    fmaps = fnet(jnp.concatenate([image1, image2], 0).astype(self.dtype)).astype(jnp.float32)
    fmap1, fmap2 = fmaps[:bsz], fmaps[bsz:]
    cnet = Encoder(cfg['hidden'] + cfg['context'], 'none' if small else 'batch', small,
                   self.dropout, train, self.freeze_bn, name='cnet')(image1.astype(self.dtype))
    cnet = cnet.astype(jnp.float32)
    net = jnp.tanh(cnet[..., :cfg['hidden']])
    inp = nn.relu(cnet[..., cfg['hidden']:])

    corr_state = raft_corr.corr_init(fmap1, fmap2, mode=self.corr, num_levels=CORR_LEVELS,
                                     radius=cfg['radius'])
    h8, w8 = fmap1.shape[1:3]
    coords0 = coords_grid(bsz, h8, w8)
    coords1 = coords0 if flow_init is None else coords0 + flow_init.astype(jnp.float32)

    p = UpdateBlockParams(small, cfg['hidden'], cfg['context'],
                          CORR_LEVELS * (2 * cfg['radius'] + 1)**2, name='update_block')()
    use_winograd = (backend_choices.raft_winograd() if self.winograd is None
                    else bool(self.winograd))
    p = prepare_update_block(p, inp, small=small, use_winograd=use_winograd)  # done once

    def step(carry, _):
      net, coords1 = carry
      coords1 = jax.lax.stop_gradient(coords1)  # no gradient through the sampling positions
      corr = raft_corr.corr_lookup(corr_state, coords1, radius=cfg['radius'])
      motion = motion_features(p['encoder'], coords1 - coords0, corr, small=small)
      net = gru_step(p['gru'], net, motion)
      coords1 = coords1 + flow_head(p['flow_head'], net)
      return (net, coords1), ((net, coords1) if all_iterations else None)

    if self.remat:
      step = jax.checkpoint(step, prevent_cse=False)
    (net, coords1), emitted = jax.lax.scan(step, (net, coords1), None, length=iters,
                                           unroll=max(1, min(int(self.unroll), iters)))
    mask_head = None if small else MaskHead(name='mask')

    def upsample(net_t, flow_t):
      if small:
        return bilinear_upsample8(flow_t)
      return convex_upsample(flow_t, mask_head(net_t))

    if all_iterations:
      nets, coords = emitted  # [iters, B, h, w, C]
      flows = coords - coords0[None]
      ups = upsample(nets.reshape((-1,) + nets.shape[2:]), flows.reshape((-1,) + flows.shape[2:]))
      ups = ups.reshape((iters, bsz) + ups.shape[1:])
      return unpad(ups, pads)
    flow_low = coords1 - coords0
    return flow_low, unpad(upsample(net, flow_low), pads)


# ---- convenience ------------------------------------------------------------------------------

def init_raft(seed: int = 0, *, variant: str, height: int = 64, width: int = 64) -> dict:
  """Random variables for `variant`, drawn on the host with numpy.

  Same distributions as the module's initialisers (official init: encoder kernels
  kaiming-normal fan_out; other kernels and all conv biases U(+-1/sqrt(fan_in)); BN scale 1,
  bias 0, mean 0, var 1). Drawn with numpy because a jitted Flax `init` compiles one
  threefry kernel per parameter (~45 s on a 2-core CPU); `RAFT().init(key, ...)` also works.
  """
  img = jnp.zeros((1, height, width, 3), jnp.float32)
  shapes = jax.eval_shape(lambda: RAFT(variant=variant).init(jax.random.PRNGKey(0), img, img,
                                                             iters=1))
  rng = np.random.default_rng(seed)
  flat = {tuple(k.key for k in path): leaf.shape
          for path, leaf in jax.tree_util.tree_flatten_with_path(shapes)[0]}
  out: dict = {}
  for path, shape in flat.items():
    coll, leaf = path[0], path[-1]
    if coll == 'batch_stats':
      value = np.zeros(shape) if leaf == 'mean' else np.ones(shape)
    elif leaf == 'scale':
      value = np.ones(shape)
    elif leaf == 'bias' and path[:-1] + ('kernel',) not in flat:  # BN bias
      value = np.zeros(shape)
    else:
      kshape = flat[path[:-1] + ('kernel',)]
      fan_in = kshape[0] * kshape[1] * kshape[2]
      if leaf == 'kernel' and path[1] in ('fnet', 'cnet'):
        value = rng.normal(0.0, np.sqrt(2.0 / (kshape[0] * kshape[1] * kshape[3])), shape)
      else:
        bound = 1.0 / np.sqrt(fan_in)
        value = rng.uniform(-bound, bound, shape)
    node = out
    for p in path[:-1]:
      node = node.setdefault(p, {})
    node[leaf] = value.astype(np.float32)
  return out


def variant_of(variables: dict) -> str:
  """'standard' or 'small', read from the shape of fnet's first conv (64 vs 32 filters)."""
  try:
    out = variables['params']['fnet']['conv1']['kernel'].shape[-1]
  except (KeyError, TypeError, AttributeError) as exc:
    raise errors.CheckpointError(
        'These variables are not RAFT weights (no params/fnet/conv1/kernel).') from exc
  return {64: 'standard', 32: 'small'}.get(out, f'unknown({out} stem filters)')


def _check_frames(image1, image2) -> tuple[Array, Array, bool]:
  a, b = np.shape(image1), np.shape(image2)
  for name, s in (('image1', a), ('image2', b)):
    if len(s) not in (3, 4):
      raise errors.FormatError(f'{name} must be [H, W, 3] or [B, H, W, 3] RGB, got shape {s}.')
    if s[-1] != 3:
      raise errors.FormatError(f'{name} has {s[-1]} channels; RAFT needs RGB (3 channels). '
                               'Convert the frame to RGB first.')
    if 0 in s:
      raise errors.FormatError(f'{name} is empty (shape {s}).')
  if a != b:
    raise errors.FormatError(f'The two frames differ in size: {a} vs {b}. Resize one first.')
  single = len(a) == 3
  if single:
    image1, image2 = image1[None], image2[None]
  return image1, image2, single


# XLA:CPU (jax 0.10) hands convolutions to YNNPACK by default. On RAFT's shapes the Eigen
# path is faster: inference 2.17 s instead of 2.67 s per 368x496 pair (raft_large, 12
# iterations), a RAFT-small training step 0.40 s instead of 0.59 s (batch 4, 64x128), both on
# the 2-core Zen 3 of benchmarks/RESULTS.md. The option is given to RAFT's own programs only,
# so nothing else in the process changes.
CPU_COMPILER_OPTIONS = {'xla_cpu_experimental_ynn_fusion_type': ''}
_STATIC = ('variant', 'iters', 'corr', 'pad_mode')


@functools.lru_cache(maxsize=None)
def _cpu_options_supported() -> bool:
  if not backend_choices.raft_uses_cpu_compiler_options():
    return False
  try:  # an XLA that no longer knows the option rejects it at compile time
    jax.jit(lambda x: x + 1, compiler_options=CPU_COMPILER_OPTIONS).lower(
        jnp.zeros((), jnp.float32)).compile()
  except jax.errors.JaxRuntimeError as exc:
    logging.warning('XLA rejected %s (%s); RAFT uses its default CPU kernels.',
                    sorted(CPU_COMPILER_OPTIONS), str(exc).splitlines()[0])
    return False
  return True


def cpu_compiler_options() -> dict[str, str] | None:
  """`compiler_options` for jitting RAFT: CPU_COMPILER_OPTIONS on an XLA:CPU that accepts
  them, else None (other backends, or an XLA without the option)."""
  return dict(CPU_COMPILER_OPTIONS) if _cpu_options_supported() else None


def _estimate_impl(variables, image1, image2, flow_init, *, variant, iters, corr, pad_mode):
  model = RAFT(variant=variant, corr=corr, pad_mode=pad_mode)
  return model.apply(variables, image1, image2, iters=iters, flow_init=flow_init)


_estimate_default = jax.jit(_estimate_impl, static_argnames=_STATIC)
_estimate_cpu = jax.jit(_estimate_impl, static_argnames=_STATIC,
                        compiler_options=CPU_COMPILER_OPTIONS)


def _estimate(*args, **kwargs):
  fn = _estimate_cpu if cpu_compiler_options() else _estimate_default
  return fn(*args, **kwargs)


def estimate_flow(variables: dict, image1: Array, image2: Array, *, variant: str,
                  iters: int = 12, corr: str = 'all_pairs', pad_mode: str = 'sintel',
                  flow_init: Array | None = None, return_low: bool = False):
  """Jitted inference: forward flow from image1 to image2.

  Args:
    variables: RAFT variables ({'params', ['batch_stats']}) of `variant`.
    image1, image2: uint8 or float RGB in 0..255, [B, H, W, 3] or [H, W, 3] (same shape).
    variant: 'standard' | 'small'; must match the variables.
    iters: refinement iterations (official: 12 default, 20 demo, 24-32 evaluation).
    corr: 'all_pairs' | 'on_demand' (memory-bounded; use it for large frames).
    flow_init: optional warm start, [B, H'/8, W'/8, 2] in 1/8 px of the padded frame.
    return_low: also return the 1/8-resolution flow.
  Returns:
    float32 flow [B, H, W, 2] in pixels (x first), or (flow_low, flow) if return_low;
    without the batch axis if the inputs had none.
  """
  if variant not in VARIANTS:
    raise errors.ConfigError(f"variant must be 'standard' or 'small', got {variant!r}")
  if corr not in raft_corr.CORR_MODES:
    raise errors.ConfigError(f'corr must be one of {raft_corr.CORR_MODES}, got {corr!r}')
  have = variant_of(variables)
  if have != variant:
    raise errors.CheckpointError(
        f'The weights are for RAFT {have!r} but variant {variant!r} was asked for; '
        f'set the variant to {have!r} or load a {variant!r} checkpoint.')
  image1, image2, single = _check_frames(image1, image2)
  if flow_init is not None and single:
    flow_init = flow_init[None]
  low, up = _estimate(variables, jnp.asarray(image1), jnp.asarray(image2), flow_init,
                      variant=variant, iters=int(iters), corr=corr, pad_mode=pad_mode)
  if single:
    low, up = low[0], up[0]
  return (low, up) if return_low else up


def load_raft(path: str, *, variant: str | None = None) -> tuple[dict, str]:
  """Loads a converted checkpoint; returns (variables, variant). Checks `variant` if given."""
  from hybrid_jax.training import pretrained
  expect = None if variant is None else ARCHITECTURES.get(variant, variant)
  if variant is not None and variant not in VARIANTS:
    raise errors.ConfigError(f"variant must be 'standard' or 'small', got {variant!r}")
  variables, meta = pretrained.load_pretrained(
      path, expect_architecture=expect or tuple(ARCHITECTURES.values()))
  have = variant_of(variables)
  if have not in VARIANTS:
    raise errors.CheckpointError(f'{path}: not a RAFT checkpoint ({have}).')
  return variables, have


__all__ = ['RAFT', 'VARIANTS', 'NUM_PARAMS', 'ARCHITECTURES', 'padding_for', 'pad_images',
           'unpad', 'convex_upsample', 'bilinear_upsample8', 'coords_grid', 'init_raft',
           'variant_of', 'estimate_flow', 'load_raft', 'count_params', 'cpu_compiler_options']
