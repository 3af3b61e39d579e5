"""Tracking a user's video (mode=track with config.input): reading, weights, outputs, errors.

The stage exports are random-init networks of the tiny preset's architectures, saved where the
training stages put them; training them would take minutes. The outputs are checked for
consistency with each other and with the input, not for tracking quality.
"""

from __future__ import annotations

import json
import os

import imageio.v3 as iio
import jax
import numpy as np
import pytest
from PIL import Image

from configs import synthetic as synthetic_config
from hybrid_jax import errors
from hybrid_jax import trained_models
from hybrid_jax import user_video as track_video
from hybrid_jax.data import categories as categories_lib
from hybrid_jax.data import official_format
from hybrid_jax.data import panoptic_png
from hybrid_jax.data.synthetic import scene as synthetic
from hybrid_jax.models import embedding_head as head_lib
from hybrid_jax.models import fusion as fusion_lib
from hybrid_jax.models.raft import model as raft_lib
from hybrid_jax.models.panoptic_fcn import build as pfcn_build
from hybrid_jax.training.stages import train_segmenter as seg_stage
from hybrid_jax.training.stages import train_tracker as track_stage
from hybrid_jax.training import pretrained

T, H, W = 6, 32, 64


def _config(**track):
  config = synthetic_config.get_config('tiny')
  config.mode = 'track'
  for k, v in track.items():
    config.track[k] = v
  return config


def _random_variables(shapes, seed=0):
  """He-normal kernels, unit scales/variances, zero biases/means for a shape tree.

  Compiling the segmenter's initialiser costs ~15 s on the shared CPU; tracing it with
  `jax.eval_shape` and filling the leaves with numpy costs ~1 s.
  """
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = str(getattr(path[-1], 'key', path[-1]))
    if name == 'kernel':
      fan_in = int(np.prod(leaf.shape[:-1]))
      return (rng.standard_normal(leaf.shape) * np.sqrt(2.0 / fan_in)).astype(leaf.dtype)
    if name in ('scale', 'var'):
      return np.ones(leaf.shape, leaf.dtype)
    return np.zeros(leaf.shape, leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, dict(shapes))


@pytest.fixture(scope='module')
def clip():
  return synthetic.generate_clip(3, height=H, width=W, clip_length=T, label_every=5)


@pytest.fixture(scope='module')
def weights_dir(tmp_path_factory):
  """A workdir holding seg/flow/track exports as the stages write them (random init)."""
  config = _config()
  wd = str(tmp_path_factory.mktemp('wd'))
  model, _ = pfcn_build.segmenter_from_config(config)
  seg_vars = _random_variables(jax.eval_shape(
      model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, H, W, 3), np.float32)))
  pretrained.save_pretrained(trained_models.final_path(wd, 'seg'), jax.device_get(seg_vars),
                             {'architecture': seg_stage.ARCHITECTURE,
                              'backbone': config.seg.backbone,
                              'categories': config.data.categories,
                              'mask_resolution': config.seg.mask_resolution})
  flow_vars = raft_lib.init_raft(0, variant='small', height=H, width=W)
  pretrained.save_pretrained(trained_models.final_path(wd, 'flow'), jax.device_get(flow_vars),
                             {'architecture': raft_lib.ARCHITECTURES['small']})
  head = track_stage.build_head(config)
  head_params = head_lib.init_head(head, jax.random.key(1), image_hw=(H, W), max_instances=2)
  pretrained.save_pretrained(trained_models.final_path(wd, 'track'),
                             {'params': jax.device_get(head_params)},
                             {'architecture': track_stage.ARCHITECTURE,
                              'canvas': list(config.track.canvas)})
  pretrained.save_pretrained(os.path.join(wd, 'track', track_stage.FUSION_DIR),
                             {'params': jax.device_get(fusion_lib.init_fusion_params())},
                             {'architecture': 'fusion_conv'})
  return wd


@pytest.fixture(scope='module')
def mp4_path(clip, tmp_path_factory):
  path = str(tmp_path_factory.mktemp('in') / 'my clip.mp4')
  iio.imwrite(path, clip['frames'], extension='.mp4', fps=5, codec='libx264',
              macro_block_size=1)
  return path


@pytest.fixture(scope='module')
def tracked(weights_dir, mp4_path):
  return track_video.track_video(_config(), weights_dir, mp4_path)


