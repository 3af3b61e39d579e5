"""The key structure every run config shares, and the paper's settings built on it.

``configs/*.py`` start from here: `base_config` holds every key with the synthetic demo's
values (what ``configs/synthetic.py`` runs), `paper_config` the paper's settings for a real
dataset (``configs/cityscapes_vps.py``, ``configs/viper.py``). The keys live in one place, so
the configs never drift apart, and the package needs nothing from ``configs/`` at run time.
"""

import ml_collections

# Multi-scale test scales (§IV, following VPSNet-Track): seg.test_scales of the paper configs.
PAPER_TEST_SCALES = (0.5, 0.625, 0.6875, 0.8125, 0.875, 1.0)


def stage_train(steps, batch_size, lr, *, optimizer='adamw', weight_decay=1e-4,
                 schedule='cosine', warmup_steps=0, grad_clip=1.0, grad_clip_mode='norm'):
  return ml_collections.ConfigDict(dict(
      steps=steps, batch_size=batch_size, optimizer=optimizer, lr=lr, momentum=0.9,
      weight_decay=weight_decay, schedule=schedule, warmup_steps=warmup_steps,
      grad_clip=grad_clip, grad_clip_mode=grad_clip_mode))


def stage_train_crop(config, stage: str) -> tuple[int, int]:
  """(h, w) of stage `stage`'s ('seg' | 'flow') training crops: ``<stage>.train_crop``, or
  data.crop_height/crop_width when it is (0, 0) or absent."""
  crop = tuple(int(v) for v in config[stage].get('train_crop', (0, 0)))
  return crop if crop != (0, 0) else (int(config.data.crop_height), int(config.data.crop_width))


