"""grain input pipeline: shapes, crop/flip consistency, determinism, resume, sharding, bounds."""

import numpy as np
import pytest

from hybrid_jax import errors
from hybrid_jax.data import pipeline as pl

T, H, W = 6, 7, 9
CROP = (4, 5)


def coord_clip(index, labelled=None):
  """Every array encodes (clip, t, y, x) so the applied crop/flip can be read back."""
  t, y, x = np.meshgrid(np.arange(T), np.arange(H), np.arange(W), indexing='ij')
  frames = np.stack([x, y, t + 10 * index], -1).astype(np.uint8)
  pan = (index * 100000 + t * 10000 + y * 100 + x).astype(np.int32)
  flow = np.stack([x[:-1] + 1.0, y[:-1] + 100.0 * t[:-1]], -1).astype(np.float32)
  valid = ((x + 2 * y + t) % 3 == 0)[:-1]
  if labelled is None:
    labelled = np.ones(T, bool)
  return {'frames': frames, 'panoptic': pan, 'labelled': np.asarray(labelled, bool),
          'flow': flow, 'flow_valid': valid, 'video_id': f'{index:04d}',
          'frame_ids': [f'synth_{index:06d}_{j:06d}' for j in range(T)]}


SOURCE = [coord_clip(i) for i in range(3)]


def pairs(source=SOURCE, **kw):
  args = dict(batch_size=4, crop_hw=CROP, hflip=True, max_delta=3, seed=7)
  args.update(kw)
  return pl.make_pair_iterator(source, **args)


def take(it, n):
  return [next(it) for _ in range(n)]


def _source_coords(frame):
  """frame [h, w, 3] -> (x [h, w], y [h, w], B channel)."""
  return frame[..., 0].astype(int), frame[..., 1].astype(int), frame[..., 2].astype(int)


def test_pair_batch_shapes_and_dtypes():
  b = next(pairs())
  want = {'frames': ((4, 2) + CROP + (3,), np.uint8), 'panoptic': ((4, 2) + CROP, np.int32),
          'labelled': ((4, 2), np.bool_), 'delta': ((4,), np.int32),
          'frame_index': ((4, 2), np.int32), 'clip_index': ((4,), np.int32),
          'hflip': ((4,), np.bool_), 'flow': ((4,) + CROP + (2,), np.float32),
          'flow_valid': ((4,) + CROP, np.bool_)}
  assert set(b) == set(want)
  for k, (shape, dtype) in want.items():
    assert b[k].shape == shape and b[k].dtype == dtype, k


def test_crop_and_flip_consistent_across_frames_labels_and_flow():
  flips, offsets = set(), set()
  for b in take(pairs(), 8):
    for n in range(4):
      i = int(b['clip_index'][n])
      t0, t1 = b['frame_index'][n]
      assert b['delta'][n] == t1 - t0 and 1 <= t1 - t0 <= 3
      x, y, tb = _source_coords(b['frames'][n, 0])
      x1, y1, tb1 = _source_coords(b['frames'][n, 1])
      # Same crop/flip for both frames; right frames taken.
      np.testing.assert_array_equal(x, x1)
      np.testing.assert_array_equal(y, y1)
      assert (tb == t0 + 10 * i).all() and (tb1 == t1 + 10 * i).all()
      # The picture is a contiguous window, mirrored iff hflip.
      x0, y0 = x.min(), y.min()
      step = -1 if b['hflip'][n] else 1
      np.testing.assert_array_equal(x[0], x0 + (np.arange(CROP[1])[::step]))
      np.testing.assert_array_equal(y[:, 0], y0 + np.arange(CROP[0]))
      assert 0 <= x0 <= W - CROP[1] and 0 <= y0 <= H - CROP[0]
      flips.add(bool(b['hflip'][n]))
      offsets.add((int(y0), int(x0)))
      # Labels at the same source pixels.
      for k, t in enumerate((t0, t1)):
        np.testing.assert_array_equal(b['panoptic'][n, k], i * 100000 + t * 10000 + y * 100 + x)
      # Flow: only for consecutive frames; x negated when mirrored.
      if t1 - t0 == 1:
        sign = -1.0 if b['hflip'][n] else 1.0
        np.testing.assert_array_equal(b['flow'][n, ..., 0], sign * (x + 1.0))
        np.testing.assert_array_equal(b['flow'][n, ..., 1], y + 100.0 * t0)
        np.testing.assert_array_equal(b['flow_valid'][n], (x + 2 * y + t0) % 3 == 0)
      else:
        assert not b['flow_valid'][n].any() and not b['flow'][n].any()
  assert flips == {True, False}
  assert len(offsets) > 3


