"""Procedural synthetic video panoptic segmentation clips with exact optical flow.

A clip is a street scene seen by a moving camera: a textured background world (sky, buildings,
vegetation, sidewalk, road) that pans, bobs and zooms; a pole in front of the sidewalk with
its own parallax; cars and walking persons (articulated: legs and arms swing) with their own
textures. Every layer is a shape plus a texture in its own *local* coordinates and an affine
map per frame ``A_t`` (local -> pixel, 3x3 homogeneous, pixel centres at integer
coordinates). A pixel ``p`` of frame t is drawn from the front-most layer (largest depth)
whose shape contains ``A_t^-1 p`` (point sampling, no anti-aliasing). Hence its ground-truth
forward flow is exactly ``A_{t+1} A_t^-1 p - p``, and it is valid when that point lies in
the image and the same layer is the front-most one there at t+1 (else it is occluded).

Each clip follows a schedule drawn from its seed, so that the things the HybridTracker paper
is about happen in every clip (designed for ``clip_length >= 8`` and ``height >= 32``;
shorter clips still render, with the events possibly cut):
  * one person walks behind the pole and is fully hidden for >= 2 frames, then reappears;
  * one car enters the frame (absent at frame 0) and one ahead of it leaves (absent at the
    end), both in the near lane, in front of everything else;
  * one car approaches or recedes (scale x1.4..1.9) while turning (rotation);
  * a look-alike pair (two persons or two cars with identical shape and texture);
  * one or two small, distant persons (a few dozen pixels at 128x256);
  * a few more persons and cars with random speeds; the camera pans and zooms.

The scene is designed in *base units* (image height 128); any resolution scales it, so the
geometry (labels, flow / scale) is the same at 32x64 and 128x256; only texture detail adapts
so that it never falls below ~2 pixels. No void: every pixel belongs to some layer.
Categories: `categories.SYNTHETIC` (stuff sky 0, road 1, sidewalk 2, building 3, vegetation 4,
pole 5; things car 6, person 7); panoptic = category * 1000 + track id.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from hybrid_jax import errors
from hybrid_jax.data import categories

SKY, ROAD, SIDEWALK, BUILDING, VEGETATION, POLE, CAR, PERSON = range(8)
_DIV = categories.LABEL_DIVISOR
_BASE_H = 128.0   # scene height in base units
_HORIZON = 64.0   # building bottoms / sidewalk top (base units, world y)
_CURB = 80.0      # sidewalk bottom / road top
MIN_SIZE = 16     # smallest height/width accepted (pixels)

# ------------------------------------------------------------------------------------------
# Affine helpers (arrays of frames: [T, 3, 3]).


def _mat(a, b, c, d, tx, ty) -> np.ndarray:
  """Stacks per-frame 2x3 affines [[a b tx] [c d ty]] into [T, 3, 3]."""
  a, b, c, d, tx, ty = np.broadcast_arrays(*(np.asarray(v, np.float64)
                                              for v in (a, b, c, d, tx, ty)))
  m = np.zeros(a.shape + (3, 3))
  m[..., 0, 0], m[..., 0, 1], m[..., 0, 2] = a, b, tx
  m[..., 1, 0], m[..., 1, 1], m[..., 1, 2] = c, d, ty
  m[..., 2, 2] = 1.0
  return m


def _translate(tx, ty):
  return _mat(1, 0, 0, 1, tx, ty)


def _scale(sx, sy):
  return _mat(sx, 0, 0, sy, 0, 0)


def _rotate(theta):
  c, s = np.cos(theta), np.sin(theta)
  return _mat(c, -s, s, c, 0, 0)


def _apply(m: np.ndarray, x: np.ndarray, y: np.ndarray):
  """Applies one 3x3 affine `m` to point arrays x, y (keeps their dtype)."""
  (a, b, c), (d, e, f) = m[:2].tolist()  # Python floats do not upcast float32 arrays
  return a * x + b * y + c, d * x + e * y + f


# ------------------------------------------------------------------------------------------
# Textures.


def _bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray, wrap: bool = False):
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


def _noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
  """Smooth value noise in [-1, 1], float32 [h, w]: random lattice every `cell` texels."""
  h, w = shape
  lattice = rng.uniform(-1, 1, (int(h / cell) + 3, int(w / cell) + 3, 1)).astype(np.float32)
  ys, xs = np.meshgrid(np.arange(h) / cell, np.arange(w) / cell, indexing='ij')
  return _bilinear(lattice, xs, ys)[..., 0]


def _tile_noise(rng: np.random.Generator, size: int = 16) -> np.ndarray:
  """A small periodic noise texture [size, size, 1] for things (sampled with wrap)."""
  return rng.uniform(-1, 1, (size, size, 1)).astype(np.float32)


# ------------------------------------------------------------------------------------------
# The background world: a class map and a colour image in world texels (1 texel = 1 base
# unit); rendered through the camera affine, sampled nearest (class) / bilinear (colour).


@dataclasses.dataclass
class _World:
  x0: float
  y0: float
  cls: np.ndarray   # int32 [h, w]
  rgb: np.ndarray   # float32 [h, w, 3]


_FACADES = np.array([[196, 170, 140], [150, 90, 70], [170, 170, 165], [210, 200, 180],
                     [120, 110, 105], [180, 140, 110], [140, 150, 160]], np.float32)


def _smooth(v):
  v = np.clip(v, 0, 1)
  return v * v * (3 - 2 * v)


def _lines(coord, period, width):
  """Soft periodic lines at coord = 0 mod period: 1 on a line, 0 beyond `width` from it.

  Hard one-texel lines alias and make photometric checks of the flow meaningless; a smooth
  profile keeps the look while staying band-limited.
  """
  d = np.abs((coord + period / 2) % period - period / 2)
  return _smooth(1 - d / width)


def _box(coord, lo, hi, soft):
  """Soft indicator of lo <= coord <= hi with ramps of width `soft`."""
  return _smooth((coord - lo) / soft + 0.5) * _smooth((hi - coord) / soft + 0.5)


def _build_world(rng: np.random.Generator, xlo: float, xhi: float, ylo: float, yhi: float,
                 detail: float) -> _World:
  """Class map and colours of the world over [xlo, xhi] x [ylo, yhi] (base units).

  `detail` (>= 1) stretches fine texture periods so that they stay >= ~2 pixels at low
  resolutions (aliased textures would make the images noise, not texture). Noise comes from
  a generator of its own, so that the geometry (and so every label and flow vector) is the
  same at every resolution.
  """
  tex_rng = np.random.default_rng(rng.integers(1 << 62))
  x0, y0 = np.floor(xlo) - 2, np.floor(ylo) - 2
  w, h = int(np.ceil(xhi) + 3 - x0), int(np.ceil(yhi) + 3 - y0)
  ys, xs = np.meshgrid(np.arange(h, dtype=np.float32) + y0,
                       np.arange(w, dtype=np.float32) + x0, indexing='ij')
  cls = np.full((h, w), SKY, np.int32)
  dt = float(detail)

  def rgb_(*v):
    return np.array(v, np.float32)

  # Sky: vertical gradient plus soft clouds.
  g = np.clip((ys + 20) / (_HORIZON + 20), 0, 1)[..., None]
  rgb = (1 - g) * rgb_(90, 140, 210) + g * rgb_(185, 210, 235)
  cloud = np.clip(_noise(tex_rng, (h, w), 14.0) * 1.5, 0, 1)[..., None]
  rgb = rgb * (1 - 0.8 * cloud) + 245 * 0.8 * cloud

  # Buildings: blocks of random width, height and facade; bricks and a window grid.
  widths = rng.uniform(24, 64, int(w / 24) + 2)
  bounds = x0 + np.concatenate([[-1.0], np.cumsum(widths)])
  col = np.clip(np.searchsorted(bounds, xs[0], side='right') - 1, 0, len(widths) - 1)
  tops = rng.uniform(8, 46, len(widths))[col]
  facade = _FACADES[rng.integers(0, len(_FACADES), len(widths))][col]
  win_w = rng.uniform(7, 12, len(widths))[col] * min(dt, 2.0)
  win_h = rng.uniform(8, 12, len(widths))[col] * min(dt, 2.0)
  left = bounds[col]
  bmask = (ys >= tops) & (ys < _HORIZON)
  cls[bmask] = BUILDING
  row = np.floor(ys / (4 * dt))
  mortar = np.maximum(_lines(ys, 4 * dt, 0.9 * dt),
                      _lines(xs + 4.5 * dt * (row % 2), 9 * dt, 0.9 * dt))
  bcol = facade[None] * (1 + 0.06 * _noise(tex_rng, (h, w), 3.0 * dt))[..., None]
  bcol = bcol * (1 - 0.2 * mortar)[..., None]
  wx = _box((xs - left) % win_w, 0.3 * win_w, 0.85 * win_w, dt)
  wy = _box((ys - tops - 3) % win_h, 0.35 * win_h, 0.9 * win_h, dt)
  window = (wx * wy * ((ys > tops + 3) & (ys < _HORIZON - 6)))[..., None]
  wcol = rgb_(45, 60, 85) + ((ys - tops) % win_h / win_h)[..., None] * rgb_(50, 55, 60)
  bcol = bcol * (1 - window) + wcol * window
  rgb = np.where(bmask[..., None], bcol, rgb)

  # Vegetation: tree crowns with noisy outlines and trunks, plus hedges.
  veg = np.zeros((h, w), bool)
  wobble = _noise(rng, (h, w), 4.0)  # geometry: from the scene generator
  for _ in range(max(1, int(w / 45))):
    cx, cy, r = rng.uniform(x0, x0 + w), rng.uniform(28, 52), rng.uniform(7, 15)
    veg |= np.hypot(xs - cx, (ys - cy) * 1.15) < r * (1 + 0.2 * wobble)
    veg |= (np.abs(xs - cx) < 0.15 * r) & (ys >= cy) & (ys < _HORIZON)
  for _ in range(max(1, int(w / 120))):
    hx, hw, hh = rng.uniform(x0, x0 + w), rng.uniform(15, 50), rng.uniform(4, 9)
    veg |= (np.abs(xs - hx) < hw / 2) & (ys >= _HORIZON - hh * (1 + 0.3 * wobble)) & (
        ys < _HORIZON)
  cls[veg] = VEGETATION
  leaf = _noise(tex_rng, (h, w), 3.0 * dt) * 0.6 + _noise(tex_rng, (h, w), 7.0 * dt) * 0.4
  vcol = rgb_(70, 125, 40) + leaf[..., None] * rgb_(30, 40, 15)
  rgb = np.where(veg[..., None], vcol, rgb)

  # Sidewalk tiles with a bright curb; asphalt road with lane dashes.
  side = (ys >= _HORIZON) & (ys < _CURB)
  cls[side] = SIDEWALK
  tile = np.maximum(_lines(xs, 9 * dt, 0.9 * dt), _lines(ys - _HORIZON, 5 * dt, 0.9 * dt))
  scol = rgb_(180, 165, 172) * (1 + 0.05 * _noise(tex_rng, (h, w), 3.0 * dt) -
                                0.18 * tile)[..., None]
  curb = _smooth((ys - (_CURB - 2.5)) / 1.5)[..., None]
  scol = scol * (1 - curb) + 215 * curb
  rgb = np.where(side[..., None], scol, rgb)
  road = ys >= _CURB
  cls[road] = ROAD
  rcol = rgb_(78, 78, 84) * (1 + 0.12 * _noise(tex_rng, (h, w), 3.0 * dt) +
                             0.08 * _noise(tex_rng, (h, w), 9.0 * dt))[..., None]
  dash = (_box(ys, 101.5, 104.5, 1.0) * _box(xs % 26, 1.0, 13.0, 1.0))[..., None]
  rgb = np.where(road[..., None], rcol * (1 - dash) + rgb_(225, 225, 210) * dash, rgb)
  return _World(float(x0), float(y0), cls, rgb.astype(np.float32))


# ------------------------------------------------------------------------------------------
# Layers.


@dataclasses.dataclass
class _Layer:
  depth: float
  mats: np.ndarray                    # [T, 3, 3] local -> pixel
  color: Callable                     # (x, y) local -> float [N, 3]
  label: int | Callable               # panoptic value, or (x, y) -> int [N]
  inside: Callable | None = None      # (x, y) local -> bool [N]; None = covers everything
  bbox: tuple[float, float, float, float] | None = None  # local (x0, x1, y0, y1)


def _rect(x, y, x0, x1, y0, y1):
  return (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)


_PAINTS = np.array([[180, 30, 35], [30, 60, 150], [225, 225, 220], [35, 35, 40],
                    [160, 165, 170], [220, 190, 40], [40, 120, 60], [230, 120, 30],
                    [20, 30, 80], [110, 25, 40]], np.float32)
_SKINS = np.array([[235, 200, 170], [200, 150, 110], [150, 100, 70], [95, 65, 45]], np.float32)
_PANTS = np.array([[50, 70, 120], [30, 30, 35], [170, 150, 110], [100, 100, 105],
                   [90, 60, 40]], np.float32)


def _car_spec(rng):
  return dict(paint=_PAINTS[rng.integers(len(_PAINTS))] * rng.uniform(0.85, 1.1),
              tex=_tile_noise(rng), amp=rng.uniform(0.05, 0.15))


def _car_color(spec, length_px: float):
  """Paint with noise (cells >= 3 px), a trim line, windows, lamps and wheels."""
  paint, tex, amp = spec['paint'], spec['tex'], spec['amp']
  freq = float(np.clip(length_px / 3, 1, 12))
  trim = max(0.01, 0.7 / length_px)

  def color(x, y):
    n = _bilinear(tex, x * freq, y * freq, wrap=True)
    out = paint * (1 + amp * n)
    out = out * (1 - 0.4 * _lines(y + 0.16, 1.0, trim))[..., None]
    cab = _car_cabin(x, y, inset=0.025) & (np.abs(x + 0.05) > 0.025)
    glass = np.array([70, 90, 120], np.float32) + (y + 0.42)[..., None] * 200
    out = np.where(cab[..., None], glass, out)
    lamp = (np.abs(x) > 0.465) & (y > -0.25) & (y < -0.2)
    out = np.where(lamp[..., None], np.where((x > 0)[..., None], np.float32(240),
                                             np.array([200, 20, 20], np.float32)), out)
    dw = np.minimum(np.hypot(x - 0.3, y + 0.08), np.hypot(x + 0.3, y + 0.08))
    out = np.where((dw < 0.08)[..., None], np.float32(28), out)
    out = np.where((dw < 0.035)[..., None], np.float32(165), out)
    return out

  return color


def _car_cabin(x, y, inset=0.0):
  """Trapezoid roof: x in [-0.34, 0.26] at y=-0.26 narrowing to [-0.22, 0.14] at y=-0.42."""
  f = (-0.26 - y) / 0.16
  return ((y <= -0.26 - inset) & (y >= -0.42 + inset) & (x >= -0.34 + 0.12 * f + inset) &
          (x <= 0.26 - 0.12 * f - inset))


def _car_inside(x, y):
  body = ((x / 0.5) ** 8 + ((y + 0.16) / 0.11) ** 8) <= 1
  wheels = np.minimum(np.hypot(x - 0.3, y + 0.08), np.hypot(x + 0.3, y + 0.08)) < 0.08
  return body | _car_cabin(x, y) | wheels


def _car_layers(spec, *, x, y, length, angle, facing, depth, label, pix):
  """A car of `length` (base units, per frame) with bottom centre at (x, y) (base units)."""
  mats = pix @ _translate(x, y) @ _rotate(angle) @ _scale(facing * length, length)
  length_px = float(np.mean(length)) * pix[0, 0]
  return [_Layer(depth, mats, _car_color(spec, length_px), label, _car_inside,
                 (-0.5, 0.5, -0.43, 0.01))]


def _person_spec(rng):
  shirt = rng.uniform(30, 230, 3).astype(np.float32)
  return dict(skin=_SKINS[rng.integers(len(_SKINS))], shirt=shirt,
              stripe=shirt * rng.uniform(0.4, 0.7) if rng.random() < 0.5 else shirt,
              pants=_PANTS[rng.integers(len(_PANTS))], hair=rng.uniform(20, 90, 3).astype(
                  np.float32), tex=_tile_noise(rng), amp=rng.uniform(0.05, 0.2))


def _person_layers(spec, *, x, y, height, facing, phase, amp, depth, label, pix):
  """An articulated person (torso+head, two legs, two arms) with feet at (x, y).

  Body units: height 1, origin at the hip, feet at y = +0.5, head top at y = -0.5. Each limb
  is its own layer rotating about its joint, so the silhouette deforms while every pixel's
  flow stays an exact affine function of its limb.
  """
  body = pix @ _translate(x, y - 0.5 * height) @ _scale(facing * height, height)
  tex, a = spec['tex'], spec['amp']
  height_px = float(np.mean(height)) * pix[0, 0]
  freq = float(np.clip(height_px / 3, 1, 5))        # noise cells >= 3 px
  period = max(0.1, 4 / height_px)                  # shirt stripes >= 4 px apart

  def textured(base, x, y):
    return base * (1 + a * _bilinear(tex, x * freq, y * freq, wrap=True))

  def torso_color(x, y):
    stripes = (0.5 + 0.5 * np.sin(y * (2 * np.pi / period)))[..., None]
    out = spec['shirt'] * (1 - stripes) + spec['stripe'] * stripes
    out = textured(out, x, y)
    head = y < -0.355
    hair = (y < -0.46) | ((y < -0.41) & (x < -0.02))
    out = np.where(head[..., None], np.where(hair[..., None], spec['hair'], spec['skin']), out)
    return out

  def torso_inside(x, y):
    return (_rect(x, y, -0.1, 0.1, -0.36, 0.02) | (np.hypot(x, y + 0.43) < 0.07) |
            _rect(x, y, -0.025, 0.025, -0.38, -0.34))

  def leg_color(x, y):
    out = textured(spec['pants'], x, y)
    return np.where((y > 0.455)[..., None], np.float32(30), out)

  def leg_inside(x, y):
    return _rect(x, y, -0.045, 0.045, -0.03, 0.5) | _rect(x, y, -0.045, 0.1, 0.455, 0.5)

  def arm_color(x, y):
    out = textured(spec['shirt'], x, y)
    return np.where((y > 0.27)[..., None], spec['skin'], out)

  def arm_inside(x, y):
    return _rect(x, y, -0.032, 0.032, -0.02, 0.33)

  swing = amp * np.sin(phase)
  legs = [body @ _rotate(s * swing) for s in (1, -1)]
  arms = [body @ _translate(0, -0.33) @ _rotate(-0.8 * s * swing) for s in (1, -1)]
  leg_box, arm_box = (-0.05, 0.11, -0.04, 0.51), (-0.04, 0.04, -0.03, 0.34)
  return [
      _Layer(depth - 4e-6, arms[0], arm_color, label, arm_inside, arm_box),
      _Layer(depth - 3e-6, legs[0], leg_color, label, leg_inside, leg_box),
      _Layer(depth, body, torso_color, label, torso_inside, (-0.11, 0.11, -0.51, 0.03)),
      _Layer(depth + 1e-6, legs[1], leg_color, label, leg_inside, leg_box),
      _Layer(depth + 2e-6, arms[1], arm_color, label, arm_inside, arm_box),
  ]


def _person_half_width(amp: float) -> float:
  """Largest |x| (body units) any part reaches at swing <= amp (conservative)."""
  legs = 0.5 * np.sin(amp) + 0.1 * np.cos(amp)
  arms = 0.33 * np.sin(0.8 * amp) + 0.032
  return float(max(0.11, legs + 0.01, arms))


# ------------------------------------------------------------------------------------------
# Rendering.


def _pixel_boxes(layer: _Layer) -> np.ndarray:
  """Pixel bounding boxes [T, 4] (x0, x1, y0, y1) of a layer's local box in every frame."""
  x0, x1, y0, y1 = layer.bbox
  corners = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]], np.float64)
  pts = np.einsum('tij,kj->tki', layer.mats[:, :2], corners)  # [T, 4 corners, 2]
  return np.stack([pts[..., 0].min(1), pts[..., 0].max(1), pts[..., 1].min(1),
                   pts[..., 1].max(1)], -1)


