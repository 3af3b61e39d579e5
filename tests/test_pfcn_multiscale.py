"""PanopticFCN inference: multi-scale test-time inference (seg.test_scales), small-frame defaults."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybrid_jax import errors
from hybrid_jax.data import categories as cat_lib
from hybrid_jax.models.panoptic_fcn import postprocess as inf
from hybrid_jax.models.panoptic_fcn import targets as tg
from hybrid_jax.models.panoptic_fcn import build as pfcn_build
from hybrid_jax.models.panoptic_fcn import segment as pfcn_segment

LAYOUT = tg.ClassLayout.from_categories(cat_lib.SYNTHETIC)  # things car=6, person=7
ROAD = 2  # stuff channel of road (channel 0 is the merged things region)


def _scene(size: int, objects) -> dict:
  """Model outputs (batch 1) of a square frame of `size` pixels holding `objects`.

  objects: (thing channel, (y0, y1, x0, x1) in pixels, centre logit). Each object owns one
  encoder channel that is 1 inside its box on the 1/4 grid; its kernel (at its P3 centre)
  picks that channel. Road is the only stuff.
  """
  q = size // 4
  e = 4  # E, the same at every scale: up to three objects and a bias channel
  enc = np.zeros((q, q, e), np.float32)
  enc[..., -1] = 1.0                                  # bias channel
  sizes = [max(1, size // s) for s in tg.LEVEL_STRIDES]
  inst = [np.full((s, s, 2), -10.0, np.float32) for s in sizes]
  tk = [np.zeros((s, s, e), np.float32) for s in sizes]
  for k, (ch, (y0, y1, x0, x1), logit) in enumerate(objects):
    enc[y0 // 4:y1 // 4, x0 // 4:x1 // 4, k] = 1.0
    cy, cx = (y0 + y1) // 16, (x0 + x1) // 16         # P3 (stride 8) centre cell
    inst[0][max(cy - 1, 0):cy + 2, max(cx - 1, 0):cx + 2, ch] = logit - 1.0
    inst[0][cy, cx, ch] = logit
    tk[0][cy, cx, k], tk[0][cy, cx, -1] = 20.0, -10.0
  stuff = [np.full((s, s, LAYOUT.num_stuff), -5.0, np.float32) for s in sizes]
  sk = [np.zeros((s, s, e), np.float32) for s in sizes]
  for s, kmap in zip(stuff, sk):
    s[..., ROAD] = 5.0
    kmap[..., -1] = 10.0
  b = lambda xs: tuple(jnp.asarray(x)[None] for x in xs)
  return {'encode_feat': jnp.asarray(enc)[None], 'inst_logits': b(inst),
          'thing_kernels': b(tk), 'stuff_logits': b(stuff), 'stuff_kernels': b(sk),
          'stuff_bias': jnp.zeros(e)}


CAR, PERSON = (0, (0, 32, 0, 32), 5.0), (1, (32, 64, 32, 64), 3.0)
CFG = inf.InferenceConfig(max_instances=4, stuff_area_limit=16)


def test_one_scale_equals_single_scale_postprocess():
  out = _scene(64, [CAR, PERSON])
  single = inf.postprocess(out, image_hw=(64, 64), layout=LAYOUT, cfg=CFG)
  multi = inf.postprocess_multiscale([out], scaled_hws=[(64, 64)], image_hw=(64, 64),
                                     layout=LAYOUT, cfg=CFG)
  for key in inf.OUTPUT_KEYS:
    np.testing.assert_array_equal(multi[key], single[key], err_msg=key)


def test_the_same_view_twice_changes_nothing():
  # Every object is proposed twice; the overlap rule keeps one copy, the stuff mean is equal.
  out = _scene(64, [CAR, PERSON])
  single = inf.postprocess(out, image_hw=(64, 64), layout=LAYOUT, cfg=CFG)
  multi = inf.postprocess_multiscale([out, out], scaled_hws=[(64, 64)] * 2, image_hw=(64, 64),
                                     layout=LAYOUT, cfg=CFG)
  np.testing.assert_array_equal(multi['panoptic'], single['panoptic'])
  assert multi['valid'][0].tolist() == [True, True, False, False]


def test_half_scale_proposals_land_in_place_and_duplicates_drop():
  # The car is seen at both scales (more confidently at half scale), the person only at full.
  full = _scene(64, [(0, (0, 32, 0, 32), 2.0), PERSON])
  half = _scene(32, [(0, (0, 16, 0, 16), 6.0)])
  out = inf.postprocess_multiscale([half, full], scaled_hws=[(32, 32), (64, 64)],
                                   image_hw=(64, 64), layout=LAYOUT, cfg=CFG)
  assert out['valid'][0].tolist() == [True, True, False, False]
  assert out['classes'][0, :2].tolist() == [6, 7]
  car = np.asarray(out['masks'][0, 0])
  box = np.zeros((64, 64), bool)
  box[:32, :32] = True
  iou = (car & box).sum() / (car | box).sum()
  assert iou > 0.9, iou
  # The half-scale copy wins (higher score), so the car's score is the half-scale one.
  half_only = inf.postprocess(half, image_hw=(32, 32), layout=LAYOUT, cfg=CFG)
  np.testing.assert_allclose(out['scores'][0, 0], half_only['scores'][0, 0], rtol=1e-6)
  pan = np.asarray(out['panoptic'][0])
  assert (pan[40:60, 40:60] // 1000 == 7).all()
  assert (pan[50:, :20] == 1000).all()     # road (id 1) where no thing is


def test_reference_grid_geometry():
  # A field linear in the row index on a half-size 1/4 grid: on the full-size grid, row r
  # samples the half grid at (r + 0.5) / 2 - 0.5.
  x = jnp.tile(jnp.arange(8, dtype=jnp.float32)[:, None], (1, 8))
  y = inf.to_reference_grid(x, ref_hw=(16, 16), image_hw=(64, 64), scaled_hw=(32, 32))
  rows = np.arange(1, 15)
  np.testing.assert_allclose(y[1:15, 5], (rows + 0.5) / 2 - 0.5, atol=1e-5)


@pytest.mark.parametrize('scales', [(0.5, 0.6875, 1.0)])
def test_segment_runs_at_several_scales(scales):
  cfg = {'backbone': 'resnet_tiny', 'position_deform': 'none', 'test_scales': scales,
         'max_instances': 8}
  model = pfcn_build.build_segmenter(cfg, cat_lib.SYNTHETIC)
  assert pfcn_build.spec_of(model).test_scales == scales
  variables = pfcn_build.init_segmenter(model, jax.random.key(0), (64, 96))
  frames = np.random.default_rng(0).integers(0, 255, (2, 70, 96, 3), dtype=np.uint8)
  out = pfcn_segment.make_segment_fn(model)(variables, frames)
  assert out['panoptic'].shape == (2, 70, 96)
  assert out['masks'].shape == (2, 8, 70, 96)
  assert pfcn_segment.scaled_size((70, 96), 0.6875) == (48, 66)


def test_bad_scales_are_config_errors():
  for bad in ((), (0.0,), (1.0, 1.0), ('a',)):
    with pytest.raises(errors.ConfigError, match='test_scales'):
      pfcn_build.build_segmenter({'backbone': 'resnet_tiny', 'test_scales': bad},
                                cat_lib.SYNTHETIC)


def test_small_frame_models_keep_one_cell_peaks():
  # A one-cell centre peak of 0.9 at P3 (what a radius-0 target teaches on 128x256 frames):
  # the official 3x3 smoothing leaves 0.1 < 0.2 (combine threshold), the small-frame default
  # keeps it.
  out = _scene(64, [CAR])
  inst = np.full(out['inst_logits'][0].shape, -10.0, np.float32)
  inst[0, 2, 2, 0] = np.log(0.9 / 0.1)
  out['inst_logits'] = (jnp.asarray(inst),) + out['inst_logits'][1:]
  small = pfcn_build.spec_of(pfcn_build.build_segmenter({'backbone': 'resnet_tiny'},
                                                      cat_lib.SYNTHETIC)).inference
  official = pfcn_build.spec_of(pfcn_build.build_segmenter({'backbone': 'resnet50'},
                                                         cat_lib.SYNTHETIC)).inference
  assert official.smooth_sizes == (3, 3, 3, 5, 5)
  for cfg, found in ((small, 1), (official, 0)):
    cfg = dataclasses.replace(cfg, max_instances=4, stuff_area_limit=16)
    res = inf.postprocess(out, image_hw=(64, 64), layout=LAYOUT, cfg=cfg)
    assert int(res['valid'][0].sum()) == found
