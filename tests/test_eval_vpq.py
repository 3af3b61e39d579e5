"""VPQ / image PQ on hand-constructed videos with hand-computed answers."""

import numpy as np
import pytest

from hybrid_jax.evaluation import evaluate_pq_arrays
from hybrid_jax.evaluation import evaluate_vpq_arrays

# Two stuff classes, two thing classes (ids need not be contiguous for VPQ).
CATS = [
    {'id': 0, 'name': 'road', 'isthing': 0},
    {'id': 1, 'name': 'sidewalk', 'isthing': 0},
    {'id': 2, 'name': 'car', 'isthing': 1},
    {'id': 3, 'name': 'person', 'isthing': 1},
]
ROAD, SIDEWALK, CAR, PERSON = 0, 1000, 2000, 3000  # category * 1000 (+ track)
VOID = -1


def _row(*runs):
  """A 1-row frame from (value, length) runs."""
  return np.concatenate([np.full(n, v, np.int32) for v, n in runs])[None, :]


def _video(frames):
  return [np.asarray(f) for f in frames]


def test_perfect_prediction_is_100_everywhere():
  gt = [_video([_row((ROAD, 4), (CAR + 1, 3), (PERSON + 2, 2), (VOID, 1))] * 6)]
  res = evaluate_vpq_arrays(gt, gt, CATS)
  for k in ('0', '5', '10', '15', 'final'):
    for group in ('all', 'things', 'stuff'):
      assert res[k][group]['pq'] == pytest.approx(100.0)
  assert res['0']['all']['n'] == 3  # sidewalk appears nowhere: dropped
  assert res['0']['per_class']['2']['tp'] == 6  # one car per window of one frame
  assert res['5']['per_class']['2']['tp'] == 5
  assert res['10']['per_class']['2']['tp'] == 4
  assert res['15']['per_class']['2']['tp'] == 3


def test_identity_switch_in_the_middle():
  # 6 labelled frames: road (4 px) | car track 1 (a = 4 px).  The prediction is pixel-perfect
  # but the car's id is A in frames 0-2 and B in frames 3-5.  Road is always a perfect TP.
  # k=0 (1-frame windows): 6 car TPs -> car PQ 1, All 100 (as if no switch).
  # k=5 (2 frames, 5 windows): window {2,3}: GT tube 2a, A and B a each:
  #   IoU = a / (a + 2a - a) = 0.5, not > 0.5 -> FN 1, FP 2.  Other 4 windows: TP.
  #   car PQ = 4 / (4 + 0.5*2 + 0.5*1) = 4/5.5 = 0.72727; All = (1 + 0.72727)/2 = 86.3636.
  # k=10 (3 frames, 4 windows): {0,1,2} TP 1; {1,2,3}: A 2a vs GT 3a: IoU 2/3 TP, B FP;
  #   {2,3,4}: B 2/3 TP, A FP; {3,4,5} TP 1.  TP 4, IoU sum 10/3, FP 2:
  #   PQ = (10/3)/5 = 2/3, SQ = 5/6, RQ = 4/5.  All = (1 + 2/3)/2.
  # k=15 (4 frames, 3 windows): {0..3}: A 3/4 TP, B FP; {1..4}: A, B 2a each: IoU 0.5 -> FN 1,
  #   FP 2; {2..5}: B 3/4 TP, A FP.  TP 2, IoU 1.5, FP 4, FN 1: PQ = 1.5/4.5 = 1/3.
  # final All = (100 + 86.3636 + 83.3333 + 66.6667) / 4 = 84.0909.
  gt = [_video([_row((ROAD, 4), (CAR + 1, 4))] * 6)]
  pred = [_video([_row((ROAD, 4), (CAR + 7, 4))] * 3 + [_row((ROAD, 4), (CAR + 9, 4))] * 3)]
  perfect = evaluate_vpq_arrays(gt, gt, CATS)
  res = evaluate_vpq_arrays(gt, pred, CATS)
  assert res['0'] == perfect['0']
  car = {k: res[k]['per_class']['2'] for k in ('5', '10', '15')}
  assert (car['5']['tp'], car['5']['fp'], car['5']['fn']) == (4, 2, 1)
  assert (car['10']['tp'], car['10']['fp'], car['10']['fn']) == (4, 2, 0)
  assert (car['15']['tp'], car['15']['fp'], car['15']['fn']) == (2, 4, 1)
  assert res['5']['things']['pq'] == pytest.approx(100 * 4 / 5.5)
  assert res['10']['things']['pq'] == pytest.approx(100 * 2 / 3)
  assert res['10']['things']['sq'] == pytest.approx(100 * 5 / 6)
  assert res['10']['things']['rq'] == pytest.approx(100 * 4 / 5)
  assert res['15']['things']['pq'] == pytest.approx(100 / 3)
  assert res['5']['all']['pq'] == pytest.approx(100 * (1 + 4 / 5.5) / 2)
  assert res['final']['all']['pq'] == pytest.approx(
      (100 + 100 * (1 + 4 / 5.5) / 2 + 100 * (1 + 2 / 3) / 2 + 100 * (1 + 1 / 3) / 2) / 4)
  assert res['final']['stuff']['pq'] == pytest.approx(100.0)


