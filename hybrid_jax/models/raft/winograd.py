"""Winograd convolution (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks",
CVPR 2016) for the stride-1 convs of RAFT's refinement loop: F(2x2, 3x3) for 3x3 kernels and
F(4, 5) along one axis for the SepConvGRU's 1x5 / 5x1 kernels. Zero padding as PyTorch's
(k-1)//2.

F(m, r) computes m outputs of an r-tap filter from the n = m + r - 1 inputs around them:

    y = A^T [(G g) * (B^T d)]

with n products per channel pair instead of m * r. Over the channels the element-wise
product is a batch of n matmuls. F(2x2, 3x3) applies the 1-D transforms along both axes
(16 products for 4 outputs instead of 36); F(4, 5) needs 8 instead of 20. The transforms only
form linear combinations, so the results equal a direct conv up to float rounding (~1e-5
relative for F(4, 5), whose interpolation points include +-2 and +-1/2).

Why here: the loop runs these convs on the 1/8-resolution grid (46x62 cells at 368x496) twelve
or more times per frame pair, where the matmuls dominate; this form made them 1.1-1.8x faster
than XLA:CPU's direct conv (benchmarks/RESULTS.md). Kernels are transformed once per forward,
before the loop (`transform`). On the encoders' large, narrow feature maps (184x248x64) the
transforms' memory traffic made it slower, and on training crops' tiny grids too, so neither
uses it.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def toom_cook(m: int, r: int, points: tuple[float, ...]
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(A^T [m, n], G [n, r], B^T [n, n]) of F(m, r) from n - 1 finite points and infinity.

  A linear convolution is evaluation at the points, a product and interpolation:
  conv(g, x) = V^-1 [(V_r g) * (V_m x)], V[i, j] = p_i^j (the row of infinity picks the
  leading coefficient). Correlation, what a conv layer computes, is its transpose, hence
  A^T = V_m^T, G = V_r, B^T = V^-T.
  """
  n = m + r - 1
  if len(points) != n - 1:
    raise ValueError(f'F({m}, {r}) needs {n - 1} finite points, got {len(points)}')

  def vandermonde(cols):  # rows: the points, then infinity (the top coefficient)
    v = np.zeros((n, cols))
    for i, p in enumerate(points):
      v[i] = np.power(float(p), np.arange(cols))
    v[-1, -1] = 1.0
    return v
  return vandermonde(m).T, vandermonde(r), np.linalg.inv(vandermonde(n)).T


# F(2, 3) (applied along both axes) and F(4, 5), float32.
_F23 = tuple(a.astype(np.float32) for a in toom_cook(2, 3, (0, 1, -1)))
_F45 = tuple(a.astype(np.float32) for a in toom_cook(4, 5, (0, 1, -1, 2, -2, 0.5, -0.5)))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Kernel:
  """A kernel in the Winograd domain: u [n, I, O] (1-D) or [n*n, I, O] (2-D), `along` the
  image axes it filters: 'hw' (3x3), 'w' (1x5) or 'h' (5x1)."""
  u: Array
  along: str = dataclasses.field(metadata=dict(static=True))


_SHAPES = {(3, 3): 'hw', (1, 5): 'w', (5, 1): 'h'}


def supports(kernel_shape: tuple[int, ...]) -> bool:
  """Whether an HWIO kernel of this shape has a Winograd form here."""
  return tuple(kernel_shape[:2]) in _SHAPES