def _write_folder(folder, frames, names):
  os.makedirs(folder, exist_ok=True)
  for frame, name in zip(frames, names):
    Image.fromarray(frame).save(os.path.join(folder, name))


# ---- reading ---------------------------------------------------------------------------------

def test_read_mp4(mp4_path, clip):
  frames = track_video.read_frames(mp4_path)
  assert frames.shape == (T, H, W, 3) and frames.dtype == np.uint8
  # H.264 is lossy: close to the source, not equal.
  assert np.abs(frames.astype(float) - clip['frames']).mean() < 12


def test_read_folder_sorted_by_name(tmp_path, clip):
  # Names written out of order; 'b' < 'c' sorts frame 1 before frame 2 whatever the write order.
  names = ['f_a.png', 'f_b.jpg', 'f_c.png', 'f_d.png', 'f_e.png', 'f_f.png']
  order = [3, 0, 5, 1, 4, 2]
  folder = str(tmp_path / 'frames')
  _write_folder(folder, clip['frames'][order], [names[i] for i in order])
  with open(os.path.join(folder, 'notes.txt'), 'w') as f:
    f.write('ignored')
  frames = track_video.read_frames(folder)
  assert frames.shape == (T, H, W, 3)
  png = [0, 2, 3, 4, 5]
  np.testing.assert_array_equal(frames[png], clip['frames'][png])
  # The jpeg is lossy: frame 1 is the source frame it is closest to.
  err = np.abs(frames[1].astype(float) - clip['frames']).mean(axis=(1, 2, 3))
  assert int(np.argmin(err)) == 1


def test_bad_inputs(tmp_path, clip):
  with pytest.raises(errors.DatasetError, match='does not exist'):
    track_video.read_frames(str(tmp_path / 'nope.mp4'))
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(errors.DatasetError, match='holds no png/jpg/jpeg'):
    track_video.read_frames(str(empty))
  bad = tmp_path / 'broken.mp4'
  bad.write_bytes(b'not a video at all')
  with pytest.raises(errors.FormatError, match=r'broken\.mp4.*Invalid data'):
    track_video.read_frames(str(bad))
  folder = str(tmp_path / 'mixed')
  _write_folder(folder, [clip['frames'][0], clip['frames'][1], clip['frames'][2][:, :60]],
                ['0.png', '1.png', '2.png'])
  with pytest.raises(errors.FormatError, match=r'2\.png is 60x32 \(WxH\) but the first frame .*0\.png is 64x32'):
    track_video.read_frames(folder)


def test_missing_weights_names_commands(tmp_path, mp4_path):
  with pytest.raises(errors.CheckpointError) as info:
    track_video.track_video(_config(), str(tmp_path), mp4_path)
  msg = str(info.value)
  for piece in ('Segmenter', 'RAFT', 'Embedding head',
                'python -m hybrid_jax.cli.convert panoptic_fcn',
                'python -m hybrid_jax.cli.convert raft', '--config.seg.checkpoint=',
                '--config.flow.checkpoint=', '--config.mode=all', '--config.mode=train_track'):
    assert piece in msg, piece
  # The pixel tracker needs no head: only the segmenter and RAFT are reported.
  with pytest.raises(errors.CheckpointError) as info:
    track_video.load_models(_config(variant='pixel'), str(tmp_path))
  assert 'Embedding head' not in str(info.value) and 'RAFT' in str(info.value)


# ---- outputs --------------------------------------------------------------------------------

