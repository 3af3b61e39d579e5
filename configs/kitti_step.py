r"""HybridTracker on KITTI-STEP, with the paper's method settings (the paper does not report
on KITTI-STEP; its tracker, segmenter and recipe are the ones of configs/cityscapes_vps.py).

Launch (KITTI's frames plus deeplab2's panoptic maps; the message when data.root is unset says
where they go and how to get them, `hybrid_jax/data/kitti_step.py` documents the layout)::

  python -m hybrid_jax.main --config configs/kitti_step.py \
      --config.data.root=/data/kitti_step --workdir /tmp/hybrid_kitti

The benchmark's metric is STQ over whole sequences (deeplab2; only person and car are tracked,
a person/car pixel without instance id is crowd, 255 is void), so `eval.metrics` is 'stq' and
the report shows STQ, AQ and SQ beside published val rows (`paper_tables.KITTI_STEP_VAL`, each
with its source). Val clips are whole sequences; train sequences are cut into 30-frame clips.

Presets (``--config configs/kitti_step.py:small``):
  ''       375x1242 frames (KITTI's native size), PanopticFCN R50, RAFT standard (20 iter.).
  'half'   187x621 frames (resized once at prepare time).
  'small'  93x310 frames and the resnet_small backbone: a CPU smoke run on real data.
  Device presets 'gpu80', 'gpu16', 'tpu_v3', 'tpu_v2' as in configs/cityscapes_vps.py.

Without downloads, the synthetic data can be written in this layout and run through it::

  python -m hybrid_jax.main --config configs/synthetic.py --config.mode=export \
      --config.export.layout=kitti_step --config.export.splits=train,val --workdir /tmp/syn
  python -m hybrid_jax.main --config configs/kitti_step.py:small \
      --config.data.root=/tmp/syn/export/kitti_step --workdir /tmp/hybrid_kitti_syn

Published rows in the report (`hybrid_jax.paper_tables.KITTI_STEP_VAL`), val STQ: Motion-DeepLab
ResNet-50 57.7 (deeplab2 g3doc/projects/motion_deeplab.md, model zoo); TubeFormer-DeepLab 70.0
(CVPR 2022, as listed at wizwand.com/paper/68fa6eb41e209131cea419e3).
"""

from hybrid_jax import config_lib

KITTI_STEP = dict(name='kitti_step', categories='kitti_step', eval_dataset='kitti_step',
                  metrics='stq', height=375, width=1242,
                  clip_length=30,  # train windows; a val clip is a whole sequence
                  label_every=1,   # every frame of train and val is labelled
                  num_train_clips=12, num_val_clips=9,  # sequences; informational
                  reference_table='KITTI_STEP_VAL',
                  # Frames are labelled at 10 Hz and the tracker tracks consecutive frames;
                  # pairs up to 3 frames apart, as the synthetic demo samples them.
                  max_delta=3)


def get_config(arg: str = ''):
  """Returns the locked KITTI-STEP config for preset `arg` ('', 'half', 'small', 'gpu80',
  'gpu16', 'tpu_v3' or 'tpu_v2')."""
  return config_lib.paper_config(arg, KITTI_STEP)
