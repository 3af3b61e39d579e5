"""Stage `train_track`: the instance embedding head (DML) and the fusion conv.

1. The embedding head learns on ground-truth frame pairs (t - delta, t), delta sampled, with
   the differentiable matching layer (or the contrastive / triplet loss of the paper's Fig. 5,
   `config.track.loss`), on the train clips minus the last `track.fusion_holdout_clips`.
2. The 1x1 fusion conv is then fitted (the likelihood of the matching rule by Newton's method,
   or the rows the rule decides right by a grid search: track.fusion_objective,
   `training.fusion_fit`) on the
   held-out clips, on the segmenter's predicted instances (`track.fusion_segments`, or
   ground truth) and the run's flow, as the tracker will see them (`training.fusion_data`);
   its weights, held-out loss and held-out row accuracy (beside the plain sum's) are recorded
   in the export's metadata.
Both are exported under `<workdir>/track/final` (head) and `<workdir>/track/fusion`.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
from typing import Callable

import jax
import numpy as np

from hybrid_jax import errors
from hybrid_jax import inference
from hybrid_jax import run_records
from hybrid_jax import trained_models
from hybrid_jax.data import categories as categories_lib
from hybrid_jax.data import datasets
from hybrid_jax.losses import tracking as track_losses
from hybrid_jax.models import embedding_head as head_lib
from hybrid_jax.models import fusion as fusion_lib
from hybrid_jax.tracking import frame_instances as instances_lib
from hybrid_jax.training import fusion_data
from hybrid_jax.training import fusion_fit
from hybrid_jax.training import head_learning_curve
from hybrid_jax.training import precision
from hybrid_jax.training import prediction_targets
from hybrid_jax.training import pretrained
from hybrid_jax.training.stages import common

STAGE = trained_models.TRACK_STAGE
ARCHITECTURE = trained_models.HEAD_ARCHITECTURE
FUSION_DIR = trained_models.FUSION_DIR


def build_head(config) -> head_lib.EmbeddingHead:
  t = config.track
  return head_lib.EmbeddingHead(canvas=tuple(t.canvas), pool=int(t.pool),
                                hidden_dim=int(t.hidden_dim), embed_dim=int(t.embed_dim),
                                roi_input=t.roi_input, feature_dim=int(t.feature_dim))


def feature_channels(config) -> int:
  """Channels of the segmenter's features the head crops (its encoder width), 0 when
  track.roi_input is 'image'."""
  if config.track.roi_input == 'image':
    return 0
  from hybrid_jax.models.panoptic_fcn import build as pfcn_build  # pylint: disable=g-import-not-at-top
  return int(pfcn_build.segmenter_from_config(config)[0].embed_dim)


def _with_features(out: dict, frames: np.ndarray, features: Callable | None) -> dict:
  """Adds features_prev / features_cur (the frozen segmenter's maps of both frames of every
  pair; roi_input 'features' or 'both') to a `track_loss_fn` batch."""
  if features is not None:
    b, _, h, w, _ = frames.shape
    maps = np.asarray(features(frames.reshape(b * 2, h, w, 3)))
    maps = maps.reshape((b, 2) + maps.shape[1:])
    out['features_prev'], out['features_cur'] = maps[:, 0], maps[:, 1]
  return out


def to_pair_batch(batch: dict, *, table, max_instances: int,
                  features: Callable | None = None) -> dict:
  """Pipeline pair batch (frames [B,2,H,W,3], panoptic [B,2,H,W]) -> `track_loss_fn` batch."""
  frames, pan = batch['frames'], batch['panoptic']
  pairs = [(b, 0, 1) for b in range(len(frames))]
  out = track_losses.make_pair_batch(list(frames), list(pan), pairs, categories=table,
                                     max_instances=max_instances)
  return _with_features(out, np.asarray(frames), features)


def to_predicted_pair_batch(batch: dict, *, table, max_instances: int, segment,
                            features: Callable | None = None) -> dict:
  """`to_pair_batch` on the frozen segmenter's instances of the same crops (§IV: the paper
  fine-tunes the tracker on the segmenter's masks).

  Each prediction takes the ground-truth segment it overlaps with IoU > 0.5
  (`prediction_targets`); one without such a segment is a row with no counterpart (the DML's
  dustbin target, or left out with no_match='mask'). A frame with no prediction is an
  ordinary pair with no rows.
  """
  frames, pan = np.asarray(batch['frames']), np.asarray(batch['panoptic'])
  b, _, h, w, _ = frames.shape
  seg = segment(frames.reshape(b * 2, h, w, 3))
  out = {k: [] for k in ('image_prev', 'image_cur', 'masks_prev', 'masks_cur', 'boxes_prev',
                         'boxes_cur', 'valid_prev', 'valid_cur', 'target')}
  for i in range(b):
    ids = []
    for k, suffix in ((0, 'prev'), (1, 'cur')):
      pred = inference.frame_instances(seg, 2 * i + k, max_instances)
      gt, gt_ids = instances_lib.instances_from_panoptic(pan[i, k], table, max_instances)
      ids.append(prediction_targets.assign_ground_truth(pred, gt, gt_ids))
      out[f'image_{suffix}'].append(frames[i, k])
      out[f'masks_{suffix}'].append(np.asarray(pred.masks))
      out[f'boxes_{suffix}'].append(np.asarray(pred.boxes))
      out[f'valid_{suffix}'].append(np.asarray(pred.valid))
    out['target'].append(track_losses.pair_targets(*ids))
  return _with_features({k: np.stack(v) for k, v in out.items()}, frames, features)


def make_loss_fn(config, model):
  loss_name, no_match = config.track.loss, config.track.no_match
  model = model.clone(dtype=precision.compute_dtype(config))

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
                  flow_fn: Callable | None = None, segment: Callable | None = None,
                  features: Callable | None = None, with_fusion: bool = True) -> None:
  """Trains the embedding head and fits the fusion (or finds both done); exports them.

  with_fusion=False trains (and exports) the head only, e.g. to compare its losses; the stage
  is then not recorded as done.

  flow_fn(frames_prev [B,H,W,3], frames_cur) -> flow [B,H,W,2] gives the pixel matrices for the
  fusion fit (the RAFT of this run); None uses the dataset's ground-truth flow. segment(frames)
  -> segmenter outputs gives the predicted instances the head (track.head_segments) and the
  fusion (track.fusion_segments) learn on (`segment_fn_for`); None: ground-truth segments.
  features(frames [B,H,W,3]) -> the segmenter's maps [B,h,w,E] (`feature_fn_for`) is needed
  when track.roi_input is 'features' or 'both'.
  """
  table = categories_lib.get_categories(config.data.categories)
  source = common.CachedSource(datasets.get_source(config, 'train', data_dir))
  head_clips, _, _ = fusion_split(config, len(source))
  d = config.data
  model = build_head(config)
  max_inst = int(d.max_instances)

  if config.track.head_segments == 'predicted':
    if segment is None:
      raise errors.ConfigError("track.head_segments='predicted' needs the segmenter: pass "
                               'segment=segment_fn_for(config, workdir).')
    to_batch = functools.partial(to_predicted_pair_batch, segment=segment, features=features)
  else:
    to_batch = functools.partial(to_pair_batch, features=features)
  if model.roi_input != 'image' and features is None:
    raise errors.ConfigError(f"track.roi_input={model.roi_input!r} needs the segmenter's "
                             'features: pass features=feature_fn_for(config, workdir).')

  def make_iterator(start_step):
    return (to_batch(b, table=table, max_instances=max_inst)
            for b in pair_iterator(config, common.ClipSubset(source, head_clips), start_step))

  params = head_lib.init_head(model, jax.random.key(config.seed),
                              image_hw=(d.crop_height, d.crop_width), max_instances=max_inst,
                              feature_channels=feature_channels(config))
  frame_features = _one_frame(features)
  every = int(config.track.get('eval_every_steps', 0) or 0)
  eval_fn = (head_learning_curve.make_eval_fn(config, model, table, data_dir,
                                              feature_fn=frame_features) if every else None)
  out = common.train_stage(
      config=config, workdir=workdir, stage_name=STAGE, stage_cfg=config.track,
      architecture=ARCHITECTURE, variables={'params': params}, loss_fn=make_loss_fn(config, model),
      make_data_iterator=make_iterator, record=False, eval_fn=eval_fn, eval_every_steps=every,
      metadata={'loss': config.track.loss, 'canvas': list(config.track.canvas),
                'pool': int(config.track.pool), 'hidden_dim': int(config.track.hidden_dim),
                'embed_dim': int(config.track.embed_dim), 'use_image': True,
                'roi_input': model.roi_input, 'feature_dim': int(model.feature_dim),
                'no_match': config.track.no_match,
                'head_segments': config.track.head_segments})
  head_params = out['params']
  if not with_fusion:
    return
  dustbin = trained_models.dustbin_logit_of(head_params, config.track.no_match)
  fit_fusion(config, workdir, source, table, model, head_params, dustbin, flow_fn=flow_fn,
             segment=segment, feature_fn=frame_features)
  if jax.process_index() == 0:
    run_records.record_stage(config, workdir, STAGE)


def fusion_split(config, num_clips: int) -> tuple[range, range, range]:
  """(head clips, fusion-fit clips, fusion-evaluation clips) of the train split.

  The last `track.fusion_holdout_clips` train clips are kept from the embedding head; the
  fusion is fitted on the first half of them and its held-out loss measured on the rest.
  """
  hold = int(config.track.fusion_holdout_clips)
  if not 2 <= hold < num_clips:
    raise errors.ConfigError(
        f'config.track.fusion_holdout_clips={hold}: the train split has {num_clips} clips; '
        f'hold out at least 2 (fit + evaluation) and leave at least one for the head.')
  first = num_clips - hold
  mid = first + (hold + 1) // 2
  return range(first), range(first, mid), range(mid, num_clips)


def _one_frame(features: Callable | None) -> Callable | None:
  """A batched ``features(frames [B,H,W,3])`` as ``feature_fn(image [H,W,3])``."""
  if features is None:
    return None
  return lambda image: features(np.asarray(image)[None])[0]


def _frozen_segmenter(config, workdir: str, uses: list[str]):
  """The run's trained segmenter for the tracker's training (`uses`: the settings that need
  it); a missing one names the stage to run first and the settings that avoid it."""
  try:
    return trained_models.load_segmenter(config, workdir)
  except errors.CheckpointError as e:
    settings = ' and '.join(f"track.{k}={config.track[k]!r}" for k in uses)
    fix = ' '.join('--config.track.roi_input=image' if k == 'roi_input'
                   else f'--config.track.{k}=gt' for k in uses)
    raise errors.CheckpointError(
        f'The tracker learns on the segmenter\'s outputs ({settings}), so the segmenter has to '
        f'be trained first: {e} Or learn without it: {fix}.') from None


def _segmenter_uses(config) -> list[str]:
  uses = [k for k in ('head_segments', 'fusion_segments') if config.track[k] == 'predicted']
  return uses + (['roi_input'] if config.track.roi_input != 'image' else [])


def segment_fn_for(config, workdir: str) -> Callable | None:
  """``segment(frames) -> outputs`` of the run's segmenter when the head or the fusion learns
  on predicted instances (track.head_segments / fusion_segments), else None. A missing
  segmenter names the stage to run first."""
  if not any(k.endswith('_segments') for k in _segmenter_uses(config)):
    return None
  seg_model, seg_vars = _frozen_segmenter(config, workdir, _segmenter_uses(config))
  models = trained_models.TrainedModels(seg_model=seg_model, seg_variables=seg_vars, flow=None,
                                        head=None)
  return lambda frames: inference.segment_frames(models.segment_fn, seg_vars, frames,
                                                 batch=max(len(frames), 1))


def feature_fn_for(config, workdir: str) -> Callable | None:
  """``features(frames uint8 [B,H,W,3]) -> float32 [B,h,w,E]``, the frozen segmenter's maps
  the head crops when track.roi_input is 'features' or 'both', else None."""
  if config.track.roi_input == 'image':
    return None
  from hybrid_jax.models.panoptic_fcn import segment as pfcn_segment  # pylint: disable=g-import-not-at-top
  seg_model, seg_vars = _frozen_segmenter(config, workdir, _segmenter_uses(config))
  fn = jax.jit(lambda v, im: pfcn_segment.features(v, im, model=seg_model))
  return lambda frames: fn(seg_vars, np.asarray(frames))


def fusion_targets(config) -> str:
  """track.fusion_targets ('iou' in configs that predate it)."""
  return str(config.track.get('fusion_targets', 'iou'))


FUSION_SPLITS = ('fit', 'held_out')


def fusion_pairs(config, source, table, embed, dustbin, *, flow_fn=None, segment=None,
                 labels_on_every_frame: bool | None = None, splits=FUSION_SPLITS) -> dict:
  """{split: `fusion_data.PairMatrices`} of the held-out train clips (`fusion_split`): 'fit'
  the clips the fusion is fitted on, 'held_out' those it is measured on (only `splits`).

  `labels_on_every_frame` (default: the dataset's) pairs consecutive frames; False pairs
  consecutive labelled frames (e.g. to fit the fusion for tracking only those).
  """
  if labels_on_every_frame is None:
    labels_on_every_frame = datasets.labels_on_every_frame(config)
  _, fit_clips, eval_clips = fusion_split(config, len(source))
  clips = dict(zip(FUSION_SPLITS, (fit_clips, eval_clips)))
  kwargs = dict(embed=embed, dustbin_logit=dustbin, table=table,
                max_instances=int(config.data.max_instances),
                labels_on_every_frame=labels_on_every_frame, segment=segment, flow_fn=flow_fn,
                targets=fusion_targets(config))
  return {k: fusion_data.pair_matrices([source[i] for i in clips[k]], **kwargs) for k in splits}


def fit_fusion_on(config, fit: fusion_data.PairMatrices, held: fusion_data.PairMatrices, *,
                  segments: str):
  """Fits the fusion by config.track.fusion_objective on `fit`; returns (params, report) with
  the fitted weights and both objectives' held-out figures against the plain sum."""
  rule = dict(threshold=float(config.track.threshold),
              mutual_check=bool(config.track.mutual_check), matcher=str(config.track.matcher))
  objective = config.track.get('fusion_objective', 'likelihood')
  report = {'segments': segments,
            'targets': fusion_targets(config) if segments == 'predicted' else 'gt ids',
            'objective': objective, 'fit_pairs': fit.num_pairs, 'held_out_pairs': held.num_pairs}
  if objective == 'decisions':
    params, surface = fusion_fit.fit_fusion_decisions(fit.inst, fit.pix, fit.target,
                                                      fit.allowed, **rule)
    report['fit_row_accuracy'] = float(surface.max())
  else:
    params, losses = fusion_fit.fit_fusion(fit.inst, fit.pix, fit.target, fit.allowed)
    report.update(newton_steps=len(losses) - 1, loss_first=losses[0], loss_last=losses[-1])
  plain = fusion_lib.init_fusion_params()
  report.update({
      'weights': {'instance': float(params['conv']['kernel'].ravel()[0]),
                  'pixel': float(params['conv']['kernel'].ravel()[1]),
                  'bias': float(params['conv']['bias'].ravel()[0])},
      'held_out_loss': fusion_fit.held_out_loss(params, held.inst, held.pix, held.target,
                                                held.allowed),
      'held_out_loss_plain_sum': fusion_fit.held_out_loss(plain, held.inst, held.pix,
                                                          held.target, held.allowed),
      'held_out_row_accuracy': fusion_fit.row_decision_accuracy(
          params, held.inst, held.pix, held.target, held.allowed, **rule),
      'held_out_row_accuracy_plain_sum': fusion_fit.row_decision_accuracy(
          plain, held.inst, held.pix, held.target, held.allowed, **rule),
  })
  if not fit.allowed.any():
    logging.warning('[track] the held-out clips give no pair of %s instances to fit the fusion '
                    'on (the segmenter finds none?); it stays the plain sum.', segments)
  return params, report


def fit_fusion(config, workdir, source, table, model, head_params, dustbin, *, flow_fn=None,
               segment=None, feature_fn=None):
  """Fits (or loads) the 1x1 fusion conv on held-out train clips (`fusion_split`)."""
  if config.track.fusion_segments != 'predicted':
    segment = None
  path = os.path.join(workdir, STAGE, FUSION_DIR)
  if trained_models.has_export(path):
    return pretrained.load_pretrained(
        path, expect_architecture=trained_models.FUSION_ARCHITECTURE)[0]['params']
  pairs = fusion_pairs(config, source, table,
                       head_lib.make_embed_fn(model, head_params, feature_fn), dustbin,
                       flow_fn=flow_fn, segment=segment)
  fit, held = pairs['fit'], pairs['held_out']
  params, report = fit_fusion_on(config, fit, held,
                                 segments='gt' if segment is None else 'predicted')
  logging.info('[track] fusion fitted on %d pairs of %s segments: %s', fit.num_pairs,
               report['segments'], report)
  if jax.process_index() == 0:
    if os.path.exists(path):
      shutil.rmtree(path)
    pretrained.save_pretrained(path, {'params': params},
                               {'architecture': trained_models.FUSION_ARCHITECTURE, **report})
  return params
