"""The official on-disk format, the CLI, bad inputs, and properties across entry points."""

import json
import os

import numpy as np
import pytest

from hybrid_jax import errors
from hybrid_jax.cli import evaluate as evaluate_cli
from hybrid_jax.data import panoptic_png
from hybrid_jax.evaluation import evaluate_arrays
from hybrid_jax.evaluation import evaluate_official
from hybrid_jax.evaluation import evaluate_segments

CATS = [
    {'id': 0, 'name': 'road', 'isthing': 0, 'color': [128, 64, 128]},
    {'id': 1, 'name': 'sidewalk', 'isthing': 0, 'color': [244, 35, 232]},
    {'id': 2, 'name': 'car', 'isthing': 1, 'color': [0, 0, 142]},
    {'id': 3, 'name': 'person', 'isthing': 1, 'color': [220, 20, 60]},
]
H, W, T = 8, 12, 6


def _random_video(rng, switch: bool):
  """GT and a perturbed prediction: stuff rows, moving cars, a person, a crowd car, void."""
  gt, pred = [], []
  for t in range(T):
    g = np.zeros((H, W), np.int32)  # road
    g[:3] = 1000  # sidewalk
    g[0, :2] = -1  # void
    x = t % 4
    g[3:6, x:x + 3] = 2001
    g[5:8, 7:10] = 2002
    g[2:5, 10:12] = 3005
    g[6:8, 0:2] = 2000  # crowd car region
    p = g.copy()
    p[p == 2000] = 2009  # a predicted car on the crowd
    if switch and t >= 3:
      p[p == 2001] = 2004  # identity switch
    noise = rng.random((H, W)) < 0.08
    p[noise] = rng.choice([0, 1000, -1], size=int(noise.sum()))
    if rng.random() < 0.5:
      p[5:8, 6] = 2002  # boundary shift
    gt.append(g)
    pred.append(p)
  return gt, pred


def _videos(seed=0, n=2):
  rng = np.random.default_rng(seed)
  pairs = [_random_video(rng, switch=v % 2 == 0) for v in range(n)]
  return [g for g, _ in pairs], [p for _, p in pairs]


def _segments(frame, *, gt: bool, id_of):
  """(id map, segments_info) of a panoptic map, with ids id_of(value)."""
  ids = np.zeros(frame.shape, np.int64)
  info = []
  for value in np.unique(frame):
    if value < 0:
      continue
    seg_id = id_of(int(value))
    ids[frame == value] = seg_id
    cat, inst = divmod(int(value), 1000)
    entry = {'id': seg_id, 'category_id': cat}
    if gt:
      entry['iscrowd'] = int(cat in (2, 3) and inst == 0)
      entry['area'] = int((frame == value).sum())
    info.append(entry)
  return ids, info


def _gt_id(v):
  return (v + 1) * 7 + 100


def _pred_id(v):
  return (v + 1) * 131 + 5


def write_layout(root, gt_videos, pred_videos):
  """GT json + panoptic_video/ PNGs and pred.json + pan_pred/ PNGs (reference §1.4, §3.2)."""
  gt_dir = os.path.join(root, 'panoptic_video')
  pred_dir = os.path.join(root, 'pred')
  images, anns, pred_anns = [], [], []
  n = 0
  for v, (gv, pv) in enumerate(zip(gt_videos, pred_videos)):
    for t, (g, p) in enumerate(zip(gv, pv)):
      n += 1
      image_id = f'{v + 1:04d}_{n:04d}_city_000000_{t * 5:06d}'
      gt_name = image_id + '_final_mask.png'
      ids, info = _segments(g, gt=True, id_of=_gt_id)
      panoptic_png.write_id_png(os.path.join(gt_dir, gt_name), ids)
      images.append({'id': image_id, 'file_name': image_id + '_newImg8bit.png',
                     'width': g.shape[1], 'height': g.shape[0]})
      anns.append({'image_id': image_id, 'file_name': gt_name, 'segments_info': info})
      ids, info = _segments(p, gt=False, id_of=_pred_id)
      panoptic_png.write_id_png(os.path.join(pred_dir, 'pan_pred', image_id + '.png'), ids)
      pred_anns.append({'image_id': image_id, 'file_name': image_id + '.png',
                        'segments_info': info})
  gt_json = os.path.join(root, 'gt.json')
  with open(gt_json, 'w') as f:
    json.dump({'images': images, 'annotations': anns, 'categories': CATS}, f)
  with open(os.path.join(pred_dir, 'pred.json'), 'w') as f:
    json.dump({'annotations': pred_anns}, f)
  return gt_dir, gt_json, pred_dir


