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
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from hybrid_jax.models import layers
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
    crop_gradient: let gradients flow into the input map through the crop (only useful when
      the input is a trainable feature map; off saves the sampler's backward pass).
    dtype: activation dtype of the FCs (bfloat16 for mixed-precision training); the crop and
      the returned embeddings are float32.
  """
  canvas: tuple[int, int] = (256, 512)
  pool: int = 8
  hidden_dim: int = 1024
  embed_dim: int = 1024
  use_image: bool = True
  crop_gradient: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, image, masks, boxes, valid):
    """image [Hi, Wi, C] (uint8 -> scaled to [0, 1]); masks [N, H, W]; boxes [N, 4];
    valid [N] -> float32 [N, embed_dim], zero rows for padding slots."""
    # The learned "no counterpart" logit of the DML loss (dustbin variant) lives here so one
    # parameter tree holds everything the tracking stage trains.
    self.param('dustbin_logit', nn.initializers.zeros, (), jnp.float32)
    if jnp.issubdtype(image.dtype, jnp.integer):
      image = image.astype(jnp.float32) / 255.0
    x = crop_to_canvas(image.astype(jnp.float32), masks, boxes, canvas_hw=tuple(self.canvas),
                       use_image=self.use_image)
    if not self.crop_gradient:
      x = jax.lax.stop_gradient(x)
    if self.pool > 1:
      x = nn.avg_pool(x, (self.pool, self.pool), strides=(self.pool, self.pool))
    x = x.reshape(x.shape[0], -1).astype(self.dtype)
    x = nn.relu(nn.Dense(self.hidden_dim, dtype=self.dtype, name='fc1')(x))
    x = nn.Dense(self.embed_dim, dtype=self.dtype, name='fc2')(x).astype(jnp.float32)
    return jnp.where(valid[:, None], x, 0.0)


def init_head(model: EmbeddingHead, rng, *, image_hw, channels: int = 3, max_instances: int = 1):
  """Parameters of `model` for images [image_hw..., channels] (masks at the same size)."""
  h, w = image_hw
  # Jitted: eager (op-by-op) initialisation of the vmapped sampler is ~10x slower on CPU.
  return jax.jit(model.init)(rng, jnp.zeros((h, w, channels), jnp.float32),
                    jnp.zeros((max_instances, h, w), bool),
                    jnp.zeros((max_instances, 4), jnp.float32),
                    jnp.zeros((max_instances,), bool))['params']


def make_embed_fn(model: EmbeddingHead, params) -> Callable:
  """A jitted ``embed(image, FrameInstances) -> [N, D]`` for the VideoTracker."""
  apply = jax.jit(lambda p, img, m, b, v: model.apply({'params': p}, img, m, b, v))

  def embed(image, inst):
    return apply(params, jnp.asarray(image), jnp.asarray(inst.masks), jnp.asarray(inst.boxes),
                 jnp.asarray(inst.valid))

  return embed