def base_config() -> ml_collections.ConfigDict:
  """Every key of a run config, with the synthetic demo's values (unlocked; callers lock)."""
  c = ml_collections.ConfigDict()
  c.preset = 'default'
  c.mode = 'all'  # see hybrid_jax.config_checks.MODES
  # mode=track on your own video: an mp4/avi file or a folder of png/jpg frames ('' = track
  # the val split); outputs in <workdir>/track_video/<name>/ (hybrid_jax/user_video.py).
  c.input = ''
  c.seed = 0
  # Stages to train again although the workdir holds them finished, e.g. 'track' or 'seg,flow'
  # (a rerun otherwise names a finished stage that does not fit the config; run_records.py).
  c.force_stages = ''

  # ---- data ---------------------------------------------------------------------------
  c.data = ml_collections.ConfigDict()
  c.data.name = 'synthetic_vps'
  c.data.categories = 'synthetic'
  c.data.dir = ''             # where TFDS files go; '' -> <workdir>/data
  c.data.root = ''            # official on-disk layout (real datasets); unused for synthetic
  c.data.height = 128
  c.data.width = 256
  c.data.clip_length = 30
  c.data.label_every = 5      # every 5th frame labelled, as Cityscapes-VPS (frames 4, 9, ...)
  c.data.num_train_clips = 48
  c.data.num_val_clips = 8
  c.data.generator_seed = 0
  c.data.max_instances = 32   # padded instance count per frame
  # Training crops: a quarter of the demo frame keeps a CPU step short; the networks are
  # fully convolutional and run on whole frames at test time.
  c.data.crop_height = 64
  c.data.crop_width = 128
  c.data.hflip = True
  c.data.max_delta = 3        # frame pairs (t - delta, t), delta ~ U{1..max_delta}
  c.data.worker_count = 0     # grain workers (0: in-process)

  # ---- shared training infrastructure -------------------------------------------------
  c.train = ml_collections.ConfigDict()
  c.train.checkpoint_every_steps = 200
  c.train.keep_checkpoints = 2
  c.train.log_every_steps = 20
  c.train.max_bad_steps = 5   # consecutive non-finite steps before training stops
  c.train.profile_steps = ''  # 'a,b': write a jax.profiler trace for steps a..b
  # Activations of the three training steps: 'float32' | 'bfloat16' (parameters, optimiser
  # state, correlation volumes and losses stay float32; training/precision.py).
  c.train.compute_dtype = 'float32'
  # Rematerialisation (training memory for ~1/3 more compute): the segmenter recomputes each
  # backbone block, RAFT each refinement iteration, in the backward pass. The embedding head
  # keeps only its pooled RoIs for the backward pass either way.
  c.train.remat = False
  # The per-device memory (GiB) of the device a preset is sized for (0: no check). Before a
  # stage trains, its compiled step's memory analysis is compared with it and a warning names
  # the stage, the estimate and this figure (training/memory_plan.py).
  c.train.device_memory_gib = 0.0

  c.distributed = ml_collections.ConfigDict()
  c.distributed.coordinator_address = ''  # '' -> single process (or from env)
  c.distributed.num_processes = 1
  c.distributed.process_id = 0

  # ---- segmenter (PanopticFCN) ---------------------------------------------------------
  c.seg = ml_collections.ConfigDict()
  c.seg.backbone = 'resnet_small'  # resnet50 | resnet_small | resnet_tiny
  c.seg.checkpoint = ''       # converted weights (python -m hybrid_jax.cli.convert ...)
  c.seg.test_scales = (1.0,)  # test-time input scales; the paper: PAPER_TEST_SCALES
  # The position head's deformable conv (PanopticFCN's default 'v2') is gather-based and
  # ~3x slower to train on a CPU; the CPU presets use a plain conv ('none').
  c.seg.position_deform = 'none'
  # Where masks are compared in training and upsampled at test time: 'quarter' is
  # PanopticFCN's 1/4 grid (the paper configs); 'full' upsamples mask logits to input
  # resolution first (losses/panoptic.py), which the demo's thin things need (a 5-px-wide
  # person is ~1 cell of the 1/4 grid; benchmarks/RESULTS.md).
  c.seg.mask_resolution = 'full'
  # 'full': (instance, level) assignments per training crop; every slot costs k full-size
  # mask maps in each step, used or not. The demo's frames have at most 18 (1440 train frames
  # of each of seeds 0, 1 and 2; median 12), so 20 drops none (train/mask_pairs_dropped)
  # and the step takes 0.193 s instead of 0.215 s with 32 (benchmarks/RESULTS.md).
  c.seg.mask_pairs = 20
  # Training crop (0, 0 = data.crop_*). The demo trains on whole 128x256 frames, 2 per batch
  # (the same pixels per step as 8 crops of 64x128): the encoder's and kernel head's
  # coordinate channels span the input, so on crops a thing's coordinates at test time are
  # on another scale than in training. Val PQ / things at 500 steps: 33.7 / 19.5 on crops,
  # 47.6 / 27.4 on whole frames; 72.7 / 40.4 at 1000 steps (benchmarks/RESULTS.md).
  c.seg.train_crop = (128, 256)
  c.seg.train = stage_train(1500, 2, 1e-3, warmup_steps=50)
  c.seg.eval_every_steps = 0  # > 0: val PQ every N steps (a learning curve in metrics.jsonl)

  # ---- optical flow (RAFT) -------------------------------------------------------------
  c.flow = ml_collections.ConfigDict()
  c.flow.source = 'raft'      # raft | gt (synthetic ground truth) | flo (files)
  c.flow.variant = 'small'    # small | standard
  c.flow.iters = 12           # refinement iterations at inference
  # Training may unroll fewer iterations and use its own crop (0, 0 = data.crop_*). The demo
  # trains on whole 128x256 frames, 2 per batch: on 64x128 crops (RAFT's 1/8 grid only 8x16
  # cells) 400 steps learned nothing beyond zero flow on seeds 1 and 2 (val EPE 1.237 / 1.116
  # px, zero flow 1.235 / 1.117); on whole frames 0.652 / 0.651 (benchmarks/RESULTS.md).
  c.flow.train_iters = 12
  c.flow.train_crop = (128, 256)
  c.flow.corr = 'all_pairs'   # all_pairs | on_demand (memory-bounded) at inference
  # The training step's correlation. 'on_demand' bounds the volume at inference, but its
  # backward keeps every lookup's gathered neighbourhoods: the compiled RAFT-standard step
  # (batch 4, 512x1024, 12 iterations) needs 174 GiB with it against the all-pairs figure in
  # docs/configs.md (benchmarks/memory_plan.py).
  c.flow.train_corr = 'all_pairs'
  c.flow.checkpoint = ''
  # lr 1e-3 rather than RAFT's 4e-4 (chosen on 64x128 crops: val EPE 1.14 px instead of 1.22
  # after 200 steps; 3e-3 gave 1.23 after 400).
  c.flow.train = stage_train(400, 2, 1e-3, schedule='onecycle', weight_decay=1e-5,
                             grad_clip=1.0)

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
  # §III.E's backward direction: a memory match must be confirmed from frame t back to the
  # stored frame (tracking.temporal_consistency.backward_confirms).
  c.track.temporal_backward = True
  # Where the backward check's reverse pixel cue comes from: False reads the forward-warped
  # dice column-wise (no extra flow); True warps frame t's masks back to the stored frame with
  # RAFT run from frame t to it (one more flow estimate per memory frame looked up).
  c.track.temporal_backward_flow = False
  # How a memory frame is compared with frame t: 'direct' (Fig. 7) or 'chained' (eq. 8 read
  # literally: the product of the consecutive frames' associations; tracking.tracker).
  c.track.temporal_similarity = 'direct'
  # Frames (frame pairs) per segmenter / RAFT call while tracking; the tracking programs'
  # device memory grows with it (docs/configs.md), the numbers do not change.
  c.track.frames_per_call = 4
  c.track.matcher = 'greedy'  # greedy (the paper: row arg-max + mutual check) | hungarian | sinkhorn
  # Embedding head, sized for the CPU demo: the paper's canvas (256x512) is 1/4 of its
  # 1024x2048 frame, and (32, 64) keeps about that ratio to the demo's 128x256 frames; hidden
  # 256 / embedding 128 instead of the paper's 1024 / 1024 keep a step cheap on 2 cores. The
  # paper configs (`paper_config`) use the paper's sizes.
  c.track.canvas = (32, 64)
  c.track.pool = 2
  c.track.hidden_dim = 256
  c.track.embed_dim = 128
  # The RoI the head crops (models/embedding_head.py): 'image' (the masked RGB frame), 'features'
  # (the frozen segmenter's stride-4 encoder features, Fig. 4's "RoI feats" read literally) or
  # 'both'; the features are projected per canvas cell to feature_dim channels. 'image' is the
  # default everywhere: on the demo its instance tracker reaches VPQ_Th 75.6 against 64.8 with
  # the features and 65.6 with both (experiments/roi_input.py, benchmarks/RESULTS.md); on the
  # paper's datasets the comparison is unmeasured.
  c.track.roi_input = 'image'
  c.track.feature_dim = 16
  c.track.loss = 'dml'        # dml | contrastive | triplet (the paper's Fig. 5 comparison)
  # DML rows without a counterpart: a learned 'dustbin' column, or 'mask' (left out: Eq. 4's
  # softmax has no "none" slot; the paper configs use it). The demo keeps the dustbin: without
  # it p(j|i) >= 1/n, so the instance tracker's thresholds can never reject a match.
  c.track.no_match = 'dustbin'
  # The fusion conv is fitted on train clips the head does not see (half fit, half held out),
  # on the segmenter's 'predicted' instances as at test time, or on 'gt' segments.
  # fusion_targets: how a predicted instance gets its object ('ownership': the object holding
  # most of its pixels, so an object's fragments keep its identity; 'iou': IoU > 0.5, the
  # head's targets). fusion_objective: 'decisions' (the rows the tracker's own rule decides
  # right, over a grid) or 'likelihood' (Newton on the rule's softmax likelihood); see
  # training/fusion_fit.py. Measured on the demo's 3 seeds, 40 val clips (benchmarks/
  # RESULTS.md, "The fusion's objective"): the likelihood fit on 'gt' segments puts the
  # "no match" boundary at dice ~0.12 and loses the links the pixel tracker keeps through
  # fragments and small persons (hybrid VPQ_Th 0.12 below pixel); the decision fit on
  # predicted segments with ownership targets keeps them.
  c.track.fusion_holdout_clips = 6
  c.track.fusion_segments = 'predicted'
  c.track.fusion_targets = 'ownership'
  c.track.fusion_objective = 'decisions'
  # What the embedding head learns on: 'gt' instances, or the frozen segmenter's 'predicted'
  # ones (each given the ground-truth segment it overlaps with IoU > 0.5; the others are rows
  # without a counterpart), as the paper fine-tunes the tracker (§IV; the paper configs).
  c.track.head_segments = 'gt'
  c.track.train = stage_train(300, 8, 1e-3)
  # > 0: val VPQ of the instance tracker on ground-truth segments every N steps (a learning
  # curve in track/metrics.jsonl; the paper's Fig. 5, experiments/dml_losses.py).
  c.track.eval_every_steps = 0

  # ---- evaluation ------------------------------------------------------------------------
  c.eval = ml_collections.ConfigDict()
  c.eval.metrics = 'vpq,stq'
  c.eval.dataset = 'cityscapes_vps'  # windowing rule: cityscapes_vps | viper
  c.eval.reference_table = ''        # paper rows shown next to ours in report.md ('' = none)

  # ---- export (mode=export) ----------------------------------------------------------------
  # The on-disk layout the split(s) are written in: 'cityscapes_vps' (what the evaluator and
  # the official VPS tools read), or a benchmark's own layout, 'kitti_step' or 'vipseg', which
  # their builders read back (data/export.py); `splits` is a comma-separated list.
  c.export = ml_collections.ConfigDict()
  c.export.layout = 'cityscapes_vps'
  c.export.splits = 'val'

  # ---- show ------------------------------------------------------------------------------
  c.show = ml_collections.ConfigDict()
  c.show.split = 'val'
  c.show.index = 0

  return c


