"""Cityscapes-VPS / VIPER-VPS builders on generated fixtures, layout checks, paper configs."""

import importlib.util
import json
import os
import pickle
import shutil

import ml_collections
import numpy as np
import pytest
from PIL import Image

from hybrid_jax import config_lib
from hybrid_jax import errors
from hybrid_jax import paper_tables
from hybrid_jax.data import categories
from hybrid_jax.data import cityscapes_vps
from hybrid_jax.data import datasets
from hybrid_jax.data import official_format
from hybrid_jax.data import viper_vps

H, W = 8, 12
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _clip(vid, *, t=10, label_every=5, seed=0, thing=13, stuff=(0, 10)):
  """A clip with two thing tracks (raw ids 7 and 3) that must come back as tracks 1 and 2."""
  rng = np.random.default_rng(seed)
  pan = np.full((t, H, W), stuff[0] * 1000, np.int32)
  pan[:, :, :3] = stuff[1] * 1000
  pan[:, 1:4, 4:7] = thing * 1000 + 7       # first in raster order -> track 1
  pan[:, 5:7, 8:11] = thing * 1000 + 3      # -> track 2
  pan[:, 7, 0] = -1
  labelled = np.zeros(t, bool)
  labelled[label_every - 1::label_every] = True
  return {'frames': rng.integers(0, 256, (t, H, W, 3), dtype=np.uint8), 'panoptic': pan,
          'labelled': labelled, 'video_id': vid}


def _expected(clip):
  pan = clip['panoptic'].copy()
  pan[pan == 13007], pan[pan == 13003] = 13001, 13002
  return np.where(clip['labelled'][:, None, None], pan, -1)


def _cfg(root, *, categories_name='cityscapes_vps', h=H, w=W, clip_length=10):
  return ml_collections.ConfigDict(dict(root=str(root), height=h, width=w,
                                        clip_length=clip_length, label_every=5,
                                        categories=categories_name))


@pytest.fixture(scope='module')
def city(tmp_path_factory):
  root = tmp_path_factory.mktemp('city') / 'cityscapes_vps'
  val = [_clip('0003', seed=1), _clip('0001', seed=0)]
  official_format.write_split(val, str(root), 'val', categories.CITYSCAPES_VPS)
  train = [_clip('0002', seed=2)]
  official_format.write_split(train, str(root), 'train', categories.CITYSCAPES_VPS)
  shutil.rmtree(root / 'train' / 'img_all')  # the release has only labelled train frames
  return root, {'0001': val[1], '0003': val[0], '0002': train[0]}


def _copy(root, tmp_path):
  dst = tmp_path / 'cityscapes_vps'
  shutil.copytree(root, dst)
  return dst


# ---------------------------------------------------------------------------------------------
# Cityscapes-VPS.