def _render(layers: list[_Layer], height: int, width: int, length: int):
  order = sorted(range(len(layers)), key=lambda i: layers[i].depth)
  inv = [np.linalg.inv(layer.mats) for layer in layers]
  boxes = [None if layer.bbox is None else _pixel_boxes(layer).tolist() for layer in layers]
  frames = np.zeros((length, height, width, 3), np.float32)
  pan = np.zeros((length, height, width), np.int32)
  owner = np.zeros((length, height, width), np.int32)
  flow = np.zeros((max(length - 1, 0), height, width, 2), np.float32)
  py, px = np.mgrid[0:height, 0:width].astype(np.float32)
  for t in range(length):
    for i in order:
      layer = layers[i]
      if layer.inside is None:
        # A layer that covers everything (the background): no masks needed.
        lx, ly = _apply(inv[i][t], px, py)
        frames[t] = layer.color(lx, ly)
        pan[t] = layer.label(lx, ly) if callable(layer.label) else layer.label
        owner[t] = i
        if t + 1 < length:
          nx, ny = _apply(layer.mats[t + 1], lx, ly)
          flow[t, ..., 0], flow[t, ..., 1] = nx - px, ny - py
        continue
      bx0, bx1, by0, by1 = boxes[i][t]
      c0, c1 = max(int(np.ceil(bx0)), 0), min(int(np.floor(bx1)), width - 1)
      r0, r1 = max(int(np.ceil(by0)), 0), min(int(np.floor(by1)), height - 1)
      if c0 > c1 or r0 > r1:
        continue
      rows, cols = slice(r0, r1 + 1), slice(c0, c1 + 1)
      xs, ys = px[rows, cols], py[rows, cols]
      lx, ly = _apply(inv[i][t], xs, ys)
      m = layer.inside(lx, ly)
      if not m.any():
        continue
      lx, ly = lx[m], ly[m]
      frames[t, rows, cols][m] = layer.color(lx, ly)
      pan[t, rows, cols][m] = layer.label(lx, ly) if callable(layer.label) else layer.label
      owner[t, rows, cols][m] = i
      if t + 1 < length:
        nx, ny = _apply(layer.mats[t + 1], lx, ly)
        flow[t, rows, cols][m] = np.stack([nx - xs[m], ny - ys[m]], -1)
  valid = np.zeros(flow.shape[:3], bool)
  for t in range(length - 1):
    qx, qy = px + flow[t, ..., 0], py + flow[t, ..., 1]
    # Only pixels within `reach` of a layer's box at t+1 can land in it.
    reach = int(np.ceil(np.abs(flow[t]).max())) + 1
    top = np.full((height, width), order[0], np.int32)  # the background layer covers all
    for i in order[1:]:
      bx0, bx1, by0, by1 = boxes[i][t + 1]
      r0, r1 = max(int(np.floor(by0)) - reach, 0), min(int(np.ceil(by1)) + reach, height - 1)
      c0, c1 = max(int(np.floor(bx0)) - reach, 0), min(int(np.ceil(bx1)) + reach, width - 1)
      if r0 > r1 or c0 > c1:
        continue
      sx, sy = qx[r0:r1 + 1, c0:c1 + 1], qy[r0:r1 + 1, c0:c1 + 1]
      sel = (sx >= bx0) & (sx <= bx1) & (sy >= by0) & (sy <= by1)
      if not sel.any():
        continue
      lx, ly = _apply(inv[i][t + 1], sx[sel], sy[sel])
      hit = np.zeros_like(sel)
      hit[sel] = layers[i].inside(lx, ly)
      top[r0:r1 + 1, c0:c1 + 1][hit] = i
    inb = (qx >= -0.5) & (qx < width - 0.5) & (qy >= -0.5) & (qy < height - 0.5)
    valid[t] = inb & (top == owner[t])
  return frames, pan, flow, valid


