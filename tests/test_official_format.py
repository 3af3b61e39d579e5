"""Cityscapes-VPS on-disk layout: naming, JSON contents, round trips and bad input."""

import json
import os

import numpy as np
import pytest

from hybrid_jax import errors
from hybrid_jax.data import categories as categories_lib
from hybrid_jax.data import official_format as of
from hybrid_jax.data import panoptic_png

CATS = categories_lib.SYNTHETIC  # 0..5 stuff, 6 car, 7 person
T, H, W = 5, 6, 8
LABELLED = np.array([False, True, False, True, True])


def _color_id(rgb):
  return rgb[0] + 256 * rgb[1] + 65536 * rgb[2]


def make_clip(seed, **extra):
  """Sky on top, road below, two cars and a person moving right, a void pixel, a car group."""
  rng = np.random.default_rng(seed)
  pan = np.full((T, H, W), 1000, np.int32)  # road
  pan[:, :2] = 0  # sky
  for t in range(T):
    pan[t, 2:4, t:t + 2] = 6007        # car, track 7
    pan[t, 4:6, 6:8] = 6003            # car, track 3 (first seen later in raster order)
    if t >= 2:
      pan[t, 4, 0:2] = 7012            # person, track 12, appears at t=2
  pan[:, 5, 3] = -1                    # void
  pan[:, 0, 7] = 6000                  # a car group region (instance 0 -> iscrowd)
  # Garbage on unlabelled frames: the layout has no labels there, so it must not come back.
  pan[~LABELLED] = 4242
  clip = {'frames': rng.integers(0, 256, (T, H, W, 3), dtype=np.uint8), 'panoptic': pan,
          'labelled': LABELLED.copy(), 'video_id': f'clip{seed}', 'frame_ids': []}
  clip.update(extra)
  return clip


@pytest.fixture(scope='module')
def written(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('cvps'))
  clips = [make_clip(0), make_clip(1)]
  of.write_split(clips, root, 'val', CATS)
  return root, clips


def test_canonicalize_tracks_hand_example():
  pan = np.array([[[6007, 6003, 0], [-1, 7012, 1000]],
                  [[6003, 7003, 0], [6007, 6000, 1000]]], np.int32)
  want = np.array([[[6001, 6002, 0], [-1, 7003, 1000]],
                   [[6002, 7004, 0], [6001, 6000, 1000]]], np.int32)
  np.testing.assert_array_equal(of.canonicalize_tracks(pan, CATS), want)


def test_names_ids_and_grouping_helpers():
  assert of.image_id_from_file_name('0005_0025_frankfurt_000000_001736_newImg8bit.png') == \
      '0005_0025_frankfurt_000000_001736'
  assert of.image_id_from_file_name('0005_0025_frankfurt_000000_001736_gtFine_color.png') == \
      '0005_0025_frankfurt_000000_001736'
  assert of.video_id_of('0005_0025_frankfurt_000000_001736') == '0005'
  assert of.gt_file_name('a_0001_x_newImg8bit.png') == 'a_0001_x_final_mask.png'
  assert of.gt_file_name('a_0001_x_leftImg8bit.png') == 'a_0001_x_gtFine_color.png'
  assert of.video_id_of('001_00042') == '001'  # VIPER naming
  assert of.video_id_of('frame0001') is None
  assert of.gt_file_name('val_day/img/001_00042.jpg') == '001_00042.png'
  ids = ['0001_0001_a', '0001_0002_a', '0003_0003_a']
  assert of.group_by_video(ids) == [('0001', ids[:2]), ('0003', ids[2:])]
  assert of.group_by_video(ids + ['0003_0004_a'], frames_per_video=2) == [
      ('0001', ids[:2]), ('0003', [ids[2], '0003_0004_a'])]
  with pytest.raises(errors.FormatError, match='frames-per-video'):
    of.group_by_video(ids, frames_per_video=2)
  with pytest.raises(errors.FormatError, match='no "<video>_" prefix'):
    of.group_by_video(['frame0001', 'frame0002'])
  with pytest.raises(errors.FormatError, match='not contiguous'):
    of.group_by_video(['0001_a', '0002_a', '0001_b'])


