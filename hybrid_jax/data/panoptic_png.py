"""RGB-id PNGs of the COCO-panoptic / Cityscapes-VPS format: id = R + 256*G + 65536*B, 0 = void.

Shared by the official-format reader/writer, the evaluator and the tracker command, so that
one function decides how a PNG becomes ids.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from hybrid_jax import errors


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
  """uint8 [..., 3] -> int64 [...] with id = R + 256 G + 65536 B."""
  rgb = np.asarray(rgb)
  if rgb.shape[-1] != 3:
    raise errors.FormatError(f'Expected an RGB array [..., 3], got shape {rgb.shape}.')
  rgb = rgb.astype(np.int64)
  return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
  """int [...] (0 <= id < 2**24) -> uint8 [..., 3]."""
  ids = np.asarray(ids, dtype=np.int64)
  if ids.size and (ids.min() < 0 or ids.max() >= 1 << 24):
    raise ValueError(f'Segment ids must lie in [0, 2**24), got [{ids.min()}, {ids.max()}].')
  return np.stack([ids % 256, (ids // 256) % 256, ids // 65536], axis=-1).astype(np.uint8)


def read_id_png(path: str) -> np.ndarray:
  """Reads an RGB-id PNG into int64 ids [H, W]; a clear FormatError when unreadable."""
  if not os.path.exists(path):
    raise errors.FormatError(f'PNG not found: {path}')
  try:
    with Image.open(path) as im:
      if im.mode not in ('RGB', 'RGBA'):
        raise errors.FormatError(
            f'{path}: expected an RGB id PNG (id = R + 256G + 65536B), got mode {im.mode}.')
      arr = np.asarray(im.convert('RGB'))
  except errors.FormatError:
    raise
  except Exception as exc:  # PIL raises many types for corrupt files
    raise errors.FormatError(f'Cannot decode PNG {path}: {exc}') from exc
  return rgb_to_id(arr)


def write_id_png(path: str, ids: np.ndarray) -> None:
  """Writes int ids [H, W] as an RGB-id PNG."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  Image.fromarray(id_to_rgb(ids)).save(path)
