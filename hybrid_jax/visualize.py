"""Pictures of clips, labels and flow: panoptic colours, overlays, the flow wheel, GIF/MP4/PNG.

All functions take and return numpy arrays; images are uint8 RGB [..., H, W, 3].

- `colorize_panoptic`: stuff pixels get their class colour, thing pixels a colour derived only
  from (class, track), so a track keeps its colour in every frame; void is black.
- `flow_to_rgb`: the Middlebury colour coding of Baker et al. (2011): hue from the direction,
  saturation from the magnitude (normalised by `max_norm`), from a 55-colour wheel made of the
  segments red-yellow 15, yellow-green 6, green-cyan 4, cyan-blue 11, blue-magenta 13,
  magenta-red 6. Flow pointing right (+x) is red, left (-x) cyan-blue, down (+y) yellow,
  up (-y) blue-violet.
"""

from __future__ import annotations

import colorsys
import contextlib
import os
from typing import Sequence
import warnings

import numpy as np
from PIL import Image

from hybrid_jax import errors
from hybrid_jax.data import categories as categories_lib

LABEL_DIVISOR = categories_lib.LABEL_DIVISOR


class VideoWriterUnavailable(errors.HybridJaxError):
  """No ffmpeg for MP4 output; install imageio-ffmpeg or write a GIF instead."""


# ---------------------------------------------------------------------------------------------
# Panoptic colours.

def track_color(category_id: int, track_id: int) -> tuple[int, int, int]:
  """A saturated colour that depends only on (category, track): stable across frames."""
  # Golden-ratio hue steps spread consecutive track ids around the hue circle; the class
  # shifts the start so two classes' track 1 differ.
  key = (int(category_id) * 7919 + int(track_id) * 104729) & 0xFFFFFFFF
  hue = (int(track_id) * 0.6180339887 + int(category_id) * 0.1312) % 1.0
  sat = 0.65 + 0.3 * ((key >> 3) % 7) / 6.0
  val = 0.75 + 0.25 * ((key >> 7) % 5) / 4.0
  r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
  return int(round(r * 255)), int(round(g * 255)), int(round(b * 255))


def colorize_panoptic(panoptic: np.ndarray, categories) -> np.ndarray:
  """Contract labels int [..., H, W] -> uint8 [..., H, W, 3].

  Stuff (or any label with instance 0) uses its category colour; things with a track use
  `track_color`; void (< 0) is black; unknown categories are treated as things.
  """
  pan = np.asarray(panoptic).astype(np.int64)
  table = {c.id: c for c in categories_lib.as_table(categories)}
  out = np.zeros(pan.shape + (3,), np.uint8)
  labels, inverse = np.unique(pan, return_inverse=True)
  lut = np.zeros((len(labels), 3), np.uint8)
  for k, label in enumerate(labels.tolist()):
    if label < 0:
      continue
    cat, inst = divmod(label, LABEL_DIVISOR)
    c = table.get(cat)
    if c is not None and (not c.isthing or inst == 0):
      lut[k] = c.color
    else:
      lut[k] = track_color(cat, inst)
  out[...] = lut[inverse.reshape(pan.shape)]
  return out


def boundaries(panoptic: np.ndarray) -> np.ndarray:
  """bool [..., H, W]: pixels whose right or lower neighbour has another label."""
  pan = np.asarray(panoptic)
  edge = np.zeros(pan.shape, bool)
  dx = pan[..., :, 1:] != pan[..., :, :-1]
  dy = pan[..., 1:, :] != pan[..., :-1, :]
  edge[..., :, :-1] |= dx
  edge[..., :-1, :] |= dy
  return edge


