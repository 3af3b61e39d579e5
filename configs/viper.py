r"""HybridTracker on VIPER-VPS with the paper's settings (§IV, §V-A of arXiv 2203.01217).

Launch (VIPER-VPS is shared on request by the VPS authors, see the message when data.root is
unset)::

  python -m hybrid_jax.main --config configs/viper.py \
      --config.data.root=/data/viper_vps --workdir /tmp/hybrid_viper

RAFT weights: convert the official sintel checkpoint once, then point flow.checkpoint at it::

  python -m hybrid_jax.convert raft raft-sintel.pth /ckpt/raft_sintel --variant standard
  ... --config.flow.checkpoint=/ckpt/raft_sintel

Presets (``--config configs/viper.py:half``):
  ''       the paper: 1080x1920 frames, PanopticFCN R50, RAFT standard (20 iterations);
           val = the first 60 frames of 10 day videos, every frame labelled.
  'half'   540x960 frames (resized once at prepare time); a 16-24 GB GPU.
  'small'  270x480 frames and the resnet_small backbone: a smoke run on real data.
  e.g.  python -m hybrid_jax.main --config configs/viper.py:small \
            --config.data.root=/data/viper_vps --workdir /tmp/hybrid_viper_small

To try everything without downloads use ``--config configs/synthetic.py``.

Everything except the dataset values is configs/cityscapes_vps.py's `build_config` (which
starts from configs/synthetic.py, so the keys never drift). PAPER_TABLE_II holds the paper's
VIPER rows (VPQ / VPQTh / VPQSt per k, mean, FPS); TEST_SCALES the multi-scale inference.
"""

import importlib.util
import os


def _load_city():
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'cityscapes_vps.py')
  spec = importlib.util.spec_from_file_location('_hybrid_cityscapes_vps_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


_CITY = _load_city()
TEST_SCALES = _CITY.TEST_SCALES
_row = _CITY._row  # pylint: disable=protected-access

# Table II (VIPER): per method, (VPQ, VPQ_Th, VPQ_St) for k = 0, 5, 10, 15, mean, FPS.
PAPER_TABLE_II = {
    'VPSNet-FuseTrack': _row((49.8, 40.3, 57.7), (51.6, 49.0, 53.8), (47.2, 40.4, 52.8),
                             (45.1, 36.5, 52.3), (48.4, 41.6, 53.2), 1.6),
    'Instance Tracker': _row((55.1, 51.2, 58.0), (45.7, 30.4, 57.5), (43.8, 26.2, 57.3),
                             (41.5, 21.5, 57.0), (46.5, 32.3, 57.5), 5.7),
    'Pixel Tracker': _row((55.1, 51.2, 58.0), (52.2, 45.4, 57.5), (50.9, 42.4, 57.3),
                          (49.5, 39.9, 57.0), (51.9, 44.7, 57.5), 3.8),
    'HybridTracker': _row((55.0, 51.2, 58.0), (52.4, 45.7, 57.5), (51.0, 42.8, 57.3),
                          (49.8, 40.4, 57.0), (52.1, 45.1, 57.5), 3.6),
    'HybridTracker + w/ Temporal': _row((55.0, 51.2, 58.0), (52.6, 46.2, 57.5),
                                        (51.5, 43.9, 57.3), (50.4, 42.0, 57.0),
                                        (52.4, 45.8, 57.5), 3.5),
}

VIPER = dict(name='viper_vps', categories='viper', eval_dataset='viper',
             height=1080, width=1920, clip_length=60, label_every=1,
             num_train_clips=10, num_val_clips=10,  # informational for real data
             reference_table='PAPER_TABLE_II',
             # Every frame is labelled; VPSNet's VIPER train JSON pairs frames 5 apart.
             max_delta=5)


def get_config(arg: str = ''):
  """Returns the locked VIPER-VPS config for preset `arg` ('', 'half' or 'small')."""
  return _CITY.build_config(arg, VIPER)