def test_cityscapes_val_and_train_clips(city, tmp_path):
  root, clips = city
  cfg = _cfg(root)
  cityscapes_vps.prepare(cfg, str(tmp_path), progress=False)
  val = cityscapes_vps.source(cfg, 'val', str(tmp_path))
  assert len(val) == 2 and val.video_ids == ['0001', '0003']
  for i, vid in enumerate(['0001', '0003']):
    c = val[i]
    assert c['video_id'] == vid and c['frames'].shape == (10, H, W, 3)
    np.testing.assert_array_equal(np.nonzero(c['labelled'])[0], [4, 9])
    np.testing.assert_array_equal(val.labelled_masks[i], c['labelled'])
    np.testing.assert_array_equal(c['frames'], clips[vid]['frames'])  # PNG bytes, lossless
    np.testing.assert_array_equal(c['panoptic'], _expected(clips[vid]))
    assert c['panoptic'].dtype == np.int32
    # Official names: image ids VVVV_NNNN_<frame>, NNNN counting labelled frames split-wide.
    n0 = 2 * i
    assert [x for x in c['image_ids'] if x] == [
        f'{vid}_{n0 + 1:04d}_{c["frame_ids"][4]}', f'{vid}_{n0 + 2:04d}_{c["frame_ids"][9]}']
  # Partial decoding (a training pair): only the asked frames, in the asked order.
  pair = val.read(0, [9, 3])
  assert pair['labelled'].tolist() == [True, False] and pair['frames'].shape == (2, H, W, 3)
  np.testing.assert_array_equal(pair['frames'], clips['0001']['frames'][[9, 3]])
  np.testing.assert_array_equal(pair['panoptic'], _expected(clips['0001'])[[9, 3]])
  assert pair['frame_ids'] == [val.frame_ids[0][9], val.frame_ids[0][3]]
  # Picklable for grain workers: the copy reopens the files.
  np.testing.assert_array_equal(pickle.loads(pickle.dumps(val))[1]['panoptic'],
                                _expected(clips['0003']))
  # Prepared data stay usable without the raw folder.
  gone = _cfg('')
  cityscapes_vps.prepare(gone, str(tmp_path), progress=False)
  assert cityscapes_vps.source(gone, 'val', str(tmp_path)).video_ids == ['0001', '0003']

  train = cityscapes_vps.source(cfg, 'train', str(tmp_path))
  c = train[0]
  assert len(train) == 1 and c['video_id'] == '0002'
  assert c['frames'].shape == (2, H, W, 3) and c['labelled'].tolist() == [True, True]
  assert [f[-6:] for f in c['frame_ids']] == ['000004', '000009']
  np.testing.assert_array_equal(c['panoptic'], _expected(clips['0002'])[[4, 9]])


