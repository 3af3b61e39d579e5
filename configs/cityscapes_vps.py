r"""HybridTracker on Cityscapes-VPS with the paper's settings (§IV of arXiv 2203.01217).

Launch (the data come from the VPS release, see the error message when data.root is unset)::

  python -m hybrid_jax.main --config configs/cityscapes_vps.py \
      --config.data.root=/data/cityscapes_vps --workdir /tmp/hybrid_city

RAFT weights: convert the official sintel checkpoint once, then point flow.checkpoint at it::

  python -m hybrid_jax.convert raft raft-sintel.pth /ckpt/raft_sintel --variant standard
  ... --config.flow.checkpoint=/ckpt/raft_sintel

Presets (``--config configs/cityscapes_vps.py:half``):
  ''       the paper: 1024x2048 frames, PanopticFCN R50, RAFT standard (20 iterations).
  'half'   512x1024 frames (the prepared dataset is resized once at prepare time);
           a 16-24 GB GPU.
  'small'  256x512 frames and the resnet_small backbone: a laptop / CPU smoke run of the
           whole pipeline on real data.
  e.g.  python -m hybrid_jax.main --config configs/cityscapes_vps.py:small \
            --config.data.root=/data/cityscapes_vps --workdir /tmp/hybrid_city_small

To try everything without downloads use ``--config configs/synthetic.py``.

The key structure is configs/synthetic.py's (loaded by path, changed, locked again), so the
keys never drift. Values the paper does not state are marked "not in the paper" below.
Module constants: TEST_SCALES (the paper's multi-scale inference, seg.test_scales of the
default preset) and the paper's reference rows PAPER_TABLE_I_VAL / PAPER_TABLE_I_TEST
(VPQ / VPQTh / VPQSt).
"""

import importlib.util
import os

# Multi-scale inference scales (§IV, following VPSNet-Track): seg.test_scales.
TEST_SCALES = (0.5, 0.625, 0.6875, 0.8125, 0.875, 1.0)

# Table I (Cityscapes-VPS val / test): per method, (VPQ, VPQ_Th, VPQ_St) for k = 0, 5, 10, 15,
# their mean ('vpq'), and FPS.
def _row(k0, k5, k10, k15, vpq, fps):
  return {'k0': k0, 'k5': k5, 'k10': k10, 'k15': k15, 'vpq': vpq, 'fps': fps}

PAPER_TABLE_I_VAL = {
    'VPSNet-FuseTrack': _row((64.5, 58.1, 69.1), (57.4, 45.2, 66.4), (54.1, 39.5, 64.7),
                             (52.2, 36.0, 64.0), (57.2, 44.7, 66.6), 1.3),
    'Instance Tracker': _row((65.6, 60.0, 69.7), (55.1, 39.3, 66.6), (51.4, 32.5, 65.1),
                             (49.3, 28.6, 64.3), (55.3, 40.1, 66.4), 5.1),
    'Pixel Tracker': _row((65.6, 60.0, 69.7), (58.8, 48.0, 66.6), (55.4, 42.1, 65.1),
                          (53.2, 38.0, 64.3), (58.2, 47.0, 66.4), 3.8),
    'HybridTracker': _row((65.6, 60.0, 69.7), (58.9, 48.3, 66.6), (55.6, 42.5, 65.1),
                          (53.4, 38.5, 64.3), (58.4, 47.3, 66.4), 3.6),
    'HybridTracker + w/ Temporal': _row((65.6, 60.0, 69.7), (59.0, 48.5, 66.6),
                                        (55.7, 42.8, 65.1), (53.6, 38.9, 64.3),
                                        (58.5, 47.5, 66.4), 3.3),
}
PAPER_TABLE_I_TEST = {
    'VPSNet-FuseTrack': _row((64.2, 59.0, 67.7), (57.9, 46.5, 65.1), (54.8, 41.1, 63.4),
                             (52.6, 36.5, 62.9), (57.4, 45.8, 64.8), 1.3),
    'Instance Tracker': _row((61.7, 56.2, 65.2), (55.0, 43.0, 62.6), (52.2, 38.1, 61.2),
                             (50.3, 34.4, 60.5), (54.8, 42.9, 62.4), 5.1),
    'Pixel Tracker': _row((64.2, 58.9, 67.7), (58.4, 48.0, 65.1), (55.6, 43.3, 63.4),
                          (53.8, 39.7, 62.9), (58.0, 47.5, 64.8), 3.8),
    'HybridTracker': _row((64.3, 58.9, 67.7), (58.6, 48.5, 65.1), (55.8, 43.9, 63.4),
                          (54.1, 40.2, 62.9), (58.2, 47.9, 64.8), 3.6),
    'HybridTracker + w/ Temporal': _row((64.3, 59.0, 67.7), (59.0, 49.2, 65.1),
                                        (56.3, 45.0, 63.4), (54.5, 41.4, 62.9),
                                        (58.5, 48.7, 64.8), 3.3),
}

