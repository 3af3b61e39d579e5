"""PanopticFCN's input side: frames -> normalised, /32-padded network input; labels padded alike.

Shared by training (the loss builds its targets from the padded labels) and inference.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from hybrid_jax import errors
from hybrid_jax.data import categories as cat_lib

SIZE_DIVISIBILITY = 32


@dataclasses.dataclass(frozen=True)
class InputSpec:
  """How uint8 RGB frames become network input: optional RGB->BGR, (x - mean) / std."""
  input_format: str                 # 'RGB' | 'BGR' (channel order the weights expect)
  pixel_mean: tuple[float, float, float]  # in that channel order, 0..255 scale
  pixel_std: tuple[float, float, float]

  def to_metadata(self) -> dict:
    return {'input_format': self.input_format, 'pixel_mean': list(self.pixel_mean),
            'pixel_std': list(self.pixel_std)}


INPUT_SPECS = {
    # torchvision ImageNet weights (and our default for training from scratch).
    'torchvision': InputSpec('RGB', (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),
    # Detectron2 MSRA R-50.pkl (Caffe2): BGR, std folded into conv1.
    'detectron2': InputSpec('BGR', (103.53, 116.28, 123.675), (1.0, 1.0, 1.0)),
    # The official PanopticFCN configs: RGB-ordered means subtracted from a BGR image (quirk,
    # reference panoptic_fcn_checkpoints.md §2.2); needed to reproduce the released models.
    'panoptic_fcn': InputSpec('BGR', (123.675, 116.28, 103.53), (1.0, 1.0, 1.0)),
}


def input_spec_from_metadata(meta: dict) -> InputSpec:
  try:
    return InputSpec(str(meta['input_format']), tuple(float(v) for v in meta['pixel_mean']),
                     tuple(float(v) for v in meta['pixel_std']))
  except (KeyError, TypeError, ValueError) as exc:
    raise errors.CheckpointError(f'Checkpoint metadata lacks a valid input spec: {exc}') from exc


def padded_size(n: int) -> int:
  return -(-n // SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY


def preprocess_images(images: jax.Array, spec: InputSpec) -> jax.Array:
  """uint8 RGB [B,H,W,3] -> normalised float32, zero-padded (after normalising) to /32."""
  if images.ndim != 4 or images.shape[-1] != 3:
    raise errors.FormatError(f'Expected RGB frames [B,H,W,3], got shape {images.shape}.')
  if images.dtype != jnp.uint8:
    raise errors.FormatError(f'Expected uint8 frames, got {images.dtype}.')
  return normalise_and_pad(images.astype(jnp.float32), spec)


def normalise_and_pad(x: jax.Array, spec: InputSpec) -> jax.Array:
  """float RGB in 0..255 [B,H,W,3] -> the network input (see preprocess_images)."""
  h, w = x.shape[1:3]
  if spec.input_format == 'BGR':
    x = x[..., ::-1]
  x = (x - jnp.asarray(spec.pixel_mean)) / jnp.asarray(spec.pixel_std)
  return jnp.pad(x, ((0, 0), (0, padded_size(h) - h), (0, padded_size(w) - w), (0, 0)))


def pad_panoptic(panoptic: jax.Array) -> jax.Array:
  """int32 [B,H,W] -> padded to /32 with void (-1)."""
  h, w = panoptic.shape[1:3]
  return jnp.pad(panoptic, ((0, 0), (0, padded_size(h) - h), (0, padded_size(w) - w)),
                 constant_values=cat_lib.VOID)
