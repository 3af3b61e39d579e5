r"""HybridTracker on VIPSeg, with the paper's method settings (the paper does not report on
VIPSeg; its tracker, segmenter and recipe are the ones of configs/cityscapes_vps.py).

Launch (VIPSeg's release: train.txt / val.txt, imgs/ or images/, panomasks/; the message when
data.root is unset says where it goes, `hybrid_jax/data/vipseg.py` documents the layout)::

  python -m hybrid_jax.main --config configs/vipseg.py \
      --config.data.root=/data/VIPSeg_720P --workdir /tmp/hybrid_vipseg

Evaluation: VPQ with VIPSeg's own windows (1, 2, 4, 6 and 8 frames, keys k = 0, 5, 15, 25, 35
as its evaluator names them; the mean over the five) and STQ, per video over every frame; 124
classes (58 things). The report shows published val rows (`paper_tables.VIPSEG_VAL`, each with
its source) beside ours. Frames are resized to 720x1280 at prepare time (VIPSeg's videos differ
in size and aspect; the VIPSeg_720P conversion keeps each aspect at height 720).

Presets (``--config configs/vipseg.py:small``):
  ''       720x1280 frames, PanopticFCN R50, RAFT standard (20 iterations).
  'half'   360x640 frames (resized once at prepare time).
  'small'  180x320 frames and the resnet_small backbone: a CPU smoke run on real data.
  Device presets 'gpu80', 'gpu16', 'tpu_v3', 'tpu_v2' as in configs/cityscapes_vps.py.

Without downloads, the synthetic data can be written in this layout and run through it::

  python -m hybrid_jax.main --config configs/synthetic.py --config.mode=export \
      --config.export.layout=vipseg --config.export.splits=train,val --workdir /tmp/syn
  python -m hybrid_jax.main --config configs/vipseg.py:small \
      --config.data.root=/tmp/syn/export/vipseg --workdir /tmp/hybrid_vipseg_syn

Published rows in the report (`hybrid_jax.paper_tables.VIPSEG_VAL`), val VPQ (all / Th / St):
DVIS online Swin-L 54.7 / 54.8 / 54.6 and offline 57.6 / 59.9 / 55.5 (github.com/zhang-tao-whu/
DVIS MODEL_ZOO.md); TubeFormer-DeepLab 31.2 and ViP-DeepLab 16.0 (as listed at wizwand.com).
"""

from hybrid_jax import config_lib

VIPSEG = dict(name='vipseg', categories='vipseg', eval_dataset='vipseg', metrics='vpq,stq',
              height=720, width=1280,
              clip_length=30,  # train windows (most videos are shorter); a val clip is a video
              label_every=1,   # every frame in panomasks/ is labelled
              num_train_clips=2806, num_val_clips=343,  # videos; informational
              reference_table='VIPSEG_VAL',
              max_delta=3)


def get_config(arg: str = ''):
  """Returns the locked VIPSeg config for preset `arg` ('', 'half', 'small', 'gpu80', 'gpu16',
  'tpu_v3' or 'tpu_v2')."""
  return config_lib.paper_config(arg, VIPSEG)