def test_clip_batches_are_consistent():
  it = pl.make_clip_iterator(SOURCE, batch_size=2, crop_hw=CROP, hflip=True, seed=3,
                             clip_length=4)
  seen_flip = set()
  for b in take(it, 6):
    assert b['frames'].shape == (2, 4) + CROP + (3,)
    assert b['flow'].shape == (2, 3) + CROP + (2,) and b['flow_valid'].shape == (2, 3) + CROP
    for n in range(2):
      i, s = int(b['clip_index'][n]), int(b['start'][n])
      assert 0 <= s <= T - 4
      x, y, _ = _source_coords(b['frames'][n, 0])
      sign = -1.0 if b['hflip'][n] else 1.0
      seen_flip.add(sign)
      for k in range(4):
        xk, yk, tk = _source_coords(b['frames'][n, k])
        np.testing.assert_array_equal(xk, x)
        assert (tk == s + k + 10 * i).all()
        np.testing.assert_array_equal(b['panoptic'][n, k],
                                      i * 100000 + (s + k) * 10000 + y * 100 + x)
      for k in range(3):
        np.testing.assert_array_equal(b['flow'][n, k, ..., 0], sign * (x + 1.0))
        np.testing.assert_array_equal(b['flow'][n, k, ..., 1], y + 100.0 * (s + k))
  assert seen_flip == {1.0, -1.0}


def test_whole_clips_and_padding_when_the_crop_is_larger():
  it = pl.make_clip_iterator(SOURCE, batch_size=1, crop_hw=(H + 2, W + 1), hflip=False, seed=0)
  b = next(it)
  assert b['frames'].shape == (1, T, H + 2, W + 1, 3) and b['start'][0] == 0
  assert (b['frames'][0, :, H:] == 0).all() and (b['frames'][0, :, :, W:] == 0).all()
  assert (b['panoptic'][0, :, H:] == -1).all() and (b['panoptic'][0, :, :, W:] == -1).all()
  assert not b['flow_valid'][0, :, H:].any()
  np.testing.assert_array_equal(b['frames'][0, :, :H, :W], SOURCE[b['clip_index'][0]]['frames'])


def test_one_epoch_visits_every_anchor_once():
  # anchors: (clip, t) with t >= max_delta -> 3 clips * (6 - 2) = 12 = 3 batches of 4.
  got = [(int(c), int(t)) for b in take(pairs(max_delta=2), 3)
         for c, t in zip(b['clip_index'], b['frame_index'][:, 1])]
  assert sorted(got) == [(c, t) for c in range(3) for t in range(2, T)]


def test_determinism_and_resume():
  fresh = take(pairs(), 5)
  again = take(pairs(), 5)
  resumed = take(pairs(start_step=3), 2)
  for a, b in zip(fresh, again):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  for a, b in zip(fresh[3:], resumed):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  other = take(pairs(seed=8), 5)
  assert any(not np.array_equal(a['frames'], b['frames']) for a, b in zip(fresh, other))
  ds = pl.make_pair_dataset(SOURCE, batch_size=4, crop_hw=CROP, hflip=True, max_delta=3, seed=7)
  np.testing.assert_array_equal(ds[4]['frames'], fresh[4]['frames'])


def test_process_slices_concatenate_to_the_global_batch():
  whole = take(pairs(batch_size=4), 3)
  parts = [take(pairs(batch_size=4, process_index=p, process_count=2), 3) for p in range(2)]
  for s in range(3):
    for k in whole[s]:
      assert parts[0][s][k].shape[0] == 2
      np.testing.assert_array_equal(
          np.concatenate([parts[0][s][k], parts[1][s][k]]), whole[s][k])
  with pytest.raises(errors.ConfigError, match='multiple of the process count'):
    pairs(batch_size=3, process_count=2)
  with pytest.raises(errors.ConfigError, match='process_index'):
    pairs(process_index=2, process_count=2)


