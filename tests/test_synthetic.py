"""Tests of the procedural synthetic VPS generator (hybrid_jax.data.synthetic)."""

import numpy as np
import pytest

from hybrid_jax import errors
from hybrid_jax.data import categories
from hybrid_jax.data.synthetic import scene as synthetic

DIV = categories.LABEL_DIVISOR


def _clip(seed, h, w, t, **kw):
  return synthetic.generate_clip(seed, height=h, width=w, clip_length=t, **kw)


def _touches_border(mask):
  return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def _track_ids(pan):
  return [int(i) for i in np.unique(pan) if i % DIV > 0]


def _bilinear(img, qx, qy):
  """Independent bilinear sampler (clamped) used to warp frames with the GT flow."""
  h, w = img.shape[:2]
  x0 = np.clip(np.floor(qx).astype(int), 0, w - 2)
  y0 = np.clip(np.floor(qy).astype(int), 0, h - 2)
  fx = np.clip(qx - x0, 0, 1)[..., None]
  fy = np.clip(qy - y0, 0, 1)[..., None]
  img = img.astype(np.float64)
  return (img[y0, x0] * (1 - fx) * (1 - fy) + img[y0, x0 + 1] * fx * (1 - fy) +
          img[y0 + 1, x0] * (1 - fx) * fy + img[y0 + 1, x0 + 1] * fx * fy)