# Per dataset: native (H, W) and the settings that differ between Cityscapes-VPS and VIPER.
CITYSCAPES = dict(name='cityscapes_vps', categories='cityscapes_vps', eval_dataset='cityscapes_vps',
                  height=1024, width=2048, clip_length=30, label_every=5, num_train_clips=400,
                  num_val_clips=50, reference_table='PAPER_TABLE_I_VAL',
                  # Train clips hold only the labelled frames (cityscapes_vps.py), so delta=1
                  # is the neighbouring labelled frame, 5 raw frames away, as VPSNet samples.
                  max_delta=1)
# The smaller presets test at one scale: the six passes cost ~3.5x one pass (sum of scale^2).
PRESETS = {'default': dict(scale=1, backbone='resnet50', corr='on_demand',
                           test_scales=TEST_SCALES),
           'half': dict(scale=2, backbone='resnet50', corr='all_pairs', test_scales=(1.0,)),
           'small': dict(scale=4, backbone='resnet_small', corr='all_pairs',
                         test_scales=(1.0,))}


def _load_synthetic():
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'synthetic.py')
  spec = importlib.util.spec_from_file_location('_hybrid_synthetic_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def build_config(arg: str, dataset: dict):
  """synthetic.py's config with the paper's values for `dataset` and preset `arg`."""
  preset = arg or 'default'
  if preset not in PRESETS:
    raise ValueError(f"Unknown preset {arg!r}; use '', 'half' or 'small'.")
  p = PRESETS[preset]
  c = _load_synthetic().get_config('')
  c.unlock()
  c.preset = preset

  d = c.data
  d.name, d.categories, d.root = dataset['name'], dataset['categories'], ''
  d.height, d.width = dataset['height'] // p['scale'], dataset['width'] // p['scale']
  d.clip_length, d.label_every = dataset['clip_length'], dataset['label_every']
  d.num_train_clips, d.num_val_clips = dataset['num_train_clips'], dataset['num_val_clips']
  d.max_instances = 150            # PanopticFCN's TENSOR_DIM for Cityscapes
  # PanopticFCN's Cityscapes recipe crops 512x1024 of 1024x2048: half the frame (per preset).
  d.crop_height, d.crop_width = d.height // 2, d.width // 2
  d.max_delta = dataset['max_delta']
  d.worker_count = 4               # decoding full-size PNG/JPEG clips; not in the paper

  c.train.checkpoint_every_steps = 5000
  c.train.log_every_steps = 50

  # PanopticFCN R50: SGD lr 0.0025, momentum 0.9, weight decay 1e-4, 4 images per batch (§IV).
  # Steps (not in the paper): the 65k x 32-image Cityscapes recipe at the paper's linearly
  # scaled lr (0.02 / 8) and batch (32 / 8), i.e. the same number of epochs. 1000 warmup
  # steps and clipping at 35 are PanopticFCN's (it clamps element-wise: grad_clip_mode
  # 'value'); PanopticFCN decays with the 'poly' schedule.
  c.seg.backbone = p['backbone']
  c.seg.position_deform = 'v2'     # PanopticFCN's default deformable position head
  st = c.seg.train
  st.steps, st.batch_size, st.optimizer, st.lr = 520_000, 4, 'sgd', 0.0025
  st.momentum, st.weight_decay, st.schedule, st.warmup_steps = 0.9, 1e-4, 'poly', 1000
  st.grad_clip, st.grad_clip_mode = 35.0, 'value'
  # The paper tests at TEST_SCALES (thing proposals of all scales compete in one merge, stuff
  # probabilities are averaged; models/panoptic_fcn_inference.postprocess_multiscale).
  c.seg.test_scales = p['test_scales']

  # RAFT standard with the sintel weights, 20 iterations (Tables III, IV); not trained here
  # (the pixel tracker uses the pretrained flow; flow.train stays synthetic's).
  c.flow.source, c.flow.variant, c.flow.iters = 'raft', 'standard', 20
  # The all-pairs volume of one 1024x2048 pair is (128*256)^2 floats = 4.3 GB.
  c.flow.corr = p['corr']
  c.flow.checkpoint = ''

  # Instance tracker fine-tuning with the DML: lr 1e-4, 16 images per batch (§IV). Optimizer,
  # steps and schedule are not in the paper (SGD as the segmenter's).
  c.track.variant, c.track.temporal, c.track.mutual_check = 'hybrid', True, True
  c.track.threshold, c.track.temporal_threshold = 1e-5, 0.01
  tt = c.track.train
  tt.steps, tt.batch_size, tt.optimizer, tt.lr = 20_000, 16, 'sgd', 1e-4
  tt.momentum, tt.weight_decay, tt.schedule, tt.warmup_steps = 0.9, 1e-4, 'step', 0
  tt.grad_clip = 0.0

  c.eval.dataset = dataset['eval_dataset']
  c.eval.reference_table = dataset['reference_table']
  c.eval.metrics = 'vpq,stq'
  c.lock()
  return c


def get_config(arg: str = ''):
  """Returns the locked Cityscapes-VPS config for preset `arg` ('', 'half' or 'small')."""
  return build_config(arg, CITYSCAPES)
