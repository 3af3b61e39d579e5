"""Synthetic scenes: affine maps per frame, bilinear sampling and value noise (numpy)."""

from __future__ import annotations

import numpy as np


# ------------------------------------------------------------------------------------------
# Affine helpers (arrays of frames: [T, 3, 3]).


def mat(a, b, c, d, tx, ty) -> np.ndarray:
  """Stacks per-frame 2x3 affines [[a b tx] [c d ty]] into [T, 3, 3]."""
  a, b, c, d, tx, ty = np.broadcast_arrays(*(np.asarray(v, np.float64)
                                              for v in (a, b, c, d, tx, ty)))
  m = np.zeros(a.shape + (3, 3))
  m[..., 0, 0], m[..., 0, 1], m[..., 0, 2] = a, b, tx
  m[..., 1, 0], m[..., 1, 1], m[..., 1, 2] = c, d, ty
  m[..., 2, 2] = 1.0
  return m


def translate(tx, ty):
  return mat(1, 0, 0, 1, tx, ty)


def scale(sx, sy):
  return mat(sx, 0, 0, sy, 0, 0)


def rotate(theta):
  c, s = np.cos(theta), np.sin(theta)
  return mat(c, -s, s, c, 0, 0)


def apply(m: np.ndarray, x: np.ndarray, y: np.ndarray):
  """Applies one 3x3 affine `m` to point arrays x, y (keeps their dtype)."""
  (a, b, c), (d, e, f) = m[:2].tolist()  # Python floats do not upcast float32 arrays
  return a * x + b * y + c, d * x + e * y + f


# ------------------------------------------------------------------------------------------
# Textures.


def bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray, wrap: bool = False):
  """Samples img [h, w, C] at float positions (x, y) (index units) -> float32 [..., C].

  Clamps at the border, or wraps around when `wrap` (periodic textures). Gathers from the
  flattened image, which is several times faster than 2-D fancy indexing.
  """
  h, w, c = img.shape
  x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
  if not wrap:
    x, y = np.clip(x, 0, w - 1.001), np.clip(y, 0, h - 1.001)
  x0f, y0f = np.floor(x), np.floor(y)
  fx, fy = (x - x0f)[..., None], (y - y0f)[..., None]
  x0, y0 = x0f.astype(np.int64), y0f.astype(np.int64)
  if wrap:
    x0, y0 = x0 % w, y0 % h
    x1, y1 = (x0 + 1) % w, (y0 + 1) % h
  else:
    x1, y1 = x0 + 1, y0 + 1
  flat = img.reshape(h * w, c)
  r0, r1 = y0 * w, y1 * w
  a, b = np.take(flat, r0 + x0, axis=0), np.take(flat, r0 + x1, axis=0)
  top = a + (b - a) * fx
  a, b = np.take(flat, r1 + x0, axis=0), np.take(flat, r1 + x1, axis=0)
  bot = a + (b - a) * fx
  return top + (bot - top) * fy


def noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
  """Smooth value noise in [-1, 1], float32 [h, w]: random lattice every `cell` texels."""
  h, w = shape
  lattice = rng.uniform(-1, 1, (int(h / cell) + 3, int(w / cell) + 3, 1)).astype(np.float32)
  ys, xs = np.meshgrid(np.arange(h) / cell, np.arange(w) / cell, indexing='ij')
  return bilinear(lattice, xs, ys)[..., 0]


def tile_noise(rng: np.random.Generator, size: int = 16) -> np.ndarray:
  """A small periodic noise texture [size, size, 1] for things (sampled with wrap)."""
  return rng.uniform(-1, 1, (size, size, 1)).astype(np.float32)


# ------------------------------------------------------------------------------------------
# Soft shape and texture primitives.

def smooth(v):
  v = np.clip(v, 0, 1)
  return v * v * (3 - 2 * v)


def lines(coord, period, width):
  """Soft periodic lines at coord = 0 mod period: 1 on a line, 0 beyond `width` from it.

  Hard one-texel lines alias and make photometric checks of the flow meaningless; a smooth
  profile keeps the look while staying band-limited.
  """
  d = np.abs((coord + period / 2) % period - period / 2)
  return smooth(1 - d / width)


def box(coord, lo, hi, soft):
  """Soft indicator of lo <= coord <= hi with ramps of width `soft`."""
  return smooth((coord - lo) / soft + 0.5) * smooth((hi - coord) / soft + 0.5)