def test_void_is_removed_from_the_union():
  # GT road 4 px then 4 void; the prediction paints all 8 px road: IoU = 4/(8+4-4-4) = 1.
  res = evaluate_pq_arrays([_row((ROAD, 4), (VOID, 4))], [_row((ROAD, 8))], CATS)
  assert res['per_class']['0']['iou'] == pytest.approx(1.0)
  assert res['all']['pq'] == pytest.approx(100.0)


@pytest.mark.parametrize('on_void,on_road,is_fp', [(4, 0, False), (3, 2, False),
                                                   (2, 2, True), (2, 3, True)])
def test_void_rule_for_false_positives(on_void, on_road, is_fp):
  # A predicted car with `on_void` px on GT void and `on_road` px on GT road is ignored when
  # more than half of it is void (3/5 yes; 2/4 = 0.5 no; 2/5 no).
  gt = _row((ROAD, 8), (VOID, on_void))
  pred = _row((ROAD, 8 - on_road), (CAR + 1, on_road + on_void))
  res = evaluate_pq_arrays([gt], [pred], CATS)
  assert res['per_class']['2']['fp'] == int(is_fp)
  assert res['all']['n'] == (2 if is_fp else 1)  # car only counts when it has an FP


def test_iou_exactly_half_is_not_a_match():
  # GT road 4 | sidewalk 4.  Prediction road 8: IoU(road) = 4/8 = 0.5 -> FN road, FP road,
  # FN sidewalk, all PQ 0.  With road 7 | sidewalk 1 the road IoU is 4/7 > 0.5 -> TP.
  gt = _row((ROAD, 4), (SIDEWALK, 4))
  res = evaluate_pq_arrays([gt], [_row((ROAD, 8))], CATS)
  road = res['per_class']['0']
  assert (road['tp'], road['fp'], road['fn']) == (0, 1, 1)
  assert res['all']['pq'] == 0.0
  res = evaluate_pq_arrays([gt], [_row((ROAD, 7), (SIDEWALK, 1))], CATS)
  assert res['per_class']['0']['tp'] == 1
  assert res['per_class']['0']['iou'] == pytest.approx(4 / 7)
  # sidewalk: GT 4, pred 1, IoU 1/4 -> FN + FP.  All = (4/7 / 1 + 0) / 2.
  assert res['all']['pq'] == pytest.approx(100 * (4 / 7) / 2)


def test_absent_class_is_dropped_from_the_means():
  gt = _row((ROAD, 6), (CAR + 1, 4))
  pred = _row((ROAD, 6), (CAR + 5, 2), (ROAD, 2))  # car IoU 0.5 -> FN + FP, PQ 0
  res = evaluate_pq_arrays([gt], [pred], CATS)
  assert res['all']['n'] == 2 and res['stuff']['n'] == 1 and res['things']['n'] == 1
  assert res['per_class']['1']['in_mean'] is False  # sidewalk: no TP/FP/FN
  assert res['per_class']['3']['in_mean'] is False  # person
  road_iou = 6 / 8
  assert res['all']['pq'] == pytest.approx(100 * road_iou / 2)