def transform(kernel: Array) -> Kernel:
  """HWIO kernel [3, 3, I, O], [1, 5, I, O] or [5, 1, I, O] -> `Kernel`."""
  along = _SHAPES.get(tuple(kernel.shape[:2]))
  if along is None:
    raise ValueError(f'no Winograd form for a {kernel.shape[0]}x{kernel.shape[1]} kernel '
                     f'(have {sorted(_SHAPES)})')
  hp = jax.lax.Precision.HIGHEST
  if along == 'hw':
    g = jnp.asarray(_F23[1], kernel.dtype)
    u = jnp.einsum('ai,ijco,bj->abco', g, kernel, g, precision=hp)
    return Kernel(u.reshape((-1,) + kernel.shape[2:]), along)
  g = jnp.asarray(_F45[1], kernel.dtype)
  taps = kernel[0] if along == 'w' else kernel[:, 0]
  return Kernel(jnp.einsum('ak,kco->aco', g, taps, precision=hp), along)


def _combine(parts: list[Array], matrix: np.ndarray) -> list[Array]:
  """out[i] = sum_j matrix[i, j] * parts[j], skipping zero coefficients."""
  out = []
  for row in matrix:
    acc = None
    for coef, part in zip(row, parts):
      if coef == 0:
        continue
      term = part if coef == 1 else (-part if coef == -1 else float(coef) * part)
      acc = term if acc is None else acc + term
    out.append(acc)
  return out


def _tiles(x: Array, axis: int, m: int, n: int, count: int, bt: np.ndarray) -> list[Array]:
  """B^T applied along `axis` of the padded x: n arrays, `count` tiles of stride m each."""
  views = [jax.lax.slice_in_dim(x, j, j + m * (count - 1) + 1, stride=m, axis=axis)
           for j in range(n)]
  return _combine(views, bt)


def conv(x: Array, kernel: Kernel, bias: Array | None = None) -> Array:
  """Stride-1 conv of x [B, H, W, I] with a `transform`ed kernel; [B, H, W, O]."""
  b, h, w, c = x.shape
  o = kernel.u.shape[-1]
  if kernel.along == 'hw':
    at, _, bt = _F23
    r = 3
  else:
    at, _, bt = _F45
    r = 5
  m, n = at.shape
  pad = (r - 1) // 2
  th = -(-h // m) if 'h' in kernel.along else h  # tiles; the surplus outputs are cropped
  tw = -(-w // m) if 'w' in kernel.along else w
  pads = [(0, 0), (0, 0), (0, 0), (0, 0)]
  if 'h' in kernel.along:
    pads[1] = (pad, pad + m * th - h)
  if 'w' in kernel.along:
    pads[2] = (pad, pad + m * tw - w)
  xp = jnp.pad(x, pads)
  if kernel.along == 'hw':
    parts = [t for row in _tiles(xp, 1, m, n, th, bt) for t in _tiles(row, 2, m, n, tw, bt)]
  else:
    parts = _tiles(xp, 1 if kernel.along == 'h' else 2, m, n, th if kernel.along == 'h' else tw,
                   bt)
  v = jnp.stack(parts, 0).reshape(len(parts), b * th * tw, c)
  prod = jax.lax.dot_general(v, kernel.u.astype(x.dtype), (((2,), (1,)), ((0,), (0,))),
                             precision=jax.lax.Precision.HIGHEST)
  if kernel.along == 'hw':
    prod = prod.reshape(n, n, b, th, tw, o)
    rows = _combine([prod[i] for i in range(n)], at)  # m x [n, B, th, tw, O]
    y = jnp.stack([jnp.stack(_combine([r[j] for j in range(n)], at), 0) for r in rows], 0)
    y = y.transpose(2, 3, 0, 4, 1, 5).reshape(b, m * th, m * tw, o)  # [B, th, p, tw, q, O]
  elif kernel.along == 'w':
    y = jnp.stack(_combine(list(prod.reshape(n, b, h, tw, o)), at), 3)  # [B, H, tw, m, O]
    y = y.reshape(b, h, m * tw, o)
  else:
    y = jnp.stack(_combine(list(prod.reshape(n, b, th, w, o)), at), 2)  # [B, th, m, W, O]
    y = y.reshape(b, m * th, w, o)
  y = y[:, :h, :w]
  return y if bias is None else y + bias.astype(y.dtype)
