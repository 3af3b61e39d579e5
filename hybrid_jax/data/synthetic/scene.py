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

import numpy as np

from hybrid_jax import errors
from hybrid_jax.data.synthetic import actors
from hybrid_jax.data.synthetic import render
# The scene is composed from the constants and affine helpers (names, for readable geometry).
from hybrid_jax.data.synthetic.constants import (BASE_H, CAR, CURB, DIV, HORIZON, MIN_SIZE,
                                                 PERSON, POLE)
from hybrid_jax.data.synthetic.geometry import mat
from hybrid_jax.data.synthetic.geometry import scale
from hybrid_jax.data.synthetic.geometry import translate
from hybrid_jax.data.synthetic import world as world_lib


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
  T, s0 = clip_length, height / BASE_H
  wb, hb = width / s0, BASE_H            # image extent in base units
  t = np.arange(T, dtype=np.float64)
  pix = mat(s0, 0, 0, s0, -0.5, -0.5)    # base units -> pixel-centre coordinates

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
  world = world_lib.build_world(rng, (cam_x - half_w).min() - 4, (cam_x + half_w).max() + 4,
                       (cam_y - half_h).min() - 4, (cam_y + half_h).max() + 4,
                       detail=max(1.0, 1.0 / s0))
  layers = [world_lib.background_layer(world, pix @ translate(wb / 2, hb / 2) @ scale(zoom, zoom) @
                              translate(-cam_x, -cam_y))]
  things = []  # (category, layer factory taking the panoptic label)

  # The pole (parallax 1.3: closer than the background) and the person walking behind it.
  # The pole covers the person's widest pose plus `slack`, so the person is fully hidden
  # while its offset from the pole is below slack/2 (>= 2.2 frames: >= 2 whole frames), and
  # its torso shows again by >= 4.5 base units (1 pixel at 32 rows) beyond `reveal`. The
  # speed fits that whole span into the clip with a visible frame on each side.
  occ_h, occ_feet, occ_amp = rng.uniform(20, 24), rng.uniform(75, 78), rng.uniform(0.2, 0.3)
  slack = rng.uniform(6, 8)
  pole_half = occ_h * actors.person_half_width(occ_amp) + slack / 2
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
  _, pole_y = screen(0.0, CURB + 1.5)
  layers.append(render.Layer(
      2.0, pix @ translate(pole_x, pole_y) @ scale(2 * pole_half * zoom, zoom),
      actors.pole_color, POLE * DIV, lambda x, y: actors.rect(x, y, -0.5, 0.5, -1e3, 0),
      (-0.5, 0.5, -400.0, 0.0)))
  v_rel = rng.choice([-1, 1]) * occ_speed
  _, occ_y = screen(0.0, occ_feet)
  things.append((PERSON, actors.walker(
      rng, actors.person_spec(rng), x=pole_x + zoom * v_rel * (t - t_c), y=occ_y,
      height=occ_h * zoom, speed=v_rel, amp=occ_amp, depth=1 + occ_feet / 1000, pix=pix)))

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
    things.append((CAR, actors.driver(
        actors.car_spec(rng), x=xs, y=ys, length=length * zoom, angle=0 * t, facing=d,
        depth=3.5 + yb / 1000 + rng.uniform(0, 1e-4), pix=pix)))

  # A car approaching or receding (perspective: its height above the horizon scales) while
  # turning.
  k = np.exp(rng.choice([-1, 1]) * np.log(rng.uniform(1.4, 1.9)) * t / max(T - 1, 1))
  if k[-1] > 1:
    yb0, length0 = rng.uniform(86, 92), rng.uniform(34, 44)
  else:
    yb0, length0 = rng.uniform(104, 114), rng.uniform(60, 76)
  d = rng.choice([-1, 1])
  wx = rng.uniform(0.25, 0.75) * wb + d * rng.uniform(0.3, 1.5) * t
  xs, ys = screen(wx, HORIZON + (yb0 - HORIZON) * k)
  things.append((CAR, actors.driver(actors.car_spec(rng), x=xs, y=ys, length=length0 * k * zoom,
                              angle=rng.choice([-1, 1]) * rng.uniform(0.1, 0.3) * t / max(T - 1, 1),
                              facing=d, depth=3 + yb0 / 1000 + rng.uniform(0, 1e-4), pix=pix)))

  # A look-alike pair: identical shape and texture, different identities.
  if rng.random() < 0.5:
    spec, h, feet = actors.person_spec(rng), rng.uniform(13, 18), rng.uniform(68, 74)
    v, amp = rng.choice([-1, 1]) * rng.uniform(0.3, 1.0), rng.uniform(0.3, 0.5)
    gap = h * rng.uniform(1.2, 2.0)   # apart by more than a stride: no mutual occlusion
    wx0, phase0 = rng.uniform(0.2, 0.8) * wb, rng.uniform(0, 6.3)
    for j in range(2):
      xs, ys = screen(wx0 + j * gap + v * t, feet)
      things.append((PERSON, actors.walker(rng, spec, x=xs, y=ys, height=h * zoom, speed=v, amp=amp,
                                     depth=1 + feet / 1000 + j * 1e-3, pix=pix, phase0=phase0)))
  else:
    spec, length, yb = actors.car_spec(rng), rng.uniform(36, 48), rng.uniform(88, 96)
    v, d = rng.uniform(0.5, 2.5), rng.choice([-1, 1])
    wx0, gap = rng.uniform(0.1, 0.5) * wb, rng.uniform(1.3, 2.0) * length
    for j in range(2):
      xs, ys = screen(wx0 + d * j * gap + d * v * t, yb)
      things.append((CAR, actors.driver(spec, x=xs, y=ys, length=length * zoom, angle=0 * t,
                                        facing=d, depth=3 + yb / 1000 + j * 2e-5, pix=pix)))

  # Small distant persons, then a few ordinary persons and maybe a parked or slow car.
  for _ in range(rng.integers(1, 3)):
    h, feet = rng.uniform(9, 12), rng.uniform(65, 67.5)
    v = rng.choice([-1, 1]) * rng.uniform(0.2, 0.8)
    xs, ys = screen(rng.uniform(0.1, 0.9) * wb + v * t, feet)
    things.append((PERSON, actors.walker(
        rng, actors.person_spec(rng), x=xs, y=ys, height=h * zoom, speed=v,
        amp=rng.uniform(0.3, 0.5), depth=1 + feet / 1000, pix=pix)))
  for _ in range(rng.integers(1, 4)):
    h, feet = rng.uniform(12, 20), rng.uniform(66, 74)
    v = rng.choice([-1, 1]) * rng.uniform(0.3, 1.5) * (rng.random() > 0.15)
    xs, ys = screen(rng.uniform(0, 1) * wb + v * t, feet)
    things.append((PERSON, actors.walker(
        rng, actors.person_spec(rng), x=xs, y=ys, height=h * zoom, speed=v,
        amp=rng.uniform(0.3, 0.5), depth=1 + feet / 1000, pix=pix)))
  if rng.random() < 0.5:
    length, yb = rng.uniform(38, 54), rng.uniform(88, 98)
    d, v = rng.choice([-1, 1]), rng.uniform(0, 1.5)
    xs, ys = screen(rng.uniform(0, 1) * wb + d * v * t, yb)
    things.append((CAR, actors.driver(
        actors.car_spec(rng), x=xs, y=ys, length=length * zoom, angle=0 * t, facing=d,
        depth=3 + yb / 1000 + rng.uniform(0, 1e-4), pix=pix)))

  # Track ids: a random permutation, so an id says nothing about an object's role.
  ids = rng.permutation(len(things)) + 1
  for (cat, make), tid in zip(things, ids):
    layers.extend(make(cat * DIV + int(tid)))

  frames, panoptic, flow, valid = render.render(layers, height, width, T)
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