def test_outputs_consistent(tracked, weights_dir, mp4_path):
  out_dir = os.path.join(weights_dir, 'track_video', 'my clip')
  assert tracked['dir'] == out_dir and tracked['frames'] == T
  gif = iio.imread(tracked['gif'], index=None)
  assert gif.shape[0] == T and gif.shape[1:3] == (H, 2 * W + 2)
  mp4 = iio.imread(tracked['mp4'], index=None, extension='.mp4')
  assert mp4.shape[0] == T and mp4.shape[1:3] == (H, 2 * W + 2)
  # The left panel is the input frame (GIF palette and H.264 are lossy: close, not equal).
  src = track_video.read_frames(mp4_path).astype(float)
  assert np.abs(gif[:, :, :W, :3] - src).mean() < 12
  assert np.abs(mp4[:, :, :W] - src).mean() < 12

  with open(tracked['pred_json']) as f:
    pred = json.load(f)
  ids = [a['image_id'] for a in pred['annotations']]
  assert ids == [f'0001_{t + 1:04d}_myclip_000000_{t:06d}' for t in range(T)]
  table = categories_lib.get_categories('synthetic')
  entries = official_format.read_predictions(out_dir, ids, categories=table)
  thing_areas = []  # per frame: sorted areas of the thing segments in pred.json
  for iid, png_ids, segs in entries:
    assert png_ids.shape == (H, W)
    np.testing.assert_array_equal(
        panoptic_png.read_id_png(os.path.join(out_dir, 'pan_pred', f'{iid}.png')), png_ids)
    thing_ids = categories_lib.thing_ids(table)
    thing_areas.append(sorted(s['area'] for s in segs if s['category_id'] in thing_ids))

  with open(tracked['tracks_json']) as f:
    tracks = json.load(f)
  assert tracks['num_frames'] == T and (tracks['height'], tracks['width']) == (H, W)
  things = {c.id: c.name for c in table if c.isthing}
  assert tracks['tracks'], 'the random-init segmenter finds instances; the checks below need some'
  # The same segments as pred.json: per frame, the tracks' areas are the thing segments' areas.
  for t in range(T):
    areas = sorted(b['area'] for tr in tracks['tracks'] for b in tr['boxes'] if b['frame'] == t)
    assert areas == thing_areas[t], t
  for tr in tracks['tracks']:
    assert tr['category_id'] in things and tr['category_name'] == things[tr['category_id']]
    assert tr['id'] == tr['category_id'] * 1000 + tr['track_id']
    assert 0 <= tr['first_frame'] <= tr['last_frame'] < T
    frames_seen = [b['frame'] for b in tr['boxes']]
    assert frames_seen[0] == tr['first_frame'] and frames_seen[-1] == tr['last_frame']
    assert len(frames_seen) == tr['num_frames'] == len(set(frames_seen))
    for b in tr['boxes']:
      x0, y0, x1, y1 = b['box']
      assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H
      assert 0 < b['area'] <= (x1 - x0) * (y1 - y0)


def test_track_summary_hand_built():
  table = categories_lib.get_categories('synthetic')
  thing = categories_lib.thing_ids(table)[0]
  stuff = [c.id for c in table if not c.isthing][0]
  pan = np.full((3, 4, 5), stuff * 1000, np.int32)
  pan[0, 1:3, 2:4] = thing * 1000 + 7      # frame 0: 2x2 at x 2..3, y 1..2
  pan[2, 0, 0] = thing * 1000 + 7          # gone in frame 1, back in frame 2
  pan[2, 3, 4] = -1
  tracks = track_video.track_summary(pan, table)
  assert len(tracks) == 1
  tr = tracks[0]
  assert (tr['id'], tr['track_id'], tr['category_id']) == (thing * 1000 + 7, 7, thing)
  assert (tr['first_frame'], tr['last_frame'], tr['num_frames']) == (0, 2, 2)
  assert tr['boxes'] == [{'frame': 0, 'box': [2, 1, 4, 3], 'area': 4},
                         {'frame': 2, 'box': [0, 0, 1, 1], 'area': 1}]


def test_pixel_variant_loads_without_head(weights_dir):
  models = track_video.load_models(_config(variant='pixel'), weights_dir)
  assert models.head is None and models.fusion_params is None
  assert models.flow is not None and models.seg_variables is not None
  models = track_video.load_models(_config(variant='instance'), weights_dir)
  assert models.flow is None and models.head is not None


def test_mode_track_dispatch(monkeypatch, tmp_path, clip):
  """mode=track runs user_video.track_video when config.input is set, train.track_val else."""
  from hybrid_jax import train
  calls = []
  monkeypatch.setattr(track_video, 'track_video',
                      lambda config, wd, path: calls.append(('video', wd, path)))
  monkeypatch.setattr(train, 'track_val', lambda config, wd: calls.append(('val', wd)))
  config = _config()
  train.run(config, str(tmp_path))
  config.input = str(tmp_path / 'frames')
  train.run(config, str(tmp_path))
  assert calls == [('val', str(tmp_path)), ('video', str(tmp_path), str(tmp_path / 'frames'))]