def test_layout_file_names(written):
  root, _ = written
  want_ids = ['0001_0001_synth_000000_000001', '0001_0002_synth_000000_000003',
              '0001_0003_synth_000000_000004', '0002_0004_synth_000001_000001',
              '0002_0005_synth_000001_000003', '0002_0006_synth_000001_000004']
  assert sorted(os.listdir(os.path.join(root, 'val', 'img'))) == [
      i + '_newImg8bit.png' for i in want_ids]
  assert sorted(os.listdir(os.path.join(root, 'val', 'panoptic_video'))) == [
      i + '_final_mask.png' for i in want_ids]
  assert sorted(os.listdir(os.path.join(root, 'val', 'img_all'))) == [
      f'synth_{v:06d}_{t:06d}_leftImg8bit.png' for v in range(2) for t in range(T)]
  gt = json.load(open(os.path.join(root, 'panoptic_gt_val_city_vps.json')))
  assert [e['id'] for e in gt['images']] == want_ids
  assert [e['file_name'] for e in gt['images']] == [i + '_newImg8bit.png' for i in want_ids]
  assert all(e['width'] == W and e['height'] == H for e in gt['images'])
  assert [a['image_id'] for a in gt['annotations']] == want_ids
  assert [a['file_name'] for a in gt['annotations']] == [i + '_final_mask.png' for i in want_ids]
  for c, e in zip(CATS, gt['categories']):
    assert (e['id'], e['name'], e['isthing'], e['color']) == (c.id, c.name, int(c.isthing),
                                                              list(c.color))
    assert e['supercategory'] in ('thing', 'stuff')
  im = json.load(open(os.path.join(root, 'panoptic_im_val_city_vps.json')))
  assert im['images'] == gt['images'] and im['categories'] == gt['categories']
  alls = json.load(open(os.path.join(root, 'im_all_info_val_city_vps.json')))
  assert [e['id'] for e in alls['images']] == list(range(1, 2 * T + 1))
  assert [e['file_name'] for e in alls['images']] == sorted(
      os.listdir(os.path.join(root, 'val', 'img_all')))


def test_segment_ids_follow_the_reference_rules(written):
  root, _ = written
  gt = json.load(open(os.path.join(root, 'panoptic_gt_val_city_vps.json')))
  stuff_ids = {_color_id(c.color) for c in CATS if not c.isthing}
  thing_ids_by_video = {}
  for ann in gt['annotations']:
    ids = panoptic_png.read_id_png(os.path.join(root, 'val', 'panoptic_video', ann['file_name']))
    segs = {s['id']: s for s in ann['segments_info']}
    assert set(np.unique(ids).tolist()) - {0} == set(segs)
    assert (ids == 0).sum() == 1  # the one void pixel
    for sid, s in segs.items():
      assert s['area'] == (ids == sid).sum()
      assert 'bbox' not in s
      if s['category_id'] == 1:   # road: its colour is its id
        assert sid == 128 + 256 * 64 + 65536 * 128
      if not CATS[s['category_id']].isthing:
        assert sid == _color_id(CATS[s['category_id']].color)
      else:
        assert sid not in stuff_ids and sid != 0
        assert s['iscrowd'] == int(sid == ids[0, 7])   # the car group region
        # key the thing by where it sits in the constructed clip
        thing_ids_by_video.setdefault(ann['image_id'][:4], {}).setdefault(
            s['category_id'] * 10 + s['iscrowd'], set()).add(sid)
  # Cars (two tracks, persistent over frames) -> 2 ids per video; person 1; car group 1.
  for vid, d in thing_ids_by_video.items():
    assert len(d[60]) == 2 and len(d[61]) == 1 and len(d[70]) == 1, (vid, d)
  all_ids = [set().union(*d.values()) for d in thing_ids_by_video.values()]
  assert not all_ids[0] & all_ids[1]  # unique within the split


def test_round_trip_equal_after_canonical_renumbering(written):
  root, clips = written
  back = of.read_split(root, 'val')
  assert [c['video_id'] for c in back] == ['0001', '0002']
  for orig, got in zip(clips, back):
    np.testing.assert_array_equal(got['frames'], orig['frames'])
    np.testing.assert_array_equal(got['labelled'], orig['labelled'])
    assert got['panoptic'].dtype == np.int32
    want = np.where(orig['labelled'][:, None, None], orig['panoptic'], -1)
    np.testing.assert_array_equal(of.canonicalize_tracks(got['panoptic'], CATS),
                                  of.canonicalize_tracks(want, CATS))
    # The reader already returns the canonical numbering.
    np.testing.assert_array_equal(got['panoptic'], of.canonicalize_tracks(want, CATS))
    assert np.all(got['panoptic'][~orig['labelled']] == -1)
  assert back[0]['frame_ids'][4] == 'synth_000000_000004'
  assert back[0]['image_ids'] == ['', '0001_0001_synth_000000_000001', '',
                                  '0001_0002_synth_000000_000003',
                                  '0001_0003_synth_000000_000004']
  # The official chunking (fixed frames per video) reads the same clips.
  chunked = of.read_split(root, 'val', frames_per_video=T)
  for a, b in zip(back, chunked):
    np.testing.assert_array_equal(a['panoptic'], b['panoptic'])


