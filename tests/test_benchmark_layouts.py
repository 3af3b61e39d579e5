"""KITTI-STEP and VIPSeg: their on-disk layouts, read by the `kitti_step` / `vipseg` builders.

The fixtures are written by hand in the layouts the sources document (deeplab2's
g3doc/setup/kitti_step.md; the VIPSeg README), id encodings included, so the readers are checked
against the formats, not against our own writers; the writers (used by `mode=export`) are then
checked by reading their output back.
"""

import os

import numpy as np
import pytest
from PIL import Image

from hybrid_jax import errors
from hybrid_jax.data import categories
from hybrid_jax.data import datasets
from hybrid_jax.data import kitti_step
from hybrid_jax.data import vipseg
from hybrid_jax.data.synthetic import scene as synthetic
import ml_collections

H, W = 4, 6
ROAD, CAR, PERSON, RIDER = 0, 13, 11, 12  # KITTI-STEP semantic ids (Cityscapes train ids)


def _data_cfg(name, root, **kw):
  cfg = dict(name=name, categories=name, root=str(root), height=H, width=W, clip_length=2,
             label_every=1, num_train_clips=1, num_val_clips=1, max_instances=8, crop_height=H,
             crop_width=W, max_delta=1, worker_count=0, dir='')
  cfg.update(kw)
  return ml_collections.ConfigDict(cfg)


