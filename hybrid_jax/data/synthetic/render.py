"""Synthetic scenes: rendering depth-ordered layers into frames, labels and exact flow."""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from hybrid_jax.data.synthetic import geometry


# ------------------------------------------------------------------------------------------
# Rendering.


@dataclasses.dataclass
class Layer:
  depth: float
  mats: np.ndarray                    # [T, 3, 3] local -> pixel
  color: Callable                     # (x, y) local -> float [N, 3]
  label: int | Callable               # panoptic value, or (x, y) -> int [N]
  inside: Callable | None = None      # (x, y) local -> bool [N]; None = covers everything
  bbox: tuple[float, float, float, float] | None = None  # local (x0, x1, y0, y1)


def pixel_boxes(layer: Layer) -> np.ndarray:
  """Pixel bounding boxes [T, 4] (x0, x1, y0, y1) of a layer's local world.box in every frame."""
  x0, x1, y0, y1 = layer.bbox
  corners = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]], np.float64)
  pts = np.einsum('tij,kj->tki', layer.mats[:, :2], corners)  # [T, 4 corners, 2]
  return np.stack([pts[..., 0].min(1), pts[..., 0].max(1), pts[..., 1].min(1),
                   pts[..., 1].max(1)], -1)


def render(layers: list[Layer], height: int, width: int, length: int):
  order = sorted(range(len(layers)), key=lambda i: layers[i].depth)
  inv = [np.linalg.inv(layer.mats) for layer in layers]
  boxes = [None if layer.bbox is None else pixel_boxes(layer).tolist() for layer in layers]
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
        lx, ly = geometry.apply(inv[i][t], px, py)
        frames[t] = layer.color(lx, ly)
        pan[t] = layer.label(lx, ly) if callable(layer.label) else layer.label
        owner[t] = i
        if t + 1 < length:
          nx, ny = geometry.apply(layer.mats[t + 1], lx, ly)
          flow[t, ..., 0], flow[t, ..., 1] = nx - px, ny - py
        continue
      bx0, bx1, by0, by1 = boxes[i][t]
      c0, c1 = max(int(np.ceil(bx0)), 0), min(int(np.floor(bx1)), width - 1)
      r0, r1 = max(int(np.ceil(by0)), 0), min(int(np.floor(by1)), height - 1)
      if c0 > c1 or r0 > r1:
        continue
      rows, cols = slice(r0, r1 + 1), slice(c0, c1 + 1)
      xs, ys = px[rows, cols], py[rows, cols]
      lx, ly = geometry.apply(inv[i][t], xs, ys)
      m = layer.inside(lx, ly)
      if not m.any():
        continue
      lx, ly = lx[m], ly[m]
      frames[t, rows, cols][m] = layer.color(lx, ly)
      pan[t, rows, cols][m] = layer.label(lx, ly) if callable(layer.label) else layer.label
      owner[t, rows, cols][m] = i
      if t + 1 < length:
        nx, ny = geometry.apply(layer.mats[t + 1], lx, ly)
        flow[t, rows, cols][m] = np.stack([nx - xs[m], ny - ys[m]], -1)
  valid = np.zeros(flow.shape[:3], bool)
  for t in range(length - 1):
    qx, qy = px + flow[t, ..., 0], py + flow[t, ..., 1]
    # Only pixels within `reach` of a layer's world.box at t+1 can land in it.
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
      lx, ly = geometry.apply(inv[i][t + 1], sx[sel], sy[sel])
      hit = np.zeros_like(sel)
      hit[sel] = layers[i].inside(lx, ly)
      top[r0:r1 + 1, c0:c1 + 1][hit] = i
    inb = (qx >= -0.5) & (qx < width - 0.5) & (qy >= -0.5) & (qy < height - 0.5)
    valid[t] = inb & (top == owner[t])
  return frames, pan, flow, valid
