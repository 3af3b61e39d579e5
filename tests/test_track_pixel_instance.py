"""Pixel-tracker association: warping along flow, the dice matrix, flow sources."""

import numpy as np
import pytest

from hybrid_jax import errors
from hybrid_jax.data import flo_files as flow_io
from hybrid_jax.tracking import flow_sources
from hybrid_jax.tracking import instance as instance_assoc
from hybrid_jax.tracking import pixel
def _brute_dice(a, b):
  out = np.zeros((len(a), len(b)))
  for i in range(len(a)):
    for j in range(len(b)):
      den = a[i].sum() + b[j].sum()
      out[i, j] = 2.0 * np.logical_and(a[i], b[j]).sum() / den if den else 0.0
  return out


@pytest.mark.parametrize('method', ['packed', 'matmul'])
def test_dice_matrix_matches_brute_force_and_zeroes_invalid(method):
  rng = np.random.default_rng(0)
  a = rng.random((5, 12, 17)) < 0.3             # 204 pixels: not a multiple of 32
  b = rng.random((4, 12, 17)) < 0.5
  a[3] = False                                  # empty mask: dice 0, not NaN
  got = np.asarray(pixel.dice_matrix(a, b, method=method))
  np.testing.assert_allclose(got, _brute_dice(a, b), rtol=1e-6, atol=1e-7)
  valid_a = np.array([1, 0, 1, 1, 1], bool)
  valid_b = np.array([1, 1, 0, 1], bool)
  got = np.asarray(pixel.dice_matrix(a, b, valid_a, valid_b, method=method))
  assert np.all(got[1] == 0) and np.all(got[:, 2] == 0)
  np.testing.assert_allclose(got[0, 0], _brute_dice(a, b)[0, 0], rtol=1e-6)


def test_identical_masks_have_dice_one():
  m = np.zeros((1, 6, 6), bool)
  m[0, 1:4, 2:5] = True
  assert float(pixel.dice_matrix(m, m)[0, 0]) == pytest.approx(1.0)


def test_warp_translation_and_out_of_frame_drop():
  masks = np.zeros((2, 8, 10), bool)
  masks[0, 2:4, 1:3] = True        # 2x2 square
  masks[1, 5:7, 7:10] = True       # touches the right border
  flow = np.zeros((8, 10, 2), np.float32)
  flow[..., 0] = 2.2               # x +2 after rounding
  flow[..., 1] = -0.9              # y -1 after rounding
  out = np.asarray(pixel.warp_masks(masks, flow))
  expect0 = np.zeros((8, 10), bool)
  expect0[1:3, 3:5] = True
  np.testing.assert_array_equal(out[0], expect0)
  expect1 = np.zeros((8, 10), bool)
  expect1[4:6, 9:10] = True        # columns 8, 9 -> 10, 11 leave the frame
  np.testing.assert_array_equal(out[1], expect1)
  assert out[1].sum() == 2


def test_warp_collision_keeps_one_pixel():
  masks = np.zeros((1, 4, 4), bool)
  masks[0, 1, 1:3] = True
  flow = np.zeros((4, 4, 2), np.float32)
  flow[1, 2, 0] = -1.0             # (1,2) lands on (1,1), where (1,1) also lands
  out = np.asarray(pixel.warp_masks(masks, flow))
  assert out.sum() == 1 and out[0, 1, 1]


def test_warp_matches_per_mask_reference_with_collisions():
  rng = np.random.default_rng(3)
  masks = rng.random((35, 9, 11)) < 0.4          # 35 masks: two 32-bit words per pixel
  flow = rng.normal(0, 2.0, (9, 11, 2)).astype(np.float32)   # many collisions and exits
  out = np.asarray(pixel.warp_masks(masks, flow))
  ref = np.zeros_like(masks)
  for k in range(35):
    for y in range(9):
      for x in range(11):
        ty, tx = int(np.round(y + flow[y, x, 1])), int(np.round(x + flow[y, x, 0]))
        if masks[k, y, x] and 0 <= ty < 9 and 0 <= tx < 11:
          ref[k, ty, tx] = True
  np.testing.assert_array_equal(out, ref)


def test_compose_flows_of_translations():
  a = np.zeros((6, 7, 2), np.float32)
  a[..., 0] = 1.0
  b = np.zeros((6, 7, 2), np.float32)
  b[..., 1] = 2.0
  c = np.asarray(flow_sources.compose_flows(a, b))
  np.testing.assert_allclose(c[..., 0], 1.0)
  np.testing.assert_allclose(c[..., 1], 2.0)
  src = flow_sources.ArrayFlowSource(np.stack([a, b]))
  np.testing.assert_allclose(src.flow(0, 2, None, None), c)
  with pytest.raises(errors.FormatError):
    src.flow(0, 3, None, None)


def test_instance_similarity_is_masked_softmax():
  e_prev = np.array([[1.0, 0.0], [0.0, 2.0]], np.float32)
  e_cur = np.array([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]], np.float32)
  p = np.asarray(instance_assoc.instance_similarity(e_prev, e_cur, np.array([1, 1], bool),
                                                 np.array([1, 1, 0], bool)))
  # Row 0 logits (1, 0) -> softmax (e/(e+1), 1/(e+1)); column 2 invalid.
  np.testing.assert_allclose(p[0], [np.e / (np.e + 1), 1 / (np.e + 1), 0.0], rtol=1e-6)
  np.testing.assert_allclose(p[1], [1 / (1 + np.e**2), np.e**2 / (1 + np.e**2), 0], rtol=1e-6)
  # With a dustbin logit b = 1: row 0 -> (e, 1) / (e + 1 + e).
  p = np.asarray(instance_assoc.instance_similarity(e_prev, e_cur, np.array([1, 1], bool),
                                                 np.array([1, 1, 0], bool), 1.0))
  np.testing.assert_allclose(p[0], [np.e / (2 * np.e + 1), 1 / (2 * np.e + 1), 0], rtol=1e-6)


def test_flow_shape_error_names_both_shapes():
  with pytest.raises(errors.FormatError, match=r'\(16, 20, 2\).*\(8, 10\)'):
    pixel.check_flow_shape((16, 20, 2), (8, 10))


def test_flo_file_source(tmp_path):
  rng = np.random.default_rng(1)
  flows = rng.normal(size=(2, 3, 5, 2)).astype(np.float32)
  paths = []
  for k in range(2):
    paths.append(str(tmp_path / f'{k}.flo'))
    flow_io.write_flo(paths[-1], flows[k])
  src = flow_sources.FloFileSource(paths)
  np.testing.assert_array_equal(src.flow(0, 1), flows[0])
  np.testing.assert_allclose(src.flow(0, 2), flow_sources.compose_flows(flows[0], flows[1]))
  with pytest.raises(errors.FormatError, match='No .flo file'):
    src.flow(1, 3)
