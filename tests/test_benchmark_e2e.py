"""configs/kitti_step.py:small and configs/vipseg.py:small end to end, on the tiny synthetic data
written in the benchmarks' own layouts by `mode=export` (no download involved).

Each run reads the layout through its builder, trains the segmenter, tracks with converted
RAFT weights (the real datasets have no ground-truth flow), trains the tracker, evaluates with
the benchmark's metric and writes the report beside the published rows.
"""

import importlib
import json
import os

import pytest

from hybrid_jax import errors
from hybrid_jax import train as train_lib
from hybrid_jax.models.raft import model as raft
from hybrid_jax.training import pretrained



def _load_config(name, preset):
  return importlib.import_module(f'configs.{name}').get_config(preset)


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  """The tiny synthetic preset's train and val splits in both layouts, and RAFT weights."""
  base = tmp_path_factory.mktemp('bench')
  c = _load_config('synthetic', 'tiny')
  c.mode, c.export.splits = 'export', 'train,val'
  roots = {}
  for layout in ('kitti_step', 'vipseg'):
    c.export.layout = layout
    roots[layout] = train_lib.run(c, str(base / 'synthetic'))
  ckpt = str(base / 'raft_small_random')
  pretrained.save_pretrained(ckpt, raft.init_raft(0, variant='small'),
                             {'architecture': raft.ARCHITECTURES['small'], 'source': 'test'})
  return roots, ckpt


def _tiny(c, root, ckpt):
  """The benchmark config with the tiny synthetic preset's sizes, networks and step counts."""
  tiny = _load_config('synthetic', 'tiny')
  d = c.data
  d.root, d.height, d.width, d.clip_length = root, tiny.data.height, tiny.data.width, 5
  d.crop_height, d.crop_width = tiny.data.height, tiny.data.width
  d.max_instances = tiny.data.max_instances
  d.worker_count = 0
  c.seg.backbone, c.seg.position_deform = 'resnet_tiny', 'none'
  c.seg.train.steps, c.seg.train.batch_size = 2, 2
  c.flow.variant, c.flow.iters, c.flow.checkpoint = 'small', 2, ckpt
  for key in ('canvas', 'hidden_dim', 'embed_dim', 'fusion_holdout_clips'):
    c.track[key] = tiny.track[key]
  c.track.train.steps, c.track.train.batch_size = 2, 2
  c.train.checkpoint_every_steps, c.train.log_every_steps = 2, 1
  return c


@pytest.mark.slow
def test_kitti_step_config_runs_end_to_end(exported, tmp_path):
  roots, ckpt = exported
  c = _tiny(_load_config('kitti_step', 'small'), roots['kitti_step'], ckpt)
  workdir = str(tmp_path / 'run')
  train_lib.run(c, workdir)
  report = open(os.path.join(workdir, 'report.md')).read()
  assert report.startswith('# HybridTracker on kitti_step (val split)')
  assert '| Method | STQ | AQ | SQ | FPS |' in report
  for name in ('Instance Tracker', 'Pixel Tracker', 'HybridTracker',
               'HybridTracker + w/ Temporal'):
    assert f'| {name} |' in report
  assert '| Motion-DeepLab (ResNet-50) | 57.7 |' in report  # the published row beside ours
  ev = json.load(open(os.path.join(workdir, 'predictions', 'hybridtracker___w__temporal',
                                   'eval.json')))
  assert 'vpq' not in ev and 0.0 <= ev['stq']['stq'] <= 1.0
  # STQ per sequence: the two val sequences, whole (every frame labelled and evaluated).
  assert sorted(s['length'] for s in ev['stq']['per_sequence'].values()) == [10, 10]


@pytest.mark.slow
def test_vipseg_config_runs_end_to_end(exported, tmp_path):
  roots, ckpt = exported
  c = _tiny(_load_config('vipseg', 'small'), roots['vipseg'], ckpt)
  workdir = str(tmp_path / 'run')
  train_lib.run(c, workdir)
  report = open(os.path.join(workdir, 'report.md')).read()
  assert report.startswith('# HybridTracker on vipseg (val split)')
  assert '| k = 0 | k = 5 | k = 15 | k = 25 | k = 35 | VPQ | STQ |' in report
  assert '| DVIS online (Swin-L, 720p) | 54.7 / 54.8 / 54.6 |' in report
  ev = json.load(open(os.path.join(workdir, 'predictions', 'hybridtracker', 'eval.json')))
  assert [k for k in ev['vpq'] if k != 'final'] == ['0', '5', '15', '25', '35']
  # Windows of every frame of the two 10-frame val videos: 10 - n + 1 per video.
  assert [ev['vpq'][k]['windows'] for k in ('0', '35')] == [20, 6]
  gt = json.load(open(os.path.join(workdir, 'export', 'panoptic_gt_val_city_vps.json')))
  assert len(gt['images']) == 2 * 10
  assert 0.0 <= ev['stq']['stq'] <= 1.0


@pytest.mark.parametrize('name', ['kitti_step', 'vipseg'])
def test_benchmark_configs_stop_with_the_layout_message_without_data(name, tmp_path):
  c = _load_config(name, 'small')
  with pytest.raises(errors.DatasetError) as exc:
    train_lib.run(c, str(tmp_path / 'run'))
  assert 'not found: config.data.root is empty' in str(exc.value)
  assert 'Expected layout' in str(exc.value) and 'How to obtain it' in str(exc.value)