def test_crowd_regions():
  # GT: road 6 | car crowd (instance 0) 4.  A predicted car lying on the crowd is not an FP,
  # the crowd itself is not an FN; car has no TP/FP/FN so it is dropped.
  gt = _row((ROAD, 6), (CAR, 4))
  res = evaluate_pq_arrays([gt], [_row((ROAD, 6), (CAR + 3, 4))], CATS)
  assert res['per_class']['2'] == {**res['per_class']['2'], 'tp': 0, 'fp': 0, 'fn': 0}
  assert res['all']['pq'] == pytest.approx(100.0) and res['all']['n'] == 1
  # Half crowd, half road (2 of 4 on crowd, 0.5 not > 0.5): FP.
  res = evaluate_pq_arrays([gt], [_row((ROAD, 4), (CAR + 3, 4), (ROAD, 2))], CATS)
  assert res['per_class']['2']['fp'] == 1
  # A person on the car crowd is an FP: only the crowd of the same category is ignored.
  res = evaluate_pq_arrays([gt], [_row((ROAD, 6), (PERSON + 3, 4))], CATS)
  assert res['per_class']['3']['fp'] == 1
  # Crowd + void together count: 1 px void + 2 px crowd of a 4 px prediction = 3/4 > 0.5.
  gt2 = _row((ROAD, 5), (VOID, 1), (CAR, 4))
  res = evaluate_pq_arrays([gt2], [_row((ROAD, 4), (CAR + 3, 4), (ROAD, 2))], CATS)
  assert res['per_class']['2']['fp'] == 0


def test_tube_category_fixed_by_first_frame():
  # Prediction id 9 is a car in frame 0 and a person in frame 1 (one id = one tube, so this needs
  # the (id map, segments_info) input).  In the 2-frame window the tube is a car covering the
  # whole GT car tube (IoU 1): a car TP at k=5, and no person FP.
  from hybrid_jax.evaluation import evaluate_segments
  ids = np.array([[1, 1, 1, 1, 9, 9, 9, 9]])
  gt_frame = (np.where(ids == 9, 2, ids), [{'id': 1, 'category_id': 0},
                                           {'id': 2, 'category_id': 2}])
  pred = [(ids, [{'id': 1, 'category_id': 0}, {'id': 9, 'category_id': 2}]),
          (ids, [{'id': 1, 'category_id': 0}, {'id': 9, 'category_id': 3}])]
  res = evaluate_segments([[gt_frame] * 2], [pred], CATS, metrics=('vpq',))['vpq']
  assert res['5']['per_class']['2']['tp'] == 1 and res['5']['per_class']['3']['fp'] == 0
  # Frame level (k=0): frame 1's person is an FP and the car there an FN.
  assert res['0']['per_class']['3']['fp'] == 1 and res['0']['per_class']['2']['fn'] == 1


VIPER_CATS = 'viper'
V_SKY, V_ROAD, V_MOBILEBARRIER, V_CAR = 0, 1000, 11000, 19000


def test_viper_small_segments_are_ignored_over_the_window():
  # 5 frames of 1 x 5000 px: road 3000 | car 500 | sky 1500; the prediction is perfect.
  # k=0 (1-frame windows): the car (500 px < 1024) is skipped: no TP, no FN, but the predicted
  # car cannot match it and is not on void -> 5 FPs (car PQ 0).
  # k=5 (one 5-frame window): the car tube has 2500 px >= 1024 -> TP.
  frame = _row((V_ROAD, 3000), (V_CAR + 1, 500), (V_SKY, 1500))
  video = [_video([frame] * 5)]
  res = evaluate_vpq_arrays(video, video, VIPER_CATS, dataset='viper')
  car0 = res['0']['per_class']['19']
  assert (car0['tp'], car0['fp'], car0['fn']) == (0, 5, 0)
  # All over road (PQ 1), sky (1), car (0, it has FPs).
  assert res['0']['all']['pq'] == pytest.approx(100 * 2 / 3)
  car5 = res['5']['per_class']['19']
  assert (car5['tp'], car5['fp'], car5['fn']) == (1, 0, 0)
  assert res['5']['window_frames'] == 5 and res['5']['all']['pq'] == pytest.approx(100.0)
  # Windows of 10 and 15 frames do not fit a 5-frame video: no classes, reported as 0 (n = 0).
  assert res['10']['all']['n'] == 0
  # The Cityscapes protocol has no small-object rule: k=0 is perfect.
  city = evaluate_vpq_arrays(video, video, VIPER_CATS, dataset='cityscapes_vps')
  assert city['0']['all']['pq'] == pytest.approx(100.0)


def test_viper_excludes_class_11_from_all_and_stuff():
  # road 2000 | sky 2000 in GT; prediction: road 2000 | sky 1500 | mobilebarrier 500 (on sky).
  # sky IoU = 1500/2000 = 0.75 (TP); mobilebarrier: FP of class 11.
  gt = _row((V_ROAD, 2000), (V_SKY, 2000))
  pred = _row((V_ROAD, 2000), (V_SKY, 1500), (V_MOBILEBARRIER, 500))
  res = evaluate_vpq_arrays([[gt]], [[pred]], VIPER_CATS, dataset='viper')['0']
  assert res['per_class']['11']['fp'] == 1 and res['per_class']['11']['in_mean'] is False
  assert res['all']['n'] == 2 and res['stuff']['n'] == 2
  assert res['all']['pq'] == pytest.approx(100 * (1 + 0.75) / 2)
  city = evaluate_vpq_arrays([[gt]], [[pred]], VIPER_CATS, dataset='cityscapes_vps')['0']
  assert city['all']['n'] == 3
  assert city['all']['pq'] == pytest.approx(100 * (1 + 0.75 + 0) / 3)