def _assert_same(a, b):
  if isinstance(a, dict):
    assert a.keys() == b.keys()
    for k in a:
      _assert_same(a[k], b[k])
  elif isinstance(a, float):
    assert a == pytest.approx(b, rel=1e-12, abs=1e-12)
  else:
    assert a == b


@pytest.fixture(scope='module')
def layout(tmp_path_factory):
  gt, pred = _videos()
  root = str(tmp_path_factory.mktemp('layout'))
  return gt, pred, write_layout(root, gt, pred)


def test_file_path_equals_array_path_and_segments_path(layout):
  gt, pred, (gt_dir, gt_json, pred_dir) = layout
  files = evaluate_official(gt_dir, gt_json, pred_dir)
  arrays = evaluate_arrays(gt, pred, CATS, video_ids=['0001', '0002'])
  seg_gt = [[_segments(f, gt=True, id_of=_gt_id) for f in v] for v in gt]
  seg_pred = [[_segments(f, gt=False, id_of=_pred_id) for f in v] for v in pred]
  segments = evaluate_segments(seg_gt, seg_pred, CATS, video_ids=['0001', '0002'])
  assert files['num_frames'] == 12 and files['num_videos'] == 2
  _assert_same(files['vpq'], arrays['vpq'])
  _assert_same(files['stq'], arrays['stq'])
  _assert_same(segments['vpq'], arrays['vpq'])
  # Sanity: the switch and the noise make this imperfect but far from zero.
  assert 30 < arrays['vpq']['final']['all']['pq'] < 100
  assert arrays['vpq']['0']['all']['pq'] > arrays['vpq']['15']['all']['pq']


