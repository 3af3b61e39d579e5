"""Stage `train_seg`: PanopticFCN (focal position loss + weighted dice) on single frames.

Frames come from the pair pipeline (frame t of each (t - delta, t) pair, random crop and
flip), restricted to labelled frames on real datasets. After training, image PQ on the val
split's labelled frames is written to `<workdir>/seg/eval.json` next to a trivial baseline
(the most frequent stuff class of the training labels everywhere, no things).
"""

from __future__ import annotations

import json
import logging
import os

import jax
import numpy as np

from hybrid_jax import config_lib
from hybrid_jax import errors
from hybrid_jax import inference
from hybrid_jax import trained_models
from hybrid_jax.data import categories as categories_lib
from hybrid_jax.data import datasets
from hybrid_jax.evaluation import evaluate_pq_arrays
from hybrid_jax.models.panoptic_fcn import build as pfcn_build
from hybrid_jax.losses import panoptic as panoptic_losses
from hybrid_jax.models.panoptic_fcn import segment as pfcn_segment
from hybrid_jax.training import precision
from hybrid_jax.training import step as step_lib
from hybrid_jax.training.stages import common

STAGE = trained_models.SEG_STAGE
ARCHITECTURE = trained_models.SEG_ARCHITECTURE


def make_loss_fn(model, dtype=None, *, remat: bool = False):
  """The stage's loss; `dtype` (training/precision.py) sets the activations' dtype, `remat`
  recomputes the backbone's blocks in the backward pass (config.train.remat)."""
  if dtype is not None:
    model = model.clone(dtype=dtype)
  if remat:
    model = model.clone(remat=True)

  def loss_fn(params, batch_stats, batch, rng):
    frames, pan = batch['frames'], batch['panoptic']
    loss, metrics = panoptic_losses.segmenter_loss_fn(
        params, batch_stats, {'image': frames[:, 1], 'panoptic': pan[:, 1]}, rng, model=model)
    return loss, (metrics, batch_stats)  # FrozenBN: the statistics never change
  return loss_fn


def data_iterator(config, source, start_step: int = 0):
  """Training batches from `start_step` on: frame t of random (t - 1, t) pairs, cropped
  (seg.train_crop) and flipped; labelled frames only on real datasets, every frame on the synthetic data."""
  return common.pair_iterator(config, source, batch_size=config.seg.train.batch_size,
                              max_delta=1, seed=config.seed, start_step=start_step,
                              crop_hw=config_lib.stage_train_crop(config, 'seg'))


def train_segmenter(config, workdir: str, data_dir: str) -> dict:
  """Trains (or loads the finished) segmenter of this run; returns its variables."""
  model, table = pfcn_build.segmenter_from_config(config)
  source = common.CachedSource(datasets.get_source(config, 'train', data_dir))
  make_iterator = lambda start_step: data_iterator(config, source, start_step)  # noqa: E731

  variables, frozen = pfcn_build.initial_variables(config, model)
  every = int(config.seg.get('eval_every_steps', 0) or 0)
  eval_fn = _learning_curve(config, model, source, table, data_dir) if every else None
  out = common.train_stage(
      config=config, workdir=workdir, stage_name=STAGE, stage_cfg=config.seg,
      architecture=ARCHITECTURE, variables=variables,
      loss_fn=make_loss_fn(model, precision.compute_dtype(config),
                           remat=bool(config.train.remat)),
      make_data_iterator=make_iterator, frozen=frozen, eval_fn=eval_fn, eval_every_steps=every,
      metadata={'backbone': config.seg.backbone, 'categories': config.data.categories,
                'mask_resolution': config.seg.mask_resolution})
  eval_path = os.path.join(workdir, STAGE, 'eval.json')
  if jax.process_index() == 0 and not os.path.exists(eval_path):
    result = evaluate_segmenter(out, model, datasets.get_source(config, 'val', data_dir),
                                source, table, dataset=config.eval.dataset)
    with open(eval_path, 'w') as f:
      json.dump(result, f, indent=2)
    logging.info('[seg] val PQ %.1f (things %.1f, stuff %.1f); baseline PQ %.1f',
                 result['ours']['all'], result['ours']['things'], result['ours']['stuff'],
                 result['baseline']['all'])
  return out


def _learning_curve(config, model, train_source, table, data_dir):
  """eval_fn for the loop: val PQ during training (written to metrics.jsonl / TensorBoard)."""
  val = datasets.get_source(config, 'val', data_dir)

  def eval_fn(state):
    variables = {'params': step_lib.to_host(state.params),
                 'batch_stats': step_lib.to_host(state.batch_stats)}
    ev = evaluate_segmenter(variables, model, val, train_source, table,
                            dataset=config.eval.dataset, with_baseline=False)['ours']
    return {'pq': ev['all'], 'pq_things': ev['things'], 'pq_stuff': ev['stuff']}
  return eval_fn


def majority_stuff_class(source, table) -> int:
  """The stuff category with the most labelled pixels in `source`."""
  stuff = categories_lib.stuff_ids(table)
  counts = np.zeros(max(c.id for c in table) + 1, np.int64)
  for i in range(len(source)):
    clip = source[i]
    pan = clip['panoptic'][np.asarray(clip['labelled'], bool)]
    cats = pan[pan >= 0] // categories_lib.LABEL_DIVISOR
    counts += np.bincount(cats, minlength=len(counts))[:len(counts)]
  return int(stuff[int(np.argmax(counts[stuff]))])


def evaluate_segmenter(variables, model, val_source, train_source, table, *, dataset: str,
                       with_baseline: bool = True) -> dict:
  """Image PQ on the labelled val frames: ours and (`with_baseline`) the majority-stuff one."""
  segment_fn = pfcn_segment.make_segment_fn(model)
  gts, preds = [], []
  for i in range(len(val_source)):
    clip = val_source[i]
    lab = np.flatnonzero(clip['labelled'])
    if not len(lab):
      continue
    out = inference.segment_frames(segment_fn, variables, clip['frames'][lab])
    gts.extend(clip['panoptic'][lab])
    preds.extend(out['panoptic'])
  if not gts:
    raise errors.DatasetError('The val split has no labelled frame to evaluate the segmenter on.')
  runs = [('ours', preds)]
  ev = {}
  if with_baseline:
    major = majority_stuff_class(train_source, table)
    runs.append(('baseline', [np.full_like(g, major * categories_lib.LABEL_DIVISOR)
                              for g in gts]))
    ev['baseline_class'] = major
  for name, pr in runs:
    res = evaluate_pq_arrays(gts, pr, table, dataset=dataset)
    ev[name] = {g: res[g]['pq'] for g in ('all', 'things', 'stuff')}
  ev['frames'] = len(gts)
  return ev
