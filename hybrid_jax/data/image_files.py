"""Reading image files: one decoder for every frame the library reads."""

from __future__ import annotations

import numpy as np
from PIL import Image

from hybrid_jax import errors


def read_rgb(path: str, *, convert: bool = True) -> np.ndarray:
  """An image file as uint8 RGB [H, W, 3].

  Args:
    path: any format PIL reads (png, jpg, ...).
    convert: convert other modes (grey, palette, RGBA) to RGB; False refuses them instead
      (for inputs where another mode means the user passed the wrong file).
  Raises:
    FormatError: the file cannot be decoded, is empty, or is not RGB with convert=False.
  """
  try:
    with Image.open(path) as im:
      mode = im.mode
      arr = np.asarray(im.convert('RGB') if convert else im)
  except Exception as exc:  # PIL raises many types for corrupt files
    raise errors.FormatError(f'Cannot decode image {path}: {exc}') from exc
  if not convert and mode != 'RGB':
    raise errors.FormatError(f'{path} is a {mode!r} image; RGB frames are needed. Convert it, '
                             "e.g. PIL.Image.open(p).convert('RGB').save(p).")
  if arr.size == 0:
    raise errors.FormatError(f'{path} is empty ({arr.shape}).')
  return arr
