r"""HybridTracker on VIPER-VPS with the paper's settings (§IV, §V-A of arXiv 2203.01217).

Launch (VIPER-VPS is shared on request by the VPS authors, see the message when data.root is
unset)::

  python -m hybrid_jax.main --config configs/viper.py \
      --config.data.root=/data/viper_vps --workdir /tmp/hybrid_viper

RAFT weights: convert the official sintel checkpoint once, then point flow.checkpoint at it::

  python -m hybrid_jax.cli.convert raft raft-sintel.pth /ckpt/raft_sintel --variant standard
  ... --config.flow.checkpoint=/ckpt/raft_sintel

Presets (``--config configs/viper.py:half``):
  ''       the paper: 1080x1920 frames, PanopticFCN R50, RAFT standard (20 iterations);
           val = the first 60 frames of 10 day videos, every frame labelled.
  'half'   540x960 frames (resized once at prepare time); a 16-24 GB GPU.
  'small'  270x480 frames and the resnet_small backbone: a smoke run on real data.
  Device presets: the paper's full-resolution settings sized for one device kind (per-device
  batch, frames per tracking call; config_lib.DEVICE_PRESETS, docs/configs.md "Device
  memory"): 'gpu80' (one 80 GB GPU), 'gpu16' (one 16 GB GPU), 'tpu_v3' and 'tpu_v2' (a Colab
  TPU, 8 cores of 16 / 8 GiB). Each warns before a stage whose compiled step does not fit.
  e.g.  python -m hybrid_jax.main --config configs/viper.py:small \
            --config.data.root=/data/viper_vps --workdir /tmp/hybrid_viper_small

To try everything without downloads use ``--config configs/synthetic.py``.

Everything except the dataset values below is `hybrid_jax.config_lib.paper_config` (shared
with configs/cityscapes_vps.py); the report shows the paper's Table II
(`hybrid_jax.paper_tables.PAPER_TABLE_II`) beside our rows.
"""

from hybrid_jax import config_lib

VIPER = dict(name='viper_vps', categories='viper', eval_dataset='viper',
             height=1080, width=1920, clip_length=60, label_every=1,
             num_train_clips=10, num_val_clips=10,  # informational for real data
             reference_table='PAPER_TABLE_II',
             # Every frame is labelled; VPSNet's VIPER train JSON pairs frames 5 apart.
             max_delta=5)


def get_config(arg: str = ''):
  """Returns the locked VIPER-VPS config for preset `arg` ('', 'half', 'small',
  'gpu80', 'gpu16', 'tpu_v3' or 'tpu_v2')."""
  return config_lib.paper_config(arg, VIPER)