def test_contract_dtypes_shapes_and_labels():
  c = _clip(3, 32, 64, 6, label_every=5, video_id='0042')
  assert c['frames'].dtype == np.uint8 and c['frames'].shape == (6, 32, 64, 3)
  assert c['panoptic'].dtype == np.int32 and c['panoptic'].shape == (6, 32, 64)
  assert c['labelled'].dtype == np.bool_ and c['labelled'].shape == (6,)
  assert c['flow'].dtype == np.float32 and c['flow'].shape == (5, 32, 64, 2)
  assert c['flow_valid'].dtype == np.bool_ and c['flow_valid'].shape == (5, 32, 64)
  assert c['video_id'] == '0042'
  assert len(c['frame_ids']) == 6 and len(set(c['frame_ids'])) == 6
  assert all(isinstance(f, str) and f.startswith('0042_') for f in c['frame_ids'])
  assert c['frame_ids'] == sorted(c['frame_ids'])  # temporal order = name order
  pan = c['panoptic']
  assert pan.min() >= 0  # no void anywhere: every pixel is some layer
  cat, inst = pan // DIV, pan % DIV
  assert set(np.unique(cat)) <= set(range(len(categories.SYNTHETIC)))
  stuff = np.isin(cat, categories.stuff_ids(categories.SYNTHETIC))
  assert (inst[stuff] == 0).all() and (inst[~stuff] >= 1).all()
  # A track id belongs to exactly one category in the whole clip.
  tids = inst[~stuff]
  for tid in np.unique(tids):
    assert len(np.unique(cat[~stuff][tids == tid])) == 1
  # All eight categories occur in an ordinary clip (the pole, both thing classes, ...).
  big = _clip(3, 64, 128, 3)
  assert set(np.unique(big['panoptic'] // DIV)) == set(range(8))


@pytest.mark.parametrize('t,every,expected', [(12, 5, [4, 9]), (7, 3, [2, 5]),
                                              (3, 1, [0, 1, 2])])
def test_labelled_frames_follow_cityscapes_vps(t, every, expected):
  c = _clip(0, 16, 32, t, label_every=every)
  assert np.nonzero(c['labelled'])[0].tolist() == expected


def test_deterministic_per_seed():
  a, b, other = _clip(11, 32, 64, 4), _clip(11, 32, 64, 4), _clip(12, 32, 64, 4)
  for key in ('frames', 'panoptic', 'labelled', 'flow', 'flow_valid'):
    np.testing.assert_array_equal(a[key], b[key])
  assert a['frame_ids'] == b['frame_ids']
  assert np.mean(a['frames'] != other['frames']) > 0.3
  assert not np.array_equal(a['panoptic'], other['panoptic'])


def test_flow_moves_every_valid_pixel_onto_its_own_segment():
  """Exactness from the labels: p + flow(p) lies on the same segment in frame t+1.

  The four pixel centres around p + flow(p) include one of p's own segment (only a
  limb thinner than a pixel could dodge all four), and the nearest one does except within
  half a pixel of a boundary. Points leaving the image are never valid.
  """
  h, w = 64, 128
  py, px = np.mgrid[0:h, 0:w]
  for seed in (0, 1):
    c = _clip(seed, h, w, 6)
    four, nearest, occluded_differs = [], [], []
    for t in range(5):
      valid, lab, nxt = c['flow_valid'][t], c['panoptic'][t], c['panoptic'][t + 1]
      qx, qy = px + c['flow'][t, ..., 0], py + c['flow'][t, ..., 1]
      inside = (qx >= -0.5) & (qx < w - 0.5) & (qy >= -0.5) & (qy < h - 0.5)
      assert not (valid & ~inside).any()
      x0, y0 = np.clip(np.floor(qx).astype(int), 0, w - 2), np.clip(np.floor(qy).astype(int),
                                                                    0, h - 2)
      hit = ((nxt[y0, x0] == lab) | (nxt[y0, x0 + 1] == lab) | (nxt[y0 + 1, x0] == lab) |
             (nxt[y0 + 1, x0 + 1] == lab))
      rx, ry = np.clip(np.round(qx).astype(int), 0, w - 1), np.clip(np.round(qy).astype(int),
                                                                     0, h - 1)
      four.append(hit[valid])
      nearest.append((nxt[ry, rx] == lab)[valid])
      occluded_differs.append((nxt[ry, rx] != lab)[inside & ~valid])
    assert np.concatenate(four).mean() > 0.998
    assert np.concatenate(nearest).mean() > 0.97
    # Pixels marked occluded mostly land on another segment (the rest are limbs crossing
    # their own body, or boundaries).
    assert np.concatenate(occluded_differs).mean() > 0.7
    assert 0.9 < c['flow_valid'].mean() < 1.0   # occlusions and exits do happen


def test_flow_warps_next_frame_onto_this_frame():
  """Photometric check: frame t+1 sampled at p + flow(p) reproduces frame t."""
  h, w = 128, 256
  py, px = np.mgrid[0:h, 0:w]
  c = _clip(0, h, w, 4)
  gt, shifted, zero = [], [], []
  for t in range(3):
    valid, f, ft = c['flow_valid'][t], c['flow'][t], c['frames'][t].astype(np.float64)
    nxt = c['frames'][t + 1]
    gt.append(np.abs(_bilinear(nxt, px + f[..., 0], py + f[..., 1]) - ft).mean(-1)[valid])
    shifted.append(np.abs(_bilinear(nxt, px + f[..., 0] + 1, py + f[..., 1]) - ft).mean(-1)
                   [valid])
    zero.append(np.abs(nxt - ft).mean(-1)[valid])
  gt, shifted, zero = map(np.concatenate, (gt, shifted, zero))
  # Measured: mean 1.2, median 0.34 grey levels; one pixel off: mean 5.2; no motion: 5.7.
  assert np.median(gt) < 1.0
  assert gt.mean() < 2.5
  assert gt.mean() < 0.5 * shifted.mean() and gt.mean() < 0.5 * zero.mean()


def test_scene_is_resolution_independent():
  """At 3x the resolution pixel (3i+1, 3j+1) is pixel (i, j): same label, 3x the flow."""
  lo, hi = _clip(5, 32, 64, 4), _clip(5, 96, 192, 4)
  np.testing.assert_array_equal(hi['panoptic'][:, 1::3, 1::3], lo['panoptic'])
  np.testing.assert_allclose(hi['flow'][:, 1::3, 1::3], 3 * lo['flow'], atol=1e-3)
  assert (hi['flow_valid'][:, 1::3, 1::3] == lo['flow_valid']).mean() > 0.999


@pytest.mark.parametrize('seed', [0, 1, 2, 3])
def test_occlusion_reappearance_and_entering_leaving_happen(seed):
  pan = _clip(seed, 64, 128, 10)['panoptic']
  hidden_and_back = entered = left = 0
  for tid in _track_ids(pan):
    masks = pan == tid
    present = np.nonzero(masks.any(axis=(1, 2)))[0]
    for a, b in zip(present[:-1], present[1:]):
      # Gone for >= 2 frames between two sightings away from the border: occluded, not exited.
      if b - a - 1 >= 2 and not _touches_border(masks[a]) and not _touches_border(masks[b]):
        hidden_and_back += 1
    if present[0] > 0 and _touches_border(masks[present[0]]):
      entered += 1
    if present[-1] < len(pan) - 1 and _touches_border(masks[present[-1]]):
      left += 1
  assert hidden_and_back >= 1
  assert entered >= 1
  assert left >= 1


def test_small_objects_exist():
  """Distant persons of a few dozen pixels at the default 128x256."""
  for seed in (0, 1):
    pan = _clip(seed, 128, 256, 3)['panoptic']
    sizes = [max(int((p == tid).sum()) for p in pan) for tid in _track_ids(pan)]
    assert any(8 <= s <= 60 for s in sizes), sizes


def test_look_alike_pairs_exist():
  """Two tracks of one class with the same area and colours (different identities)."""
  h, w = 128, 256
  found = 0
  for seed in range(6):
    c = _clip(seed, h, w, 8)
    pan, frames = c['panoptic'], c['frames'].astype(np.float64)
    best = np.inf
    for t in range(len(pan)):
      stats = {}
      for tid in _track_ids(pan[t]):
        m = pan[t] == tid
        if not _touches_border(m):
          stats[tid] = (m.sum(), frames[t][m].mean(0))
      ids = sorted(stats)
      for i, a in enumerate(ids):
        for b in ids[i + 1:]:
          if a // DIV == b // DIV and abs(stats[a][0] - stats[b][0]) <= 0.05 * stats[a][0]:
            best = min(best, np.abs(stats[a][1] - stats[b][1]).max())
    found += best < 4.0
  # Every clip has a pair, but occlusion (by the near-lane cars, the pole, other persons)
  # can hide it from this strict detector in some clips; unrelated objects pass it rarely.
  assert found >= 4


@pytest.mark.parametrize('kw', [dict(height=-1), dict(width=8), dict(clip_length=1),
                                dict(label_every=0), dict(height=32.0)])
def test_invalid_sizes_raise_config_error(kw):
  args = dict(height=32, width=64, clip_length=4, label_every=5)
  args.update(kw)
  with pytest.raises(errors.ConfigError, match=next(iter(kw))):
    synthetic.generate_clip(0, **args)
