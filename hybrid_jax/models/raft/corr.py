"""RAFT correlation: the all-pairs pyramid and a memory-bounded on-demand lookup.

Both produce the same correlation features (reference raft.md §2.3-2.4):
for each pyramid level i (0 = finest), the (2r+1)^2 values of the level-i correlation
around coords / 2^i, bilinearly sampled in pixel coordinates with zero padding, channel
order ``(dx + r) * (2r + 1) + (dy + r)`` (x offset slow, y offset fast), levels fine to coarse.

* ``'all_pairs'`` (official default): C0 = f1 . f2 / sqrt(D) for all pixel pairs, a
  [B, h, w, h, w] volume, average-pooled over the target axes; memory O((hw)^2). Each level
  is stored with a zero margin so that a window is one contiguous slice.
* ``'on_demand'`` (the official alternate_corr idea): keep fmap1 and average-pooled copies of
  fmap2, and compute only the dot products needed by each window. Pooling the volume over
  the target axes equals correlating with pooled features, and bilinear sampling is linear,
  so the two agree up to float rounding; memory O(hw * D).

Sampling trick used by both: every sample of a window shares the fractional part of the
centre (offsets are integers), so a window is the bilinear blend of one integer
(2r+2) x (2r+2) patch with four shared weights: 100 gathered values instead of 4 * 81.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

CORR_MODES = ('all_pairs', 'on_demand')
# Upper bound on the gathered fmap2 vectors per on-demand chunk (bytes), which is what
# bounds the memory of that mode.
_ON_DEMAND_CHUNK_BYTES = 48 * 2**20


def _pool2(x: jax.Array, axes: tuple[int, int]) -> jax.Array:
  """2x2 average pool with floor semantics (drops an odd last row/column) over `axes`."""
  a, b = axes
  n_a, n_b = x.shape[a] // 2, x.shape[b] // 2
  x = jax.lax.slice_in_dim(x, 0, 2 * n_a, axis=a)
  x = jax.lax.slice_in_dim(x, 0, 2 * n_b, axis=b)
  shape = list(x.shape)
  # Split b first so that axis a keeps its index.
  shape[b:b + 1] = [n_b, 2]
  shape[a:a + 1] = [n_a, 2]
  return x.reshape(shape).mean(axis=(a + 1, b + 2))


def _window_corner(coords: jax.Array, radius: int, height: int, width: int):
  """(x0, y0) int32 [...], the integer part of each clamped window centre, and its
  fractional part (fx, fy) [..., 1, 1].

  Windows whose centre lies more than r+1 outside the grid are all zero; clamping the centre
  to [-r-2, size+r] keeps every patch index within 2r+2 of the grid without changing a value.
  """
  x = jnp.clip(coords[..., 0], -radius - 2.0, width + radius)
  y = jnp.clip(coords[..., 1], -radius - 2.0, height + radius)
  x0, y0 = jnp.floor(x), jnp.floor(y)
  fx, fy = (x - x0)[..., None, None], (y - y0)[..., None, None]
  return x0.astype(jnp.int32), y0.astype(jnp.int32), fx, fy


def _patch_geometry(coords: jax.Array, radius: int, height: int, width: int):
  """Integer patch of each window and its bilinear weights.

  Args:
    coords: [..., 2] window centres (x, y) in level pixels.
  Returns:
    flat: int32 [..., n*n] flat row-major target indices (clipped into range) of the patch
      entries in x-major order (column offset slow), n = 2r+2.
    valid: bool [..., n*n] whether the patch entry lies inside the level.
    fx, fy: [..., 1, 1] fractional parts (shared by the whole window).
  """
  r = radius
  n = 2 * r + 2
  x0, y0, fx, fy = _window_corner(coords, radius, height, width)
  steps = jnp.arange(n, dtype=jnp.int32) - r
  cols = x0[..., None] + steps  # [..., n]
  rows = y0[..., None] + steps
  valid = (((cols >= 0) & (cols < width))[..., :, None]
           & ((rows >= 0) & (rows < height))[..., None, :])
  flat = (jnp.clip(cols, 0, width - 1)[..., :, None]
          + jnp.clip(rows, 0, height - 1)[..., None, :] * width)
  lead = coords.shape[:-1]
  return flat.reshape(lead + (n * n,)), valid.reshape(lead + (n * n,)), fx, fy


def _blend(patch: jax.Array, fx: jax.Array, fy: jax.Array, radius: int) -> jax.Array:
  """[..., n*n] x-major patch values -> [..., (2r+1)^2] x-major window.

  The x offset is the slow channel index because the pretrained convc1 relies on it; keeping
  patches x-major throughout spares a transpose per level and iteration.
  """
  n = 2 * radius + 2
  p = patch.reshape(patch.shape[:-1] + (n, n))  # [..., x, y]
  cols = p[..., :, :-1] * (1.0 - fy) + p[..., :, 1:] * fy
  win = cols[..., :-1, :] * (1.0 - fx) + cols[..., 1:, :] * fx  # [..., dx, dy]
  return win.reshape(win.shape[:-2] + ((2 * radius + 1)**2,))


def window_pad(radius: int) -> int:
  """Zero margin around each all-pairs level: every clamped window (see `_window_corner`)
  then lies inside, so one (2r+2)^2 slice per pixel needs no bounds checks."""
  return 2 * radius + 2


def corr_init(fmap1: jax.Array, fmap2: jax.Array, *, mode: str, num_levels: int,
              radius: int) -> dict[str, Any]:
  """Builds the state that `corr_lookup` samples from.

  Args:
    fmap1, fmap2: float32 [B, h, w, D] feature maps of image 1 and 2.
    mode: 'all_pairs' (pyramid of volumes [B, h, w, w_i + 2p, h_i + 2p], target x before
      y, zero margin p = `window_pad(radius)`) or 'on_demand' (fmap1 [B, h, w, D] scaled
      by 1/sqrt(D) and pooled fmap2 levels [B, h_i, w_i, D]).
    radius: the lookup radius (sets the all-pairs margin).
  """
  if mode not in CORR_MODES:
    raise ValueError(f'corr mode must be one of {CORR_MODES}, got {mode!r}')
  fmap1 = fmap1.astype(jnp.float32)
  fmap2 = fmap2.astype(jnp.float32)
  b, h, w, d = fmap1.shape
  pooled = [fmap2]
  for _ in range(num_levels - 1):
    pooled.append(_pool2(pooled[-1], (1, 2)))
  if mode == 'on_demand':
    return {'fmap1': fmap1 / math.sqrt(d), 'levels': tuple(pooled)}
  # The official pyramid average-pools the level-0 volume over its target axes. Pooling is
  # linear, so level i equals fmap1 correlated with fmap2 pooled i times: four smaller
  # matmuls instead of pooling a [h*w, h*w] volume, equal up to float rounding.
  pad = window_pad(radius)
  f1 = (fmap1 / math.sqrt(d)).reshape(b, h * w, d)
  levels = []
  for f2 in pooled:
    hi, wi = f2.shape[1:3]
    f2 = f2.transpose(0, 2, 1, 3).reshape(b, wi * hi, d)  # x-major targets, as the windows
    vol = jnp.matmul(f1, f2.transpose(0, 2, 1),
                     precision=jax.lax.Precision.HIGHEST).reshape(b, h, w, wi, hi)
    levels.append(jnp.pad(vol, ((0, 0),) * 3 + ((pad, pad),) * 2))
  return {'levels': tuple(levels)}


def _lookup_volume(vol: jax.Array, coords: jax.Array, radius: int) -> jax.Array:
  """Windows of one zero-margined level: one (2r+2) x (2r+2) slice per pixel, blended."""
  b, h, w, wp, hp = vol.shape
  pad = window_pad(radius)
  wi, hi = wp - 2 * pad, hp - 2 * pad
  if hi == 0 or wi == 0:  # a level pooled away on tiny inputs contributes zeros
    return jnp.zeros((b, h, w, (2 * radius + 1)**2), vol.dtype)
  n = 2 * radius + 2
  x0, y0, fx, fy = _window_corner(coords, radius, hi, wi)
  starts = jnp.stack([jnp.arange(b * h * w, dtype=jnp.int32),
                      (x0 - radius + pad).reshape(-1), (y0 - radius + pad).reshape(-1)], -1)
  dims = jax.lax.GatherDimensionNumbers(offset_dims=(1, 2), collapsed_slice_dims=(0,),
                                        start_index_map=(0, 1, 2))
  patch = jax.lax.gather(vol.reshape(b * h * w, wp, hp), starts, dims, slice_sizes=(1, n, n),
                         mode='promise_in_bounds')
  return _blend(patch.reshape(b, h, w, n * n), fx, fy, radius)


def _lookup_features(fmap1: jax.Array, fmap2: jax.Array, coords: jax.Array,
                     radius: int) -> jax.Array:
  """On-demand level: dot products of fmap1 with the gathered fmap2 patch, in chunks."""
  b, h, w, d = fmap1.shape
  _, hi, wi, _ = fmap2.shape
  k = (2 * radius + 1)**2
  if hi == 0 or wi == 0:
    return jnp.zeros((b, h, w, k), fmap1.dtype)
  n2 = (2 * radius + 2)**2
  f2 = fmap2.reshape(b, hi * wi, d)
  src = h * w
  chunk = max(1, min(src, _ON_DEMAND_CHUNK_BYTES // (b * n2 * d * 4)))
  num_chunks = -(-src // chunk)
  pad = num_chunks * chunk - src
  f1 = jnp.pad(fmap1.reshape(b, src, d), ((0, 0), (0, pad), (0, 0)))
  c = jnp.pad(coords.reshape(b, src, 2), ((0, 0), (0, pad), (0, 0)))
  f1 = f1.reshape(b, num_chunks, chunk, d).transpose(1, 0, 2, 3)
  c = c.reshape(b, num_chunks, chunk, 2).transpose(1, 0, 2, 3)

  def one_chunk(args):
    f1c, cc = args  # [B, chunk, D], [B, chunk, 2]
    flat, valid, fx, fy = _patch_geometry(cc, radius, hi, wi)
    g = jax.vmap(lambda table, idx: table[idx])(f2, flat)  # [B, chunk, n2, D]
    dots = jnp.einsum('bcd,bcnd->bcn', f1c, g, precision=jax.lax.Precision.HIGHEST)
    return _blend(jnp.where(valid, dots, 0.0), fx, fy, radius)

  if num_chunks == 1:
    out = one_chunk((f1[0], c[0]))[None]
  else:
    out = jax.lax.map(one_chunk, (f1, c))
  out = out.transpose(1, 0, 2, 3).reshape(b, num_chunks * chunk, k)[:, :src]
  return out.reshape(b, h, w, k)


def corr_lookup(state: dict[str, Any], coords: jax.Array, *, radius: int) -> jax.Array:
  """Correlation features around `coords`.

  Args:
    state: from `corr_init` (the mode is implied by its keys).
    coords: float32 [B, h, w, 2] positions (x, y) in 1/8-resolution pixels.
  Returns:
    float32 [B, h, w, levels * (2r+1)^2].
  """
  coords = coords.astype(jnp.float32)
  out = []
  for i, level in enumerate(state['levels']):
    c = coords / (2**i)
    if 'fmap1' in state:
      out.append(_lookup_features(state['fmap1'], level, c, radius))
    else:
      out.append(_lookup_volume(level, c, radius))
  return jnp.concatenate(out, axis=-1)