# The smaller presets test at one scale: the six passes cost ~3.5x one pass (sum of scale^2).
PRESETS = {'default': dict(scale=1, backbone='resnet50', corr='on_demand',
                           test_scales=PAPER_TEST_SCALES),
           'half': dict(scale=2, backbone='resnet50', corr='all_pairs', test_scales=(1.0,)),
           'small': dict(scale=4, backbone='resnet_small', corr='all_pairs',
                         test_scales=(1.0,))}

# Presets sized for one device kind: the paper's full-resolution settings, with the per-device
# batch and the frames per tracking call chosen from the compiled programs' memory analysis
# (benchmarks/memory_plan.py; the table in docs/configs.md). `devices`: the devices of that
# runtime (a Colab TPU has 8 cores; the global batch is split over them). A smaller segmenter
# batch scales its lr linearly and its steps inversely (the same epochs as the paper's recipe).
# Before a stage trains, train.device_memory_gib is compared with the step's analysis
# (training/memory_plan.py) and a warning names a stage that does not fit.
DEVICE_PRESETS = {
    'gpu80': dict(device_memory_gib=80.0, devices=1, seg_batch=4, frames_per_call=4),
    'gpu16': dict(device_memory_gib=16.0, devices=1, seg_batch=2, frames_per_call=2),
    'tpu_v3': dict(device_memory_gib=16.0, devices=8, seg_batch=16, frames_per_call=2),
    'tpu_v2': dict(device_memory_gib=8.0, devices=8, seg_batch=8, frames_per_call=1),
}
for _name in DEVICE_PRESETS:
  PRESETS[_name] = dict(PRESETS['default'], **DEVICE_PRESETS[_name])
