"""The benchmarks' evaluations: VIPSeg's VPQ windows, STQ on KITTI-STEP, and their report."""

import numpy as np
import pytest

from hybrid_jax import errors
from hybrid_jax.data import categories
from hybrid_jax.data import kitti_step
from hybrid_jax.evaluation import evaluate_arrays
from hybrid_jax.evaluation import protocols
from hybrid_jax.evaluation import report as report_lib

VIPSEG_WINDOWS = {'0': 1, '5': 2, '15': 4, '25': 6, '35': 8}


def test_vipseg_protocol_is_its_evaluators():
  p = protocols.get_protocol('vipseg')
  # eval_vpq_vspw.py: nframes in [1, 2, 4, 6, 8], named k = (nframes - 1) * 5.
  assert p.window_frames == VIPSEG_WINDOWS
  assert p.min_gt_area == 0 and not p.excluded and not p.use_gt_pixels


def _class_means(stats, table):
  """VIPSeg's pq_average over the loop's {category: [tp, fp, fn, iou]}: classes with
  tp + fp + fn > 0, all / things / stuff."""
  things = {c.id for c in table if c.isthing}
  out = {}
  for group, keep in (('all', lambda c: True), ('things', lambda c: c in things),
                      ('stuff', lambda c: c not in things)):
    pqs = [iou / (tp + 0.5 * fp + 0.5 * fn) for c, (tp, fp, fn, iou) in stats.items()
           if keep(c) and tp + fp + fn > 0]
    out[group] = 100 * sum(pqs) / len(pqs) if pqs else 0.0
  return out


def test_vipseg_vpq_agrees_with_a_per_segment_loop_of_its_rules():
  import reference_vpq
  table = categories.VIPSEG
  sky, road, person, car = 28 * 1000, 18 * 1000, 60 * 1000, 48 * 1000
  rng = np.random.default_rng(11)
  gt_videos, pred_videos, loops = [], [], []
  for v in range(3):
    n = 9 + v  # every window length exists; windows slide by one frame
    gt_v, pred_v = [], []
    for _ in range(n):
      choices = np.array([-1, sky, road, person + 1, person + 2, car + 1, car + 4])
      g = rng.choice(choices, size=(4, 6), p=[.1, .3, .2, .1, .1, .1, .1])
      p = np.where(rng.random((4, 6)) < 0.3, rng.choice(choices[1:], size=(4, 6)), g)
      p = np.where(p == person + 2, person + 7, p)  # another track id for the same object
      gt_v.append(g.repeat(2, 0).repeat(2, 1).astype(np.int32))
      pred_v.append(p.repeat(2, 0).repeat(2, 1).astype(np.int32))
    gt_videos.append(gt_v)
    pred_videos.append(pred_v)
    loops.append(reference_vpq.loop_vpq_video(gt_v, pred_v, {c.id for c in table if c.isthing},
                                              windows=VIPSEG_WINDOWS))
  ours = evaluate_arrays(gt_videos, pred_videos, 'vipseg', dataset='vipseg',
                         metrics=('vpq',))['vpq']
  assert [k for k in ours if k != 'final'] == list(VIPSEG_WINDOWS)
  means = []
  for k in VIPSEG_WINDOWS:
    stats = {}
    for loop in loops:  # sums over all windows of all videos
      for c, s in loop[k].items():
        acc = stats.setdefault(c, [0, 0, 0, 0.0])
        for i in range(4):
          acc[i] += s[i]
    for c, (tp, fp, fn, iou) in stats.items():
      cell = ours[k]['per_class'][str(c)]
      assert (cell['tp'], cell['fp'], cell['fn']) == (tp, fp, fn), (k, c)
      assert cell['iou'] == pytest.approx(iou, abs=1e-9)
    means.append(_class_means(stats, table))
    for group in ('all', 'things', 'stuff'):
      assert ours[k][group]['pq'] == pytest.approx(means[-1][group], abs=1e-9)
  for group in ('all', 'things', 'stuff'):  # the final VPQ: the mean over the five windows
    assert ours['final'][group]['pq'] == pytest.approx(
        sum(m[group] for m in means) / len(means), abs=1e-9)


