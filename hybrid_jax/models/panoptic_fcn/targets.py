"""PanopticFCN ground truth from a panoptic map, in JAX with static shapes (runs inside jit).

Input: one padded frame's panoptic map int32 [H, W] = category_id * 1000 + instance_id
(instance 0 for stuff, -1 void), H and W multiples of 32. Thing instances are the distinct
ids of thing pixels (at most ``max_instances``, smallest ids first; the rest are dropped) with
a ``valid`` mask. Rules follow the official ``gt_generate.py`` (reference panoptic_fcn.md §2.5,
§2.6):

- masks are downsampled x4 bilinearly (align_corners=False: the mean of the 2x2 centre of each
  4x4 block) -> Dice targets at 1/4 resolution;
- level assignment by sqrt(box area) in input pixels against the inclusive, overlapping ranges
  ``instance_scales`` (one range per level P3..P7);
- centre = mass centre of the positive 1/4 mask, scaled to the level and floored; clamped to
  [0, size - 1] (the official clamp to [0, size] is an off-by-one); an instance whose 1/4 mask
  is empty has no centre (NaN officially) and is marked invalid;
- Gaussian: CornerNet radius (min_overlap 0.7, the classic (b + sqrt(b^2 - 4ac)) / 2 roots) of
  the box scaled to the level, floored; sigma = (2r + 1) / gaussian_sigma; written with max;
- kernel candidates: the 1/4 mask resized bilinearly to the level, > 0.1;
- stuff: one-hot over stuff channels (void -> all zero, thing pixels -> channel 0 when
  ``with_thing``), x4 downsampled (Dice target); per level resized, clamped <= 1, values < 0.5
  zeroed (focal target); ``stuff_present[l, s]`` = any positive value.

With ``full_masks`` (``seg.mask_resolution='full'``, not official) the thing masks and stuff
one-hots are also returned at input resolution, the Dice targets of `losses.panoptic` then.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from hybrid_jax import errors
from hybrid_jax.data import categories as cat_lib

LEVEL_STRIDES = (8, 16, 32, 64, 128)
COCO_SCALES = ((1, 64), (32, 128), (64, 256), (128, 512), (256, 2048))
CITYSCAPES_SCALES = ((1, 128), (64, 256), (128, 512), (256, 1024), (512, 2048))
# Where masks are compared in training (and upsampled at test time): losses/panoptic.py.
MASK_RESOLUTIONS = ('quarter', 'full')
_NO_ID = np.iinfo(np.int32).max


@dataclasses.dataclass(frozen=True)
class ClassLayout:
  """Maps dataset category ids to head channels.

  Thing channel i <-> ``thing_ids[i]``. Stuff channel layout: with ``with_thing`` channel 0 is
  the merged 'things' region and channel j >= 1 <-> ``stuff_ids[j - 1]``; without it channel
  j <-> ``stuff_ids[j]``.
  """
  thing_ids: tuple[int, ...]
  stuff_ids: tuple[int, ...]
  with_thing: bool = True

  @classmethod
  def from_categories(cls, table: Sequence[cat_lib.Category], *, with_thing: bool = True
                      ) -> 'ClassLayout':
    ids = [c.id for c in table]
    if len(set(ids)) != len(ids) or min(ids, default=0) < 0:
      raise errors.ConfigError(f'Category ids must be unique and >= 0, got {ids}.')
    if max(ids, default=0) >= cat_lib.LABEL_DIVISOR:
      raise errors.ConfigError(f'Category ids must be < {cat_lib.LABEL_DIVISOR}, got {max(ids)}.')
    return cls(tuple(cat_lib.thing_ids(table)), tuple(cat_lib.stuff_ids(table)), with_thing)

  @property
  def num_thing(self) -> int:
    return len(self.thing_ids)

  @property
  def num_stuff(self) -> int:
    return len(self.stuff_ids) + int(self.with_thing)

  @property
  def stuff_channel_ids(self) -> tuple[int, ...]:
    """Category id per stuff channel; -1 for the merged 'things' channel."""
    return ((-1,) if self.with_thing else ()) + self.stuff_ids

  def luts(self) -> tuple[np.ndarray, np.ndarray]:
    """(thing channel per category id or -1, stuff channel per category id or -1)."""
    n = max(self.thing_ids + self.stuff_ids, default=0) + 1
    thing = np.full((n,), -1, np.int32)
    stuff = np.full((n,), -1, np.int32)
    thing[list(self.thing_ids)] = np.arange(self.num_thing)
    off = int(self.with_thing)
    stuff[list(self.stuff_ids)] = np.arange(len(self.stuff_ids)) + off
    if self.with_thing:
      stuff[list(self.thing_ids)] = 0
    return thing, stuff


@dataclasses.dataclass(frozen=True)
class TargetSpec:
  layout: ClassLayout
  max_instances: int = 32
  instance_scales: tuple[tuple[float, float], ...] = COCO_SCALES
  min_overlap: float = 0.7
  gaussian_sigma: float = 3.0
  candidate_threshold: float = 0.1
  full_masks: bool = False   # also return input-resolution Dice targets (mask_resolution='full')


def level_size(size: int, stride: int) -> int:
  """Feature size at `stride` for an input multiple of 32: P6/P7 are stride-2 convs (ceil)."""
  return -(-size // stride)


def downsample4(x: jax.Array, axes: tuple[int, int]) -> jax.Array:
  """x4 bilinear downsampling (torch align_corners=False): mean of rows/cols 4i+1 and 4i+2."""
  ya, xa = axes
  take = lambda a, start, ax: jax.lax.slice_in_dim(a, start, a.shape[ax], 4, ax)
  rows = 0.5 * (take(x, 1, ya) + take(x, 2, ya))
  return 0.5 * (take(rows, 1, xa) + take(rows, 2, xa))


def upsample4(x: jax.Array, axis: int) -> jax.Array:
  """x4 bilinear upsampling along `axis` (torch align_corners=False, edges clamped).

  Output 4i + r samples source i + (r + 0.5) / 4 - 0.5, i.e. the fixed two-tap weights
  (.375, .625), (.125, .875) on (x[i-1], x[i]) and (.875, .125), (.625, .375) on (x[i], x[i+1]).
  Element-wise, unlike jax.image.resize, which contracts with a dense [out, in] weight matrix
  (2.4 GFLOP per 1/4-resolution mask at 1024x2048).
  """
  axis = axis % x.ndim
  n = x.shape[axis]
  prev = jnp.concatenate([jax.lax.slice_in_dim(x, 0, 1, axis=axis),
                          jax.lax.slice_in_dim(x, 0, n - 1, axis=axis)], axis=axis)
  nxt = jnp.concatenate([jax.lax.slice_in_dim(x, 1, n, axis=axis),
                         jax.lax.slice_in_dim(x, n - 1, n, axis=axis)], axis=axis)
  phases = [0.375 * prev + 0.625 * x, 0.125 * prev + 0.875 * x,
            0.875 * x + 0.125 * nxt, 0.625 * x + 0.375 * nxt]
  out = jnp.stack(phases, axis=axis + 1)
  return out.reshape(x.shape[:axis] + (4 * n,) + x.shape[axis + 1:])


def _upsample4_band(block: int) -> np.ndarray:
  """float32 [block + 2, 4 block]: `upsample4`'s taps as a matrix from a window of `block`
  samples with one neighbour on each side to the 4 block samples they give."""
  band = np.zeros((block + 2, 4 * block), np.float32)
  for i in range(block):  # window row i + 1 is sample i; rows i and i + 2 its neighbours
    o = 4 * i
    band[i, o], band[i + 1, o] = 0.375, 0.625
    band[i, o + 1], band[i + 1, o + 1] = 0.125, 0.875
    band[i + 1, o + 2], band[i + 2, o + 2] = 0.875, 0.125
    band[i + 1, o + 3], band[i + 2, o + 3] = 0.625, 0.375
  return band


def upsample4_last(x: jax.Array, *, block: int = 8) -> jax.Array:
  """`upsample4` along the last axis, as one small matrix product per `block` samples.

  The values are `upsample4`'s (each output has the same two taps; the other window entries
  meet exact zeros). Why not the element-wise form: it interleaves four phases along the
  minor axis, which XLA:CPU writes element by element: with it the demo's segmenter training
  step took 0.225 s, with this form 0.193 s (2 cores; benchmarks/segmenter_train_step.py,
  benchmarks/RESULTS.md). The band costs block + 2 multiply-adds per output at any length
  (a dense [4n, n] resize matrix costs n).
  """
  n = x.shape[-1]
  block = math.gcd(n, block)
  lead = x.shape[:-1]
  blocks = x.reshape(lead + (n // block, block))
  before = jnp.concatenate([x[..., :1], x[..., :-1]], -1).reshape(blocks.shape)[..., :1]
  after = jnp.concatenate([x[..., 1:], x[..., -1:]], -1).reshape(blocks.shape)[..., -1:]
  windows = jnp.concatenate([before, blocks, after], -1)           # [..., n / block, block + 2]
  out = jnp.einsum('...jc,co->...jo', windows, jnp.asarray(_upsample4_band(block), x.dtype),
                   precision=jax.lax.Precision.HIGHEST)  # TPUs would otherwise round to bf16
  return out.reshape(lead + (4 * n,))


def upsample4_2d(x: jax.Array) -> jax.Array:
  """[..., Hq, Wq] -> [..., 4 Hq, 4 Wq]: `upsample4` on the last two axes (the last one by
  `upsample4_last`; rows interleave as whole contiguous rows, cheaply element-wise)."""
  return upsample4(upsample4_last(x), -2)


def gaussian_radius(height: jax.Array, width: jax.Array, min_overlap: float) -> jax.Array:
  """CornerNet radius (the classic variant, roots (b + sqrt(b^2 - 4ac)) / 2), min of three."""
  a1, b1 = 1.0, height + width
  c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
  r1 = (b1 + jnp.sqrt(jnp.maximum(b1 ** 2 - 4 * a1 * c1, 0.0))) / 2
  a2, b2 = 4.0, 2 * (height + width)
  c2 = (1 - min_overlap) * width * height
  r2 = (b2 + jnp.sqrt(jnp.maximum(b2 ** 2 - 4 * a2 * c2, 0.0))) / 2
  a3, b3 = 4 * min_overlap, -2 * min_overlap * (height + width)
  c3 = (min_overlap - 1) * width * height
  r3 = (b3 + jnp.sqrt(jnp.maximum(b3 ** 2 - 4 * a3 * c3, 0.0))) / 2
  return jnp.minimum(jnp.minimum(r1, r2), r3)


def _resize(x: jax.Array, h: int, w: int) -> jax.Array:
  """Bilinear resize of [..., H, W] (no antialias, align_corners=False)."""
  return jax.image.resize(x, x.shape[:-2] + (h, w), 'linear', antialias=False)


def build_targets(panoptic: jax.Array, *, spec: TargetSpec) -> dict:
  """Targets of one frame.

  Args:
    panoptic: int32 [H, W], H and W multiples of 32 (pad with -1).
    spec: static target settings.

  Returns (L = 5 levels P3..P7, M = max_instances, Nth / Nst thing / stuff channels,
  Hq = H/4, (h_l, w_l) = (H, W) / stride_l):
    inst_valid bool [M]; inst_classes int32 [M] (thing channel); inst_levels bool [M, L];
    inst_masks float [M, Hq, Wq] (soft Dice targets); inst_centers int32 [M, L, 2] (y, x);
    inst_candidates tuple of L bool [M, h_l, w_l]; thing_heatmaps tuple of L
    float [h_l, w_l, Nth]; stuff_maps tuple of L float [h_l, w_l, Nst] (focal targets);
    stuff_masks float [Hq, Wq, Nst] (Dice targets); stuff_present bool [L, Nst];
    with spec.full_masks also inst_masks_full float [M, H, W] and stuff_masks_full
    float [H, W, Nst] (the same masks at input resolution).
  """
  layout = spec.layout
  h, w = panoptic.shape
  if h % 32 or w % 32:
    raise ValueError(f'Pad the panoptic map to a multiple of 32 first, got {(h, w)}.')
  if len(spec.instance_scales) != len(LEVEL_STRIDES):
    raise errors.ConfigError(f'instance_scales needs {len(LEVEL_STRIDES)} ranges, got '
                             f'{spec.instance_scales}.')
  lut_thing, lut_stuff = (jnp.asarray(a) for a in layout.luts())
  pan = panoptic.astype(jnp.int32)
  cat = jnp.where(pan >= 0, pan // cat_lib.LABEL_DIVISOR, -1)
  known = (cat >= 0) & (cat < lut_thing.shape[0])
  safe_cat = jnp.clip(cat, 0, lut_thing.shape[0] - 1)
  thing_ch = jnp.where(known, lut_thing[safe_cat], -1)
  stuff_ch = jnp.where(known, lut_stuff[safe_cat], -1)

  # ---- thing instances -----------------------------------------------------------------
  m = spec.max_instances
  keys = jnp.where(thing_ch >= 0, pan, _NO_ID)
  ids = jnp.unique(keys, size=m, fill_value=_NO_ID)
  present = ids != _NO_ID
  masks = (pan[None] == ids[:, None, None]) & present[:, None, None]        # [M,H,W]
  classes = jnp.where(present, lut_thing[jnp.clip(ids // cat_lib.LABEL_DIVISOR, 0,
                                                  lut_thing.shape[0] - 1)], 0)
  masks_q = downsample4(masks.astype(jnp.float32), (1, 2))                  # [M,Hq,Wq]
  hq, wq = masks_q.shape[1:]
  rows = masks.any(axis=2)
  cols = masks.any(axis=1)
  y0 = jnp.argmax(rows, axis=1)
  y1 = h - 1 - jnp.argmax(rows[:, ::-1], axis=1)
  x0 = jnp.argmax(cols, axis=1)
  x1 = w - 1 - jnp.argmax(cols[:, ::-1], axis=1)
  box_h = (y1 - y0 + 1).astype(jnp.float32)
  box_w = (x1 - x0 + 1).astype(jnp.float32)
  size = jnp.sqrt(box_h * box_w)
  pos = masks_q > 0
  count = pos.sum(axis=(1, 2)).astype(jnp.float32)
  valid = present & (count > 0)
  cy_q = (pos * jnp.arange(hq)[None, :, None]).sum(axis=(1, 2)) / jnp.maximum(count, 1.0)
  cx_q = (pos * jnp.arange(wq)[None, None, :]).sum(axis=(1, 2)) / jnp.maximum(count, 1.0)

  levels, centers, heatmaps, candidates = [], [], [], []
  for (lo, hi), stride in zip(spec.instance_scales, LEVEL_STRIDES):
    hl, wl = level_size(h, stride), level_size(w, stride)
    assigned = valid & (size >= lo) & (size <= hi)
    cy = jnp.clip(jnp.floor(cy_q * hl / hq), 0, hl - 1).astype(jnp.int32)
    cx = jnp.clip(jnp.floor(cx_q * wl / wq), 0, wl - 1).astype(jnp.int32)
    radius = jnp.maximum(jnp.floor(gaussian_radius(box_h * hl / h, box_w * wl / w,
                                                   spec.min_overlap)), 0.0)
    sigma = (2 * radius + 1) / spec.gaussian_sigma
    dy = jnp.arange(hl)[None, :] - cy[:, None]                                # [M,hl]
    dx = jnp.arange(wl)[None, :] - cx[:, None]                                # [M,wl]
    gy = jnp.where(jnp.abs(dy) <= radius[:, None],
                   jnp.exp(-(dy ** 2) / (2 * sigma[:, None] ** 2)), 0.0)
    gx = jnp.where(jnp.abs(dx) <= radius[:, None],
                   jnp.exp(-(dx ** 2) / (2 * sigma[:, None] ** 2)), 0.0)
    g = gy[:, :, None] * gx[:, None, :] * assigned[:, None, None]             # [M,hl,wl]
    onehot = jax.nn.one_hot(classes, layout.num_thing, dtype=jnp.float32)     # [M,Nth]
    heat = jnp.max(g[..., None] * onehot[:, None, None, :], axis=0, initial=0.0)
    levels.append(assigned)
    centers.append(jnp.stack([cy, cx], axis=-1))
    heatmaps.append(heat)
    candidates.append((_resize(masks_q, hl, wl) > spec.candidate_threshold)
                      & assigned[:, None, None])

  # ---- stuff ---------------------------------------------------------------------------
  stuff_onehot = jax.nn.one_hot(stuff_ch, layout.num_stuff, dtype=jnp.float32)  # -1 -> zeros
  stuff_q = downsample4(stuff_onehot, (0, 1))                                     # [Hq,Wq,Nst]
  stuff_maps, stuff_present = [], []
  for stride in LEVEL_STRIDES:
    hl, wl = level_size(h, stride), level_size(w, stride)
    lvl = jnp.moveaxis(_resize(jnp.moveaxis(stuff_q, -1, 0), hl, wl), 0, -1)
    lvl = jnp.minimum(lvl, 1.0)
    lvl = jnp.where(lvl < 0.5, 0.0, lvl)
    stuff_maps.append(lvl)
    stuff_present.append((lvl > 0).any(axis=(0, 1)))

  out = {
      'inst_valid': valid, 'inst_classes': classes.astype(jnp.int32),
      'inst_levels': jnp.stack(levels, axis=1), 'inst_masks': masks_q,
      'inst_centers': jnp.stack(centers, axis=1), 'inst_candidates': tuple(candidates),
      'thing_heatmaps': tuple(heatmaps), 'stuff_maps': tuple(stuff_maps),
      'stuff_masks': stuff_q, 'stuff_present': jnp.stack(stuff_present, axis=0),
  }
  if spec.full_masks:
    out['inst_masks_full'] = (masks & valid[:, None, None]).astype(jnp.float32)
    out['stuff_masks_full'] = stuff_onehot
  return out


def build_batch_targets(panoptic: jax.Array, *, spec: TargetSpec) -> dict:
  """`build_targets` over a batch int32 [B, H, W] (vmapped; every leaf gains a leading B)."""
  return jax.vmap(lambda p: build_targets(p, spec=spec))(panoptic)


def scaled_instance_scales(factor: float, base=COCO_SCALES) -> tuple[tuple[float, float], ...]:
  """Size ranges multiplied by `factor` (e.g. for small synthetic images); the first lower
  bound stays 1 so that no small object is left without a level."""
  out = [(lo * factor, hi * factor) for lo, hi in base]
  out[0] = (1, out[0][1])
  return tuple(out)
