"""STQ: deeplab2's test vectors (input arrays retyped from deeplab2's public test), properties,
and the VPS-format conversion."""

import numpy as np
import pytest

from hybrid_jax.evaluation import counting
from hybrid_jax.evaluation import runner
from hybrid_jax.evaluation import stq as stq_lib
from hybrid_jax.evaluation.stq import STQuality

# deeplab2 evaluation/numpy/segmentation_and_tracking_quality_test.py, test_complex_example:
# 3 frames of 8x8, classes sky/vegetation/cars, things = [2].
_GT_SEM = np.array([
    [[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 2, 0, 1, 1, 1],
     [0, 2, 2, 2, 2, 1, 1, 1], [2, 2, 2, 2, 2, 2, 1, 1], [2, 2, 2, 2, 2, 2, 2, 1],
     [2, 2, 2, 2, 2, 2, 2, 1], [2, 2, 2, 2, 2, 2, 1, 1]],
    [[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0], [0, 2, 0, 0, 1, 1, 0, 0],
     [2, 2, 2, 1, 1, 1, 1, 0], [2, 2, 2, 2, 1, 1, 1, 1], [2, 2, 2, 2, 2, 1, 1, 1],
     [2, 2, 2, 2, 2, 1, 1, 1], [2, 2, 2, 2, 1, 1, 1, 1]],
    [[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0],
     [2, 0, 1, 1, 1, 0, 0, 0], [2, 2, 1, 1, 1, 1, 0, 0], [2, 2, 2, 1, 1, 1, 1, 0],
     [2, 2, 2, 1, 1, 1, 1, 1], [2, 2, 2, 1, 1, 1, 1, 1]]])
_GT_INST = np.array([
    [[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 2, 0, 0, 0, 0],
     [0, 2, 2, 2, 2, 0, 0, 0], [2, 2, 2, 2, 2, 2, 0, 0], [2, 2, 2, 2, 2, 2, 2, 0],
     [2, 2, 2, 2, 2, 2, 2, 0], [2, 2, 2, 2, 2, 2, 0, 0]],
    [[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0], [0, 2, 0, 0, 0, 0, 0, 0],
     [2, 2, 2, 0, 0, 0, 0, 0], [2, 2, 2, 2, 0, 0, 0, 0], [2, 2, 2, 2, 2, 0, 0, 0],
     [2, 2, 2, 2, 2, 0, 0, 0], [2, 2, 2, 2, 0, 0, 0, 0]],
    [[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0],
     [2, 0, 0, 0, 0, 0, 0, 0], [2, 2, 0, 0, 0, 0, 0, 0], [2, 2, 2, 0, 0, 0, 0, 0],
     [2, 2, 2, 0, 0, 0, 0, 0], [2, 2, 2, 0, 0, 0, 0, 0]]])
_PR_SEM = np.array([
    [[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1, 0, 0],
     [0, 0, 0, 2, 2, 1, 1, 1], [0, 2, 2, 2, 2, 2, 1, 1], [2, 2, 2, 2, 2, 2, 2, 1],
     [2, 2, 2, 2, 2, 2, 2, 1], [2, 2, 2, 2, 2, 2, 2, 1]],
    [[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1, 0, 0],
     [0, 2, 2, 2, 1, 1, 1, 1], [2, 2, 2, 2, 1, 1, 1, 1], [2, 2, 2, 2, 2, 1, 1, 1],
     [2, 2, 2, 2, 2, 2, 1, 1], [2, 2, 2, 2, 2, 1, 1, 1]],
    [[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 0, 0, 0],
     [0, 0, 1, 1, 1, 1, 0, 0], [2, 2, 2, 1, 1, 1, 0, 0], [2, 2, 2, 1, 1, 1, 1, 1],
     [2, 2, 2, 2, 1, 1, 1, 1], [2, 2, 2, 2, 1, 1, 1, 1]]])
_PR_INST = np.array([
    [[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0],
     [0, 0, 0, 2, 2, 0, 0, 0], [0, 2, 2, 2, 2, 1, 0, 0], [2, 2, 2, 2, 2, 1, 1, 0],
     [2, 2, 2, 2, 1, 1, 1, 0], [2, 2, 2, 2, 1, 1, 1, 0]],
    [[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0],
     [0, 2, 2, 2, 0, 0, 0, 0], [2, 2, 2, 2, 0, 0, 0, 0], [2, 2, 2, 2, 2, 0, 0, 0],
     [2, 2, 2, 2, 1, 1, 0, 0], [2, 2, 2, 2, 1, 0, 0, 0]],
    [[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0],
     [0, 0, 0, 0, 0, 0, 0, 0], [2, 2, 2, 0, 0, 0, 0, 0], [2, 2, 2, 0, 0, 0, 0, 0],
     [2, 2, 2, 2, 0, 0, 0, 0], [2, 2, 2, 2, 0, 0, 0, 0]]])


def test_deeplab2_complex_example():
  metric = STQuality(3, [2], 255, 16, 2 ** 24)
  gt = (_GT_SEM << 16) + _GT_INST
  pr = (_PR_SEM << 16) + _PR_INST
  for i in range(3):
    metric.update_state(gt[i].astype(np.int32), pr[i].astype(np.int32), 1)
  res = metric.result()
  np.testing.assert_allclose(res['STQ'], 0.66841773352, atol=1e-9)
  np.testing.assert_allclose(res['AQ'], 0.55366581415, atol=1e-9)
  np.testing.assert_allclose(res['IoU'], 0.8069529580309542, rtol=1e-12)
  np.testing.assert_allclose(res['STQ_per_seq'], [0.66841773352], atol=1e-9)
  assert res['ID_per_seq'] == [1] and res['Length_per_seq'] == [3]


