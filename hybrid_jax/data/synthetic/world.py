"""Synthetic scenes: the background world (sky, buildings, vegetation, sidewalk, road) and
its camera layer."""

from __future__ import annotations

import dataclasses

import numpy as np

from hybrid_jax.data.synthetic import constants
from hybrid_jax.data.synthetic import geometry
from hybrid_jax.data.synthetic import render


# ------------------------------------------------------------------------------------------
# The background world: a class map and a colour image in world texels (1 texel = 1 base
# unit); rendered through the camera affine, sampled nearest (class) / geometry.bilinear (colour).


@dataclasses.dataclass
class World:
  x0: float
  y0: float
  cls: np.ndarray   # int32 [h, w]
  rgb: np.ndarray   # float32 [h, w, 3]


FACADES = np.array([[196, 170, 140], [150, 90, 70], [170, 170, 165], [210, 200, 180],
                     [120, 110, 105], [180, 140, 110], [140, 150, 160]], np.float32)


def build_world(rng: np.random.Generator, xlo: float, xhi: float, ylo: float, yhi: float,
                 detail: float) -> World:
  """Class map and colours of the world over [xlo, xhi] x [ylo, yhi] (base units).

  `detail` (>= 1) stretches fine texture periods so that they stay >= ~2 pixels at low
  resolutions (aliased textures would make the images geometry.noise, not texture). Noise comes from
  a generator of its own, so that the geometry (and so every label and flow vector) is the
  same at every resolution.
  """
  tex_rng = np.random.default_rng(rng.integers(1 << 62))
  x0, y0 = np.floor(xlo) - 2, np.floor(ylo) - 2
  w, h = int(np.ceil(xhi) + 3 - x0), int(np.ceil(yhi) + 3 - y0)
  ys, xs = np.meshgrid(np.arange(h, dtype=np.float32) + y0,
                       np.arange(w, dtype=np.float32) + x0, indexing='ij')
  cls = np.full((h, w), constants.SKY, np.int32)
  dt = float(detail)

  def rgb_(*v):
    return np.array(v, np.float32)

  # Sky: vertical gradient plus soft clouds.
  g = np.clip((ys + 20) / (constants.HORIZON + 20), 0, 1)[..., None]
  rgb = (1 - g) * rgb_(90, 140, 210) + g * rgb_(185, 210, 235)
  cloud = np.clip(geometry.noise(tex_rng, (h, w), 14.0) * 1.5, 0, 1)[..., None]
  rgb = rgb * (1 - 0.8 * cloud) + 245 * 0.8 * cloud

  # Buildings: blocks of random width, height and facade; bricks and a window grid.
  widths = rng.uniform(24, 64, int(w / 24) + 2)
  bounds = x0 + np.concatenate([[-1.0], np.cumsum(widths)])
  col = np.clip(np.searchsorted(bounds, xs[0], side='right') - 1, 0, len(widths) - 1)
  tops = rng.uniform(8, 46, len(widths))[col]
  facade = FACADES[rng.integers(0, len(FACADES), len(widths))][col]
  win_w = rng.uniform(7, 12, len(widths))[col] * min(dt, 2.0)
  win_h = rng.uniform(8, 12, len(widths))[col] * min(dt, 2.0)
  left = bounds[col]
  bmask = (ys >= tops) & (ys < constants.HORIZON)
  cls[bmask] = constants.BUILDING
  row = np.floor(ys / (4 * dt))
  mortar = np.maximum(geometry.lines(ys, 4 * dt, 0.9 * dt),
                      geometry.lines(xs + 4.5 * dt * (row % 2), 9 * dt, 0.9 * dt))
  bcol = facade[None] * (1 + 0.06 * geometry.noise(tex_rng, (h, w), 3.0 * dt))[..., None]
  bcol = bcol * (1 - 0.2 * mortar)[..., None]
  wx = geometry.box((xs - left) % win_w, 0.3 * win_w, 0.85 * win_w, dt)
  wy = geometry.box((ys - tops - 3) % win_h, 0.35 * win_h, 0.9 * win_h, dt)
  window = (wx * wy * ((ys > tops + 3) & (ys < constants.HORIZON - 6)))[..., None]
  wcol = rgb_(45, 60, 85) + ((ys - tops) % win_h / win_h)[..., None] * rgb_(50, 55, 60)
  bcol = bcol * (1 - window) + wcol * window
  rgb = np.where(bmask[..., None], bcol, rgb)

  # Vegetation: tree crowns with noisy outlines and trunks, plus hedges.
  veg = np.zeros((h, w), bool)
  wobble = geometry.noise(rng, (h, w), 4.0)  # geometry: from the scene generator
  for _ in range(max(1, int(w / 45))):
    cx, cy, r = rng.uniform(x0, x0 + w), rng.uniform(28, 52), rng.uniform(7, 15)
    veg |= np.hypot(xs - cx, (ys - cy) * 1.15) < r * (1 + 0.2 * wobble)
    veg |= (np.abs(xs - cx) < 0.15 * r) & (ys >= cy) & (ys < constants.HORIZON)
  for _ in range(max(1, int(w / 120))):
    hx, hw, hh = rng.uniform(x0, x0 + w), rng.uniform(15, 50), rng.uniform(4, 9)
    veg |= (np.abs(xs - hx) < hw / 2) & (ys >= constants.HORIZON - hh * (1 + 0.3 * wobble)) & (
        ys < constants.HORIZON)
  cls[veg] = constants.VEGETATION
  leaf = (geometry.noise(tex_rng, (h, w), 3.0 * dt) * 0.6
          + geometry.noise(tex_rng, (h, w), 7.0 * dt) * 0.4)
  vcol = rgb_(70, 125, 40) + leaf[..., None] * rgb_(30, 40, 15)
  rgb = np.where(veg[..., None], vcol, rgb)

  # Sidewalk tiles with a bright curb; asphalt road with lane dashes.
  side = (ys >= constants.HORIZON) & (ys < constants.CURB)
  cls[side] = constants.SIDEWALK
  tile = np.maximum(geometry.lines(xs, 9 * dt, 0.9 * dt), geometry.lines(ys - constants.HORIZON, 5 * dt, 0.9 * dt))
  scol = rgb_(180, 165, 172) * (1 + 0.05 * geometry.noise(tex_rng, (h, w), 3.0 * dt) -
                                0.18 * tile)[..., None]
  curb = geometry.smooth((ys - (constants.CURB - 2.5)) / 1.5)[..., None]
  scol = scol * (1 - curb) + 215 * curb
  rgb = np.where(side[..., None], scol, rgb)
  road = ys >= constants.CURB
  cls[road] = constants.ROAD
  rcol = rgb_(78, 78, 84) * (1 + 0.12 * geometry.noise(tex_rng, (h, w), 3.0 * dt) +
                             0.08 * geometry.noise(tex_rng, (h, w), 9.0 * dt))[..., None]
  dash = (geometry.box(ys, 101.5, 104.5, 1.0) * geometry.box(xs % 26, 1.0, 13.0, 1.0))[..., None]
  rgb = np.where(road[..., None], rcol * (1 - dash) + rgb_(225, 225, 210) * dash, rgb)
  return World(float(x0), float(y0), cls, rgb.astype(np.float32))


def background_layer(world: World, mats: np.ndarray) -> render.Layer:
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
    return world.cls[np.ix_(r, c)] * constants.DIV

  return render.Layer(-1.0, mats, color, label)
