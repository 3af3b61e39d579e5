"""The paper's Cityscapes-VPS config end to end on a generated fixture in the official layout.

`python -m hybrid_jax.main --config configs/cityscapes_vps.py:small --config.data.root=...`
must run every stage on data it reads from disk (not the synthetic TFDS set): the builder,
segmenter training on labelled frames only, RAFT from a converted checkpoint (the dataset has
no ground-truth flow), tracker training, multi-scale tracking of the val split, the official
evaluator and the report next to the paper's Table I rows.
"""

import importlib.util
import json
import os
import shutil

import numpy as np
import pytest

from hybrid_jax import train as train_lib
from hybrid_jax.data import categories
from hybrid_jax.data import official_format
from hybrid_jax.data.synthetic import scene as synthetic
from hybrid_jax.models.raft import model as raft
from hybrid_jax.training import pretrained

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H, W, T = 32, 64, 10
# synthetic category id -> Cityscapes-VPS id (sky, road, sidewalk, building, vegetation,
# pole, car, person).
TO_CITY = np.array([10, 0, 1, 2, 8, 5, 13, 11], np.int32)


def _load_config(path, preset):
  spec = importlib.util.spec_from_file_location('cfg_e2e', os.path.join(REPO, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(preset)


def _city_clip(seed):
  clip = synthetic.generate_clip(seed, height=H, width=W, clip_length=T, label_every=5,
                                 video_id=f'{seed + 1:04d}')
  pan = clip['panoptic']
  cat = np.where(pan >= 0, pan // 1000, 0)
  clip['panoptic'] = np.where(pan >= 0, TO_CITY[cat] * 1000 + pan % 1000, -1).astype(np.int32)
  for key in ('flow', 'flow_valid', 'frame_ids'):  # the real layout has neither
    clip.pop(key, None)
  return clip


@pytest.fixture(scope='module')
def city_root(tmp_path_factory):
  root = tmp_path_factory.mktemp('e2e') / 'cityscapes_vps'
  official_format.write_split([_city_clip(s) for s in (0, 1, 2)], str(root), 'train',
                              categories.CITYSCAPES_VPS)
  shutil.rmtree(root / 'train' / 'img_all')  # the release has only labelled train frames
  official_format.write_split([_city_clip(s) for s in (10, 11)], str(root), 'val',
                              categories.CITYSCAPES_VPS)
  ckpt = str(root.parent / 'raft_small_random')
  pretrained.save_pretrained(ckpt, raft.init_raft(0, variant='small'),
                             {'architecture': raft.ARCHITECTURES['small'], 'source': 'test'})
  return root, ckpt


@pytest.mark.slow
def test_cityscapes_config_runs_end_to_end(city_root, tmp_path):
  root, ckpt = city_root
  c = _load_config('configs/cityscapes_vps.py', 'small')
  tiny = _load_config('configs/synthetic.py', 'tiny')
  d = c.data
  d.root, d.height, d.width, d.clip_length = str(root), H, W, T
  d.crop_height, d.crop_width, d.max_instances = H, W, 8
  # The tiny synthetic preset's networks and step counts; everything else is the paper's.
  c.seg.backbone, c.seg.position_deform = 'resnet_tiny', 'none'
  c.seg.train.steps, c.seg.train.batch_size = 2, 2
  c.seg.test_scales = (0.5, 1.0)
  c.flow.variant, c.flow.iters, c.flow.checkpoint = 'small', 2, ckpt
  for key in ('canvas', 'hidden_dim', 'embed_dim', 'fusion_holdout_clips'):
    c.track[key] = tiny.track[key]
  c.track.train.steps, c.track.train.batch_size = 2, 2
  c.train.checkpoint_every_steps, c.train.log_every_steps = 2, 1
  workdir = str(tmp_path / 'run')

  train_lib.run(c, workdir)

  report = open(os.path.join(workdir, 'report.md')).read()
  assert report.startswith('# HybridTracker on cityscapes_vps (val split)')
  for name in ('Instance Tracker', 'Pixel Tracker', 'HybridTracker',
               'HybridTracker + w/ Temporal'):
    assert f'| {name} |' in report
  assert '58.5' in report  # the paper's HybridTracker + w/ Temporal VPQ, printed beside ours
  gt = json.load(open(os.path.join(workdir, 'export', 'panoptic_gt_val_city_vps.json')))
  assert len(gt['images']) == 2 * 2                      # 2 val videos x 2 labelled frames
  pred_dir = os.path.join(workdir, 'predictions', 'hybridtracker___w__temporal')
  pred = json.load(open(os.path.join(pred_dir, 'pred.json')))
  assert [a['image_id'] for a in pred['annotations']] == sorted(i['id'] for i in gt['images'])
  ev = json.load(open(os.path.join(pred_dir, 'eval.json')))
  assert set(ev['vpq']) == {'0', '5', '10', '15', 'final'}
  assert 0.0 <= ev['vpq']['final']['all']['pq'] <= 100.0
  seg_meta = json.load(open(os.path.join(workdir, 'seg', 'final', 'metadata.json')))
  assert seg_meta['categories'] == 'cityscapes_vps'
  assert not os.path.exists(os.path.join(workdir, 'flow', 'final'))  # RAFT was not trained
