r"""HybridTracker on the built-in synthetic VPS dataset (the default; no downloads).

Launch (full pipeline: data -> segmenter -> flow -> tracker -> tracking -> report)::

  python -m hybrid_jax.main --config configs/synthetic.py --workdir /tmp/hybrid_demo

Presets (``--config configs/synthetic.py:tiny``):
  ''      the demo: 128x256 clips, trains every stage in minutes on 2 CPU cores (every key and
          its demo value: `hybrid_jax.config_lib.base_config`).
  'tiny'  a few steps of everything on 32x64 clips; what the tests run.

Any value can be overridden, e.g. ``--config.mode=show --config.data.num_val_clips=2``.
The config is locked: a mistyped key is an error, not a silent no-op.
"""

from hybrid_jax import config_lib


def get_config(arg: str = ''):
  """Returns the locked config for preset `arg` ('' or 'tiny')."""
  preset = arg or 'default'
  if preset not in ('default', 'tiny'):
    raise ValueError(f"Unknown preset {arg!r} for configs/synthetic.py; use '' or 'tiny'.")
  c = config_lib.base_config()
  c.preset = preset
  if preset == 'tiny':
    c.data.update(height=32, width=64, clip_length=10, num_train_clips=4, num_val_clips=2,
                  max_instances=16, crop_height=32, crop_width=64)
    c.train.checkpoint_every_steps = 5
    c.train.log_every_steps = 1
    c.seg.backbone = 'resnet_tiny'
    c.seg.train_crop = (0, 0)  # the whole 32x64 frame (data.crop_*)
    c.seg.train = config_lib.stage_train(3, 2, 1e-3)
    c.flow.iters = c.flow.train_iters = 4
    c.flow.train_crop = (0, 0)  # the whole 32x64 frame
    c.flow.train = config_lib.stage_train(3, 2, 4e-4, schedule='onecycle', weight_decay=1e-5,
                                          grad_clip=1.0)
    c.track.update(canvas=(8, 16), hidden_dim=32, embed_dim=16, fusion_holdout_clips=2)
    c.track.train = config_lib.stage_train(3, 2, 1e-3)
  c.lock()
  return c
