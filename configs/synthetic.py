r"""HybridTracker on the built-in synthetic VPS dataset (the default; no downloads).

Launch (full pipeline: data -> segmenter -> flow -> tracker -> tracking -> report)::

  python -m hybrid_jax.main --config configs/synthetic.py --workdir /tmp/hybrid_demo

Presets (``--config configs/synthetic.py:tiny``):
  ''      the demo: 128x256 clips, trains every stage in minutes on 2 CPU cores.
  'tiny'  a few steps of everything on 32x64 clips; what the tests run.

Any value can be overridden, e.g. ``--config.mode=show --config.data.num_val_clips=2``.
The config is locked: a mistyped key is an error, not a silent no-op.
"""

import ml_collections

def _stage_train(steps, batch_size, lr, *, optimizer='adamw', weight_decay=1e-4,
                 schedule='cosine', warmup_steps=0, grad_clip=1.0, grad_clip_mode='norm'):
  return ml_collections.ConfigDict(dict(
      steps=steps, batch_size=batch_size, optimizer=optimizer, lr=lr, momentum=0.9,
      weight_decay=weight_decay, schedule=schedule, warmup_steps=warmup_steps,
      grad_clip=grad_clip, grad_clip_mode=grad_clip_mode))


def get_config(arg: str = ''):
  """Returns the locked config for preset `arg` ('' or 'tiny')."""
  preset = arg or 'default'
  if preset not in ('default', 'tiny'):
    raise ValueError(f"Unknown preset {arg!r} for configs/synthetic.py; use '' or 'tiny'.")
  tiny = preset == 'tiny'

  c = ml_collections.ConfigDict()
  c.preset = preset
  c.mode = 'all'  # see hybrid_jax.config_checks.MODES
  # mode=track on your own video: an mp4/avi file or a folder of png/jpg frames ('' = track
  # the val split); outputs in <workdir>/track_video/<name>/ (hybrid_jax/track_video.py).
  c.input = ''
  c.seed = 0

  # ---- data ---------------------------------------------------------------------------
  c.data = ml_collections.ConfigDict()
  c.data.name = 'synthetic_vps'
  c.data.categories = 'synthetic'
  c.data.dir = ''             # where TFDS files go; '' -> <workdir>/data
  c.data.root = ''            # official on-disk layout (real datasets); unused for synthetic
  c.data.height = 32 if tiny else 128
  c.data.width = 64 if tiny else 256
  c.data.clip_length = 10 if tiny else 30
  c.data.label_every = 5      # every 5th frame labelled, as Cityscapes-VPS (frames 4, 9, ...)
  c.data.num_train_clips = 4 if tiny else 48
  c.data.num_val_clips = 2 if tiny else 8
  c.data.generator_seed = 0
  c.data.max_instances = 16 if tiny else 32   # padded instance count per frame
  # Training crops: a quarter of the demo frame keeps a CPU step short; the networks are
  # fully convolutional and run on whole frames at test time.
  c.data.crop_height = 32 if tiny else 64
  c.data.crop_width = 64 if tiny else 128
  c.data.hflip = True
  c.data.max_delta = 3        # frame pairs (t - delta, t), delta ~ U{1..max_delta}
  c.data.worker_count = 0     # grain workers (0: in-process)

  # ---- shared training infrastructure -------------------------------------------------
  c.train = ml_collections.ConfigDict()
  c.train.checkpoint_every_steps = 5 if tiny else 200
  c.train.keep_checkpoints = 2
  c.train.log_every_steps = 1 if tiny else 20
  c.train.max_bad_steps = 5   # consecutive non-finite steps before training stops
  c.train.profile_steps = ''  # 'a,b': write a jax.profiler trace for steps a..b

  c.distributed = ml_collections.ConfigDict()
  c.distributed.coordinator_address = ''  # '' -> single process (or from env)
  c.distributed.num_processes = 1
  c.distributed.process_id = 0

  # ---- segmenter (PanopticFCN) ---------------------------------------------------------
  c.seg = ml_collections.ConfigDict()
  c.seg.backbone = 'resnet_tiny' if tiny else 'resnet_small'  # resnet50 | resnet_small | resnet_tiny
  c.seg.checkpoint = ''       # converted weights (python -m hybrid_jax.convert ...)
  c.seg.test_scales = (1.0,)  # test-time input scales; the paper: (0.5, 0.625, 0.6875, 0.8125, 0.875, 1.0)
  # The position head's deformable conv (PanopticFCN's default 'v2') is gather-based and
  # ~3x slower to train on a CPU; the CPU presets use a plain conv ('none').
  c.seg.position_deform = 'none'
  c.seg.train = _stage_train(3 if tiny else 500, 2 if tiny else 8, 1e-3, warmup_steps=0 if tiny else 50)

  # ---- optical flow (RAFT) -------------------------------------------------------------
  c.flow = ml_collections.ConfigDict()
  c.flow.source = 'raft'      # raft | gt (synthetic ground truth) | flo (files)
  c.flow.variant = 'small'    # small | standard
  c.flow.iters = 4 if tiny else 12  # refinement iterations at inference
  # Training may unroll fewer iterations and use its own crop (0, 0 = data.crop_*): the
  # per-step cost is mostly the unrolled update block, and RAFT's 1/8 grid of a 64x128 crop
  # is only 8x16 cells.
  c.flow.train_iters = 4 if tiny else 12
  c.flow.train_crop = (0, 0)
  c.flow.corr = 'all_pairs'   # all_pairs | on_demand (memory-bounded)
  c.flow.checkpoint = ''
  # lr 1e-3 rather than RAFT's 4e-4 (val EPE 1.14 px instead of 1.22 after 200 steps; 3e-3
  # gave 1.23 after 400). 400 steps (~0.4 s each): 1.07 and 0.91 px for seeds 0 and 1, where
  # 200 steps gave 1.14-1.17 and 500 steps 1.28; at this budget the EPE is noisy
  # (benchmarks/RESULTS.md).
  c.flow.train = _stage_train(3 if tiny else 400, 2 if tiny else 4, 4e-4 if tiny else 1e-3,
                              schedule='onecycle', weight_decay=1e-5, grad_clip=1.0)

  # ---- tracker (embedding head, fusion, matching, temporal memory) ----------------------
  c.track = ml_collections.ConfigDict()
  # variant/temporal: the tracker of mode=track on a user's video (--config.input); the
  # val report (mode=all/eval) always runs the four variants of the paper's Table I.
  c.track.variant = 'hybrid'  # instance | pixel | hybrid
  c.track.temporal = True
  c.track.mutual_check = True
  c.track.threshold = 1e-5
  c.track.temporal_threshold = 0.01
  c.track.memory_frames = 5
  c.track.matcher = 'greedy'  # greedy (the paper: row arg-max + mutual check) | hungarian | sinkhorn
  # Embedding head: the RoI canvas is the paper's 256x512 at 1024x2048, i.e. 1/4 of the frame.
  c.track.canvas = (8, 16) if tiny else (32, 64)
  c.track.pool = 2
  c.track.hidden_dim = 32 if tiny else 256
  c.track.embed_dim = 16 if tiny else 128
  c.track.loss = 'dml'        # dml | contrastive | triplet (the paper's Fig. 5 comparison)
  c.track.no_match = 'dustbin'  # DML rows without a counterpart: learned 'dustbin' column | 'mask'
  c.track.fusion_pairs = 8 if tiny else 96  # GT frame pairs the fusion conv is fitted on
  c.track.fusion_steps = 20 if tiny else 300
  c.track.train = _stage_train(3 if tiny else 300, 2 if tiny else 8, 1e-3)

  # ---- evaluation ------------------------------------------------------------------------
  c.eval = ml_collections.ConfigDict()
  c.eval.metrics = 'vpq,stq'
  c.eval.dataset = 'cityscapes_vps'  # windowing rule: cityscapes_vps | viper
  c.eval.reference_table = ''        # paper rows shown next to ours in report.md ('' = none)

  # ---- show ------------------------------------------------------------------------------
  c.show = ml_collections.ConfigDict()
  c.show.split = 'val'
  c.show.index = 0

  c.lock()
  return c
