"""Tracking external per-frame predictions: `python -m hybrid_jax.cli.track_predictions` and its
library (`hybrid_jax.external_predictions`)."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from hybrid_jax import errors
from hybrid_jax.data import flo_files
from hybrid_jax.cli import track_predictions as track_cli
from hybrid_jax.data import categories as categories_lib
from hybrid_jax.data import official_format
from hybrid_jax.evaluation import evaluate_official
from hybrid_jax import external_predictions as external
from hybrid_jax import trained_models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLE = categories_lib.SYNTHETIC       # 1 road (stuff), 6 car, 7 person (things)
H, W, T = 24, 32, 3
SIDE = 6
ROAD = 1 * 1000
ROAD_ID = 128 + 256 * 64 + 65536 * 128  # the road colour: a stuff segment's id
# Per-frame translation (dx, dy) of each square: more than its side, so a square never overlaps
# its previous position and only the flow can link the two.
MOVES = {'A': (8, 0), 'B': (0, 8)}


def _corner(obj, t):
  x0, y0 = {'A': (2, 4), 'B': (26, 0)}[obj]
  dx, dy = MOVES[obj]
  return x0 + dx * t, y0 + dy * t


def _square(obj, t):
  m = np.zeros((H, W), bool)
  x, y = _corner(obj, t)
  m[y:y + SIDE, x:x + SIDE] = True
  return m


def _labels(t, *, swap):
  """Road below row 18, void above; car A and car B; `swap` exchanges their per-frame ids."""
  pan = np.full((H, W), -1, np.int32)
  pan[18:] = ROAD
  a, b = (6002, 6001) if swap else (6001, 6002)
  pan[_square('A', t)] = a
  pan[_square('B', t)] = b
  return pan


def _flow(t):
  """True forward flow t -> t+1: each square's translation on its pixels, 0 elsewhere."""
  f = np.zeros((H, W, 2), np.float32)
  for obj, (dx, dy) in MOVES.items():
    f[_square(obj, t)] = (dx, dy)
  return f


def _image(t):
  img = np.full((H, W, 3), 40, np.uint8)
  img[_square('A', t)] = (200, 30, 30)
  img[_square('B', t)] = (30, 30, 200)
  return img


def _ids():
  """Two videos of T frames; image ids as Cityscapes-VPS names them."""
  return [[f'{v:04d}_{(v - 1) * T + t + 1:04d}_synth_000000_{5 * t:06d}' for t in range(T)]
          for v in (1, 2)]


@pytest.fixture(scope='module')
def case(tmp_path_factory):
  """IN (per-frame ids swapping every frame), .flo files, frames, and GT from the true tracks."""
  root = str(tmp_path_factory.mktemp('track_external'))
  videos = _ids()
  ids = [i for v in videos for i in v]
  pred_maps = [_labels(t, swap=t % 2 == 1) for v in videos for t in range(T)]
  gt_maps = [_labels(t, swap=False) for v in videos for t in range(T)]
  pred_dir = os.path.join(root, 'in')
  official_format.write_predictions(pred_dir, ids, pred_maps, TABLE)
  # The GT layout: RGB-id PNGs plus the panoptic GT json the evaluator reads.
  gt_root = os.path.join(root, 'gt')
  official_format.write_predictions(gt_root, ids, gt_maps, TABLE)
  with open(os.path.join(gt_root, 'pred.json')) as f:
    anns = json.load(f)['annotations']
  gt_json = os.path.join(root, 'gt.json')
  with open(gt_json, 'w') as f:
    json.dump({'images': [{'id': i, 'file_name': i + '_newImg8bit.png', 'width': W, 'height': H}
                          for i in ids],
               'annotations': anns, 'categories': [c.to_json() for c in TABLE]}, f)
  flow_dir = os.path.join(root, 'flow')
  img_dir = os.path.join(root, 'img')
  os.makedirs(flow_dir)
  os.makedirs(img_dir)
  for v in videos:
    for t, i in enumerate(v):
      Image.fromarray(_image(t)).save(os.path.join(img_dir, i + '.png'))
      if t < T - 1:
        flo_files.write_flo(os.path.join(flow_dir, i + '.flo'), _flow(t))
  return {'root': root, 'ids': ids, 'videos': videos, 'pred': pred_dir, 'flow': flow_dir,
          'img': img_dir, 'gt_dir': os.path.join(gt_root, 'pan_pred'), 'gt_json': gt_json}