# ------------------------------------------------------------------------------------------
# The scene schedule.


def check_sizes(*, height: int, width: int, clip_length: int, label_every: int) -> None:
  """Raises ConfigError for sizes the generator cannot produce."""
  for name, value, low in (('height', height, MIN_SIZE), ('width', width, MIN_SIZE),
                           ('clip_length', clip_length, 2), ('label_every', label_every, 1)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
      raise errors.ConfigError(
          f'Synthetic data: {name}={value!r} is invalid; it must be an integer >= {low} '
          f'(set config.data.{name}).')


def generate_clip(seed: int, *, height: int = 128, width: int = 256, clip_length: int = 30,
                  label_every: int = 5, video_id: str | None = None) -> dict:
  """Generates one clip; pure numpy and deterministic in `seed`.

  Returns the data contract dict: frames uint8 [T,H,W,3]; panoptic int32 [T,H,W]
  (category*1000 + track id, stuff instance 0); labelled bool [T] (t % label_every ==
  label_every - 1); flow float32 [T-1,H,W,2] (x first, exact); flow_valid bool [T-1,H,W];
  video_id str; frame_ids list[str] (``'<video_id>_<tttt>_synthetic_<tttttt>'``).
  """
  check_sizes(height=height, width=width, clip_length=clip_length, label_every=label_every)
  rng = np.random.default_rng(int(seed))
  T, s0 = clip_length, height / _BASE_H
  wb, hb = width / s0, _BASE_H            # image extent in base units
  t = np.arange(T, dtype=np.float64)
  pix = _mat(s0, 0, 0, s0, -0.5, -0.5)    # base units -> pixel-centre coordinates

  # Camera: pan (with a little acceleration), vertical bob, zoom; world = screen at t=0.
  pan_speed = rng.choice([-1, 1]) * rng.uniform(0.4, 2.2)
  acc = rng.uniform(-0.02, 0.02)
  bob, bob_period, bob_phase = rng.uniform(0, 1.5), rng.uniform(8, 20), rng.uniform(0, 6.3)
  zoom = np.exp(rng.uniform(-0.004, 0.006) * t)
  cam_x = wb / 2 + pan_speed * t + 0.5 * acc * t * t
  cam_y = hb / 2 + bob * (np.sin(2 * np.pi * t / bob_period + bob_phase) - np.sin(bob_phase))

  def screen(wx, wy):
    """World -> screen (base units) for each frame."""
    return wb / 2 + zoom * (wx - cam_x), hb / 2 + zoom * (wy - cam_y)

  half_w, half_h = wb / 2 / zoom, hb / 2 / zoom
  world = _build_world(rng, (cam_x - half_w).min() - 4, (cam_x + half_w).max() + 4,
                       (cam_y - half_h).min() - 4, (cam_y + half_h).max() + 4,
                       detail=max(1.0, 1.0 / s0))
  layers = [_background_layer(world, pix @ _translate(wb / 2, hb / 2) @ _scale(zoom, zoom) @
                              _translate(-cam_x, -cam_y))]
  things = []  # (category, layer factory taking the panoptic label)

  # The pole (parallax 1.3: closer than the background) and the person walking behind it.
  # The pole covers the person's widest pose plus `slack`, so the person is fully hidden
  # while its offset from the pole is below slack/2 (>= 2.2 frames: >= 2 whole frames), and
  # its torso shows again by >= 4.5 base units (1 pixel at 32 rows) beyond `reveal`. The
  # speed fits that whole span into the clip with a visible frame on each side.
  occ_h, occ_feet, occ_amp = rng.uniform(20, 24), rng.uniform(75, 78), rng.uniform(0.2, 0.3)
  slack = rng.uniform(6, 8)
  pole_half = occ_h * _person_half_width(occ_amp) + slack / 2
  reveal = pole_half - 0.1 * occ_h + 4.5
  v_max = slack / 2.2
  v_min = min(v_max, 2 * reveal / max(T - 3, 1))
  occ_speed = rng.uniform(max(v_min, slack / 5), v_max) if v_min < v_max else v_max
  span = 2 * reveal / occ_speed
  t_c = rng.uniform(min(span / 2 + 0.3, (T - 1) / 2), max(T - 1.3 - span / 2, (T - 1) / 2))
  pole_x_tc = rng.uniform(0.3, 0.7) * wb
  tc_i = int(round(t_c))
  px_world = (pole_x_tc - wb / 2) / zoom[tc_i] + cam_x[0] + 1.3 * (cam_x[tc_i] - cam_x[0])
  pole_x = wb / 2 + zoom * (px_world - cam_x[0] - 1.3 * (cam_x - cam_x[0]))
  _, pole_y = screen(0.0, _CURB + 1.5)
  layers.append(_Layer(2.0, pix @ _translate(pole_x, pole_y) @ _scale(2 * pole_half * zoom, zoom),
                       _pole_color, POLE * _DIV, lambda x, y: _rect(x, y, -0.5, 0.5, -1e3, 0),
                       (-0.5, 0.5, -400.0, 0.0)))
  v_rel = rng.choice([-1, 1]) * occ_speed
  _, occ_y = screen(0.0, occ_feet)
  things.append((PERSON, _walker(rng, _person_spec(rng), x=pole_x + zoom * v_rel * (t - t_c),
                                 y=occ_y, height=occ_h * zoom, speed=v_rel, amp=occ_amp,
                                 depth=1 + occ_feet / 1000, pix=pix)))

  # A car entering the frame and one ahead of it leaving, both in the near lane and in front
  # of every other object, so that their entry and exit are seen at the image border.
  d = rng.choice([-1, 1])
  for role in ('enter', 'leave'):
    length, yb = rng.uniform(60, 84), rng.uniform(112, 124)
    if role == 'enter':
      v = rng.uniform(2.5, 5.0)
      x0 = -rng.uniform(0.5, max(1.0, 0.3 * T)) * v - length / 2 - 1
    else:
      x0 = wb - length / 2 + rng.uniform(-0.3, 0.4) * length
      v = (wb + 1 + length / 2 - x0) / (rng.uniform(0.35, 0.75) * (T - 1))
    xs = x0 + v * t
    if d < 0:
      xs = wb - xs
    _, ys = screen(0.0, yb)
    things.append((CAR, _driver(_car_spec(rng), x=xs, y=ys, length=length * zoom, angle=0 * t,
                                facing=d, depth=3.5 + yb / 1000 + rng.uniform(0, 1e-4),
                                pix=pix)))

  # A car approaching or receding (perspective: its height above the horizon scales) while
  # turning.
  k = np.exp(rng.choice([-1, 1]) * np.log(rng.uniform(1.4, 1.9)) * t / max(T - 1, 1))
  if k[-1] > 1:
    yb0, length0 = rng.uniform(86, 92), rng.uniform(34, 44)
  else:
    yb0, length0 = rng.uniform(104, 114), rng.uniform(60, 76)
  d = rng.choice([-1, 1])
  wx = rng.uniform(0.25, 0.75) * wb + d * rng.uniform(0.3, 1.5) * t
  xs, ys = screen(wx, _HORIZON + (yb0 - _HORIZON) * k)
  things.append((CAR, _driver(_car_spec(rng), x=xs, y=ys, length=length0 * k * zoom,
                              angle=rng.choice([-1, 1]) * rng.uniform(0.1, 0.3) * t / max(T - 1, 1),
                              facing=d, depth=3 + yb0 / 1000 + rng.uniform(0, 1e-4), pix=pix)))

  # A look-alike pair: identical shape and texture, different identities.
  if rng.random() < 0.5:
    spec, h, feet = _person_spec(rng), rng.uniform(13, 18), rng.uniform(68, 74)
    v, amp = rng.choice([-1, 1]) * rng.uniform(0.3, 1.0), rng.uniform(0.3, 0.5)
    gap = h * rng.uniform(1.2, 2.0)   # apart by more than a stride: no mutual occlusion
    wx0, phase0 = rng.uniform(0.2, 0.8) * wb, rng.uniform(0, 6.3)
    for j in range(2):
      xs, ys = screen(wx0 + j * gap + v * t, feet)
      things.append((PERSON, _walker(rng, spec, x=xs, y=ys, height=h * zoom, speed=v, amp=amp,
                                     depth=1 + feet / 1000 + j * 1e-3, pix=pix, phase0=phase0)))
  else:
    spec, length, yb = _car_spec(rng), rng.uniform(36, 48), rng.uniform(88, 96)
    v, d = rng.uniform(0.5, 2.5), rng.choice([-1, 1])
    wx0, gap = rng.uniform(0.1, 0.5) * wb, rng.uniform(1.3, 2.0) * length
    for j in range(2):
      xs, ys = screen(wx0 + d * j * gap + d * v * t, yb)
      things.append((CAR, _driver(spec, x=xs, y=ys, length=length * zoom, angle=0 * t, facing=d,
                                  depth=3 + yb / 1000 + j * 2e-5, pix=pix)))

  # Small distant persons, then a few ordinary persons and maybe a parked or slow car.
  for _ in range(rng.integers(1, 3)):
    h, feet = rng.uniform(9, 12), rng.uniform(65, 67.5)
    v = rng.choice([-1, 1]) * rng.uniform(0.2, 0.8)
    xs, ys = screen(rng.uniform(0.1, 0.9) * wb + v * t, feet)
    things.append((PERSON, _walker(rng, _person_spec(rng), x=xs, y=ys, height=h * zoom, speed=v,
                                   amp=rng.uniform(0.3, 0.5), depth=1 + feet / 1000, pix=pix)))
  for _ in range(rng.integers(1, 4)):
    h, feet = rng.uniform(12, 20), rng.uniform(66, 74)
    v = rng.choice([-1, 1]) * rng.uniform(0.3, 1.5) * (rng.random() > 0.15)
    xs, ys = screen(rng.uniform(0, 1) * wb + v * t, feet)
    things.append((PERSON, _walker(rng, _person_spec(rng), x=xs, y=ys, height=h * zoom, speed=v,
                                   amp=rng.uniform(0.3, 0.5), depth=1 + feet / 1000, pix=pix)))
  if rng.random() < 0.5:
    length, yb = rng.uniform(38, 54), rng.uniform(88, 98)
    d, v = rng.choice([-1, 1]), rng.uniform(0, 1.5)
    xs, ys = screen(rng.uniform(0, 1) * wb + d * v * t, yb)
    things.append((CAR, _driver(_car_spec(rng), x=xs, y=ys, length=length * zoom, angle=0 * t,
                                facing=d, depth=3 + yb / 1000 + rng.uniform(0, 1e-4), pix=pix)))

  # Track ids: a random permutation, so an id says nothing about an object's role.
  ids = rng.permutation(len(things)) + 1
  for (cat, make), tid in zip(things, ids):
    layers.extend(make(cat * _DIV + int(tid)))

  frames, panoptic, flow, valid = _render(layers, height, width, T)
  if video_id is None:
    video_id = f'{int(seed) % 10000:04d}'
  return dict(
      frames=np.clip(np.round(frames), 0, 255).astype(np.uint8),
      panoptic=panoptic,
      labelled=(np.arange(T) % label_every) == label_every - 1,
      flow=flow,
      flow_valid=valid,
      video_id=str(video_id),
      frame_ids=[f'{video_id}_{i:04d}_synthetic_{i:06d}' for i in range(T)],
  )


def _background_layer(world: _World, mats: np.ndarray) -> _Layer:
  """The world seen through the camera; called with whole pixel grids [H, W].

  The camera map has no rotation, so every image row shares one world y and every column one
  world x: sampling is separable (rows first, then columns), several times cheaper.
  """
  assert not mats[:, 0, 1].any() and not mats[:, 1, 0].any(), 'camera must be axis-aligned'
  h, w = world.cls.shape

  def color(x, y):
    xs = np.clip(x[0] - world.x0, 0, w - 1.001)
    ys = np.clip(y[:, 0] - world.y0, 0, h - 1.001)
    x0, y0 = np.floor(xs).astype(np.int64), np.floor(ys).astype(np.int64)
    fx, fy = (xs - x0)[None, :, None], (ys - y0)[:, None, None]
    rows = world.rgb[y0] * (1 - fy) + world.rgb[y0 + 1] * fy   # [H, w, 3]
    return rows[:, x0] * (1 - fx) + rows[:, x0 + 1] * fx

  def label(x, y):
    r = np.clip(np.floor(y[:, 0] - world.y0 + 0.5).astype(np.int64), 0, h - 1)
    c = np.clip(np.floor(x[0] - world.x0 + 0.5).astype(np.int64), 0, w - 1)
    return world.cls[np.ix_(r, c)] * _DIV

  return _Layer(-1.0, mats, color, label)


def _pole_color(x, y):
  shade = (0.55 + 0.45 * np.cos(np.pi * x))[..., None]
  out = shade * np.array([160, 160, 168], np.float32)
  band = ((-y) % 40 < 3)[..., None]
  return np.where(band, out * 0.55, out)


def _walker(rng, spec, *, x, y, height, speed, amp, depth, pix, phase0=None):
  """Returns label -> person layers; the gait phase advances with walking speed."""
  phase0 = rng.uniform(0, 2 * np.pi) if phase0 is None else phase0
  base_h = float(np.mean(height))
  phase = phase0 + np.pi * abs(speed) / (0.4 * base_h) * np.arange(len(x))
  facing = 1.0 if speed >= 0 else -1.0
  if speed == 0:
    amp = 0.0
  return lambda label: _person_layers(spec, x=x, y=y, height=height, facing=facing,
                                      phase=phase, amp=amp, depth=depth, label=label, pix=pix)


def _driver(spec, *, x, y, length, angle, facing, depth, pix):
  return lambda label: _car_layers(spec, x=x, y=y, length=length, angle=angle, facing=facing,
                                   depth=depth, label=label, pix=pix)
