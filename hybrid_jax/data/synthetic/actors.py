"""Synthetic scenes: the layers that move (cars, articulated walking persons, the pole)."""

from __future__ import annotations

import numpy as np

from hybrid_jax.data.synthetic import geometry
from hybrid_jax.data.synthetic import render


# ------------------------------------------------------------------------------------------
# Layers.


def rect(x, y, x0, x1, y0, y1):
  return (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)


PAINTS = np.array([[180, 30, 35], [30, 60, 150], [225, 225, 220], [35, 35, 40],
                    [160, 165, 170], [220, 190, 40], [40, 120, 60], [230, 120, 30],
                    [20, 30, 80], [110, 25, 40]], np.float32)
SKINS = np.array([[235, 200, 170], [200, 150, 110], [150, 100, 70], [95, 65, 45]], np.float32)
PANTS = np.array([[50, 70, 120], [30, 30, 35], [170, 150, 110], [100, 100, 105],
                   [90, 60, 40]], np.float32)


def car_spec(rng):
  return dict(paint=PAINTS[rng.integers(len(PAINTS))] * rng.uniform(0.85, 1.1),
              tex=geometry.tile_noise(rng), amp=rng.uniform(0.05, 0.15))


def car_color(spec, length_px: float):
  """Paint with geometry.noise (cells >= 3 px), a trim line, windows, lamps and wheels."""
  paint, tex, amp = spec['paint'], spec['tex'], spec['amp']
  freq = float(np.clip(length_px / 3, 1, 12))
  trim = max(0.01, 0.7 / length_px)

  def color(x, y):
    n = geometry.bilinear(tex, x * freq, y * freq, wrap=True)
    out = paint * (1 + amp * n)
    out = out * (1 - 0.4 * geometry.lines(y + 0.16, 1.0, trim))[..., None]
    cab = car_cabin(x, y, inset=0.025) & (np.abs(x + 0.05) > 0.025)
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


def car_cabin(x, y, inset=0.0):
  """Trapezoid roof: x in [-0.34, 0.26] at y=-0.26 narrowing to [-0.22, 0.14] at y=-0.42."""
  f = (-0.26 - y) / 0.16
  return ((y <= -0.26 - inset) & (y >= -0.42 + inset) & (x >= -0.34 + 0.12 * f + inset) &
          (x <= 0.26 - 0.12 * f - inset))


def car_inside(x, y):
  body = ((x / 0.5) ** 8 + ((y + 0.16) / 0.11) ** 8) <= 1
  wheels = np.minimum(np.hypot(x - 0.3, y + 0.08), np.hypot(x + 0.3, y + 0.08)) < 0.08
  return body | car_cabin(x, y) | wheels


def car_layers(spec, *, x, y, length, angle, facing, depth, label, pix):
  """A car of `length` (base units, per frame) with bottom centre at (x, y) (base units)."""
  mats = (pix @ geometry.translate(x, y) @ geometry.rotate(angle)
          @ geometry.scale(facing * length, length))
  length_px = float(np.mean(length)) * pix[0, 0]
  return [render.Layer(depth, mats, car_color(spec, length_px), label, car_inside,
                 (-0.5, 0.5, -0.43, 0.01))]


def person_spec(rng):
  shirt = rng.uniform(30, 230, 3).astype(np.float32)
  return dict(skin=SKINS[rng.integers(len(SKINS))], shirt=shirt,
              stripe=shirt * rng.uniform(0.4, 0.7) if rng.random() < 0.5 else shirt,
              pants=PANTS[rng.integers(len(PANTS))], hair=rng.uniform(20, 90, 3).astype(
                  np.float32), tex=geometry.tile_noise(rng), amp=rng.uniform(0.05, 0.2))