def test_cityscapes_resized_at_prepare(city, tmp_path):
  root, clips = city
  cfg = _cfg(root, h=H // 2, w=W // 2)
  c = cityscapes_vps.source(cfg, 'val', str(tmp_path))[0]
  assert c['frames'].shape == (10, H // 2, W // 2, 3)
  # Nearest neighbour at pixel centres: output row i <- input row floor((i + 0.5) * 2) = 2i + 1.
  np.testing.assert_array_equal(c['panoptic'], _expected(clips['0001'])[:, 1::2, 1::2])


def test_cityscapes_clip_length_must_match_videos(city, tmp_path):
  with pytest.raises(errors.DatasetError, match='clip_length=5 .*30 for Cityscapes-VPS'):
    cityscapes_vps.raw_clips(_cfg(city[0], clip_length=5), 'val')


def test_cityscapes_category_ids_mapped_by_name(city, tmp_path):
  root = _copy(city[0], tmp_path)
  path = root / 'panoptic_gt_val_city_vps.json'
  gt = json.loads(path.read_text())
  for cat in gt['categories']:   # another numbering (+100) and the release's typo
    cat['id'] += 100
    cat['name'] = 'vegitation' if cat['name'] == 'vegetation' else cat['name']
  for ann in gt['annotations']:
    for seg in ann['segments_info']:
      seg['category_id'] += 100
  path.write_text(json.dumps(gt))
  c = cityscapes_vps.source(_cfg(root), 'val', str(tmp_path / 'tfds'))[0]
  np.testing.assert_array_equal(c['panoptic'], _expected(city[1]['0001']))


def test_cityscapes_unknown_category_is_format_error(city, tmp_path):
  root = _copy(city[0], tmp_path)
  path = root / 'panoptic_gt_val_city_vps.json'
  gt = json.loads(path.read_text())
  gt['categories'].append({'id': 40, 'name': 'spaceship', 'isthing': 1})
  path.write_text(json.dumps(gt))
  with pytest.raises(errors.FormatError, match='spaceship'):
    cityscapes_vps.source(_cfg(root), 'val', str(tmp_path / 'tfds'))
  # A segment whose category is not among the JSON's categories.
  gt['categories'].pop()
  gt['annotations'][0]['segments_info'][0]['category_id'] = 77
  path.write_text(json.dumps(gt))
  with pytest.raises(errors.FormatError, match='unknown category_id 77'):
    cityscapes_vps.source(_cfg(root), 'val', str(tmp_path / 'tfds2'))


def test_cityscapes_wrong_layout_names_first_missing_path(city, tmp_path):
  root = _copy(city[0], tmp_path)
  shutil.rmtree(root / 'val' / 'panoptic_video')
  os.remove(root / 'panoptic_gt_val_city_vps.json')
  with pytest.raises(errors.DatasetError) as e:
    cityscapes_vps.prepare(_cfg(root), str(tmp_path / 'tfds'), progress=False)
  first = str(e.value).splitlines()[0]
  assert first.endswith(f'missing {root / "val" / "panoptic_video"}.')
  assert 'panoptic_gt_val_city_vps.json' not in first
  # An unexpected file in img_all, and a root one level too high.
  (root / 'val' / 'panoptic_video').mkdir()
  shutil.copy(city[0] / 'panoptic_gt_val_city_vps.json', root)
  (root / 'val' / 'img_all' / 'notes.txt').write_text('x')
  with pytest.raises(errors.DatasetError, match='Unexpected .*img_all/notes.txt'):
    cityscapes_vps.check_layout(str(root), 'val')
  with pytest.raises(errors.DatasetError, match=f'unexpected {root}: set config.data.root'):
    cityscapes_vps.check_layout(str(tmp_path), 'val')


def _full_config(path, preset, **data):
  spec = importlib.util.spec_from_file_location('cfg_' + os.path.basename(path)[:-3],
                                                os.path.join(REPO, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config(preset)
  for k, v in data.items():
    c.data[k] = v
  return module, c


@pytest.mark.parametrize('path,needles', [
    ('configs/cityscapes_vps.py', ['panoptic_gt_val_city_vps.json', 'val/', 'img_all/',
                                   'leftImg8bit_sequence', '325 GB', 'mcahny/vps',
                                   'create_panoptic_labels.sh', 'generated']),
    ('configs/viper.py', ['viper_panoptic_val_day_video.json', 'val_day/', 'panoptic_video/',
                          'on request', 'mcahny/vps']),
])
@pytest.mark.parametrize('root', ['', '/nonexistent/vps_data'])
def test_missing_dataset_message(path, needles, root, tmp_path):
  _, c = _full_config(path, 'small', root=root)
  with pytest.raises(errors.DatasetError) as e:
    datasets.get_source(c, 'val', str(tmp_path))  # stops at once, before building anything
  msg = str(e.value)
  assert (root in msg) if root else ('config.data.root is empty' in msg)
  for needle in needles + ['Expected layout', '--config configs/synthetic.py']:
    assert needle in msg, needle
  assert not os.listdir(tmp_path)


def test_registry_serves_cityscapes(city, tmp_path):
  _, c = _full_config('configs/cityscapes_vps.py', 'small', root=str(city[0]), height=H,
                      width=W, clip_length=10)
  src = datasets.get_source(c, 'val', str(tmp_path))
  assert src.video_ids == ['0001', '0003'] and src[1]['frames'].shape == (10, H, W, 3)


# ---------------------------------------------------------------------------------------------
# VIPER-VPS.

# VIPER's own numbering as the palette shows it (class i is palette entry i + 1).
VIPER_JSON_CATS = [{**c.to_json(), 'id': c.id + 1} for c in categories.VIPER]


def _viper_clip(vid, *, t, seed, unlabelled=()):
  c = _clip(vid, t=t, label_every=1, seed=seed, thing=19, stuff=(1, 0))  # car, road, sky
  c['labelled'][list(unlabelled)] = False
  return c


def _viper_expected(clip):
  pan = clip['panoptic'].copy()
  pan[pan == 19007], pan[pan == 19003] = 19001, 19002
  return np.where(clip['labelled'][:, None, None], pan, -1)


@pytest.fixture(scope='module')
def viper(tmp_path_factory):
  root = tmp_path_factory.mktemp('viper') / 'viper_vps'
  val = [_viper_clip('002', t=6, seed=3), _viper_clip('001', t=6, seed=4)]
  viper_vps.write_layout(val, str(root), 'val', categories.VIPER, json_categories=VIPER_JSON_CATS)
  train = [_viper_clip('005', t=6, seed=5, unlabelled=(1, 2, 3, 4))]
  viper_vps.write_layout(train, str(root), 'train', categories.VIPER)
  return root, {'001': val[1], '002': val[0], '005': train[0]}


def test_viper_val_first_frames_and_mapping(viper, tmp_path):
  root, clips = viper
  assert (root / 'val_day' / 'img' / '001_00000.jpg').exists()
  assert (root / 'val_day' / 'panoptic_video' / '001_00000.png').exists()
  cfg = _cfg(root, categories_name='viper', clip_length=4)
  viper_vps.prepare(cfg, str(tmp_path), progress=False)
  val = viper_vps.source(cfg, 'val', str(tmp_path))
  assert val.video_ids == ['001', '002']
  for i, vid in enumerate(['001', '002']):
    c = val[i]
    assert c['frame_ids'] == [f'{vid}_{t:05d}' for t in range(4)]   # the first 4 of 6 frames
    assert c['labelled'].tolist() == [True] * 4 and c['image_ids'] == c['frame_ids']
    # JSON ids are ours + 1; labels come back in our ids (car 19, road 1, sky 0).
    np.testing.assert_array_equal(c['panoptic'], _viper_expected(clips[vid])[:4])
    # At the native size the JPEG bytes are stored as they are: same pixels as the file.
    for t in range(4):
      with Image.open(root / 'val_day' / 'img' / f'{vid}_{t:05d}.jpg') as im:
        np.testing.assert_array_equal(c['frames'][t], np.asarray(im.convert('RGB')))


def test_viper_train_windows_and_unlabelled_frames(viper, tmp_path):
  root, clips = viper
  train = viper_vps.source(_cfg(root, categories_name='viper', clip_length=4), 'train',
                           str(tmp_path))
  assert train.video_ids == ['005-0', '005-1']
  a, b = train[0], train[1]
  assert a['labelled'].tolist() == [True, False, False, False]
  assert b['labelled'].tolist() == [False, True] and b['frame_ids'] == ['005_00004', '005_00005']
  np.testing.assert_array_equal(a['panoptic'], _viper_expected(clips['005'])[:4])
  # Tracks are numbered per clip: the second window starts again at 1.
  np.testing.assert_array_equal(b['panoptic'], _viper_expected(clips['005'])[4:])


def test_viper_layout_errors(viper, tmp_path):
  root = tmp_path / 'viper_vps'
  shutil.copytree(viper[0], root)
  path = root / 'viper_panoptic_val_day_video.json'
  gt = json.loads(path.read_text())
  gt['categories'].append({'id': 99, 'name': 'spaceship', 'isthing': 0})
  path.write_text(json.dumps(gt))
  with pytest.raises(errors.FormatError, match="99 'spaceship'"):
    viper_vps.raw_clips(_cfg(root, categories_name='viper', clip_length=4), 'val')
  shutil.rmtree(root / 'val_day' / 'panoptic_video')
  with pytest.raises(errors.DatasetError) as e:
    viper_vps.prepare(_cfg(root, categories_name='viper'), str(tmp_path / 'tfds'),
                      progress=False)
  assert str(e.value).splitlines()[0].endswith(
      f'missing {root / "val_day" / "panoptic_video"}.')


# ---------------------------------------------------------------------------------------------
# Configs.

def _flat(cfg, prefix=''):
  out = {}
  for k, v in cfg.items():
    if isinstance(v, ml_collections.ConfigDict):
      out.update(_flat(v, f'{prefix}{k}.'))
    else:
      out[prefix + k] = type(v)
  return out


@pytest.mark.parametrize('path', ['configs/cityscapes_vps.py', 'configs/viper.py'])
@pytest.mark.parametrize('preset', ['', 'half', 'small', 'gpu80', 'gpu16', 'tpu_v3', 'tpu_v2'])
def test_config_keys_match_synthetic(path, preset):
  _, synth = _full_config('configs/synthetic.py', '')
  _, c = _full_config(path, preset)
  assert _flat(c) == _flat(synth)   # same keys, same value types
  with pytest.raises(AttributeError):
    c.data.rooot = 'x'   # locked


def test_config_paper_values():
  _, city = _full_config('configs/cityscapes_vps.py', '')
  _, viper = _full_config('configs/viper.py', '')
  assert (city.data.name, city.data.categories, city.eval.dataset) == (
      'cityscapes_vps', 'cityscapes_vps', 'cityscapes_vps')
  assert (viper.data.name, viper.data.categories, viper.eval.dataset) == (
      'viper_vps', 'viper', 'viper')
  assert (city.data.height, city.data.width, city.data.clip_length, city.data.label_every) == (
      1024, 2048, 30, 5)
  assert (viper.data.height, viper.data.width, viper.data.clip_length,
          viper.data.label_every) == (1080, 1920, 60, 1)
  for c in (city, viper):
    assert c.data.root == ''
    assert c.seg.backbone == 'resnet50'
    s = c.seg.train
    assert (s.optimizer, s.lr, s.momentum, s.weight_decay, s.batch_size) == (
        'sgd', 0.0025, 0.9, 1e-4, 4)
    # 16 images per batch = 8 frame pairs; the RoI canvas and FC sizes of §III.B; one memory
    # frame (§III.E); the fusion fitted on predictions and Eq. 4's DML without a "none" slot.
    assert (c.track.train.lr, c.track.train.batch_size) == (1e-4, 8)
    assert (tuple(c.track.canvas), c.track.hidden_dim, c.track.embed_dim) == ((256, 512), 1024,
                                                                            1024)
    assert (c.track.memory_frames, c.track.fusion_segments, c.track.no_match) == (
        1, 'predicted', 'mask')
    assert (c.flow.variant, c.flow.iters, c.flow.checkpoint) == ('standard', 20, '')
    assert (c.track.threshold, c.track.temporal_threshold) == (1e-5, 0.01)
    assert tuple(c.seg.test_scales) == (0.5, 0.625, 0.6875, 0.8125, 0.875, 1.0)
  assert config_lib.PAPER_TEST_SCALES == (0.5, 0.625, 0.6875, 0.8125, 0.875, 1.0)
  assert (city.eval.reference_table, viper.eval.reference_table) == (
      'PAPER_TABLE_I_VAL', 'PAPER_TABLE_II')
  assert paper_tables.PAPER_TABLE_I_VAL['HybridTracker + w/ Temporal']['vpq'] == (58.5, 47.5, 66.4)
  assert paper_tables.PAPER_TABLE_II['HybridTracker + w/ Temporal']['k15'] == (50.4, 42.0, 57.0)
  # Transcription check: for the paper's own rows the mean column is the mean of the four k
  # columns to the table's rounding (the quoted VPSNet-FuseTrack rows are not: up to 0.95 off).
  for table in (paper_tables.PAPER_TABLE_I_VAL, paper_tables.PAPER_TABLE_I_TEST,
                paper_tables.PAPER_TABLE_II):
    for name, row in table.items():
      if name == 'VPSNet-FuseTrack':
        continue
      mean = np.mean([row[k] for k in ('k0', 'k5', 'k10', 'k15')], axis=0)
      np.testing.assert_allclose(mean, row['vpq'], atol=0.08, err_msg=name)
  half = _full_config('configs/viper.py', 'half')[1]
  small = _full_config('configs/cityscapes_vps.py', 'small')[1]
  assert (half.data.height, half.data.width) == (540, 960)
  assert (small.data.height, small.data.width, small.seg.backbone) == (256, 512, 'resnet_small')
  assert tuple(half.seg.test_scales) == tuple(small.seg.test_scales) == (1.0,)