def test_cityscapes_style_names_and_video_ids_are_kept(tmp_path):
  fids = [f'frankfurt_000000_{1732 + t:06d}' for t in range(T)]
  clip = make_clip(3, video_id='0005', frame_ids=fids)
  of.write_split([clip], str(tmp_path), 'test', CATS)
  gt = json.load(open(tmp_path / 'panoptic_gt_test_city_vps.json'))
  assert gt['images'][0]['id'] == '0005_0001_frankfurt_000000_001733'
  assert os.path.exists(tmp_path / 'test' / 'img_all' / 'frankfurt_000000_001736_leftImg8bit.png')
  back = of.read_split(str(tmp_path), 'test')
  assert back[0]['video_id'] == '0005' and back[0]['frame_ids'] == fids


def test_reader_without_img_all_returns_labelled_frames_only(tmp_path):
  clip = make_clip(4)
  of.write_split([clip], str(tmp_path), 'train', CATS)
  for f in os.listdir(tmp_path / 'train' / 'img_all'):
    os.remove(tmp_path / 'train' / 'img_all' / f)
  os.rmdir(tmp_path / 'train' / 'img_all')
  back = of.read_split(str(tmp_path), 'train')
  assert len(back) == 1 and back[0]['labelled'].all()
  np.testing.assert_array_equal(back[0]['frames'], clip['frames'][LABELLED])
  np.testing.assert_array_equal(back[0]['panoptic'],
                                of.canonicalize_tracks(clip['panoptic'][LABELLED], CATS))


def test_predictions_round_trip(tmp_path):
  a, b = make_clip(0)['panoptic'], make_clip(1)['panoptic']
  ids = ['0001_0001_x_000000_000001', '0001_0002_x_000000_000003',
         '0002_0003_x_000001_000001']
  # Predictions have no crowd segments, so leave out the car group region here.
  maps = [np.where(m == 6000, 1000, m) for m in (a[1], a[3], b[1])]
  of.write_predictions(str(tmp_path), ids, maps, CATS)
  pred = json.load(open(tmp_path / 'pred.json'))
  assert [e['image_id'] for e in pred['annotations']] == ids
  assert [e['file_name'] for e in pred['annotations']] == [i + '.png' for i in ids]
  assert sorted(os.listdir(tmp_path / 'pan_pred')) == sorted(i + '.png' for i in ids)
  assert len(pred['categories']) == len(CATS)
  got = of.read_predictions(str(tmp_path), ids)
  assert [g[0] for g in got] == ids
  seg_of = []
  for (iid, pid, segs), pan in zip(got, maps):
    assert pid.dtype == np.int64 and pid.shape == (H, W)
    assert all(s['iscrowd'] == 0 for s in segs)
    by_label = {}
    for s in segs:
      labels = np.unique(pan[pid == s['id']])
      assert len(labels) == 1 and labels[0] // 1000 == s['category_id']
      by_label[int(labels[0])] = s['id']
      ys, xs = np.nonzero(pid == s['id'])
      assert s['bbox'] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
      assert s['area'] == len(xs)
    assert (pid == 0).sum() == (pan == -1).sum()
    seg_of.append(by_label)
  # car track 7 at t=1: columns 1..2, rows 2..3 -> bbox [1, 2, 2, 2]
  car7 = [s for s in got[0][2] if s['id'] == seg_of[0][6007]][0]
  assert car7['bbox'] == [1, 2, 2, 2]
  # Same (class, track) in one video -> same id; another video -> another id.
  assert seg_of[0][6007] == seg_of[1][6007] and seg_of[0][6003] == seg_of[1][6003]
  assert seg_of[2][6007] not in (seg_of[0][6007], seg_of[0][6003])
  assert seg_of[0][1000] == seg_of[2][1000] == 128 + 256 * 64 + 65536 * 128
  # Back to contract labels.
  tracks = {}
  back = [of.segments_to_panoptic(pid, segs, CATS, track_of_segment=tracks)
          for _, pid, segs in got[:2]]
  np.testing.assert_array_equal(of.canonicalize_tracks(np.stack(back), CATS),
                                of.canonicalize_tracks(np.stack(maps[:2]), CATS))
  # Subset / reordering by image id.
  assert [g[0] for g in of.read_predictions(str(tmp_path), ids[::-1])] == ids[::-1]


