"""Middlebury .flo files: 'PIEH' (float32 202021.25), int32 width, int32 height, float32 u,v.

All little-endian, data row-major [H, W, 2] with u (x) first, as written by the Middlebury
and Sintel tools and read by RAFT's frame_utils.
"""

from __future__ import annotations

import os

import numpy as np

from hybrid_jax import errors

FLO_MAGIC = np.float32(202021.25)  # the bytes b'PIEH'


def read_flo(path: str | os.PathLike) -> np.ndarray:
  """Reads a .flo file -> float32 [H, W, 2]. Raises FormatError on a malformed file."""
  path = os.fspath(path)
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as exc:
    raise errors.FormatError(f'Cannot read the flow file {path}: {exc}') from exc
  if len(data) < 12:
    raise errors.FormatError(f'{path} is too short ({len(data)} bytes) to be a .flo file.')
  magic = np.frombuffer(data, '<f4', 1, 0)[0]
  if magic != FLO_MAGIC:
    raise errors.FormatError(f'{path} is not a Middlebury .flo file: magic {data[:4]!r} '
                             f"(expected b'PIEH' = 202021.25).")
  width, height = (int(v) for v in np.frombuffer(data, '<i4', 2, 4))
  if width <= 0 or height <= 0 or width * height > 2**31 // 8:
    raise errors.FormatError(f'{path}: implausible size {width}x{height} in the header.')
  need = 12 + 8 * width * height
  if len(data) != need:
    raise errors.FormatError(f'{path}: {len(data)} bytes but a {width}x{height} flow needs '
                             f'{need}; the file is truncated or corrupt.')
  return np.frombuffer(data, '<f4', 2 * width * height, 12).reshape(height, width, 2).copy()


def write_flo(path: str | os.PathLike, flow) -> None:
  """Writes float [H, W, 2] flow (u = x first) as a .flo file."""
  flow = np.asarray(flow, np.float32)
  if flow.ndim != 3 or flow.shape[-1] != 2 or 0 in flow.shape:
    raise errors.FormatError(f'write_flo needs a non-empty [H, W, 2] flow, got {flow.shape}.')
  h, w, _ = flow.shape
  with open(os.fspath(path), 'wb') as f:
    f.write(FLO_MAGIC.astype('<f4').tobytes())
    f.write(np.array([w, h], '<i4').tobytes())
    f.write(flow.astype('<f4').tobytes())