PAPER_SEG_BATCH, PAPER_SEG_LR, PAPER_SEG_STEPS, PAPER_SEG_WARMUP = 4, 0.0025, 520_000, 1000


def paper_config(arg: str, dataset: dict) -> ml_collections.ConfigDict:
  """The paper's settings (§IV) for `dataset` (native size, clip layout, protocol) and preset
  `arg` ('', 'half', 'small', or a device preset of `DEVICE_PRESETS`); locked."""
  preset = arg or 'default'
  if preset not in PRESETS:
    names = ', '.join(repr(k) for k in PRESETS if k != 'default')
    raise ValueError(f"Unknown preset {arg!r}; use '' (the paper's settings) or one of {names}.")
  p = PRESETS[preset]
  c = base_config()
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
  batch = p.get('seg_batch', PAPER_SEG_BATCH)
  st.steps, st.batch_size, st.optimizer = PAPER_SEG_STEPS * PAPER_SEG_BATCH // batch, batch, 'sgd'
  st.lr = PAPER_SEG_LR * batch / PAPER_SEG_BATCH
  st.momentum, st.weight_decay, st.schedule = 0.9, 1e-4, 'poly'
  st.warmup_steps = PAPER_SEG_WARMUP * PAPER_SEG_BATCH // batch
  st.grad_clip, st.grad_clip_mode = 35.0, 'value'
  # The paper tests at TEST_SCALES (thing proposals of all scales compete in one merge, stuff
  # probabilities are averaged; models/panoptic_fcn/postprocess.postprocess_multiscale).
  c.seg.test_scales = p['test_scales']
  c.seg.train_crop = (0, 0)  # data.crop_* (the demo's whole-frame crop is for 128x256 data)
  c.seg.mask_resolution = 'quarter'  # PanopticFCN's (its converted weights were trained so)

  # RAFT standard with the sintel weights, 20 iterations (Tables III, IV); not trained here
  # (the pixel tracker uses the pretrained flow; flow.train stays synthetic's).
  c.flow.source, c.flow.variant, c.flow.iters = 'raft', 'standard', 20
  c.flow.train_crop = (0, 0)  # data.crop_* (the demo's whole-frame crop is for 128x256 data)
  # The all-pairs volume of one 1024x2048 pair is (128*256)^2 floats = 4.3 GB.
  c.flow.corr = p['corr']
  c.flow.checkpoint = ''

  # Instance tracker fine-tuning with the DML: lr 1e-4, 16 images per batch (§IV), i.e. 8
  # frame pairs (the batch counts pairs). RoIs on a 256x512 canvas, two FCs to 1024-d (§III.B);
  # pool 8 before the first FC is ours (models/embedding_head.py says why). Optimizer, steps
  # and schedule are not in the paper (SGD as the segmenter's).
  c.track.variant, c.track.temporal, c.track.mutual_check = 'hybrid', True, True
  c.track.threshold, c.track.temporal_threshold = 1e-5, 0.01
  c.track.canvas, c.track.pool, c.track.hidden_dim, c.track.embed_dim = (256, 512), 8, 1024, 1024
  # §III.E keeps one frame: frame t-delta is looked up when t+delta finds no match in t.
  c.track.memory_frames = 1
  # The head is fine-tuned and the fusion fitted on the (full PanopticFCN) segmenter's
  # predictions; the head's DML follows Eq. 4 (no "none" slot).
  c.track.fusion_segments, c.track.head_segments = 'predicted', 'predicted'
  c.track.no_match = 'mask'
  c.track.fusion_holdout_clips = 40  # train videos kept from the head for the fusion fit
  tt = c.track.train
  tt.steps, tt.batch_size, tt.optimizer, tt.lr = 20_000, 8, 'sgd', 1e-4
  tt.momentum, tt.weight_decay, tt.schedule, tt.warmup_steps = 0.9, 1e-4, 'step', 0
  tt.grad_clip = 0.0

  c.train.device_memory_gib = float(p.get('device_memory_gib', 0.0))
  c.track.frames_per_call = int(p.get('frames_per_call', 4))

  c.eval.dataset = dataset['eval_dataset']
  c.eval.reference_table = dataset['reference_table']
  c.eval.metrics = dataset.get('metrics', 'vpq,stq')
  c.lock()
  return c
