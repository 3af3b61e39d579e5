"""The embedding head's learning curve: val VPQ of the instance tracker during training.

The paper's Fig. 5 compares the DML with the contrastive and triplet losses by VPQ over the
training iterations. With ``track.eval_every_steps > 0`` the track stage calls this every N
steps (and at the end): the instance tracker alone (no mutual check, no temporal memory, as
Table I's instance row) tracks the val clips' labelled frames on their *ground-truth*
segments, so the curve measures the embedding and nothing of the segmenter. The values go to
``track/metrics.jsonl`` as ``val_vpq`` / ``val_vpq_things`` (``experiments/dml_losses.py``
plots them).
"""

from __future__ import annotations

import numpy as np

from hybrid_jax import inference
from hybrid_jax import trained_models
from hybrid_jax.data import datasets
from hybrid_jax.models import embedding_head as head_lib
from hybrid_jax.tracking import tracker as tracker_lib
from hybrid_jax.training import step as step_lib


def make_eval_fn(config, model, table, data_dir: str, *, max_clips: int | None = None,
                 feature_fn=None):
  """eval_fn(state) -> {'val_vpq', 'val_vpq_things'} for `training.loop.train_loop`;
  feature_fn(image) -> the segmenter's map, for a head with roi_input 'features' / 'both'."""
  from hybrid_jax.evaluation import evaluate_arrays  # pylint: disable=g-import-not-at-top
  val = datasets.get_source(config, 'val', data_dir)
  n = len(val) if max_clips is None else min(int(max_clips), len(val))
  clips = []
  for i in range(n):
    clip = val[i]
    lab = np.flatnonzero(np.asarray(clip['labelled'], bool))
    frames, pan = np.asarray(clip['frames'])[lab], np.asarray(clip['panoptic'])[lab]
    seg = inference.ground_truth_segments(pan, table, config.data.max_instances)
    preds = inference.ClipPredictions(seg, np.zeros((max(len(lab) - 1, 0),) + frames.shape[1:3]
                                                    + (2,), np.float32), 0.0, 0.0)
    clips.append((str(clip['video_id']), frames, pan, preds))

  def eval_fn(state):
    params = step_lib.to_host(state.params)
    tracker = tracker_lib.VideoTracker(
        'instance', temporal=False, mutual_check=False,
        threshold=float(config.track.threshold), max_instances=int(config.data.max_instances),
        embed_fn=head_lib.make_embed_fn(model, params, feature_fn), categories=table,
        dustbin_logit=trained_models.dustbin_logit_of(params, config.track.no_match))
    preds = [inference.track_clip(tracker, frames, p)[0] for _, frames, _, p in clips]
    res = evaluate_arrays([pan for _, _, pan, _ in clips], preds, config.data.categories,
                          dataset=config.eval.dataset, metrics=('vpq',),
                          video_ids=[v for v, _, _, _ in clips])
    final = res['vpq']['final']
    return {'val_vpq': float(final['all']['pq']), 'val_vpq_things': float(final['things']['pq'])}

  return eval_fn