def overlay(frames: np.ndarray, colors: np.ndarray, alpha: float = 0.5,
            panoptic: np.ndarray | None = None,
            boundary_color: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
  """Alpha-blends label colours onto frames: uint8 [..., H, W, 3] each -> uint8 [..., H, W, 3].

  With `panoptic` given, void pixels keep the frame as is and labelled pixels whose right or
  lower neighbour has another label are drawn in `boundary_color`; without it, black colour pixels count as void.
  """
  frames = np.asarray(frames, np.float32)
  colors = np.asarray(colors, np.float32)
  if frames.shape != colors.shape:
    raise ValueError(f'frames {frames.shape} and colors {colors.shape} differ in shape.')
  if panoptic is None:
    labelled = colors.any(axis=-1)
  else:
    labelled = np.asarray(panoptic) >= 0
  out = np.where(labelled[..., None], (1 - alpha) * frames + alpha * colors, frames)
  out = np.clip(np.round(out), 0, 255).astype(np.uint8)
  if panoptic is not None:
    # Outline labelled segments only; void keeps the plain frame.
    out[boundaries(panoptic) & labelled] = boundary_color
  return out


# ---------------------------------------------------------------------------------------------
# Optical flow colours.

def make_color_wheel() -> np.ndarray:
  """The 55 x 3 Middlebury colour wheel (float, 0..255), red -> yellow -> ... -> magenta."""
  ry, yg, gc, cb, bm, mr = 15, 6, 4, 11, 13, 6
  segments = []
  ramp = lambda n: np.floor(255 * np.arange(n) / n)  # noqa: E731
  full = lambda n: np.full(n, 255.0)  # noqa: E731
  zero = lambda n: np.zeros(n)  # noqa: E731
  segments.append(np.stack([full(ry), ramp(ry), zero(ry)], 1))        # red -> yellow
  segments.append(np.stack([255 - ramp(yg), full(yg), zero(yg)], 1))  # yellow -> green
  segments.append(np.stack([zero(gc), full(gc), ramp(gc)], 1))        # green -> cyan
  segments.append(np.stack([zero(cb), 255 - ramp(cb), full(cb)], 1))  # cyan -> blue
  segments.append(np.stack([ramp(bm), zero(bm), full(bm)], 1))        # blue -> magenta
  segments.append(np.stack([full(mr), zero(mr), 255 - ramp(mr)], 1))  # magenta -> red
  return np.concatenate(segments, 0)


def flow_to_rgb(flow: np.ndarray, max_norm: float | None = None) -> np.ndarray:
  """Flow float [..., H, W, 2] (x first) -> uint8 [..., H, W, 3] with the Middlebury coding.

  Args:
    flow: forward flow; non-finite vectors are shown black.
    max_norm: magnitude shown fully saturated; larger vectors are darkened (x0.75). None uses
      the largest finite magnitude in `flow` (so pass a whole clip for a common scale).
  """
  flow = np.asarray(flow, np.float64)
  if flow.shape[-1] != 2:
    raise ValueError(f'flow must be [..., 2], got {flow.shape}.')
  finite = np.isfinite(flow).all(axis=-1)
  u = np.where(finite, flow[..., 0], 0.0)
  v = np.where(finite, flow[..., 1], 0.0)
  rad = np.sqrt(u * u + v * v)
  if max_norm is None:
    max_norm = float(rad.max()) if rad.size else 0.0
  rad = rad / max(float(max_norm), 1e-9)
  wheel = make_color_wheel() / 255.0
  ncols = len(wheel)
  # Angle measured so that +x maps to the end of the wheel and -x to its middle, as in the
  # original Middlebury code (atan2(-v, -u) / pi in [-1, 1]).
  a = np.arctan2(-v, -u) / np.pi
  fk = (a + 1) / 2 * (ncols - 1)
  k0 = np.floor(fk).astype(np.int64)
  k1 = (k0 + 1) % ncols
  f = (fk - k0)[..., None]
  col = (1 - f) * wheel[k0] + f * wheel[k1]
  small = (rad <= 1)[..., None]
  col = np.where(small, 1 - rad[..., None] * (1 - col), col * 0.75)
  out = np.floor(255 * col).astype(np.uint8)
  out[~finite] = 0
  return out


# ---------------------------------------------------------------------------------------------
# Writers.

def write_gif(path: str, frames: Sequence[np.ndarray], fps: float = 5.0) -> None:
  """Writes uint8 [H, W, 3] frames as a looping GIF."""
  import imageio.v3 as iio  # pylint: disable=g-import-not-at-top
  frames = _as_video(frames)
  _mkdir(path)
  iio.imwrite(path, frames, extension='.gif', duration=1000.0 / fps, loop=0)


def write_mp4(path: str, frames: Sequence[np.ndarray], fps: float = 5.0) -> None:
  """Writes uint8 [H, W, 3] frames as H.264 MP4 (odd sizes are padded to even with black)."""
  try:
    import imageio_ffmpeg  # pylint: disable=g-import-not-at-top
    imageio_ffmpeg.get_ffmpeg_exe()
  except (ImportError, RuntimeError) as exc:
    raise VideoWriterUnavailable(
        f'Cannot write {path}: no ffmpeg ({exc}). Install imageio-ffmpeg '
        '(pip install imageio-ffmpeg) or write a GIF with write_gif.') from exc
  frames = _as_video(frames)
  h, w = frames.shape[1:3]
  # yuv420p needs even sizes; pad rather than let the writer rescale the picture.
  frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
  _mkdir(path)
  with ffmpeg_subprocess():
    writer = imageio_ffmpeg.write_frames(path, (frames.shape[2], frames.shape[1]), fps=fps,
                                         codec='libx264', pix_fmt_out='yuv420p',
                                         macro_block_size=1, quality=8)
    writer.send(None)
    for frame in frames:
      writer.send(np.ascontiguousarray(frame))
    writer.close()


@contextlib.contextmanager
def ffmpeg_subprocess():
  """Silences JAX's fork warning for ffmpeg: subprocess forks and at once execs ffmpeg, which
  shares none of JAX's threads (the deadlock the warning is about cannot happen)."""
  with warnings.catch_warnings():
    warnings.filterwarnings('ignore', message=r'os\.fork\(\) was called', category=RuntimeWarning)
    yield


def compose_strip(rows: Sequence[Sequence[np.ndarray]], gap: int = 2) -> np.ndarray:
  """Tiles images: each row side by side, rows stacked; gaps and ragged sizes padded black.

  Args:
    rows: rows of uint8 [h, w, 3] images; a row may also be a single image (so a list of
      `render_clip_preview` pictures stacks one frame per row).
  Returns:
    uint8 [H, W, 3].
  """
  built = []
  for row in rows:
    if isinstance(row, np.ndarray) and row.ndim == 3:
      row = [row]
    row = [np.asarray(im, np.uint8) for im in row]
    if not row:
      continue
    h = max(im.shape[0] for im in row)
    parts = []
    for k, im in enumerate(row):
      if k:
        parts.append(np.zeros((h, gap, 3), np.uint8))
      parts.append(np.pad(im, ((0, h - im.shape[0]), (0, 0), (0, 0))))
    built.append(np.concatenate(parts, 1))
  if not built:
    raise ValueError('compose_strip needs at least one image.')
  w = max(r.shape[1] for r in built)
  out = []
  for k, r in enumerate(built):
    if k:
      out.append(np.zeros((gap, w, 3), np.uint8))
    out.append(np.pad(r, ((0, 0), (0, w - r.shape[1]), (0, 0))))
  return np.concatenate(out, 0)


def write_strip(path: str, rows: Sequence[Sequence[np.ndarray]], gap: int = 2) -> np.ndarray:
  """Writes `compose_strip(rows)` as a PNG and returns it."""
  image = compose_strip(rows, gap)
  _mkdir(path)
  Image.fromarray(image).save(path)
  return image


def render_clip_preview(clip: dict, categories, *, alpha: float = 0.5,
                        gap: int = 2) -> list[np.ndarray]:
  """One picture per frame: frame | GT overlay | flow colours.

  The overlay shows every label the clip has (the synthetic data labels every frame; real
  datasets hold -1 on unlabelled frames, which shows as the bare frame).

  The flow panel of frame t shows flow t -> t+1 (black for the last frame or without flow),
  scaled by the clip's largest valid flow so colours are comparable across frames.
  Returns a list of T uint8 [H, 3W + 2*gap, 3] images (for `write_gif` / `write_mp4`).
  """
  frames = np.asarray(clip['frames'], np.uint8)
  t, h, w = frames.shape[:3]
  pan = np.asarray(clip['panoptic'])
  over = overlay(frames, colorize_panoptic(pan, categories), alpha, panoptic=pan)
  flow_rgb = np.zeros_like(frames)
  if clip.get('flow') is not None and t > 1:
    flow = np.asarray(clip['flow'], np.float32)
    valid = np.asarray(clip.get('flow_valid', np.ones(flow.shape[:-1], bool)), bool)
    flow = np.where(valid[..., None], flow, np.nan)
    norms = np.linalg.norm(np.nan_to_num(flow), axis=-1)
    flow_rgb[:-1] = flow_to_rgb(flow, max_norm=float(norms.max()) or 1.0)
  return [compose_strip([[frames[i], over[i], flow_rgb[i]]], gap) for i in range(t)]


def _as_video(frames) -> np.ndarray:
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
    raise ValueError(f'Expected frames [T>0, H, W, 3], got {frames.shape}.')
  return np.clip(frames, 0, 255).astype(np.uint8)


def _mkdir(path: str) -> None:
  d = os.path.dirname(os.path.abspath(path))
  try:
    os.makedirs(d, exist_ok=True)
  except OSError as exc:
    raise errors.WorkdirError(f'Cannot create {d} for {path}: {exc}') from exc


