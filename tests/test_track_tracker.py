"""Instance sets from panoptic maps and the online VideoTracker on constructed sequences."""

import warnings

import numpy as np
import pytest

from hybrid_jax import errors
from hybrid_jax.data import categories
from hybrid_jax.tracking import frame_instances as instances_lib
from hybrid_jax.tracking import tracker as tracker_lib

CATS = categories.SYNTHETIC      # stuff 0..5, things car=6, person=7
H, W = 24, 40
IMG = np.zeros((H, W, 3), np.uint8)


def _squares(t, objects, seed=None):
  """Panoptic map of frame t; objects: (gt_id, cat, x0, y0, size, vx). Per-frame instance ids
  are shuffled (seeded by t) so that slot order says nothing about identity."""
  pan = np.full((H, W), 1000, np.int32)      # road
  pan[:4] = 0                                 # sky
  rng = np.random.default_rng(t if seed is None else seed)
  local = rng.permutation(50)[:len(objects)] + 1
  gt = {}
  for (gid, cat, x0, y0, s, vx), lid in zip(objects, local):
    x = x0 + vx * t
    pan[y0:y0 + s, x:x + s] = cat * 1000 + lid
    gt[cat * 1000 + int(lid)] = gid
  return pan, gt


# Cars move further per frame than their size: without the flow the pixel tracker would fail.
OBJECTS = [(1, 6, 2, 6, 6, 7), (2, 6, 30, 14, 5, -6), (3, 7, 18, 4, 4, 0)]


def _flow(objects, t_prev, pan_prev, gt_prev):
  """Ground-truth forward flow from frame t_prev: each object's velocity on its pixels."""
  flow = np.zeros((H, W, 2), np.float32)
  vel = {gid: vx for gid, _, _, _, _, vx in objects}
  for seg, gid in gt_prev.items():
    flow[pan_prev == seg, 0] = vel[gid]
  return flow


def _track_ids(result, pan, gt):
  """{gt id: output panoptic value} for one frame."""
  out = {}
  for seg, gid in gt.items():
    vals = np.unique(result.panoptic[pan == seg])
    assert len(vals) == 1
    out[gid] = int(vals[0])
  return out


def _mean_colour_embed(image, inst):
  # A stand-in for the trained head: the instance's mean colour, scaled to sharpen softmax.
  m = np.asarray(inst.masks, np.float32)
  area = np.maximum(m.sum((1, 2)), 1)[:, None]
  return 10.0 * np.einsum('nhw,hwc->nc', m, np.asarray(image, np.float32) / 255.0) / area


def _colour(pan, gt):
  img = np.zeros((H, W, 3), np.uint8)
  palette = {1: (255, 0, 0), 2: (0, 255, 0), 3: (0, 0, 255)}
  for seg, gid in gt.items():
    img[pan == seg] = palette[gid]
  return img


def test_instances_from_panoptic_things_only_and_ids():
  pan, _ = _squares(0, OBJECTS)
  inst, seg = instances_lib.instances_from_panoptic(pan, CATS, 5)
  assert inst.num_valid() == 3 and list(seg[3:]) == [-1, -1]
  for k in range(3):
    np.testing.assert_array_equal(inst.masks[k], pan == seg[k])
    assert inst.classes[k] == seg[k] // 1000
  # Car 1 at x 2..7, y 6..11 -> box (2, 6, 8, 12), x1/y1 exclusive.
  k = [i for i in range(3) if inst.masks[i][6, 2]][0]
  np.testing.assert_array_equal(inst.boxes[k], [2, 6, 8, 12])
  with_stuff, seg2 = instances_lib.instances_from_panoptic(pan, CATS, 8, include_stuff=True)
  assert {0, 1000} <= set(seg2.tolist()) and with_stuff.num_valid() == 5


def test_over_maximum_keeps_highest_scores_and_warns_count():
  pan, _ = _squares(0, OBJECTS)
  segs = sorted(v for v in np.unique(pan) if v % 1000)
  scores = dict(zip(segs, [0.9, 0.2, 0.5]))
  with pytest.warns(UserWarning, match='dropped 1'):
    inst, seg = instances_lib.instances_from_panoptic(pan, CATS, 2, scores)
  assert sorted(seg.tolist()) == sorted([segs[0], segs[2]])
  trk = tracker_lib.VideoTracker('pixel', max_instances=2, categories=CATS)
  full, _ = instances_lib.instances_from_panoptic(pan, CATS, 6)
  with pytest.warns(UserWarning, match='dropped 1'):
    res = trk.update(IMG, full, panoptic=pan)
  assert (res.ids >= 0).sum() == 2
  assert (res.panoptic == -1).sum() == 16       # the dropped person's pixels become void