def _vpq(case, pred_dir):
  res = evaluate_official(case['gt_dir'], case['gt_json'], pred_dir, dataset='synthetic',
                          metrics=('vpq',), frames_per_video=None)
  return res['vpq']


def _ids_at(pred_dir, videos, table=TABLE):
  """Per video and frame: the segment id under each square's centre, and under the road."""
  out = []
  for v in videos:
    frames = official_format.read_predictions(pred_dir, v, categories=table)
    rows = []
    for t, (_, ids, segs) in enumerate(frames):
      cy = {o: _corner(o, t)[1] + SIDE // 2 for o in MOVES}
      cx = {o: _corner(o, t)[0] + SIDE // 2 for o in MOVES}
      cat = {s['id']: s['category_id'] for s in segs}
      rows.append({'A': int(ids[cy['A'], cx['A']]), 'B': int(ids[cy['B'], cx['B']]),
                   'road': int(ids[H - 1, 0]), 'cat_A': cat[int(ids[cy['A'], cx['A']])]})
    out.append(rows)
  return out


def _assert_consistent(rows):
  for video in rows:
    assert len({r['A'] for r in video}) == 1, video   # one id per object over the video
    assert len({r['B'] for r in video}) == 1, video
    assert video[0]['A'] != video[0]['B']
    assert {r['road'] for r in video} == {ROAD_ID}     # stuff keeps its (category colour) id


def test_input_ids_really_swap(case):
  rows = _ids_at(case['pred'], case['videos'])
  for video in rows:
    assert video[0]['A'] == video[1]['B'] and video[0]['B'] == video[1]['A']
  vpq = _vpq(case, case['pred'])
  assert vpq['0']['all']['pq'] == pytest.approx(100.0)   # each frame on its own is perfect
  assert vpq['5']['things']['pq'] < 50.0                 # every 2-frame window has a switch


def test_pixel_variant_gives_consistent_ids_and_vpq_100(case, tmp_path):
  out = str(tmp_path / 'out')
  # --dataset defaults to cityscapes_vps, where category 6 is stuff ('traffic light'): two
  # tracked cars per frame prove that pred.json's categories (synthetic) took precedence.
  summary = external.track_predictions(case['pred'], out, variant='pixel', temporal=True,
                                       mutual_check=True, flow_dir=case['flow'], progress=False)
  assert summary['categories_from'] == 'pred.json'
  assert summary['frames'] == 6 and summary['videos'] == 2 and summary['flow'] == 'flo'
  assert summary['max_instances'] == 2 and summary['output_tracks'] == 4
  rows = _ids_at(out, case['videos'])
  _assert_consistent(rows)
  assert all(r['cat_A'] == 6 for v in rows for r in v)
  vpq = _vpq(case, out)
  assert vpq['5']['all']['pq'] == pytest.approx(100.0)
  assert vpq['10']['all']['pq'] == pytest.approx(100.0)
  assert vpq['5']['all']['pq'] > _vpq(case, case['pred'])['5']['all']['pq']


def test_cli_subprocess(case, tmp_path):
  out = str(tmp_path / 'out')
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'PYTHONPATH': ROOT}
  proc = subprocess.run(
      [sys.executable, '-m', 'hybrid_jax.cli.track_predictions', '--pred-dir', case['pred'],
       '--out-dir', out,
       '--flow-dir', case['flow'], '--variant', 'pixel', '--no-temporal'],
      capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert 'tracked 6 frames in 2 videos' in proc.stdout
  _assert_consistent(_ids_at(out, case['videos']))
  assert _vpq(case, out)['5']['all']['pq'] == pytest.approx(100.0)


def test_missing_flow_is_a_clear_error(case, tmp_path, capsys):
  with pytest.raises(errors.ConfigError, match='--flow-dir') as exc:
    external.track_predictions(case['pred'], str(tmp_path / 'o'), variant='pixel',
                               progress=False)
  assert '--raft' in str(exc.value)
  rc = track_cli.main(['--pred-dir', case['pred'], '--out-dir', str(tmp_path / 'o'),
                       '--variant', 'pixel'])
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 2 and len(err) == 1 and err[0].startswith('error: ') and '--flow-dir' in err[0]
  rc = track_cli.main(['--pred-dir', case['pred'], '--out-dir', str(tmp_path / 'o'),
                       '--variant', 'pixel', '--flow-dir', case['flow'],
                       '--temporal-backward-flow'])  # .flo files: forward flow only
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 2 and len(err) == 1 and '--temporal-backward-flow' in err[0] and '--raft' in err[0]
  with pytest.raises(errors.ConfigError, match='--images'):  # RAFT without the frames
    external.track_predictions(case['pred'], str(tmp_path / 'o'), variant='pixel',
                               raft=str(tmp_path), progress=False)
  with pytest.raises(errors.ConfigError, match='--head'):
    external.track_predictions(case['pred'], str(tmp_path / 'o'), variant='hybrid',
                               flow_dir=case['flow'], images_dir=case['img'], progress=False)
  assert not os.path.exists(tmp_path / 'o')


def test_the_flow_is_what_links_the_frames(case, tmp_path):
  """Zero flow instead of the true one: no overlap, so every frame starts new tracks."""
  flow_dir = str(tmp_path / 'zero')
  os.makedirs(flow_dir)
  for name in os.listdir(case['flow']):
    flo_files.write_flo(os.path.join(flow_dir, name), np.zeros((H, W, 2), np.float32))
  out = str(tmp_path / 'out')
  s = external.track_predictions(case['pred'], out, variant='pixel', flow_dir=flow_dir,
                                 progress=False)
  assert s['output_tracks'] == 2 * 2 * T
  rows = _ids_at(out, case['videos'])
  assert all(len({r['A'] for r in v}) == T for v in rows)


def test_missing_and_wrong_size_flo(case, tmp_path):
  flow_dir = str(tmp_path / 'flow')
  shutil.copytree(case['flow'], flow_dir)
  first = case['videos'][1][1]
  os.remove(os.path.join(flow_dir, first + '.flo'))
  with pytest.raises(errors.DatasetError, match=f'{first}.flo'):
    external.track_predictions(case['pred'], str(tmp_path / 'o'), variant='pixel',
                               flow_dir=flow_dir, progress=False)
  bad = os.path.join(flow_dir, first + '.flo')
  flo_files.write_flo(bad, np.zeros((12, 16, 2), np.float32))
  with pytest.raises(errors.FormatError) as exc:
    external.track_predictions(case['pred'], str(tmp_path / 'o'), variant='pixel',
                               flow_dir=flow_dir, progress=False)
  msg = str(exc.value)
  assert bad in msg and '16x12' in msg and f'{W}x{H}' in msg


def test_categories_from_dataset_when_pred_json_has_none(case, tmp_path):
  pred = str(tmp_path / 'in')
  shutil.copytree(case['pred'], pred)
  path = os.path.join(pred, 'pred.json')
  with open(path) as f:
    data = json.load(f)
  del data['categories']
  with open(path, 'w') as f:
    json.dump(data, f)
  out = str(tmp_path / 'syn')
  s = external.track_predictions(pred, out, variant='pixel', flow_dir=case['flow'],
                                 dataset='synthetic', progress=False)
  assert s['categories_from'] == 'dataset:synthetic'
  _assert_consistent(_ids_at(out, case['videos']))
  # Cityscapes-VPS: category 6 is stuff, so the two cars become one stuff segment per frame.
  out = str(tmp_path / 'city')
  s = external.track_predictions(pred, out, variant='pixel', flow_dir=case['flow'],
                                 progress=False)
  assert s['categories_from'] == 'dataset:cityscapes_vps' and s['output_tracks'] == 0
  city = categories_lib.CITYSCAPES_VPS
  for _, ids, segs in official_format.read_predictions(out, categories=city):
    cars = [seg for seg in segs if seg['category_id'] == 6]
    assert len(cars) == 1 and cars[0]['area'] == 2 * SIDE * SIDE


def test_head_hparams_sources():
  params = {'fc1': {'kernel': np.zeros((4 * 4 * 8, 32))}, 'fc2': {'kernel': np.zeros((32, 16))}}
  hp, src = trained_models.head_hparams(params, {'canvas': [8, 16], 'pool': 2}, {})
  assert src == 'metadata' and hp == {'canvas': (8, 16), 'pool': 2, 'hidden_dim': 32,
                                      'embed_dim': 16, 'use_image': True,
                                      'roi_input': 'image', 'feature_dim': 16}
  hp, src = trained_models.head_hparams(params, {}, {'canvas': [4, 8], 'pool': 1})
  assert src == 'config' and hp['canvas'] == (4, 8) and hp['pool'] == 1
  with pytest.warns(UserWarning, match='assumed canvas'):
    hp, src = trained_models.head_hparams(params, {}, {})
  assert src == 'shapes' and hp['canvas'] == (4, 8) and hp['pool'] == 1 and hp['use_image']
  with pytest.raises(errors.CheckpointError, match='does not fit'):
    trained_models.head_hparams(params, {'canvas': [8, 16], 'pool': 4}, {})


def test_find_image_cityscapes_names(tmp_path):
  iid = '0005_0025_frankfurt_000000_001736'
  p = tmp_path / 'frankfurt_000000_001736_leftImg8bit.png'
  p.write_bytes(b'')
  assert official_format.find_image(str(tmp_path), iid) == str(p)
  q = tmp_path / f'{iid}_newImg8bit.png'
  q.write_bytes(b'')
  assert official_format.find_image(str(tmp_path), iid) == str(q)
  with pytest.raises(errors.DatasetError, match='0006_0031'):
    official_format.find_image(str(tmp_path), '0006_0031_frankfurt_000001_000000')


def test_hybrid_with_trained_head_layout(case, tmp_path):
  """A head exported like train_track (<workdir>/track/final + config.json beside it)."""
  import jax
  from hybrid_jax.models import embedding_head
  from hybrid_jax.training import pretrained
  model = embedding_head.EmbeddingHead(canvas=(8, 16), pool=2, hidden_dim=8, embed_dim=4)
  params = embedding_head.init_head(model, jax.random.key(0), image_hw=(H, W), max_instances=2)
  stage = tmp_path / 'work' / 'track'
  pretrained.save_pretrained(str(stage / 'final'), {'params': params},
                             {'architecture': 'embedding_head', 'stage': 'track'})
  (stage / 'config.json').write_text(json.dumps(
      {'track': {'canvas': [8, 16], 'pool': 2, 'no_match': 'mask'}}))
  out = str(tmp_path / 'out')
  s = external.track_predictions(case['pred'], out, variant='hybrid', flow_dir=case['flow'],
                                 images_dir=case['img'], head=str(stage / 'final'),
                                 progress=False)
  assert s['head_hparams_from'] == str(stage / 'config.json')
  assert s['head_hparams']['canvas'] == [8, 16] and s['head_hparams']['pool'] == 2
  assert s['dustbin_logit'] is None and s['fusion'] == 'plain sum'
  # An untrained head adds ~1/n everywhere; the plain-sum fusion keeps the pixel evidence.
  _assert_consistent(_ids_at(out, case['videos']))


def test_backward_flow_comes_from_the_flow_function(case, tmp_path):
  def flow_fn(a, b):
    return np.zeros(a.shape[:2] + (2,), np.float32)

  s = external.track_predictions(case['pred'], str(tmp_path / 'o'), variant='pixel',
                                 flow_fn=flow_fn, images_dir=case['img'],
                                 temporal_backward_flow=True, progress=False)
  assert s['temporal_backward_flow'] is True and s['flow'] == 'flow_fn'
  s = external.track_predictions(case['pred'], str(tmp_path / 'p'), variant='pixel',
                                 flow_fn=flow_fn, images_dir=case['img'], progress=False)
  assert s['temporal_backward_flow'] is False
