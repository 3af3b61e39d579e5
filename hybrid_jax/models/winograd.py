"""Winograd F(2x2, 3x3) convolution (Lavin & Gray, "Fast Algorithms for Convolutional Neural
Networks", CVPR 2016) for stride-1 3x3 convs with PyTorch's zero padding of 1.

Each 2x2 output tile is computed from the 4x4 input tile around it with 16 products per
channel pair instead of 36 (2.25x fewer multiplications):

    Y = A^T [(G g G^T) * (B^T d B)] A

g the 3x3 kernel, d the 4x4 input tile; the element-wise product over the 16 positions is a
batch of 16 matmuls over the channels. The transforms only add, subtract and halve, so float32
results differ from a direct conv by rounding only (~1e-6 relative).

Why here: RAFT's refinement loop runs its 3x3 convs on the 1/8-resolution grid (46x62 cells at
368x496) twelve or more times per frame pair. There the matmuls dominate and this form is
1.1-1.5x faster than XLA:CPU's direct conv (benchmarks/RESULTS.md). The kernel transform is
done once per forward, before the loop (`transform_kernel`). At the encoders' large, narrow
feature maps (184x248x64) the transforms' memory traffic makes it slower, so it is not used
there.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

# Input transform B^T [4, 4], kernel transform G [4, 3], output transform A^T [2, 4].
_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32)
_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float32)
_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float32)


def transform_kernel(kernel: Array) -> Array:
  """[3, 3, I, O] HWIO kernel -> [16, I, O] Winograd-domain kernel (G g G^T, row-major)."""
  if kernel.shape[:2] != (3, 3):
    raise ValueError(f'Winograd F(2x2, 3x3) needs a 3x3 kernel, got {kernel.shape}')
  g = jnp.asarray(_G, kernel.dtype)
  u = jnp.einsum('ai,ijco,bj->abco', g, kernel, g, precision=jax.lax.Precision.HIGHEST)
  return u.reshape((16,) + kernel.shape[2:])


def _combine(parts: list[Array], matrix: np.ndarray) -> list[Array]:
  """out[i] = sum_j matrix[i, j] * parts[j], skipping zero coefficients (all are 0, +-1)."""
  out = []
  for row in matrix:
    acc = None
    for coef, part in zip(row, parts):
      if coef == 0:
        continue
      term = part if coef == 1 else (-part if coef == -1 else coef * part)
      acc = term if acc is None else acc + term
    out.append(acc)
  return out


def conv3x3(x: Array, u: Array, bias: Array | None = None) -> Array:
  """Stride-1 3x3 conv with zero padding 1 (PyTorch `padding=1`), NHWC.

  Args:
    x: [B, H, W, I] input.
    u: [16, I, O] kernel from `transform_kernel`.
    bias: optional [O].
  Returns:
    [B, H, W, O], equal to `lax.conv_general_dilated` up to float rounding.
  """
  b, h, w, c = x.shape
  o = u.shape[-1]
  th, tw = -(-h // 2), -(-w // 2)  # output tiles; odd sizes compute one extra row/column
  xp = jnp.pad(x, ((0, 0), (1, 1 + 2 * th - h), (1, 1 + 2 * tw - w), (0, 0)))
  # Tile (i, j) reads padded rows 2i..2i+3 and columns 2j..2j+3: four strided views each.
  rows = _combine([xp[:, k:k + 2 * th:2] for k in range(4)], _BT)
  tiles = []
  for r in rows:
    tiles += _combine([r[:, :, k:k + 2 * tw:2] for k in range(4)], _BT)
  v = jnp.stack(tiles, 0).reshape(16, b * th * tw, c)
  m = jax.lax.dot_general(v, u.astype(x.dtype), (((2,), (1,)), ((0,), (0,))),
                          precision=jax.lax.Precision.HIGHEST)
  m = m.reshape(4, 4, b, th, tw, o)
  out_rows = _combine([m[k] for k in range(4)], _AT)  # 2 x [4, B, th, tw, O]
  out = jnp.stack([jnp.stack(_combine([r[k] for k in range(4)], _AT), 0) for r in out_rows], 0)
  y = out.transpose(2, 3, 0, 4, 1, 5).reshape(b, 2 * th, 2 * tw, o)[:, :h, :w]
  return y if bias is None else y + bias.astype(y.dtype)