def person_layers(spec, *, x, y, height, facing, phase, amp, depth, label, pix):
  """An articulated person (torso+head, two legs, two arms) with feet at (x, y).

  Body units: height 1, origin at the hip, feet at y = +0.5, head top at y = -0.5. Each limb
  is its own layer rotating about its joint, so the silhouette deforms while every pixel's
  flow stays an exact affine function of its limb.
  """
  body = pix @ geometry.translate(x, y - 0.5 * height) @ geometry.scale(facing * height, height)
  tex, a = spec['tex'], spec['amp']
  height_px = float(np.mean(height)) * pix[0, 0]
  freq = float(np.clip(height_px / 3, 1, 5))        # geometry.noise cells >= 3 px
  period = max(0.1, 4 / height_px)                  # shirt stripes >= 4 px apart

  def textured(base, x, y):
    return base * (1 + a * geometry.bilinear(tex, x * freq, y * freq, wrap=True))

  def torso_color(x, y):
    stripes = (0.5 + 0.5 * np.sin(y * (2 * np.pi / period)))[..., None]
    out = spec['shirt'] * (1 - stripes) + spec['stripe'] * stripes
    out = textured(out, x, y)
    head = y < -0.355
    hair = (y < -0.46) | ((y < -0.41) & (x < -0.02))
    out = np.where(head[..., None], np.where(hair[..., None], spec['hair'], spec['skin']), out)
    return out

  def torso_inside(x, y):
    return (rect(x, y, -0.1, 0.1, -0.36, 0.02) | (np.hypot(x, y + 0.43) < 0.07) |
            rect(x, y, -0.025, 0.025, -0.38, -0.34))

  def leg_color(x, y):
    out = textured(spec['pants'], x, y)
    return np.where((y > 0.455)[..., None], np.float32(30), out)

  def leg_inside(x, y):
    return rect(x, y, -0.045, 0.045, -0.03, 0.5) | rect(x, y, -0.045, 0.1, 0.455, 0.5)

  def arm_color(x, y):
    out = textured(spec['shirt'], x, y)
    return np.where((y > 0.27)[..., None], spec['skin'], out)

  def arm_inside(x, y):
    return rect(x, y, -0.032, 0.032, -0.02, 0.33)

  swing = amp * np.sin(phase)
  legs = [body @ geometry.rotate(s * swing) for s in (1, -1)]
  arms = [body @ geometry.translate(0, -0.33) @ geometry.rotate(-0.8 * s * swing) for s in (1, -1)]
  leg_box, arm_box = (-0.05, 0.11, -0.04, 0.51), (-0.04, 0.04, -0.03, 0.34)
  return [
      render.Layer(depth - 4e-6, arms[0], arm_color, label, arm_inside, arm_box),
      render.Layer(depth - 3e-6, legs[0], leg_color, label, leg_inside, leg_box),
      render.Layer(depth, body, torso_color, label, torso_inside, (-0.11, 0.11, -0.51, 0.03)),
      render.Layer(depth + 1e-6, legs[1], leg_color, label, leg_inside, leg_box),
      render.Layer(depth + 2e-6, arms[1], arm_color, label, arm_inside, arm_box),
  ]


def person_half_width(amp: float) -> float:
  """Largest |x| (body units) any part reaches at swing <= amp (conservative)."""
  legs = 0.5 * np.sin(amp) + 0.1 * np.cos(amp)
  arms = 0.33 * np.sin(0.8 * amp) + 0.032
  return float(max(0.11, legs + 0.01, arms))


def pole_color(x, y):
  shade = (0.55 + 0.45 * np.cos(np.pi * x))[..., None]
  out = shade * np.array([160, 160, 168], np.float32)
  band = ((-y) % 40 < 3)[..., None]
  return np.where(band, out * 0.55, out)


def walker(rng, spec, *, x, y, height, speed, amp, depth, pix, phase0=None):
  """Returns label -> person layers; the gait phase advances with walking speed."""
  phase0 = rng.uniform(0, 2 * np.pi) if phase0 is None else phase0
  base_h = float(np.mean(height))
  phase = phase0 + np.pi * abs(speed) / (0.4 * base_h) * np.arange(len(x))
  facing = 1.0 if speed >= 0 else -1.0
  if speed == 0:
    amp = 0.0
  return lambda label: person_layers(spec, x=x, y=y, height=height, facing=facing,
                                      phase=phase, amp=amp, depth=depth, label=label, pix=pix)


def driver(spec, *, x, y, length, angle, facing, depth, pix):
  return lambda label: car_layers(spec, x=x, y=y, length=length, angle=angle, facing=facing,
                                   depth=depth, label=label, pix=pix)
