"""Stage `train_track`: the instance embedding head (DML) and the fusion conv.

1. The embedding head learns on ground-truth frame pairs (t - delta, t), delta sampled, with
   the differentiable matching layer (or the contrastive / triplet loss of the paper's Fig. 5,
   `config.track.loss`). The segmenter is not involved: ground-truth instances are the
   training signal, as the paper fine-tunes the tracker with a frozen segmenter.
2. The 1x1 fusion conv is then fitted on the instance and pixel matrices of ground-truth
   consecutive pairs (pixel matrices from the flow the tracker will use at test time), starting
   from the paper's plain sum.
Both are exported under `<workdir>/track/final` (head) and `<workdir>/track/fusion`.
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from hybrid_jax import run_records
from hybrid_jax import trained_models
from hybrid_jax.data import categories as categories_lib
from hybrid_jax.data import datasets
from hybrid_jax.losses import tracking as track_losses
from hybrid_jax.models import embedding_head as head_lib
from hybrid_jax.tracking import frame_instances as instances_lib
from hybrid_jax.tracking import instance as instance_assoc
from hybrid_jax.tracking import pixel
from hybrid_jax.training import fusion_fit
from hybrid_jax.training import pretrained
from hybrid_jax.training.stages import common

STAGE = trained_models.TRACK_STAGE
ARCHITECTURE = trained_models.HEAD_ARCHITECTURE
FUSION_DIR = trained_models.FUSION_DIR


def build_head(config) -> head_lib.EmbeddingHead:
  t = config.track
  return head_lib.EmbeddingHead(canvas=tuple(t.canvas), pool=int(t.pool),
                                hidden_dim=int(t.hidden_dim), embed_dim=int(t.embed_dim))


def to_pair_batch(batch: dict, *, table, max_instances: int) -> dict:
  """Pipeline pair batch (frames [B,2,H,W,3], panoptic [B,2,H,W]) -> `track_loss_fn` batch."""
  frames, pan = batch['frames'], batch['panoptic']
  pairs = [(b, 0, 1) for b in range(len(frames))]
  return track_losses.make_pair_batch(list(frames), list(pan), pairs, categories=table,
                                      max_instances=max_instances)


def make_loss_fn(config, model):
  loss_name, no_match = config.track.loss, config.track.no_match

  def loss_fn(params, batch_stats, batch, rng):
    loss, metrics = track_losses.track_loss_fn(params, batch, rng, model=model,
                                               loss_name=loss_name, no_match=no_match)
    return loss, (metrics, batch_stats)
  return loss_fn


def pair_iterator(config, source, start_step: int = 0):
  """Raw frame-pair batches (`pipeline.make_pair_iterator`) for the embedding head: pairs of
  labelled frames on real datasets, any frames (labels on every one) on the synthetic data."""
  return common.pair_iterator(config, source, batch_size=config.track.train.batch_size,
                              max_delta=config.data.max_delta, seed=config.seed + 1,
                              start_step=start_step)


def train_tracker(config, workdir: str, data_dir: str, *,
                  flow_fn: Callable | None = None) -> None:
  """Trains the embedding head and fits the fusion (or finds both done); exports them.

  flow_fn(frames_prev [B,H,W,3], frames_cur) -> flow [B,H,W,2] gives the pixel matrices for the
  fusion fit (the RAFT of this run); None uses the dataset's ground-truth flow.
  """
  table = categories_lib.get_categories(config.data.categories)
  source = common.CachedSource(datasets.get_source(config, 'train', data_dir))
  d = config.data
  model = build_head(config)
  max_inst = int(d.max_instances)

  def make_iterator(start_step):
    return (to_pair_batch(b, table=table, max_instances=max_inst)
            for b in pair_iterator(config, source, start_step))

  params = head_lib.init_head(model, jax.random.key(config.seed), image_hw=(d.crop_height, d.crop_width),
                              max_instances=max_inst)
  out = common.train_stage(
      config=config, workdir=workdir, stage_name=STAGE, stage_cfg=config.track,
      architecture=ARCHITECTURE, variables={'params': params}, loss_fn=make_loss_fn(config, model),
      make_data_iterator=make_iterator, record=False,
      metadata={'loss': config.track.loss, 'canvas': list(config.track.canvas),
                'pool': int(config.track.pool), 'hidden_dim': int(config.track.hidden_dim),
                'embed_dim': int(config.track.embed_dim), 'use_image': True,
                'no_match': config.track.no_match})
  head_params = out['params']
  dustbin = trained_models.dustbin_logit_of(head_params, config.track.no_match)
  fit_fusion(config, workdir, source, table, model, head_params, dustbin, flow_fn=flow_fn)
  if jax.process_index() == 0:
    run_records.record_stage(config, workdir, STAGE)


def fit_fusion(config, workdir, source, table, model, head_params, dustbin, *, flow_fn=None):
  """Fits (or loads) the 1x1 fusion conv on consecutive ground-truth pairs of the train split."""
  path = os.path.join(workdir, STAGE, FUSION_DIR)
  if trained_models.has_export(path):
    return pretrained.load_pretrained(
        path, expect_architecture=trained_models.FUSION_ARCHITECTURE)[0]['params']
  rng = np.random.default_rng(config.seed)
  max_inst = int(config.data.max_instances)
  embed = head_lib.make_embed_fn(model, head_params)
  sim = jax.jit(instance_assoc.instance_similarity)
  insts, pixs, targets, vps, vcs = [], [], [], [], []
  for _ in range(int(config.track.fusion_pairs)):
    clip = source[int(rng.integers(len(source)))]
    t = int(rng.integers(1, len(clip['frames'])))
    prev, prev_ids = instances_lib.instances_from_panoptic(clip['panoptic'][t - 1], table, max_inst)
    cur, cur_ids = instances_lib.instances_from_panoptic(clip['panoptic'][t], table, max_inst)
    if flow_fn is not None:
      flow = np.asarray(flow_fn(clip['frames'][t - 1][None], clip['frames'][t][None]))[0]
    else:
      flow = clip['flow'][t - 1]
    e_prev = embed(clip['frames'][t - 1], prev)
    e_cur = embed(clip['frames'][t], cur)
    insts.append(np.asarray(sim(e_prev, e_cur, jnp.asarray(prev.valid), jnp.asarray(cur.valid),
                                dustbin)))
    warped = pixel.warp_masks(jnp.asarray(prev.masks), jnp.asarray(flow, jnp.float32))
    pixs.append(np.asarray(pixel.dice_matrix(warped, jnp.asarray(cur.masks),
                                             jnp.asarray(prev.valid), jnp.asarray(cur.valid))))
    targets.append(track_losses.pair_targets(prev_ids, cur_ids))
    vps.append(np.asarray(prev.valid))
    vcs.append(np.asarray(cur.valid))
  stack = lambda xs: jnp.asarray(np.stack(xs))  # noqa: E731
  params, losses = fusion_fit.fit_fusion(stack(insts), stack(pixs), stack(targets), stack(vps),
                                        stack(vcs), steps=int(config.track.fusion_steps))
  logging.info('[track] fusion fitted: loss %.4f -> %.4f, params %s', losses[0], losses[-1],
               jax.tree.map(lambda x: np.asarray(x).ravel().tolist(), params))
  if jax.process_index() == 0:
    if os.path.exists(path):
      shutil.rmtree(path)
    pretrained.save_pretrained(path, {'params': jax.device_get(params)},
                               {'architecture': trained_models.FUSION_ARCHITECTURE,
                                'loss_first': losses[0],
                                'loss_last': losses[-1]})
  return params
