"""Instance tracker's embedding head (§III.B, Fig. 4): masked RoI on a fixed canvas -> 2 FCs.

What is cropped. The paper turns each instance's binary mask into its bounding box, crops the
region enclosed by the box "into RoI feats", scales it to 256×512 without deformation and pads
with zeros; Fig. 4 draws the masks themselves as the input. We crop the *image masked by the
instance mask*, plus the mask as an extra channel (``use_image=False`` keeps the mask only,
the literal Fig. 4). Why: the crop lives at image scale (256×512 is an image-scale size, not a
stride-4 feature map), a binary mask alone carries shape but no appearance, and an RGB crop
needs nothing from the segmenter, so the head works on any per-frame predictor's output
(external PNGs included). Any other map (e.g. encoder features) can be passed instead of the
image: sampling coordinates are rescaled from mask pixels to that map's resolution.

Canvas. The box is scaled by ``s = min(Hc / h, Wc / w)`` (aspect ratio kept), placed at the
canvas's top-left, the rest is zero. Sampling is bilinear gathers per canvas pixel, vmapped over
the padded instances (no Python loop), so the whole head is one jitted computation with static
shapes.

Size. Flattening a 256×512×C canvas straight into a 1024-unit layer would need 134M·C weights
per layer; ``pool`` (default 8) average-pools the canvas first (to 32×64 at the paper's canvas),
keeping the paper's input resolution and two 1024-d FC layers at a practical size. ``pool=1``
is the literal layout.

RoI input (``roi_input``, config ``track.roi_input``). Fig. 4 labels the crop "RoI feats", which
can also be read as the segmenter's features. ``'image'`` (the default, above) crops the masked
RGB image; ``'features'`` crops the frozen segmenter's encoder features (PanopticFCN's stride-4
``encode_feat``, the map its masks are made from; `segment.make_feature_fn`) with the same box,
scale and zero padding; ``'both'`` concatenates the two. The feature crop is pooled like the
image crop and then projected per cell to ``feature_dim`` channels by a learned 1x1 layer
(R50's 64 channels straight into FC1 would make it 133M weights at the paper's canvas);
projecting after pooling keeps the crop outside the gradient, so nothing flows back into the
segmenter, which stays frozen as in §IV.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from hybrid_jax import errors
from hybrid_jax.models import layers

ROI_INPUTS = ('image', 'features', 'both')


def canvas_channels(roi_input: str = 'image', *, use_image: bool = True,
                    feature_dim: int = 16) -> int:
  """Channels per canvas cell that reach FC1: the masked RGB and/or the projected features,
  and one mask channel (so fc1's input is cells x this)."""
  if roi_input not in ROI_INPUTS:
    raise ValueError(f'roi_input {roi_input!r}: choose from {ROI_INPUTS}')
  image = (3 if use_image else 0) if roi_input != 'features' else 0
  feats = int(feature_dim) if roi_input != 'image' else 0
  return image + feats + 1


def canvas_coordinates(box, canvas_hw):
  """Source coordinates (in mask pixels) of every canvas pixel for one box.

  Args:
    box: float [4] (x0, y0, x1, y1), x1/y1 exclusive.
    canvas_hw: static (Hc, Wc).

  Returns:
    (x [Hc, Wc], y [Hc, Wc], inside bool [Hc, Wc]): inside is False on the zero padding.
  """
  hc, wc = canvas_hw
  x0, y0, x1, y1 = box[0], box[1], box[2], box[3]
  bw = jnp.maximum(x1 - x0, 1.0)
  bh = jnp.maximum(y1 - y0, 1.0)
  s = jnp.minimum(hc / bh, wc / bw)             # one scale for both axes: no deformation
  u = jnp.arange(hc, dtype=jnp.float32) + 0.5   # canvas pixel centres
  v = jnp.arange(wc, dtype=jnp.float32) + 0.5
  ys = y0 + u / s - 0.5                         # back to source pixel-centre coordinates
  xs = x0 + v / s - 0.5
  # A small tolerance keeps the last row/column when bh * s is an exact integer.
  in_y = u <= bh * s + 1e-4
  in_x = v <= bw * s + 1e-4
  y, x = jnp.meshgrid(ys, xs, indexing='ij')
  inside = in_y[:, None] & in_x[None, :]
  return x, y, inside


@functools.partial(jax.jit, static_argnames=('canvas_hw', 'use_image'))
def crop_to_canvas(image, masks, boxes, *, canvas_hw, use_image: bool = True):
  """Masked RoIs of all instances on the zero-padded canvas.

  Args:
    image: float [Hi, Wi, C] image (or any feature map); may differ from the mask size.
    masks: bool/float [N, H, W].
    boxes: float [N, 4] in mask pixels.
    canvas_hw: static (Hc, Wc).
    use_image: include the masked image channels (else the mask channel only).

  Returns:
    float32 [N, Hc, Wc, C + 1] (or [N, Hc, Wc, 1]): image * mask channels, then the mask.
  """
  _, h, w = masks.shape
  hi, wi = image.shape[0], image.shape[1]
  masks_f = masks.astype(jnp.float32)[..., None]

  def one(mask, box):
    x, y, inside = canvas_coordinates(box, canvas_hw)
    m = layers.bilinear_sample(mask, x, y) * inside[..., None]
    if not use_image:
      return m
    xi = (x + 0.5) * (wi / w) - 0.5
    yi = (y + 0.5) * (hi / h) - 0.5
    rgb = layers.bilinear_sample(image, xi, yi)
    return jnp.concatenate([rgb * m, m], axis=-1)

  return jax.vmap(one)(masks_f, boxes.astype(jnp.float32))


class EmbeddingHead(nn.Module):
  """RoI canvas -> (pool) -> FC -> ReLU -> FC: one embedding per instance slot.

  Attributes:
    canvas: (height, width) of the canvas; the paper's (256, 512); tiny for tests.
    pool: average-pool window applied to the canvas before the FCs (1 = none).
    hidden_dim: width of the first FC (1024 in the paper).
    embed_dim: embedding size (1024 in the paper).
    use_image: crop the masked image (True) or the mask only (False).
    roi_input: 'image' | 'features' | 'both' (module docstring).
    feature_dim: channels the segmenter's features are projected to (roi_input != 'image').
    crop_gradient: let gradients flow into the input image through the crop (only useful when
      it is a trainable map; off saves the sampler's backward pass). The segmenter's features
      never get a gradient.
    dtype: activation dtype of the FCs (bfloat16 for mixed-precision training); the crop and
      the returned embeddings are float32.
  """
  canvas: tuple[int, int] = (256, 512)
  pool: int = 8
  hidden_dim: int = 1024
  embed_dim: int = 1024
  use_image: bool = True
  roi_input: str = 'image'
  feature_dim: int = 16
  crop_gradient: bool = False
  dtype: Any = jnp.float32

  def _pool(self, x):
    if self.pool > 1:
      x = nn.avg_pool(x, (self.pool, self.pool), strides=(self.pool, self.pool))
    return x

  @nn.compact
  def __call__(self, image, masks, boxes, valid, features=None):
    """image [Hi, Wi, C] (uint8 -> scaled to [0, 1]); masks [N, H, W]; boxes [N, 4];
    valid [N]; features float [Hf, Wf, E] (the segmenter's map of this frame; needed unless
    roi_input='image') -> float32 [N, embed_dim], zero rows for padding slots."""
    # The learned "no counterpart" logit of the DML loss (dustbin variant) lives here so one
    # parameter tree holds everything the tracking stage trains.
    self.param('dustbin_logit', nn.initializers.zeros, (), jnp.float32)
    canvas_channels(self.roi_input)  # a bad name fails here
    canvas = tuple(self.canvas)
    parts = []
    if self.roi_input in ('image', 'both'):
      if jnp.issubdtype(image.dtype, jnp.integer):
        image = image.astype(jnp.float32) / 255.0
      x = crop_to_canvas(image.astype(jnp.float32), masks, boxes, canvas_hw=canvas,
                         use_image=self.use_image)
      if not self.crop_gradient:
        x = jax.lax.stop_gradient(x)
      parts.append(self._pool(x))                      # masked RGB, mask
    if self.roi_input in ('features', 'both'):
      if features is None:
        raise ValueError(f"EmbeddingHead(roi_input={self.roi_input!r}) needs the segmenter's "
                         'features of the frame (features=...).')
      f = crop_to_canvas(features.astype(jnp.float32), masks, boxes, canvas_hw=canvas)
      f = self._pool(jax.lax.stop_gradient(f))         # the segmenter stays frozen
      proj = nn.Dense(self.feature_dim, dtype=self.dtype, name='feature_proj')(
          f[..., :-1].astype(self.dtype)).astype(jnp.float32)
      parts = [parts[0][..., :-1], proj, f[..., -1:]] if parts else [proj, f[..., -1:]]
    x = jnp.concatenate(parts, axis=-1)
    x = x.reshape(x.shape[0], -1).astype(self.dtype)
    x = nn.relu(nn.Dense(self.hidden_dim, dtype=self.dtype, name='fc1')(x))
    x = nn.Dense(self.embed_dim, dtype=self.dtype, name='fc2')(x).astype(jnp.float32)
    return jnp.where(valid[:, None], x, 0.0)


def init_head(model: EmbeddingHead, rng, *, image_hw, channels: int = 3, max_instances: int = 1,
              feature_channels: int = 0):
  """Parameters of `model` for images [image_hw..., channels] (masks at the same size) and,
  unless model.roi_input is 'image', segmenter features of `feature_channels` channels."""
  h, w = image_hw
  features = None
  if model.roi_input != 'image':
    if feature_channels <= 0:
      raise ValueError(f'init_head: roi_input={model.roi_input!r} needs feature_channels '
                       "(the segmenter's feature width).")
    features = jnp.zeros((max(h // 4, 1), max(w // 4, 1), feature_channels), jnp.float32)
  # Jitted: eager (op-by-op) initialisation of the vmapped sampler is ~10x slower on CPU.
  return jax.jit(model.init)(rng, jnp.zeros((h, w, channels), jnp.float32),
                             jnp.zeros((max_instances, h, w), bool),
                             jnp.zeros((max_instances, 4), jnp.float32),
                             jnp.zeros((max_instances,), bool), features)['params']


def make_embed_fn(model: EmbeddingHead, params, feature_fn: Callable | None = None) -> Callable:
  """A jitted ``embed(image, FrameInstances) -> [N, D]`` for the VideoTracker.

  feature_fn(image [H, W, 3]) -> the segmenter's features [Hf, Wf, E] of that frame; needed
  (and only called) when model.roi_input is not 'image'.
  """
  needs_features = model.roi_input != 'image'
  if needs_features and feature_fn is None:
    raise errors.ConfigError(f"This embedding head crops the segmenter's features (roi_input="
                     f"{model.roi_input!r}): it needs the run's segmenter to embed a frame. "
                     'Track with the run that trained it (mode=track or mode=all); per-frame '
                     "predictions from files give masks only (use a head trained with "
                     "--config.track.roi_input=image).")
  apply = jax.jit(lambda p, img, m, b, v, f: model.apply({'params': p}, img, m, b, v, f))

  def embed(image, inst):
    features = feature_fn(image) if needs_features else None
    return apply(params, jnp.asarray(image), jnp.asarray(inst.masks), jnp.asarray(inst.boxes),
                 jnp.asarray(inst.valid), features)

  return embed