@pytest.mark.parametrize('min_gt_area', [0, 20])
def test_agrees_with_a_direct_per_segment_loop(min_gt_area):
  # A plain per-(gt, pred)-mask implementation of the same rules (tests/reference_vpq.py).
  import reference_vpq
  from hybrid_jax.evaluation import counting
  from hybrid_jax.evaluation import pq as pq_lib
  from hybrid_jax.evaluation import protocols
  from hybrid_jax.evaluation import vpq as vpq_lib
  cats = pq_lib.as_category_set(CATS)
  protocol = protocols.Protocol('test', {'0': 1, '5': 2, '10': 3, '15': 4},
                                min_gt_area=min_gt_area, use_gt_pixels=True)
  rng = np.random.default_rng(7)
  for _ in range(3):
    gt_v, pred_v = [], []
    for t in range(6):
      # Coarse random labels (blocks of 2x2) with void, crowd (instance 0) and several tracks.
      choices = np.array([VOID, ROAD, SIDEWALK, CAR, CAR + 1, CAR + 2, PERSON + 1, PERSON])
      g = rng.choice(choices, size=(4, 6), p=[.1, .3, .2, .1, .1, .05, .1, .05])
      p = np.where(rng.random((4, 6)) < 0.25, rng.choice(choices[1:], size=(4, 6)), g)
      p = np.where(p == PERSON, PERSON + 3, p)
      gt_v.append(g.repeat(2, 0).repeat(2, 1).astype(np.int32))
      pred_v.append(p.repeat(2, 0).repeat(2, 1).astype(np.int32))
    frames = [counting.frame_stats_from_panoptic(g, p, known_categories=cats.ids,
                                                 thing_ids=cats.thing_ids)
              for g, p in zip(gt_v, pred_v)]
    ours = vpq_lib.video_counts(frames, cats, protocol)
    loop = reference_vpq.loop_vpq_video(gt_v, pred_v, {2, 3}, windows=protocol.window_frames,
                                        min_gt_area=min_gt_area)
    for k in protocol.window_frames:
      for c, cat in enumerate(cats.ids):
        tp, fp, fn, iou = loop[k].get(int(cat), [0, 0, 0, 0.0])
        assert (ours[k].tp[c], ours[k].fp[c], ours[k].fn[c]) == (tp, fp, fn), (k, cat)
        assert ours[k].iou[c] == pytest.approx(iou, abs=1e-12)


def test_cityscapes_uses_declared_gt_area_viper_uses_pixels():
  # GT road has 6 pixels but its json says area 8 (the official Cityscapes evaluator trusts the
  # json; VIPER's counts pixels).  Prediction: road on 5 of them.
  # Cityscapes: IoU = 5 / (5 + 8 - 5) = 0.625.  Pixel counts: 5 / 6.
  from hybrid_jax.evaluation import evaluate_segments
  gt = (np.array([[1, 1, 1, 1, 1, 1, 2, 2]]),
        [{'id': 1, 'category_id': 0, 'area': 8}, {'id': 2, 'category_id': 1, 'area': 2}])
  pred = (np.array([[1, 1, 1, 1, 1, 0, 2, 2]]),
          [{'id': 1, 'category_id': 0}, {'id': 2, 'category_id': 1}])
  city = evaluate_segments([[gt]], [[pred]], CATS, metrics=('vpq',))['vpq']['0']
  assert city['per_class']['0']['iou'] == pytest.approx(0.625)
  from hybrid_jax.evaluation import counting
  from hybrid_jax.evaluation import pq as pq_lib
  from hybrid_jax.evaluation import protocols
  cats = pq_lib.as_category_set(CATS)
  frame = counting.frame_stats_from_segments(*gt, *pred, known_categories=cats.ids)
  counts = pq_lib.match_window([frame], cats, use_gt_pixels=True)
  assert counts.iou[0] == pytest.approx(5 / 6)
  assert protocols.get_protocol('viper').use_gt_pixels
