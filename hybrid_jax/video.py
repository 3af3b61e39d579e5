"""Running the trained networks over a clip: per-frame segmentation, flow, online tracking.

The seams a researcher swaps are explicit arguments: `segment_clip` output (any per-frame
predictor giving the same padded dict), a flow function, and the `VideoTracker` variant.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Mapping

import jax
import numpy as np

from hybrid_jax.models import embedding_head as head_lib
from hybrid_jax.models import raft as raft_lib
from hybrid_jax.models import segmenter as seg_lib
from hybrid_jax.tracking import instances as instances_lib
from hybrid_jax.tracking import tracker as tracker_lib


@dataclasses.dataclass
class TrainedModels:
  """Everything tracking needs; any field may be None when its variant is not used."""
  seg_model: Any
  seg_variables: Mapping | None
  flow_variables: Mapping | None
  flow_variant: str
  flow_iters: int
  flow_corr: str
  head_model: Any = None
  head_params: Mapping | None = None
  fusion_params: Mapping | None = None
  dustbin_logit: float | None = None

  def segment_fn(self):
    return seg_lib.make_segment_fn(self.seg_model)

  def flow_fn(self) -> Callable:
    def fn(frames_prev, frames_cur):
      return raft_lib.estimate_flow(self.flow_variables, frames_prev, frames_cur,
                                    variant=self.flow_variant, iters=self.flow_iters,
                                    corr=self.flow_corr)
    return fn

  def embed_fn(self):
    if self.head_params is None:
      return None
    return head_lib.make_embed_fn(self.head_model, self.head_params)


@dataclasses.dataclass
class ClipPredictions:
  """Per-frame network outputs of one clip, and how long they took (seconds)."""
  seg: dict              # segmenter outputs, numpy [T, ...] (see panoptic_fcn_inference)
  flow: np.ndarray       # [T-1, H, W, 2] forward flow t -> t+1
  seg_seconds: float
  flow_seconds: float


def predict_clip(models: TrainedModels, frames: np.ndarray, *, batch: int = 4,
                 segment_fn=None, flow_fn=None, given_flow=None) -> ClipPredictions:
  """Segments every frame and estimates the flow between consecutive frames.

  given_flow: [T-1, H, W, 2] to use instead of RAFT (e.g. the synthetic ground truth).
  """
  from hybrid_jax.stages import segmenter as seg_stage
  segment_fn = segment_fn or models.segment_fn()
  t0 = time.perf_counter()
  seg = seg_stage.segment_clip(segment_fn, models.seg_variables, frames, batch=batch)
  t1 = time.perf_counter()
  if given_flow is not None:
    return ClipPredictions(seg, np.asarray(given_flow, np.float32), t1 - t0, 0.0)
  flow_fn = flow_fn or models.flow_fn()
  flows = []
  n = len(frames)
  for s in range(0, n - 1, batch):
    idx = np.arange(s, min(s + batch, n - 1))
    prev, cur = frames[idx], frames[idx + 1]
    if len(idx) < batch:  # one compiled shape
      pad = batch - len(idx)
      prev = np.concatenate([prev, np.repeat(prev[-1:], pad, 0)], 0)
      cur = np.concatenate([cur, np.repeat(cur[-1:], pad, 0)], 0)
    flows.append(np.asarray(jax.device_get(flow_fn(prev, cur)))[:len(idx)])
  h, w = frames.shape[1:3]
  flow = np.concatenate(flows, 0) if flows else np.zeros((0, h, w, 2), np.float32)
  t2 = time.perf_counter()
  return ClipPredictions(seg, flow, t1 - t0, t2 - t1)


def frame_instances(seg: dict, t: int, max_instances: int) -> instances_lib.FrameInstances:
  """The tracker's padded instances of frame t from the segmenter's outputs."""
  inst = instances_lib.FrameInstances(
      masks=np.asarray(seg['masks'][t]), classes=np.asarray(seg['classes'][t]),
      scores=np.asarray(seg['scores'][t]), boxes=np.asarray(seg['boxes'][t]),
      valid=np.asarray(seg['valid'][t]), kernels=np.asarray(seg['kernels'][t]))
  return instances_lib.pad_to(inst, max_instances)


def track_clip(tracker: tracker_lib.VideoTracker, frames: np.ndarray,
               preds: ClipPredictions) -> tuple[np.ndarray, float]:
  """Runs `tracker` over the clip; returns (panoptic [T,H,W] with track ids, seconds)."""
  tracker.reset()
  out = []
  t0 = time.perf_counter()
  for t in range(len(frames)):
    inst = frame_instances(preds.seg, t, tracker.max_instances)
    flow = preds.flow[t - 1] if t > 0 else None
    result = tracker.update(frames[t], inst, panoptic=preds.seg['panoptic'][t], flow=flow,
                            frame_index=t)
    out.append(result.panoptic)
  return np.stack(out), time.perf_counter() - t0


def ground_truth_segments(panoptic: np.ndarray, table, max_instances: int) -> dict:
  """The segmenter-output dict built from ground-truth panoptic maps [T, H, W].

  Tracking these isolates the tracker from the segmenter (an oracle segmenter, as the paper's
  "VPSNet-FuseTrack + Pixel" row swaps in another segmenter's per-frame output). The ids are
  per frame: instance numbers are re-assigned every frame, so nothing of the ground-truth
  tracks leaks into the tracker.
  """
  keys = ('masks', 'classes', 'scores', 'boxes', 'valid')
  out = {k: [] for k in keys}
  pans = []
  for pan in np.asarray(panoptic):
    inst, seg_ids = instances_lib.instances_from_panoptic(pan, table, max_instances)
    for k in keys:
      out[k].append(np.asarray(getattr(inst, k)))
    frame = np.where(pan >= 0, (pan // 1000) * 1000, pan)  # stuff (and void) as given
    for slot in np.flatnonzero(np.asarray(inst.valid)):
      frame[pan == seg_ids[slot]] = int(inst.classes[slot]) * 1000 + slot + 1
    pans.append(frame.astype(np.int32))
  seg = {k: np.stack(v) for k, v in out.items()}
  seg['panoptic'] = np.stack(pans)
  seg['scores'] = np.where(seg['valid'], 1.0, 0.0).astype(np.float32)
  seg['kernels'] = np.zeros(seg['valid'].shape + (1,), np.float32)
  return seg