# deeplab2's test_basic_examples (2 classes, cars = 0 is the thing, one 1x5 / 1x6 frame):
# (gt track, predicted track, expected STQ, AQ, IoU).
_S = 1 << 16
_BASIC = [
    ([1, 1, 1, 1, 1], [1, 1, 2, 2, 2], (0.72111026, 0.52, 1.0)),
    ([1, 1, 1, 1, 1], [1, 2, 2, 2, 2], (0.82462113, 0.68, 1.0)),
    ([1, 1, 1, 1, 1], [1, 2, 3, 4, 5], (0.447213596, 0.2, 1.0)),
    ([1, 1, 1, 1, 1], [_S, 1, 1, 1, 1], (0.50596443, 0.64, 0.4)),
    ([0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1], (1.0, 1.0, 1.0)),  # first pixel crowd
    ([0, 1, 1, 1, 1, 1], [2, 2, 2, 2, 1, 1], (0.72111026, 0.52, 1.0)),
    ([0, 1, 1, 1, 1, 1], [2, 2, _S, 1, 1, 1], (0.40824829, 0.4, 5.0 / 12.0)),
    ([_S, 1, 1, 1, 1], [1, 1, 1, 1, 1], (0.56568542, 0.8, 0.4)),
    ([_S, 1, 1, 1, 1], [2, 2, 2, 1, 1], (0.42426407, 0.45, 0.4)),
    ([_S, 1, 1, 1, 1], [2, 2, _S, 1, 1], (0.3, 0.3, 0.3)),
]


@pytest.mark.parametrize('gt,pred,expected', _BASIC)
def test_deeplab2_basic_examples(gt, pred, expected):
  metric = STQuality(2, [0], 255, 16, 2 ** 24)
  metric.update_state(np.array([gt]), np.array([pred]), 1)
  res = metric.result()
  np.testing.assert_allclose([res['STQ'], res['AQ'], res['IoU']], expected, atol=1e-7)


def test_hand_computed_aq_two_sequences():
  # Sequence a: GT track g (4 px over 2 frames) predicted as p1 (3 px) + p2 (1 px):
  #   AQ_a = 1/4 * (3 * 3/4 + 1 * 1/4) = 10/16 = 0.625.
  # Sequence b: one GT track predicted perfectly: AQ_b = 1.
  # Overall AQ = (0.625 + 1) / 2 tracks = 0.8125 (weighted by tracks, not a mean of sequences
  # by length); semantic segmentation is perfect so SQ = 1.
  metric = STQuality(2, [1], 255, 16, 2 ** 24)
  car = 1 << 16
  metric.update_state(np.array([car + 1, car + 1]), np.array([car + 1, car + 1]), 'a')
  metric.update_state(np.array([car + 1, car + 1]), np.array([car + 1, car + 2]), 'a')
  metric.update_state(np.array([car + 7, 0]), np.array([car + 3, 0]), 'b')
  res = metric.result()
  assert res['AQ'] == pytest.approx(0.8125)
  assert list(res['AQ_per_seq']) == pytest.approx([0.625, 1.0])
  assert res['IoU'] == pytest.approx(1.0)
  assert res['STQ'] == pytest.approx(np.sqrt(0.8125))
  assert res['Length_per_seq'] == [2, 1]


def test_vps_conversion_numbers_things_from_one_and_ignores_void():
  # GT: stuff class 0 (value 0), car track 0 -> crowd (instance 0), car track 5, void -1.
  # Stats of a single frame; pred copies GT but predicts void where GT is stuff (pixel 0).
  gt = np.array([[0, 1000, 1005, -1]])
  pred = np.array([[-1, 1000, 1005, 0]])
  frame = counting.frame_stats_from_panoptic(gt, pred, known_categories=np.array([0, 1]),
                                             thing_ids=np.array([1]))
  g_lab, p_lab, cnt = stq_lib.frame_label_pairs(frame, stq_lib.TrackNumbering(),
                                                stq_lib.TrackNumbering(), np.array([1]))
  pairs = {(int(g), int(p)): int(c) for g, p, c in zip(g_lab, p_lab, cnt)}
  s = 1 << 16
  # void -> 255 << 16; crowd GT stays instance 0; thing tracks get 1, 2... (first seen order);
  # the predicted thing with instance 0 is an ordinary track (here number 1).
  assert pairs == {(0, 255 * s): 1, (s + 0, s + 1): 1, (s + 1, s + 2): 1, (255 * s, 0): 1}


def test_merging_two_gt_tracks_into_one_prediction_lowers_aq():
  gt = [np.array([[[6001, 6001, 6002, 6002]], [[6001, 6001, 6002, 6002]]])]
  good = [gt[0].copy()]
  merged = [np.full_like(gt[0], 6001)]
  a = runner.evaluate_stq_arrays(gt, good, 'synthetic')
  b = runner.evaluate_stq_arrays(gt, merged, 'synthetic')
  assert a['aq'] == pytest.approx(1.0)
  # Each GT track (4 px) meets the merged track (8 px) with TPA 4: IoU 4/8 -> AQ = 0.5.
  assert b['aq'] == pytest.approx(0.5)
  assert b['sq'] == pytest.approx(a['sq'])
