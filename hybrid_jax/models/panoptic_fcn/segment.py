"""PanopticFCN inference on frames: single- or multi-scale, jitted.

``segment_fn = make_segment_fn(model)``; ``segment_fn(variables, uint8 [B, H, W, 3])`` gives
the padded per-frame outputs of `postprocess` (panoptic map, instance masks, classes, scores,
boxes, valid, kernels).
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp

from hybrid_jax.models.panoptic_fcn import build
from hybrid_jax.models.panoptic_fcn import inputs
from hybrid_jax.models.panoptic_fcn import model as panoptic_fcn
from hybrid_jax.models.panoptic_fcn import postprocess as inference_lib


def scaled_size(hw, scale: float) -> tuple[int, int]:
  """The input size (h, w) of a frame of size hw tested at `scale` (rounded, at least 1)."""
  return tuple(max(1, int(round(v * scale))) for v in hw)


def segment(variables: dict, images: jax.Array, *, model: panoptic_fcn.PanopticFCN,
            spec: build.SegmenterSpec | None = None, output_hw=None) -> dict:
  """Per-frame panoptic prediction (see `postprocess` for the output dict).

  images: uint8 RGB [B,H,W,3] of any size; output at (H, W) unless output_hw is given.
  With several `spec.test_scales`, the frames are resized (bilinear) to each scale, the
  network runs once per scale and `models.panoptic_fcn.postprocess.postprocess_multiscale` merges.
  """
  spec = spec or build.spec_of(model)
  x = inputs.preprocess_images(images, spec.input)  # also checks shape and dtype
  image_hw = tuple(images.shape[1:3])
  if spec.test_scales == (1.0,):
    outputs = model.apply(variables, x)
    return inference_lib.postprocess(outputs, image_hw=image_hw, layout=spec.layout,
                                     cfg=spec.inference, output_hw=output_hw)
  outputs, sizes = [], []
  for scale in spec.test_scales:
    hw = scaled_size(image_hw, scale)
    if hw != image_hw:
      rgb = jax.image.resize(images.astype(jnp.float32), (images.shape[0],) + hw + (3,),
                             'linear', antialias=False)
      x_scaled = inputs.normalise_and_pad(rgb, spec.input)
    else:
      x_scaled = x
    outputs.append(model.apply(variables, x_scaled))
    sizes.append(hw)
  return inference_lib.postprocess_multiscale(outputs, scaled_hws=sizes, image_hw=image_hw,
                                              layout=spec.layout, cfg=spec.inference,
                                              output_hw=output_hw)


@functools.lru_cache(maxsize=32)
def _jitted_segment(model, spec, output_hw):
  return jax.jit(functools.partial(segment, model=model, spec=spec, output_hw=output_hw))


def make_segment_fn(model: panoptic_fcn.PanopticFCN, *, spec: build.SegmenterSpec | None = None,
                    output_hw=None) -> Callable[[dict, jax.Array], dict]:
  """jit-compiled `segment` ``(variables, images) -> outputs`` (a jax.jit object: it also
  lowers and exports).

  One object per (model, spec, output size) for the process: models and specs built twice
  from one config are equal and equally hashed, so the segmenter's val PQ, the tracker's
  fusion fit and the val tracking share one compiled program per input shape instead of
  compiling their own (~4 s each for the demo's segmenter on 2 cores).
  """
  spec = spec or build.spec_of(model)
  output_hw = None if output_hw is None else tuple(int(v) for v in output_hw)
  return _jitted_segment(model, spec, output_hw)


def features(variables: dict, images: jax.Array, *, model: panoptic_fcn.PanopticFCN,
             spec: build.SegmenterSpec | None = None) -> jax.Array:
  """The encoder features the segmenter makes its masks from, for the embedding head's
  `roi_input='features'` (models/embedding_head.py).

  images: uint8 RGB [B, H, W, 3]. Returns float32 [B, ceil(H/4), ceil(W/4), E]: PanopticFCN's
  stride-4 `encode_feat` of the unscaled frame, with the /32 padding cut off, so the map spans
  exactly the frame (the head maps mask pixels onto it by the size ratio).
  """
  spec = spec or build.spec_of(model)
  x = inputs.preprocess_images(images, spec.input)
  feat = model.apply(variables, x)['encode_feat']
  stride_h, stride_w = x.shape[1] // feat.shape[1], x.shape[2] // feat.shape[2]
  h, w = images.shape[1:3]
  return feat[:, :-(-h // stride_h), :-(-w // stride_w)]


def make_feature_fn(model: panoptic_fcn.PanopticFCN, variables: dict, *,
                    spec: build.SegmenterSpec | None = None) -> Callable[[jax.Array], jax.Array]:
  """``feature_fn(image uint8 [H, W, 3]) -> float32 [ceil(H/4), ceil(W/4), E]`` of one frame,
  jitted (the form `embedding_head.make_embed_fn` takes)."""
  spec = spec or build.spec_of(model)
  fn = jax.jit(lambda v, im: features(v, im[None], model=model, spec=spec)[0])
  return lambda image: fn(variables, jnp.asarray(image))