def test_renumbering_prediction_ids_changes_nothing():
  gt, pred = _videos(seed=3)
  base = evaluate_arrays(gt, pred, CATS)
  renumbered = []
  for video in pred:
    # A different track number per (video, class, track); stuff keeps instance 0.
    values = np.unique(np.concatenate([f.ravel() for f in video]))
    mapping = {int(v): int(v) if v < 0 or v % 1000 == 0 else (v // 1000) * 1000 + 900 - v % 1000
               for v in values}
    renumbered.append([np.vectorize(mapping.get)(f).astype(np.int32) for f in video])
  _assert_same(base, evaluate_arrays(gt, renumbered, CATS))


def test_workers_give_the_same_numbers():
  gt, pred = _videos(seed=5, n=3)
  _assert_same(evaluate_arrays(gt, pred, CATS, workers=1),
               evaluate_arrays(gt, pred, CATS, workers=2))


def test_cli_writes_stable_json_and_official_text_files(layout, tmp_path, capsys):
  _, _, (gt_dir, gt_json, pred_dir) = layout
  out = str(tmp_path / 'res.json')
  rc = evaluate_cli.main(['--gt-dir', gt_dir, '--gt-json', gt_json, '--pred-dir', pred_dir,
                          '--metrics', 'vpq,stq', '--output-json', out,
                          '--text-dir', str(tmp_path), '--workers', '1'])
  assert rc == 0
  printed = capsys.readouterr().out
  assert 'VPQ^15' in printed and 'STQ' in printed
  with open(out) as f:
    res = json.load(f)
  for k in ('0', '5', '10', '15', 'final'):
    for group in ('all', 'things', 'stuff'):
      assert set(res['vpq'][k][group]) >= {'pq', 'sq', 'rq'}
  assert set(res['vpq']['5']['per_class']['2']) >= {'pq', 'sq', 'rq', 'iou', 'tp', 'fp', 'fn'}
  assert set(res['stq']) == {'stq', 'aq', 'sq', 'per_sequence'}
  assert set(res['stq']['per_sequence']) == {'0001', '0002'}
  mean = sum(res['vpq'][k]['all']['pq'] for k in ('0', '5', '10', '15')) / 4
  assert res['vpq']['final']['all']['pq'] == pytest.approx(mean)
  with open(tmp_path / 'vpq-final.txt') as f:
    lines = f.read().split()
  assert lines[0] == f'vpq_all:{mean:.4f}'
  assert [ln.split(':')[0] for ln in lines] == ['vpq_all', 'vpq_thing', 'vpq_stuff']
  for k in ('0', '5', '10', '15'):
    text = (tmp_path / f'vpq-{k}.txt').read_text()
    assert 'Things' in text and 'IDX' in text


def test_cli_reports_bad_input_without_traceback(layout, tmp_path, capsys):
  _, _, (gt_dir, gt_json, _) = layout
  rc = evaluate_cli.main(['--gt-dir', gt_dir, '--gt-json', gt_json, '--pred-dir',
                          str(tmp_path / 'missing'), '--text-dir', ''])
  assert rc == 2 and 'pred.json' in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# Bad inputs: each raises FormatError naming the file and the segment.


def _one_frame_layout(tmp_path, edit):
  gt, pred = _videos(seed=1, n=1)
  gt_dir, gt_json, pred_dir = write_layout(str(tmp_path), gt, pred)
  edit(gt_dir, gt_json, pred_dir)
  return gt_dir, gt_json, pred_dir


def _pred_json(pred_dir):
  path = os.path.join(pred_dir, 'pred.json')
  with open(path) as f:
    return path, json.load(f)


def _edit_pred_json(pred_dir, fn):
  path, data = _pred_json(pred_dir)
  fn(data['annotations'])
  with open(path, 'w') as f:
    json.dump(data, f)


FIRST = '0001_0001_city_000000_000000'


def _drop_json_segment(gt_dir, gt_json, pred_dir):
  _edit_pred_json(pred_dir, lambda anns: anns[0]['segments_info'].pop(0))


def _extra_json_segment(gt_dir, gt_json, pred_dir):
  _edit_pred_json(pred_dir, lambda anns: anns[0]['segments_info'].append(
      {'id': 777777, 'category_id': 0}))


def _unknown_category(gt_dir, gt_json, pred_dir):
  def edit(anns):
    anns[0]['segments_info'][0]['category_id'] = 42
  _edit_pred_json(pred_dir, edit)


def _duplicate_id(gt_dir, gt_json, pred_dir):
  _edit_pred_json(pred_dir, lambda anns: anns[0]['segments_info'].append(
      dict(anns[0]['segments_info'][0])))


def _missing_prediction(gt_dir, gt_json, pred_dir):
  _edit_pred_json(pred_dir, lambda anns: anns.pop())


def _wrong_size(gt_dir, gt_json, pred_dir):
  path = os.path.join(pred_dir, 'pan_pred', FIRST + '.png')
  ids = panoptic_png.read_id_png(path)
  panoptic_png.write_id_png(path, ids[:, :-1])


@pytest.mark.parametrize('edit,needles', [
    (_drop_json_segment, [FIRST + '.png', 'is in the PNG/map but not in']),
    (_extra_json_segment, [FIRST + '.png', '777777', 'has no pixel']),
    (_unknown_category, [FIRST + '.png', 'unknown category_id 42']),
    (_duplicate_id, [FIRST + '.png', 'listed twice']),
    (_missing_prediction, ['pred.json', '5 prediction entries for 6']),
    (_wrong_size, [FIRST + '.png', 'image size']),
])
def test_bad_files_raise_format_error(tmp_path, edit, needles):
  gt_dir, gt_json, pred_dir = _one_frame_layout(tmp_path, edit)
  with pytest.raises(errors.FormatError) as info:
    evaluate_official(gt_dir, gt_json, pred_dir)
  for needle in needles:
    assert needle in str(info.value)


def test_bad_arrays_raise_format_error():
  gt, pred = _videos(seed=2, n=1)
  bad = [list(pred[0])]
  bad[0][2] = bad[0][2].copy()
  bad[0][2][0, 0] = 9001  # category 9 does not exist
  with pytest.raises(errors.FormatError, match='video 0 frame 2.*unknown category'):
    evaluate_arrays(gt, bad, CATS)
  with pytest.raises(errors.FormatError, match='labelled frames'):
    evaluate_arrays(gt, [pred[0][:5]], CATS)
  with pytest.raises(errors.FormatError, match='image size'):
    evaluate_arrays(gt, [[f[:, :-1] for f in pred[0]]], CATS)


def test_video_grouping_checks_the_prefix(tmp_path):
  gt, pred = _videos(seed=1, n=2)
  gt_dir, gt_json, pred_dir = write_layout(str(tmp_path), gt, pred)
  with pytest.raises(errors.FormatError, match='frames-per-video'):
    evaluate_official(gt_dir, gt_json, pred_dir, frames_per_video=4)
  by_prefix = evaluate_official(gt_dir, gt_json, pred_dir, frames_per_video=None,
                                metrics=('vpq',))
  default = evaluate_official(gt_dir, gt_json, pred_dir, metrics=('vpq',))
  _assert_same(by_prefix, default)