def test_stq_on_kitti_step_with_void_crowd_and_untracked_classes():
  # Two frames of 1x8 pixels in the KITTI-STEP encoding (R semantic, G/B instance):
  # car track 5, a car crowd pixel (instance 0), void (255, whatever its G/B), road, and a
  # rider pixel with an instance id (riders carry no track ids in STEP: semantic only).
  car, road, rider, void = 13, 0, 12, 255
  sem = [[car, car, car, car, car, void, road, road],
         [car, car, car, void, car, rider, road, road]]
  inst = [[5, 5, 5, 5, 0, 3, 0, 0],
          [5, 5, 5, 9, 0, 7, 0, 0]]
  gt = [kitti_step.decode_panoptic_map(
      np.stack([np.array([s]), np.array([i]) // 256, np.array([i]) % 256], -1).astype(np.uint8),
      categories.KITTI_STEP, where='t') for s, i in zip(sem, inst)]
  assert gt[1].tolist() == [[13005, 13005, 13005, -1, 13000, 12000, 0, 0]]
  pred = [np.array([[13007, 13007, 13007, 0, 13007, 13007, 0, 0]], np.int32),
          np.array([[13007, 13007, 0, 13007, 13007, 12000, 0, 0]], np.int32)]
  res = evaluate_arrays([gt], [pred], 'kitti_step', dataset='kitti_step', metrics=('stq',))
  # AQ: one GT track (the crowd pixels leave GT and prediction): |g| = 7; the predicted track
  # keeps its pixels on void, |p| = 4 + 3 = 7; TPA = 5; IoU_id = 5 / (7 + 7 - 5).
  aq = (1 / 7) * 5 * (5 / 9)
  # SQ: class IoU without GT-void pixels: car 7/9, road 4/6, rider 1/1 (the other classes
  # appear nowhere and are not averaged).
  sq = (7 / 9 + 4 / 6 + 1) / 3
  assert res['stq']['aq'] == pytest.approx(aq)
  assert res['stq']['sq'] == pytest.approx(sq)
  assert res['stq']['stq'] == pytest.approx(np.sqrt(aq * sq))
  assert 'vpq' not in res


def test_kitti_step_has_no_vpq_protocol():
  gt = [np.zeros((2, 2), np.int32)]
  with pytest.raises(errors.ConfigError, match='evaluated with STQ'):
    evaluate_arrays([gt], [gt], 'kitti_step', dataset='kitti_step', metrics=('vpq', 'stq'))
  from configs import kitti_step
  from hybrid_jax import config_checks
  c = kitti_step.get_config('small')
  assert c.eval.metrics == 'stq' and c.eval.reference_table == 'KITTI_STEP_VAL'
  config_checks.check_config(c)
  c.eval.metrics = 'vpq,stq'
  with pytest.raises(errors.ConfigError, match='eval.metrics'):
    config_checks.check_config(c)


def test_report_of_stq_only_rows_and_a_published_table(tmp_path):
  row = {'name': 'HybridTracker', 'fps': 2.0,
         'results': {'stq': {'stq': 0.5, 'aq': 0.4, 'sq': 0.625}}}
  path = report_lib.write_report(str(tmp_path), [row], title='t',
                                 reference_table='KITTI_STEP_VAL')
  text = open(path).read()
  assert '| Method | STQ | AQ | SQ | FPS |' in text
  assert '| HybridTracker | 50.0 | 40.0 | 62.5 | 2.0 |' in text
  assert '| Motion-DeepLab (ResNet-50) | 57.7 | deeplab2' in text
  assert 'report_vpq.png' not in text  # no VPQ, no VPQ plot


def test_report_uses_the_protocols_windows(tmp_path):
  gt = [np.full((4, 4), 28000, np.int32) for _ in range(8)]
  res = evaluate_arrays([gt], [gt], 'vipseg', dataset='vipseg', metrics=('vpq', 'stq'))
  path = report_lib.write_report(str(tmp_path), [{'name': 'x', 'results': res, 'fps': None}],
                                 title='t', reference_table='VIPSEG_VAL')
  text = open(path).read()
  assert '| Method | k = 0 | k = 5 | k = 15 | k = 25 | k = 35 | VPQ | STQ | FPS |' in text
  assert '| DVIS offline (Swin-L, 720p) | 57.6 / 59.9 / 55.5 | github.com/zhang-tao-whu' in text
