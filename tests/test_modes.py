"""The CLI modes that exist so far, on the tiny preset: data, show, export."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from configs import synthetic
from hybrid_jax import errors
from hybrid_jax import train as train_lib
from hybrid_jax import workdirs
from hybrid_jax.data import categories
from hybrid_jax.data import datasets
from hybrid_jax.data import official_format

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  wd = str(tmp_path_factory.mktemp('modes'))
  c = synthetic.get_config('tiny')
  c.mode = 'data'
  train_lib.run(c, wd)
  return wd


def _config(mode, **data):
  c = synthetic.get_config('tiny')
  c.mode = mode
  for k, v in data.items():
    c.data[k] = v
  return c


def test_data_mode_prepares_both_splits(workdir):
  c = _config('data')
  train = datasets.get_source(c, 'train', workdirs.data_dir(c, workdir))
  val = datasets.get_source(c, 'val', workdirs.data_dir(c, workdir))
  assert (len(train), len(val)) == (c.data.num_train_clips, c.data.num_val_clips)
  clip = val[0]
  assert clip['frames'].shape == (c.data.clip_length, c.data.height, c.data.width, 3)
  assert clip['panoptic'].dtype == np.int32
  assert list(np.flatnonzero(clip['labelled'])) == [4, 9]


def test_show_writes_gif_and_strip(workdir):
  out = train_lib.run(_config('show'), workdir)
  with Image.open(out['gif']) as gif:
    assert gif.n_frames == synthetic.get_config('tiny').data.clip_length
  with Image.open(out['png']) as png:
    # The strip shows frame, ground-truth overlay and flow: wider than one frame.
    assert png.width >= 3 * synthetic.get_config('tiny').data.width


def test_show_index_out_of_range(workdir):
  c = _config('show')
  c.show.index = 99
  with pytest.raises(errors.ConfigError, match='out of range'):
    train_lib.run(c, workdir)


def test_export_round_trip_equals_builder(workdir):
  c = _config('export')
  root = train_lib.run(c, workdir)
  table = categories.get_categories('synthetic')
  with open(os.path.join(root, 'panoptic_gt_val_city_vps.json')) as f:
    gt = json.load(f)
  assert len(gt['annotations']) == 2 * c.data.num_val_clips  # 2 labelled frames per clip
  back = official_format.read_split(root, 'val', frames_per_video=c.data.clip_length)
  source = datasets.get_source(c, 'val', workdirs.data_dir(c, workdir))
  assert len(back) == len(source)
  for i, clip in enumerate(back):
    ref = source[i]
    np.testing.assert_array_equal(clip['frames'], ref['frames'])
    np.testing.assert_array_equal(clip['labelled'], ref['labelled'])
    lab = ref['labelled']
    np.testing.assert_array_equal(
        official_format.canonicalize_tracks(clip['panoptic'][lab], table),
        official_format.canonicalize_tracks(ref['panoptic'][lab], table))


def test_missing_data_dir_parent_is_reported(tmp_path):
  c = _config('show')
  blocker = tmp_path / 'file'
  blocker.write_text('x')
  c.data.dir = str(blocker / 'data')
  with pytest.raises(errors.HybridJaxError):
    train_lib.run(c, str(tmp_path / 'wd'))


def test_cli_data_mode_runs(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  r = subprocess.run([sys.executable, '-m', 'hybrid_jax.main', '--config',
                      'configs/synthetic.py:tiny', '--workdir', str(tmp_path),
                      '--config.mode=data', '--config.data.num_train_clips=1',
                      '--config.data.num_val_clips=1'],
                     cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  assert any(name.startswith('synthetic_vps')
             for name in os.listdir(os.path.join(str(tmp_path), 'data')))


def test_the_segmenter_learning_curve_is_logged(workdir, tmp_path):
  c = _config('train_seg')
  c.data.dir = workdirs.data_dir(c, workdir)  # the module's prepared data
  c.seg.eval_every_steps = 2
  wd = str(tmp_path / 'curve')
  train_lib.run(c, wd)
  with open(os.path.join(wd, 'seg', 'metrics.jsonl')) as f:
    records = [json.loads(line) for line in f]
  curve = [(r['step'], r['eval/pq']) for r in records if 'eval/pq' in r]
  assert [s for s, _ in curve] == [2, 3]  # every 2 steps and at the end (3 steps)
  assert all(0.0 <= pq <= 100.0 for _, pq in curve)
  assert all('eval/pq_things' in r for r in records if 'eval/pq' in r)
