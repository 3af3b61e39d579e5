"""Pixel tracker (§III.C): move masks along optical flow, compare them by a batched dice matrix.

The paper adds each pixel's coordinates and its flow vector to move an instance of frame t-δ
into frame t, then fills an m×n matrix of dice coefficients against the masks of frame t. Here
both steps are whole-array operations:

* `warp_masks` computes one target index per pixel (shared by all masks) and scatters the
  per-pixel instance bit-sets at once — no loop over instances.
* `dice_matrix` gets all m×n intersections at once: one matrix product of the flattened masks
  (accelerators) or AND + popcount of bit-packed masks (CPU), plus the areas.

The flow itself comes from any `tracking.flow_sources.FlowSource` (RAFT, ground truth, .flo
files), so the pixel tracker never imports a flow network.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp

from hybrid_jax import backend_choices
from hybrid_jax import errors

def warp_indices(flow):
  """Flat target index of every pixel under forward flow; H*W marks "left the frame".

  Args:
    flow: float [H, W, 2] forward flow, x (column) first.

  Returns:
    int32 [H*W]: ``round(y + fy) * W + round(x + fx)``, or H*W when the target is outside.
  """
  h, w, _ = flow.shape
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                        indexing='ij')
  # jnp.round rounds half to even; the tie case (exact .5 flow) is measure-zero for real flow.
  tx = jnp.round(xs + flow[..., 0]).astype(jnp.int32)
  ty = jnp.round(ys + flow[..., 1]).astype(jnp.int32)
  inside = (tx >= 0) & (tx < w) & (ty >= 0) & (ty < h) & jnp.isfinite(flow).all(-1)
  return jnp.where(inside, ty * w + tx, h * w).reshape(-1)


@jax.jit
def warp_masks(masks, flow):
  """Forward-warps masks along the flow (nearest target pixel, out-of-frame dropped).

  Each mask moves independently, so two instances may land on the same pixel (both keep it):
  the pixel tracker compares each warped mask with frame t's masks separately, and an
  occluder/occludee overlap is exactly the evidence the dice needs. Several source pixels of
  one mask landing on one target collapse to one. Target pixels that no source reaches stay
  empty (no hole filling; dice is robust to a few holes).

  How: the masks are packed per pixel into ceil(M/32) uint32 bit-sets, so one 1-D scatter
  moves all instances at once. A scatter cannot OR, so collisions are resolved in rounds: each
  round every target keeps one source (scatter-max of the source index), ORs that source's
  bit-set in, and the other sources try again next round, until none is left. The result is
  exactly the per-mask scatter, ~10x faster on CPU than scattering [M, H*W] elements.

  Args:
    masks: bool [M, H, W].
    flow: float [H, W, 2] forward flow from the masks' frame to the target frame, x first.

  Returns:
    bool [M, H, W] the masks in the target frame.
  """
  m, h, w = masks.shape
  hw = h * w
  words = max(-(-m // 32), 1)
  idx = warp_indices(flow)
  planes = jnp.pad(masks.reshape(m, hw), ((0, 32 * words - m), (0, 0)))
  planes = planes.reshape(words, 32, hw).astype(jnp.uint32)
  bits = (planes << jnp.arange(32, dtype=jnp.uint32)[:, None]).sum(1, dtype=jnp.uint32).T
  src = jnp.arange(hw, dtype=jnp.int32)
  active = (bits != 0).any(axis=1) & (idx < hw)

  def body(state):
    out, active = state
    tgt = jnp.where(active, idx, hw)
    win = jnp.full((hw + 1,), -1, jnp.int32).at[tgt].max(src, mode='promise_in_bounds')
    placed = active & (win[tgt] == src)
    win = win[:hw]
    out = out | jnp.where((win >= 0)[:, None], bits[jnp.maximum(win, 0)], jnp.uint32(0))
    return out, active & ~placed

  out, _ = jax.lax.while_loop(lambda s: s[1].any(), body,
                              (jnp.zeros((hw, words), jnp.uint32), active))
  unpacked = (out.T[:, None, :] >> jnp.arange(32, dtype=jnp.uint32)[None, :, None]) & 1
  return unpacked.reshape(32 * words, hw)[:m].astype(bool).reshape(m, h, w)


_PACK_CHUNK = 256  # the packed word count is padded to a multiple of this


@functools.partial(jax.jit, static_argnames=('chunk',))
def pack_masks(masks, *, chunk: int = _PACK_CHUNK):
  """Packs bool masks [M, H, W] into uint32 words [M, K] (32 pixels per word).

  Pixel p goes to word p % K, bit p // K (a strided assignment: the reduction over the 32 bit
  planes then runs along a major axis, which XLA vectorises). K is padded to a multiple of
  `chunk`; both mask sets of one dice matrix must be packed with the same H, W and chunk.
  """
  m = masks.shape[0]
  flat = masks.reshape(m, -1)
  words = -(-flat.shape[1] // 32)
  words = -(-words // chunk) * chunk
  flat = jnp.pad(flat, ((0, 0), (0, 32 * words - flat.shape[1])))
  planes = flat.reshape(m, 32, words).astype(jnp.uint32)
  return (planes << jnp.arange(32, dtype=jnp.uint32)[:, None]).sum(1, dtype=jnp.uint32)


@functools.partial(jax.jit, static_argnames=('unroll',))
def packed_overlaps(packed_a, packed_b, *, unroll: int = 16):
  """Intersections [M, N] and areas [M], [N] (int32) of packed masks by AND + popcount.

  A scan over the words, `unroll` words per step written as an explicit sum of [M, N]
  element-wise terms: XLA CPU vectorises those along N, whereas a reduction over a major
  axis of an [K, M, N] block compiles to scalar loops (measured 2x slower). K must be a
  multiple of `unroll` (`pack_masks` pads to a multiple of 256).
  """
  m, n = packed_a.shape[0], packed_b.shape[0]
  at = packed_a.T.reshape(-1, unroll, m)
  bt = packed_b.T.reshape(-1, unroll, n)
  popcount = lambda v: jax.lax.population_count(v).astype(jnp.int32)

  def body(carry, ab):
    inter, area_a, area_b = carry
    x, y = ab
    for u in range(unroll):
      inter = inter + popcount(x[u][:, None] & y[u][None, :])
      area_a = area_a + popcount(x[u])
      area_b = area_b + popcount(y[u])
    return (inter, area_a, area_b), None

  init = (jnp.zeros((m, n), jnp.int32), jnp.zeros((m,), jnp.int32), jnp.zeros((n,), jnp.int32))
  (inter, area_a, area_b), _ = jax.lax.scan(body, init, (at, bt))
  return inter, area_a, area_b


@jax.jit
def matmul_overlaps(masks_a, masks_b):
  """Intersections [M, N] and areas by one matrix product (accelerators).

  bf16 holds 0/1 exactly and the products accumulate in float32, exact up to 2**24 pixels.
  """
  m, n = masks_a.shape[0], masks_b.shape[0]
  a = masks_a.reshape(m, -1).astype(jnp.bfloat16)
  b = masks_b.reshape(n, -1).astype(jnp.bfloat16)
  inter = jnp.matmul(a, b.T, preferred_element_type=jnp.float32)
  return inter, a.sum(1, dtype=jnp.float32), b.sum(1, dtype=jnp.float32)


@jax.jit
def dice_from_overlaps(inter, area_a, area_b, valid_a=None, valid_b=None):
  """dice = 2 inter / (|A| + |B|); 0 where invalid or both empty."""
  denom = (area_a[:, None] + area_b[None, :]).astype(jnp.float32)
  dice = jnp.where(denom > 0, 2.0 * inter.astype(jnp.float32) / jnp.maximum(denom, 1.0), 0.0)
  if valid_a is not None:
    dice = jnp.where(valid_a[:, None], dice, 0.0)
  if valid_b is not None:
    dice = jnp.where(valid_b[None, :], dice, 0.0)
  return dice


def dice_matrix(masks_a, masks_b, valid_a=None, valid_b=None, *, method: str = 'auto'):
  """Pairwise dice of two mask sets, all pairs at once.

  dice(i, j) = 2 |A_i ∩ B_j| / (|A_i| + |B_j|) (the paper's eq. 7 for binary masks); 0 where
  either slot is invalid or both masks are empty. Exact (integer counts) on every path.

  method: 'matmul' (inter = A @ B^T, one matrix product; best on GPU/TPU), 'packed' (32
  pixels per uint32 word, AND + popcount: 1 bit per pixel instead of a 4-byte float; the
  fast path on CPU, ~25x faster there than the float matmul at 64 masks of 1024x2048),
  or 'auto' (packed on CPU, matmul elsewhere). Each stage is its own
  jitted function: composed in one jit, XLA CPU fuses the packing into the scan and runs
  ~10x slower.

  Args:
    masks_a: bool [M, H, W]; masks_b: bool [N, H, W].
    valid_a: optional bool [M]; valid_b: optional bool [N].

  Returns:
    float32 [M, N].
  """
  if method == 'auto':
    method = backend_choices.dice_method()
  masks_a = jnp.asarray(masks_a, bool)
  masks_b = jnp.asarray(masks_b, bool)
  if method == 'packed':
    overlaps = packed_overlaps(pack_masks(masks_a), pack_masks(masks_b))
  elif method == 'matmul':
    overlaps = matmul_overlaps(masks_a, masks_b)
  else:
    raise errors.ConfigError(f"Unknown dice method {method!r}; use 'auto', 'packed', 'matmul'.")
  return dice_from_overlaps(*overlaps, valid_a, valid_b)


def check_flow_shape(flow_shape: Sequence[int], mask_hw: Sequence[int]) -> None:
  """FormatError naming both shapes when a flow field does not fit the masks."""
  flow_shape = tuple(int(s) for s in flow_shape)
  if len(flow_shape) != 3 or flow_shape[2] != 2 or flow_shape[:2] != tuple(mask_hw):
    raise errors.FormatError(
        f'Optical flow of shape {flow_shape} does not fit instance masks of size '
        f'{tuple(mask_hw)} (expected flow [{mask_hw[0]}, {mask_hw[1]}, 2], x first). Compute '
        f'the flow at the segmentation resolution or resize it (and scale its vectors).')