def _kitti_rgb(sem, inst):
  """The KITTI-STEP encoding: R = semantic, G = instance // 256, B = instance % 256."""
  sem, inst = np.asarray(sem), np.asarray(inst)
  return np.stack([sem, inst // 256, inst % 256], -1).astype(np.uint8)


def _frame(value):
  return np.full((H, W, 3), value, np.uint8)


# ---- KITTI-STEP ------------------------------------------------------------------------------

def test_kitti_step_decoding_follows_deeplab2():
  sem = np.array([[CAR, CAR, PERSON, RIDER, 255, ROAD]])
  inst = np.array([[300, 300, 0, 7, 9, 0]])  # car 300 = G 1, B 44; person 0 = crowd
  rgb = _kitti_rgb(sem, inst)
  assert tuple(rgb[0, 0]) == (CAR, 1, 44)
  lab = kitti_step.decode_panoptic_map(rgb, categories.KITTI_STEP, where='x')
  # car track 300; person crowd stays person*1000; rider has no instances in STEP (dropped);
  # 255 is void; road stuff.
  assert lab.tolist() == [[13300, 13300, 11000, 12000, -1, 0]]
  with pytest.raises(errors.FormatError, match='semantic id 19'):
    kitti_step.decode_panoptic_map(_kitti_rgb([[19]], [[0]]), categories.KITTI_STEP, where='x')
  with pytest.raises(errors.FormatError, match='instance id 1000'):
    kitti_step.decode_panoptic_map(_kitti_rgb([[CAR]], [[1000]]), categories.KITTI_STEP,
                                   where='x')


def _write_kitti(root, split, sequences):
  """sequences: {name: [(frame number, image value, sem [H, W], inst [H, W]), ...]}."""
  for seq, frames in sequences.items():
    for sub in ('images', 'panoptic_maps'):
      os.makedirs(os.path.join(root, sub, split, seq), exist_ok=True)
    for number, value, sem, inst in frames:
      Image.fromarray(_frame(value)).save(os.path.join(root, 'images', split, seq,
                                                       f'{number:06d}.png'))
      Image.fromarray(_kitti_rgb(sem, inst)).save(
          os.path.join(root, 'panoptic_maps', split, seq, f'{number:06d}.png'))


def _kitti_labels(car_track):
  sem = np.full((H, W), ROAD)
  inst = np.zeros((H, W), int)
  sem[:2, :2], inst[:2, :2] = CAR, car_track
  sem[3, 5] = 255
  return sem, inst


def test_kitti_step_builder_reads_the_layout(tmp_path):
  root = tmp_path / 'kitti_step'
  lab = _kitti_labels(5)
  _write_kitti(root, 'train', {'0001': [(n, 10 * n, *lab) for n in range(3)]})
  _write_kitti(root, 'val', {'0002': [(n, 100 + n, *lab) for n in (0, 1, 2)]})
  cfg = _data_cfg('kitti_step', root)
  train = kitti_step.source(cfg, 'train', str(tmp_path / 'prepared'))
  val = kitti_step.source(cfg, 'val', str(tmp_path / 'prepared'))
  # Train sequences are cut into clip_length windows; a val clip is the whole sequence.
  assert [train[i]['video_id'] for i in range(len(train))] == ['0001-0', '0001-1']
  assert len(val) == 1 and val[0]['video_id'] == '0002'
  clip = val[0]
  assert clip['frames'].shape == (3, H, W, 3)
  assert [int(f[0, 0, 0]) for f in clip['frames']] == [100, 101, 102]  # frame order
  assert clip['labelled'].tolist() == [True, True, True]
  assert clip['frame_ids'] == ['0002_000000', '0002_000001', '0002_000002']
  assert clip['panoptic'][0, 0, 0] == CAR * 1000 + 5 and clip['panoptic'][0, 3, 5] == -1
  assert clip['panoptic'][2, 2, 2] == ROAD * 1000
  assert train[1]['frames'].shape[0] == 1  # frames 2 of 0..2


def test_kitti_step_missing_data_messages(tmp_path):
  with pytest.raises(errors.DatasetError) as exc:
    datasets.prepare(ml_collections.ConfigDict({'data': _data_cfg('kitti_step', '')}),
                     str(tmp_path / 'd'))
  text = str(exc.value)
  for needle in ('KITTI-STEP not found', 'panoptic_maps/', 'kitti-step.tar.gz',
                 '--config.export.layout=kitti_step'):
    assert needle in text
  root = tmp_path / 'kitti'
  os.makedirs(root / 'images' / 'val' / '0002')
  with pytest.raises(errors.DatasetError, match='missing .*panoptic_maps'):
    kitti_step.check_layout(str(root), 'val')
  with pytest.raises(errors.DatasetError, match="set config.data.root to its parent"):
    kitti_step.check_layout(str(root / 'images'), 'val')


# ---- VIPSeg ----------------------------------------------------------------------------------

VIP_PERSON, VIP_SKY, VIP_DOOR = 60, 28, 2  # json ids; the masks store id + 1


def test_vipseg_decoding_follows_the_release():
  values = np.array([[0, 6100, 6101, 29, 125 * 0 + 3, 12400]], np.uint16)
  lab = vipseg.decode_mask(values, categories.VIPSEG, where='x')
  # void; person instances 0 and 1 (tracks 1, 2); sky stuff; a door (thing) stored without an
  # instance number (track 101); train (123) instance 0.
  assert lab.tolist() == [[-1, 60001, 60002, 28000, 2101, 123001]]
  with pytest.raises(errors.FormatError, match='category 124'):
    vipseg.decode_mask(np.array([[12500]]), categories.VIPSEG, where='x')


def _write_vipseg(root, split, videos, image_dir='imgs'):
  """videos: {name: [(stem, image value, mask values uint16 [H, W]), ...]}."""
  with open(os.path.join(root, f'{split}.txt'), 'a') as f:
    f.write(''.join(v + '\n' for v in videos))
  for video, frames in videos.items():
    for sub in (image_dir, 'panomasks'):
      os.makedirs(os.path.join(root, sub, video), exist_ok=True)
    for stem, value, mask in frames:
      Image.fromarray(_frame(value)).save(os.path.join(root, image_dir, video, stem + '.jpg'),
                                          quality=100)
      Image.fromarray(mask.astype(np.uint16)).save(os.path.join(root, 'panomasks', video,
                                                                stem + '.png'))


@pytest.mark.parametrize('image_dir', ['imgs', 'images'])
def test_vipseg_builder_reads_the_layout(tmp_path, image_dir):
  root = tmp_path / 'VIPSeg'
  os.makedirs(root)
  mask = np.full((H, W), VIP_SKY + 1, np.uint16)
  mask[:2, :2] = (VIP_PERSON + 1) * 100 + 3
  mask[3, 5] = 0
  _write_vipseg(str(root), 'train', {'1000_abc': [(f'{n:08d}', 50, mask) for n in (1, 2, 3)]},
                image_dir)
  _write_vipseg(str(root), 'val', {'7_x-y': [(f'{n:08d}', v, mask)
                                             for n, v in ((4, 100), (9, 200))]}, image_dir)
  cfg = _data_cfg('vipseg', root)
  val = vipseg.source(cfg, 'val', str(tmp_path / 'prepared'))
  train = vipseg.source(cfg, 'train', str(tmp_path / 'prepared'))
  assert [train[i]['video_id'] for i in range(len(train))] == ['1000_abc-0', '1000_abc-1']
  clip = val[0]
  assert clip['video_id'] == '7_x-y' and clip['frame_ids'] == ['7_x-y/00000004',
                                                                '7_x-y/00000009']
  assert abs(int(clip['frames'][1, 0, 0, 0]) - 200) <= 2  # jpeg, frame order kept
  assert clip['labelled'].tolist() == [True, True]
  assert clip['panoptic'][0, 0, 0] == VIP_PERSON * 1000 + 4  # instance 3 -> track 4
  assert clip['panoptic'][0, 3, 5] == -1 and clip['panoptic'][1, 2, 2] == VIP_SKY * 1000


def test_vipseg_missing_data_messages(tmp_path):
  with pytest.raises(errors.DatasetError) as exc:
    vipseg.check_layout('', 'val')
  for needle in ('VIPSeg not found', 'panomasks/', 'VIPSeg-Dataset',
                 '--config.export.layout=vipseg'):
    assert needle in str(exc.value)
  root = tmp_path / 'v'
  os.makedirs(root / 'imgs' / 'a')
  os.makedirs(root / 'panomasks')
  (root / 'val.txt').write_text('a\n')
  with pytest.raises(errors.DatasetError, match='Missing .*panomasks/a: video a is listed'):
    vipseg.check_layout(str(root), 'val')
  (tmp_path / 'w').mkdir()
  os.makedirs(tmp_path / 'w' / 'VIPSeg_720P')
  with pytest.raises(errors.DatasetError, match='VIPSeg_720P: set config.data.root'):
    vipseg.check_layout(str(tmp_path / 'w'), 'val')


# ---- the writers (mode=export) round trip -----------------------------------------------------

@pytest.mark.parametrize('name', ['kitti_step', 'vipseg'])
def test_written_layout_reads_back_as_the_same_clips(tmp_path, name):
  clips = [synthetic.generate_clip(s, height=32, width=64, clip_length=4, label_every=2,
                                   video_id=f'{s:04d}') for s in (3, 4)]
  module = {'kitti_step': kitti_step, 'vipseg': vipseg}[name]
  root = str(tmp_path / name)
  module.write_layout(clips, root, 'val', categories.SYNTHETIC, label_every_frame=True)
  cfg = _data_cfg(name, root, height=32, width=64)
  source = module.source(cfg, 'val', str(tmp_path / 'prepared'))
  theirs = categories.get_categories(name)
  by_name = {vipseg.VIPSEG_NAMES.get(c.name, c.name) if name == 'vipseg' else c.name: c.id
             for c in categories.SYNTHETIC}
  to_theirs = {c_ours: next(t.id for t in theirs if t.name == n) for n, c_ours in by_name.items()}
  for i, clip in enumerate(clips):
    back = source[i]
    assert back['labelled'].all() and back['frames'].shape == clip['frames'].shape
    ours = clip['panoptic']
    # Same segments per frame (ids renumbered per video), categories mapped by name.
    for t in range(len(ours)):
      cat = np.where(ours[t] >= 0, ours[t] // 1000, -1)
      mapped = np.where(cat >= 0, np.vectorize(lambda c: to_theirs.get(c, -1))(cat), -1)
      assert np.array_equal(np.where(back['panoptic'][t] >= 0, back['panoptic'][t] // 1000, -1),
                            mapped)
      # One-to-one between our segments and the read-back segments.
      pairs = set(zip(ours[t].ravel().tolist(), back['panoptic'][t].ravel().tolist()))
      assert len(pairs) == len(np.unique(ours[t])) == len(np.unique(back['panoptic'][t]))
    # Track ids are kept across the clip: a GT track keeps one read-back id in every frame.
    tracks = {}
    for t in range(len(ours)):
      for a, b in zip(ours[t].ravel().tolist(), back['panoptic'][t].ravel().tolist()):
        if a >= 0 and a % 1000:
          assert tracks.setdefault(a, b) == b


def test_export_mode_writes_both_layouts(tmp_path):
  from configs import synthetic
  from hybrid_jax import train as train_lib
  c = synthetic.get_config('tiny')
  c.mode, c.export.splits = 'export', 'train,val'
  for layout in ('kitti_step', 'vipseg'):
    c.export.layout = layout
    root = train_lib.run(c, str(tmp_path / 'w'))
    assert root == str(tmp_path / 'w' / 'export' / layout)
  assert sorted(os.listdir(tmp_path / 'w' / 'export' / 'kitti_step' / 'images' / 'val')) == [
      '0000', '0001']
  assert (tmp_path / 'w' / 'export' / 'vipseg' / 'train.txt').read_text().split() == [
      f'train_{k:04d}' for k in range(4)]
  c.export.layout = 'coco'
  with pytest.raises(errors.ConfigError, match='export.layout'):
    train_lib.run(c, str(tmp_path / 'w'))
