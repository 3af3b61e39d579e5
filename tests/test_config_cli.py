"""Configs are locked and checked; the CLI reports user mistakes in one line."""

import os
import subprocess
import sys

import numpy as np
import pytest

from configs import synthetic
from hybrid_jax import config_checks
from hybrid_jax import config_lib
from hybrid_jax import errors
from hybrid_jax import train as train_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args, cwd=ROOT):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  return subprocess.run([sys.executable, '-m', 'hybrid_jax.main', *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=300)


def test_presets_differ_and_are_valid():
  default, tiny = synthetic.get_config(), synthetic.get_config('tiny')
  assert (default.data.height, default.data.width) == (128, 256)
  assert default.data.clip_length == 30 and default.data.label_every == 5
  assert tiny.data.height < default.data.height
  assert tiny.seg.train.steps < default.seg.train.steps
  config_checks.check_config(default)
  config_checks.check_config(tiny)


def test_config_is_locked():
  c = synthetic.get_config('tiny')
  with pytest.raises(AttributeError):
    c.data.heigth = 3  # a typo must not create a new key
  with pytest.raises(ValueError):
    synthetic.get_config('huge')


@pytest.mark.parametrize('key,value,needle', [
    ('data.height', -4, 'data.height'),
    ('data.max_delta', 50, 'clip_length'),
    ('mode', 'trian', 'mode'),
    ('flow.corr', 'dense', 'flow.corr'),
    ('train.profile_steps', '5', 'profile_steps'),
    ('flow.train_iters', 0, 'flow.train_iters'),
    ('flow.train_crop', (0, 64), 'flow.train_crop'),
    ('flow.train_crop', (64, 4096), 'fit in the frame'),
    ('seg.train_crop', (32,), 'seg.train_crop'),
    ('seg.train_crop', (64, 4096), 'fit in the frame'),
    ('seg.mask_resolution', 'half', 'seg.mask_resolution'),
    ('seg.mask_pairs', 0, 'seg.mask_pairs'),
    ('track.fusion_objective', 'newton', 'track.fusion_objective'),
    ('track.fusion_targets', 'overlap', 'track.fusion_targets'),
])
def test_out_of_range_values_raise_config_error(key, value, needle):
  c = synthetic.get_config('tiny')
  section, _, leaf = key.rpartition('.')
  target = c[section] if section else c
  target[leaf] = value
  with pytest.raises(errors.ConfigError, match=needle.replace('.', r'\.')):
    config_checks.check_config(c)


def test_unwritable_workdir_is_reported_before_compute(tmp_path):
  blocker = tmp_path / 'file'
  blocker.write_text('x')
  c = synthetic.get_config('tiny')
  with pytest.raises(errors.WorkdirError, match='Cannot write to the workdir'):
    train_lib.run(c, str(blocker / 'sub'))


def test_cli_unknown_key_is_one_clear_line(tmp_path):
  r = _cli('--config', 'configs/synthetic.py:tiny', '--workdir', str(tmp_path),
           '--config.dat.height=3')
  assert r.returncode != 0
  assert 'Traceback' not in r.stderr
  assert 'unknown config key' in r.stderr and 'data' in r.stderr


def test_cli_bad_value_is_reported(tmp_path):
  r = _cli('--config', 'configs/synthetic.py:tiny', '--workdir', str(tmp_path),
           '--config.data.height=-5', '--config.mode=data')
  assert r.returncode == 2
  assert 'Traceback' not in r.stderr
  assert 'config.data.height=-5' in r.stderr


def test_multi_scale_settings_are_checked():
  c = synthetic.get_config('tiny')
  c.seg.test_scales = (0.5, 1.0)
  config_checks.check_config(c)  # multi-scale inference is built: accepted
  for bad in ((), (0.0, 1.0), (1.0, 1.0), (-0.5,), (8.0,)):
    c.seg.test_scales = bad
    with pytest.raises(errors.ConfigError, match='test_scales'):
      config_checks.check_config(c)


def test_flow_training_iterations_and_crop_default_to_inference_and_data():
  from hybrid_jax.training.stages import train_flow as flow_stage
  c = synthetic.get_config('')
  assert flow_stage.train_iters(c) == c.flow.iters
  assert flow_stage.train_crop(c) == (c.data.height, c.data.width)  # the demo: whole frames
  c.flow.train_crop = (0, 0)
  assert flow_stage.train_crop(c) == (c.data.crop_height, c.data.crop_width)
  c.flow.train_iters, c.flow.train_crop = 5, (32, 48)
  assert flow_stage.train_iters(c) == 5 and flow_stage.train_crop(c) == (32, 48)
  assert flow_stage._model(c, train=True).unroll == 5


def test_segmenter_trains_on_its_own_crop():
  """seg.train_crop reaches the segmenter's batches; (0, 0) falls back to data.crop_*."""
  from hybrid_jax.training.stages import train_segmenter as seg_stage
  c = synthetic.get_config('')
  assert config_lib.stage_train_crop(c, 'seg') == (c.data.height, c.data.width)  # the demo
  c = synthetic.get_config('tiny')
  assert config_lib.stage_train_crop(c, 'seg') == (c.data.crop_height, c.data.crop_width)
  c.data.update(height=64, width=128, crop_height=32, crop_width=64)
  c.seg.train_crop = (48, 96)

  class Source:  # two 3-frame clips of 64x128, labelled everywhere
    def __len__(self):
      return 2

    def __getitem__(self, i):
      return {'frames': np.zeros((3, 64, 128, 3), np.uint8),
              'panoptic': np.zeros((3, 64, 128), np.int32),
              'labelled': np.ones((3,), bool), 'video_id': f'v{i}'}
  batch = next(iter(seg_stage.data_iterator(c, Source())))
  assert batch['frames'].shape[2:4] == (48, 96)


def test_backward_flow_settings_are_checked():
  c = synthetic.get_config('tiny')
  c.flow.source = 'raft'
  c.track.temporal_backward_flow = True
  config_checks.check_config(c)  # RAFT, the backward check on, direct similarity: accepted
  c.track.temporal_similarity = 'chained'
  with pytest.raises(errors.ConfigError, match="'chained'"):
    config_checks.check_config(c)
  c.track.temporal_similarity = 'direct'
  c.track.temporal_backward = False
  with pytest.raises(errors.ConfigError, match='temporal_backward=True'):
    config_checks.check_config(c)
  c.track.temporal_backward = True
  c.flow.source = 'gt'
  with pytest.raises(errors.ConfigError, match='forward flow only'):
    config_checks.check_config(c)


def test_tracking_records_from_before_the_newer_track_keys_still_match():
  from hybrid_jax import run_records
  c = synthetic.get_config('tiny')
  rec = run_records.relevant(c, 'tracking')
  older = {k: v for k, v in rec.items()
           if k not in ('track.temporal_similarity', 'track.temporal_backward_flow')}
  assert run_records.same(older, rec)  # written before the keys: 'direct', no backward flow
  c.track.temporal_backward_flow = True
  assert not run_records.same(older, run_records.relevant(c, 'tracking'))
  assert not run_records.same(None, rec)
