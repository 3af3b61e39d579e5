"""Stage `train_flow`: RAFT on the synthetic dataset's exact ground-truth flow.

The official recipe (reference raft.md §2.10): AdamW, one-cycle learning rate, gradient
clipping at 1, the gamma-weighted sequence loss over every refinement iteration. After
training, the end-point error on the val split is measured next to the zero-flow baseline
and written to `<workdir>/flow/eval.json`.
"""

from __future__ import annotations

import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np

from hybrid_jax import config_lib
from hybrid_jax import errors
from hybrid_jax import inference
from hybrid_jax.data import datasets
from hybrid_jax.losses import flow as flow_losses
from hybrid_jax.training import precision
from hybrid_jax.models.raft import model as raft_lib
from hybrid_jax.training.stages import common

STAGE = 'flow'


def train_iters(config) -> int:
  """Refinement iterations unrolled while training (flow.train_iters, else flow.iters)."""
  return int(config.flow.get('train_iters', 0) or config.flow.iters)


def train_crop(config) -> tuple[int, int]:
  """(h, w) of the training crops: flow.train_crop, or data.crop_* when it is (0, 0)."""
  return config_lib.stage_train_crop(config, 'flow')


def _model(config, *, train: bool):
  # Training unrolls the refinement scan: XLA's CPU backward of a rolled scan is ~8x slower.
  # Winograd pays off on large grids only: on the 8x16-cell grid of a 64x128 crop a RAFT-small
  # training step took 0.63 s with it and 0.40 s without (batch 4, 12 iterations, 2 cores).
  corr = config.flow.get('train_corr', 'all_pairs') if train else config.flow.corr
  return raft_lib.RAFT(variant=config.flow.variant, corr=corr,
                       remat=bool(train and config.train.remat),
                       unroll=train_iters(config) if train else 1,
                       winograd=False if train else None,
                       dtype=precision.compute_dtype(config) if train else jnp.float32)


def initial_variables(config) -> dict:
  """Converted weights when config.flow.checkpoint is set (fine-tuning), else random."""
  if config.flow.checkpoint:
    variables, _ = raft_lib.load_raft(config.flow.checkpoint, variant=config.flow.variant)
    return variables
  height, width = train_crop(config)
  return raft_lib.init_raft(config.seed, variant=config.flow.variant, height=height, width=width)


def make_loss_fn(config):
  model = _model(config, train=True)
  iters = train_iters(config)
  has_bn = config.flow.variant == 'standard'

  def loss_fn(params, batch_stats, batch, rng):
    del rng
    frames = batch['frames']
    variables = {'params': params}
    if has_bn:
      variables['batch_stats'] = batch_stats
      preds, updates = model.apply(variables, frames[:, 0], frames[:, 1], iters=iters,
                                   train=True, mutable=['batch_stats'])
      new_bs = updates['batch_stats']
    else:
      preds = model.apply(variables, frames[:, 0], frames[:, 1], iters=iters, train=True)
      new_bs = batch_stats
    loss, metrics = flow_losses.sequence_loss(preds, batch['flow'], batch['flow_valid'])
    return loss, (metrics, new_bs)

  return loss_fn


def train_flow(config, workdir: str, data_dir: str) -> dict:
  """Trains (or loads the finished) RAFT of this run; returns its variables."""
  source = common.CachedSource(datasets.get_source(config, 'train', data_dir))
  if 'flow' not in source[0]:
    raise errors.DatasetError(
        f'{config.data.name} has no ground-truth optical flow to train RAFT on. Use converted '
        'weights instead: python -m hybrid_jax.cli.convert raft raft-sintel.pth OUT, then '
        '--config.flow.checkpoint=OUT.')
  def make_iterator(start_step):
    return common.pair_iterator(config, source, batch_size=config.flow.train.batch_size,
                                max_delta=1, seed=config.seed, start_step=start_step,
                                labels=False, require_flow=True, crop_hw=train_crop(config))

  variables = initial_variables(config)
  out = common.train_stage(
      config=config, workdir=workdir, stage_name=STAGE, stage_cfg=config.flow,
      architecture=raft_lib.ARCHITECTURES[config.flow.variant], variables=variables,
      loss_fn=make_loss_fn(config), make_data_iterator=make_iterator,
      compiler_options=raft_lib.cpu_compiler_options())
  eval_path = os.path.join(workdir, STAGE, 'eval.json')
  if jax.process_index() == 0 and not os.path.exists(eval_path):
    val = datasets.get_source(config, 'val', data_dir)
    result = evaluate_epe(out, val, variant=config.flow.variant, iters=config.flow.iters,
                          corr=config.flow.corr)
    with open(eval_path, 'w') as f:
      json.dump(result, f, indent=2)
    logging.info('[flow] val EPE %.3f px (zero-flow baseline %.3f px) over %d pairs',
                 result['epe'], result['epe_zero_flow'], result['pairs'])
  return out


def evaluate_epe(variables, source, *, variant: str, iters: int, corr: str = 'all_pairs',
                 stride: int = 3, batch: int = inference.CHUNK) -> dict:
  """Mean end-point error on valid pixels of pairs (t, t+1), t = 0, stride, ... of each clip.

  Returns {'epe', 'epe_zero_flow', '1px', '3px', 'pairs'}; the zero-flow baseline predicts
  no motion, so its EPE is the mean ground-truth flow magnitude.
  """
  sums = {'epe': 0.0, 'epe_zero_flow': 0.0, '1px': 0.0, '3px': 0.0}
  total = 0.0
  pairs = 0
  for i in range(len(source)):
    clip = source[i]
    ts = np.arange(0, len(clip['frames']) - 1, stride)
    for s in range(0, len(ts), batch):
      t = ts[s:s + batch]
      # A short last batch repeats its last pair: one compiled program for every call (the
      # same one the tracker's FlowBatcher runs), not one more per clip length.
      full = inference.pad_batch(t, batch)
      flow = np.asarray(raft_lib.estimate_flow(
          variables, clip['frames'][full], clip['frames'][full + 1], variant=variant,
          iters=iters, corr=corr))[:len(t)]
      gt = clip['flow'][t]
      valid = clip['flow_valid'][t] & (np.linalg.norm(gt, axis=-1) < flow_losses.MAX_FLOW)
      n = float(valid.sum())
      err = np.linalg.norm(flow - gt, axis=-1)
      sums['epe'] += float(err[valid].sum())
      sums['epe_zero_flow'] += float(np.linalg.norm(gt, axis=-1)[valid].sum())
      sums['1px'] += float((err[valid] < 1).sum())
      sums['3px'] += float((err[valid] < 3).sum())
      total += n
      pairs += len(t)
  out = {k: v / max(total, 1.0) for k, v in sums.items()}
  out['pairs'] = pairs
  return out