def test_delta_bounds_and_uniformity():
  for bad in (0, T):
    with pytest.raises(errors.ConfigError, match='max_delta'):
      pairs(max_delta=bad)
  deltas = np.concatenate([b['delta'] for b in take(pairs(max_delta=T - 1, batch_size=8), 25)])
  counts = np.bincount(deltas, minlength=T)
  assert counts[0] == 0 and counts[T:].sum() == 0
  assert counts[1:].min() > 0.5 * counts[1:].mean()  # 200 draws over 5 values


def test_require_labels_pairs_consecutive_labelled_frames():
  lab = np.array([False, True, False, True, False, True])
  src = [coord_clip(i, lab) for i in range(2)]
  for b in take(pairs(src, max_delta=1, require_labels=True), 3):
    assert b['labelled'].all()
    assert (b['delta'] == 2).all()
    assert set(b['frame_index'][:, 1].tolist()) <= {3, 5}
    assert not b['flow_valid'].any()  # delta 2: no GT flow
  with pytest.raises(errors.ConfigError, match='labelled frames per clip'):
    pairs(src, max_delta=3, require_labels=True)
  # Without require_labels, unlabelled frames come with void labels.
  for b in take(pairs(src, max_delta=1), 3):
    for n in range(4):
      for k in range(2):
        assert (b['panoptic'][n, k] == -1).all() == (not b['labelled'][n, k])


def test_labels_on_every_frame_keeps_every_frames_labels():
  # The synthetic data: ground truth on every frame, `labelled` marks evaluated frames only.
  lab = np.array([False, True, False, True, False, True])
  src = [coord_clip(i, lab) for i in range(2)]
  for b in take(pairs(src, max_delta=3, labels_on_every_frame=True), 4):
    assert b['labelled'].all()
    assert (b['panoptic'] >= 0).all()
    t = b['frame_index']
    # the label is the source frame's own: its t digit is the frame index
    np.testing.assert_array_equal(b['panoptic'][:, :, 0, 0] // 10000 % 10, t)
  clips = pl.make_clip_iterator(src, batch_size=2, crop_hw=CROP, hflip=False, seed=0,
                                clip_length=4, labels_on_every_frame=True)
  b = next(clips)
  assert b['labelled'].all() and (b['panoptic'] >= 0).all()
  with pytest.raises(errors.ConfigError, match='exclude'):
    pairs(src, max_delta=1, require_labels=True, labels_on_every_frame=True)


def test_training_stages_see_labels_on_every_synthetic_frame():
  # Regression: the segmenter and the embedding head trained on void labels for 4 of every 5
  # synthetic frames (and the head on no pair with both frames labelled), because only every
  # 5th frame counts as 'labelled' for evaluation.
  from configs import synthetic as synthetic_config  # noqa: PLC0415
  from hybrid_jax.data.synthetic import scene as synthetic  # noqa: PLC0415
  from hybrid_jax.training.stages import train_segmenter as seg_stage  # noqa: PLC0415
  from hybrid_jax.training.stages import train_tracker as track_stage  # noqa: PLC0415
  config = synthetic_config.get_config('tiny')
  src = [synthetic.generate_clip(s, height=32, width=64, clip_length=10) for s in range(2)]
  assert not src[0]['labelled'].all()
  for it in (seg_stage.data_iterator(config, src), track_stage.pair_iterator(config, src)):
    for b in take(it, 3):
      assert (b['panoptic'] >= 0).mean(axis=(2, 3)).min() > 0.5  # every frame has labels


def test_require_flow():
  for b in take(pairs(max_delta=1, require_flow=True), 2):
    assert (b['delta'] == 1).all() and b['flow_valid'].any()
  with pytest.raises(errors.ConfigError, match='max_delta == 1'):
    pairs(max_delta=2, require_flow=True)
  no_flow = [{k: v for k, v in c.items() if k not in ('flow', 'flow_valid')} for c in SOURCE]
  with pytest.raises(errors.DatasetError, match='flow'):
    pairs(no_flow, max_delta=1, require_flow=True)
  assert 'flow' not in next(pairs(no_flow))


def test_worker_processes_give_the_same_batches_and_stop_cleanly():
  import time  # noqa: PLC0415
  reference = take(pairs(), 5)
  for workers, start in ((1, 0), (2, 2)):
    it = pairs(worker_count=workers, start_step=start)
    got = take(it, 3)
    for a, b in zip(reference[start:], got):
      for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    # Dropping the iterator while workers still produce must not hang (grain's mp_prefetch
    # deadlocked here); the pool is terminated.
    t0 = time.monotonic()
    it.close()
    assert time.monotonic() - t0 < 10
