r"""HybridTracker on Cityscapes-VPS with the paper's settings (§IV of arXiv 2203.01217).

Launch (the data come from the VPS release, see the error message when data.root is unset)::

  python -m hybrid_jax.main --config configs/cityscapes_vps.py \
      --config.data.root=/data/cityscapes_vps --workdir /tmp/hybrid_city

RAFT weights: convert the official sintel checkpoint once, then point flow.checkpoint at it::

  python -m hybrid_jax.cli.convert raft raft-sintel.pth /ckpt/raft_sintel --variant standard
  ... --config.flow.checkpoint=/ckpt/raft_sintel

Presets (``--config configs/cityscapes_vps.py:half``):
  ''       the paper: 1024x2048 frames, PanopticFCN R50, RAFT standard (20 iterations).
  'half'   512x1024 frames (the prepared dataset is resized once at prepare time);
           a 16-24 GB GPU.
  'small'  256x512 frames and the resnet_small backbone: a laptop / CPU smoke run of the
           whole pipeline on real data.
  Device presets: the paper's full-resolution settings sized for one device kind (per-device
  batch, frames per tracking call; config_lib.DEVICE_PRESETS, docs/configs.md "Device
  memory"): 'gpu80' (one 80 GB GPU), 'gpu16' (one 16 GB GPU), 'tpu_v3' and 'tpu_v2' (a Colab
  TPU, 8 cores of 16 / 8 GiB). Each warns before a stage whose compiled step does not fit.
  e.g.  python -m hybrid_jax.main --config configs/cityscapes_vps.py:small \
            --config.data.root=/data/cityscapes_vps --workdir /tmp/hybrid_city_small

To try everything without downloads use ``--config configs/synthetic.py``.

Everything except the dataset values below is `hybrid_jax.config_lib.paper_config` (the
paper's settings; values the paper does not state are marked "not in the paper" there). The
report shows the paper's Table I (`hybrid_jax.paper_tables.PAPER_TABLE_I_VAL`) beside ours.
"""

from hybrid_jax import config_lib

# Per dataset: native (H, W) and the settings that differ between Cityscapes-VPS and VIPER.
CITYSCAPES = dict(name='cityscapes_vps', categories='cityscapes_vps', eval_dataset='cityscapes_vps',
                  height=1024, width=2048, clip_length=30, label_every=5, num_train_clips=400,
                  num_val_clips=50, reference_table='PAPER_TABLE_I_VAL',
                  # Train clips hold only the labelled frames (cityscapes_vps.py), so delta=1
                  # is the neighbouring labelled frame, 5 raw frames away, as VPSNet samples.
                  max_delta=1)

def get_config(arg: str = ''):
  """Returns the locked Cityscapes-VPS config for preset `arg` ('', 'half', 'small',
  'gpu80', 'gpu16', 'tpu_v3' or 'tpu_v2')."""
  return config_lib.paper_config(arg, CITYSCAPES)