@pytest.mark.parametrize('naming', ['cityscapes_vps', 'viper'])
def test_predictions_read_what_they_write_in_both_namings(tmp_path, naming):
  """write_predictions -> index_predictions / iter_frames / read_predictions, two videos."""
  clips = [make_clip(0)['panoptic'], make_clip(1)['panoptic']]
  if naming == 'cityscapes_vps':
    ids = [[f'{v + 1:04d}_{v * T + t + 1:04d}_x_00000{v}_{t:06d}' for t in range(T)]
           for v in range(2)]
  else:  # VIPER: <video>_<frame:05d>
    ids = [[f'{v + 1:03d}_{t:05d}' for t in range(T)] for v in range(2)]
  maps = [np.where(c == 6000, 1000, np.where(c == 4242, 1000, c)) for c in clips]
  flat_ids = [i for video in ids for i in video]
  flat_maps = [m for clip in maps for m in clip]
  of.write_predictions(str(tmp_path), flat_ids, flat_maps, CATS)
  index = of.index_predictions(str(tmp_path))
  assert index.videos == ids  # one video per clip, frames in order
  assert index.categories_from == 'pred.json'
  assert index.max_things == 3
  for video, want in zip(index.videos, maps):
    got = np.stack([pan for _, pan, _ in of.iter_frames(str(tmp_path), video, index.categories)])
    # iter_frames gives per-frame ids (a model's raw output); the segments and classes are kept.
    np.testing.assert_array_equal(got // 1000, want // 1000)
    tracks = {}
    back = np.stack([of.segments_to_panoptic(pid, segs, CATS, track_of_segment=tracks)
                     for _, pid, segs in of.read_predictions(str(tmp_path), video)])
    np.testing.assert_array_equal(back, of.canonicalize_tracks(want, CATS))
  # The evaluator groups the same ids into the same videos.
  assert [v for _, v in of.group_by_video(sorted(flat_ids))] == ids
  assert [vid for vid, _ in of.group_by_video(sorted(flat_ids))] == [
      of.video_id_of(video[0]) for video in ids]


# ---------------------------------------------------------------------------------------------
# Bad input.

@pytest.fixture()
def fresh(tmp_path):
  of.write_split([make_clip(0)], str(tmp_path), 'val', CATS)
  return tmp_path


def _edit_gt(root, fn):
  path = root / 'panoptic_gt_val_city_vps.json'
  gt = json.load(open(path))
  fn(gt)
  json.dump(gt, open(path, 'w'))
  return str(path)


def test_missing_folder_and_file_name_the_path(fresh, tmp_path_factory):
  empty = tmp_path_factory.mktemp('empty')
  with pytest.raises(errors.DatasetError, match=r'Missing .*val.*Expected layout'):
    of.read_split(str(empty), 'val')
  for f in os.listdir(fresh / 'val' / 'panoptic_video'):
    os.remove(fresh / 'val' / 'panoptic_video' / f)
  os.rmdir(fresh / 'val' / 'panoptic_video')
  with pytest.raises(errors.DatasetError, match='panoptic_video'):
    of.read_split(str(fresh), 'val')


def test_missing_gt_json(fresh):
  os.remove(fresh / 'panoptic_gt_val_city_vps.json')
  with pytest.raises(errors.DatasetError, match='panoptic_gt_val_city_vps.json'):
    of.read_split(str(fresh), 'val')


def test_malformed_json_names_file_and_position(fresh):
  path = fresh / 'panoptic_gt_val_city_vps.json'
  text = open(path).read()
  open(path, 'w').write(text[:40])
  with pytest.raises(errors.FormatError, match=r'panoptic_gt_val_city_vps.json.*line 1 column'):
    of.read_split(str(fresh), 'val')


def test_png_id_missing_from_json(fresh):
  removed = {}

  def drop(gt):
    segs = gt['annotations'][0]['segments_info']
    removed['id'] = segs.pop(0)['id']
  _edit_gt(fresh, drop)
  with pytest.raises(errors.FormatError,
                     match=rf'0001_0001_synth_000000_000001_final_mask.png.*{removed["id"]}.*'
                     'PNG but not in the JSON'):
    of.read_split(str(fresh), 'val')


def test_json_id_missing_from_png(fresh):
  _edit_gt(fresh, lambda gt: gt['annotations'][1]['segments_info'].append(
      {'id': 77, 'category_id': 6, 'iscrowd': 0, 'area': 1}))
  with pytest.raises(errors.FormatError, match=r'_final_mask.png.*segment id 77 .*absent'):
    of.read_split(str(fresh), 'val')


def test_unknown_category(fresh):
  def bad(gt):
    gt['annotations'][0]['segments_info'][0]['category_id'] = 99
  _edit_gt(fresh, bad)
  with pytest.raises(errors.FormatError, match=r'final_mask.png.*unknown category_id 99'):
    of.read_split(str(fresh), 'val')


def test_duplicate_image_and_segment_ids(fresh):
  _edit_gt(fresh, lambda gt: gt['images'].append(dict(gt['images'][0])))
  with pytest.raises(errors.FormatError, match=r'panoptic_gt_val_city_vps.json.*duplicate image'):
    of.read_split(str(fresh), 'val')


def test_duplicate_segment_id(fresh):
  def dup(gt):
    segs = gt['annotations'][0]['segments_info']
    segs.append(dict(segs[0]))
  _edit_gt(fresh, dup)
  with pytest.raises(errors.FormatError, match=r'final_mask.png.*listed twice'):
    of.read_split(str(fresh), 'val')


def test_writer_rejects_unknown_category(tmp_path):
  clip = make_clip(0)
  clip['panoptic'][1, 0, 0] = 9001
  with pytest.raises(errors.DatasetError, match=r'frame 1.*category 9'):
    of.write_split([clip], str(tmp_path), 'val', CATS)


def test_prediction_errors(tmp_path):
  pan = make_clip(0)['panoptic'][1]
  with pytest.raises(errors.DatasetError, match='pred.json'):
    of.read_predictions(str(tmp_path))
  of.write_predictions(str(tmp_path), ['0001_0001_a_000000_000001'], [pan], CATS)
  path = tmp_path / 'pred.json'
  pred = json.load(open(path))
  seg = pred['annotations'][0]['segments_info'].pop()
  json.dump(pred, open(path, 'w'))
  with pytest.raises(errors.FormatError,
                     match=rf'0001_0001_a_000000_000001.png.*{seg["id"]}.*not in the JSON'):
    of.read_predictions(str(tmp_path))
  pred['annotations'][0]['segments_info'].append(dict(seg, category_id=42))
  json.dump(pred, open(path, 'w'))
  with pytest.raises(errors.FormatError, match='unknown category_id 42'):
    of.read_predictions(str(tmp_path))
  with pytest.raises(errors.FormatError, match='no annotation for image'):
    of.read_predictions(str(tmp_path), ['0009_0001_a_000000_000001'])
  with pytest.raises(errors.FormatError, match='Duplicate image id'):
    of.write_predictions(str(tmp_path), ['a', 'a'], [pan, pan], CATS)


def test_open_split_is_a_lazy_source_for_the_pipeline(written):
  from hybrid_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  root, clips = written
  source = of.open_split(root, 'val')
  assert len(source) == 2 and source.video_ids == ['0001', '0002']
  for m in source.labelled_masks:
    np.testing.assert_array_equal(m, LABELLED)
  b = next(pipeline.make_pair_iterator(
      source, batch_size=2, crop_hw=(H, W), hflip=False, max_delta=1, seed=0,
      require_labels=True, clip_labelled=source.labelled_masks))
  assert b['labelled'].all() and b['panoptic'].shape == (2, 2, H, W)
  i, (t0, t1) = b['clip_index'][0], b['frame_index'][0]
  np.testing.assert_array_equal(b['frames'][0, 1], clips[i]['frames'][t1])
  np.testing.assert_array_equal(b['panoptic'][0], source[i]['panoptic'][[t0, t1]])


def test_clashing_video_ids_are_renumbered_and_names_follow_video_order(tmp_path):
  clips = [make_clip(0, video_id='0009'), make_clip(1, video_id='0009'),
           make_clip(2, video_id='0003')]
  of.write_split(clips, str(tmp_path), 'val', CATS)
  back = of.read_split(str(tmp_path), 'val')
  assert [c['video_id'] for c in back] == ['0001', '0002', '0003']
  clips = [make_clip(0, video_id='0009'), make_clip(1, video_id='0003')]
  of.write_split(clips, str(tmp_path / 'b'), 'val', CATS)
  back = of.read_split(str(tmp_path / 'b'), 'val')
  assert [c['video_id'] for c in back] == ['0003', '0009']
  assert back[0]['frame_ids'][0] == 'synth_000000_000000'
  assert back[0]['image_ids'][1] == '0003_0001_synth_000000_000001'
  np.testing.assert_array_equal(back[0]['frames'], clips[1]['frames'])