@pytest.mark.parametrize('variant', ['pixel', 'hybrid', 'instance'])
def test_translating_squares_keep_their_ids(variant):
  kwargs = {} if variant == 'pixel' else {'embed_fn': _mean_colour_embed}
  trk = tracker_lib.VideoTracker(variant, max_instances=4, categories=CATS, **kwargs)
  seen = {}
  prev = None
  for t in range(5):
    pan, gt = _squares(t, OBJECTS)
    flow = None if prev is None else _flow(OBJECTS, t - 1, *prev)
    res = trk.update_panoptic(_colour(pan, gt), pan, flow=flow)
    ids = _track_ids(res, pan, gt)
    for gid, val in ids.items():
      assert seen.setdefault(gid, val) == val, (variant, t, gid)
    assert len(set(ids.values())) == 3
    # Stuff keeps its fixed per-class id.
    assert set(np.unique(res.panoptic[pan % 1000 == 0])) == {0, 1000}
    prev = (pan, gt)
  assert seen[3] // 1000 == 7 and seen[1] // 1000 == 6


def test_flow_source_array_used_when_no_flow_passed():
  pans, flows = [], []
  for t in range(3):
    pans.append(_squares(t, OBJECTS))
  for t in range(2):
    flows.append(_flow(OBJECTS, t, *pans[t]))
  trk = tracker_lib.VideoTracker('pixel', max_instances=4, categories=CATS,
                                 flow_source=np.stack(flows))
  vals = [_track_ids(trk.update_panoptic(IMG, p), p, g) for p, g in pans]
  assert vals[0] == vals[1] == vals[2]


@pytest.mark.parametrize('temporal', [True, False])
def test_memory_restores_id_after_two_missing_frames(temporal):
  car = (1, 6, 4, 8, 6, 0)
  other = (2, 6, 26, 8, 6, 0)
  newcomer = (3, 6, 15, 16, 5, 0)
  seq = [[car, other], [other], [other], [car, other, newcomer]]
  trk = tracker_lib.VideoTracker('pixel', temporal=temporal, memory_frames=2, max_instances=4,
                                 categories=CATS)
  flow = np.zeros((H, W, 2), np.float32)
  out = []
  for t, objs in enumerate(seq):
    pan, gt = _squares(t, objs)
    out.append(_track_ids(trk.update_panoptic(IMG, pan, flow=flow), pan, gt))
  assert out[3][2] == out[0][2]
  if temporal:
    assert out[3][1] == out[0][1]                      # id restored from frame 0
  else:
    assert out[3][1] not in (out[0][1], out[0][2])     # without memory: a new id
  assert out[3][3] not in (out[0][1], out[0][2], out[3][1])   # a genuinely new object


def test_memory_too_short_gives_new_id():
  car = (1, 6, 4, 8, 6, 0)
  seq = [[car], [], [], [car]]
  trk = tracker_lib.VideoTracker('pixel', memory_frames=1, max_instances=4, categories=CATS)
  flow = np.zeros((H, W, 2), np.float32)
  out = []
  for t, objs in enumerate(seq):
    pan, gt = _squares(t, objs)
    out.append(_track_ids(trk.update_panoptic(IMG, pan, flow=flow), pan, gt))
  assert out[3][1] != out[0][1]


def test_empty_frames_and_one_frame_clip():
  trk = tracker_lib.VideoTracker('pixel', max_instances=3, categories=CATS)
  flow = np.zeros((H, W, 2), np.float32)
  empty_pan = np.full((H, W), 1000, np.int32)
  res = trk.update_panoptic(IMG, empty_pan, flow=flow)      # first frame empty
  assert np.all(res.ids == -1) and np.all(res.panoptic == 1000)
  pan, gt = _squares(1, OBJECTS[:1])
  res = trk.update_panoptic(IMG, pan, flow=flow)            # every instance new
  assert _track_ids(res, pan, gt) == {1: 6001}
  res = trk.update_panoptic(IMG, empty_pan, flow=flow)      # empty again
  assert np.all(res.ids == -1)
  trk.reset()                                               # a one-frame clip
  pan, gt = _squares(0, OBJECTS)
  res = trk.update_panoptic(IMG, pan)
  assert sorted(_track_ids(res, pan, gt).values()) == [6001, 6002, 7001]


def test_flow_size_mismatch_is_format_error_naming_both_shapes():
  trk = tracker_lib.VideoTracker('pixel', max_instances=4, categories=CATS)
  pan, _ = _squares(0, OBJECTS)
  trk.update_panoptic(IMG, pan)
  with pytest.raises(errors.FormatError, match=r'\(12, 20, 2\).*\(24, 40\)'):
    trk.update_panoptic(IMG, pan, flow=np.zeros((12, 20, 2), np.float32))


def test_missing_networks_are_clear_errors():
  with pytest.raises(errors.ConfigError, match='embedding head'):
    tracker_lib.VideoTracker('hybrid')
  with pytest.raises(errors.ConfigError, match='variant'):
    tracker_lib.VideoTracker('optical')
  trk = tracker_lib.VideoTracker('pixel', max_instances=4, categories=CATS)
  pan, _ = _squares(0, OBJECTS)
  trk.update_panoptic(IMG, pan)
  with pytest.raises(errors.ConfigError, match='optical flow'):
    trk.update_panoptic(IMG, pan)
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    tracker_lib.VideoTracker('pixel', max_instances=4)      # no warning when nothing dropped
