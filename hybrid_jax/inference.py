"""Running the trained networks over a clip: per-frame segments, forward flow, online tracking.

One path for every entry point that tracks frames:

- `segment_frames`: the segmenter over frames, in padded batches of `CHUNK` (one compiled shape);
- `FlowBatcher`: RAFT over the consecutive pairs, `CHUNK` pairs per call, always grouped by pair
  index (pairs 0-3, 4-7, ...), so a whole clip at once (`predict_clip`) and a long video read
  chunk by chunk (`iter_chunks`) get bit-identical flow;
- `make_tracker`: the `VideoTracker` of a config's ``track`` block (overrides for the paper's
  table rows);
- `track_clip` / `track_chunk`: the tracker over the frames.

The seams a researcher swaps are explicit: any per-frame predictor's outputs in the segmenter's
dict (`ground_truth_segments` builds one from labels), any flow function, any matcher.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Iterator, Mapping

import jax
import numpy as np

from hybrid_jax.data import categories as categories_lib
from hybrid_jax.tracking import frame_instances as instances_lib
from hybrid_jax.tracking import tracker as tracker_lib

CHUNK = 4  # frames (or frame pairs) per network call


@dataclasses.dataclass
class ClipPredictions:
  """Per-frame network outputs of one clip, and how long they took (seconds)."""
  seg: dict              # segmenter outputs, numpy [T, ...] (see models.panoptic_fcn.postprocess)
  flow: np.ndarray       # [T-1, H, W, 2] forward flow t -> t+1
  seg_seconds: float
  flow_seconds: float


def pad_batch(x: np.ndarray, batch: int) -> np.ndarray:
  """Repeats the last element so every call has `batch` elements (one compilation)."""
  if len(x) < batch:
    x = np.concatenate([x, np.repeat(x[-1:], batch - len(x), 0)], 0)
  return x


def segment_frames(segment_fn, variables, frames, *, batch: int = CHUNK) -> dict:
  """Runs the jitted segmenter over frames [T, H, W, 3]; returns numpy outputs [T, ...]."""
  outs = []
  for s in range(0, len(frames), batch):
    chunk = np.asarray(frames[s:s + batch])
    out = jax.device_get(segment_fn(variables, pad_batch(chunk, batch)))
    outs.append({k: v[:len(chunk)] for k, v in out.items()})
  return {k: np.concatenate([o[k] for o in outs], 0) for k in outs[0]}


class FlowBatcher:
  """Forward flow of the pairs (p, p + 1) of `frames`, computed `batch` pairs per call.

  Pair p is computed in the call for pairs ``[p // batch * batch, ... + batch)``, whatever
  order it is asked in; the most recent call's flows are kept, so a monotone walk through the
  clip computes each pair once. `seconds` accumulates the time spent in the flow function.
  """

  def __init__(self, flow_fn: Callable, frames: np.ndarray, *, batch: int = CHUNK):
    self._fn, self._frames, self._batch = flow_fn, frames, int(batch)
    self._block, self._flows = None, None
    self.seconds = 0.0

  def flow(self, p: int) -> np.ndarray:
    """float32 [H, W, 2]: the flow from frame p to frame p + 1."""
    block = p // self._batch
    if block != self._block:
      idx = np.arange(block * self._batch, min((block + 1) * self._batch, len(self._frames) - 1))
      t0 = time.perf_counter()
      out = self._fn(pad_batch(self._frames[idx], self._batch),
                     pad_batch(self._frames[idx + 1], self._batch))
      self._flows = np.asarray(jax.device_get(out))[:len(idx)]
      self.seconds += time.perf_counter() - t0
      self._block = block
    return self._flows[p - block * self._batch]


def clip_flows(flow_fn: Callable, frames: np.ndarray, *, batch: int = CHUNK
               ) -> tuple[np.ndarray, float]:
  """(flow [T-1, H, W, 2] of every consecutive pair, seconds), through `FlowBatcher`."""
  batcher = FlowBatcher(flow_fn, frames, batch=batch)
  h, w = frames.shape[1:3]
  flows = [batcher.flow(p) for p in range(len(frames) - 1)]
  flow = np.stack(flows) if flows else np.zeros((0, h, w, 2), np.float32)
  return flow.astype(np.float32, copy=False), batcher.seconds


def predict_clip(models, frames: np.ndarray, *, with_flow: bool = True,
                 given_flow: np.ndarray | None = None) -> ClipPredictions:
  """Segments every frame of a clip and estimates the flow between consecutive frames.

  Args:
    models: `trained_models.TrainedModels`.
    frames: uint8 [T, H, W, 3].
    with_flow: run RAFT (`models.flow`); False gives zero flow (a variant without flow).
    given_flow: [T-1, H, W, 2] to use instead of RAFT (e.g. the synthetic ground truth).
  """
  frames = np.asarray(frames)
  t0 = time.perf_counter()
  per_call = models.frames_per_call
  seg = segment_frames(models.segment_fn, models.seg_variables, frames, batch=per_call)
  seg_seconds = time.perf_counter() - t0
  if given_flow is not None:
    return ClipPredictions(seg, np.asarray(given_flow, np.float32), seg_seconds, 0.0)
  if not with_flow:
    zeros = np.zeros((max(len(frames) - 1, 0),) + frames.shape[1:3] + (2,), np.float32)
    return ClipPredictions(seg, zeros, seg_seconds, 0.0)
  flow, flow_seconds = clip_flows(models.flow, frames, batch=per_call)
  return ClipPredictions(seg, flow, seg_seconds, flow_seconds)


def iter_chunks(models, frames: np.ndarray, *, with_flow: bool, chunk: int | None = None
                ) -> Iterator[tuple[int, dict, dict[int, np.ndarray]]]:
  """`predict_clip` a chunk of frames at a time, for videos too long to hold network outputs.

  Yields:
    (start, seg outputs of frames[start:start + chunk], {t: flow [H, W, 2] from frame t-1 to
    t}) for every t >= 1 of the chunk (empty without flow). Same batching, same numbers as
    `predict_clip` (`chunk` None: `models.frames_per_call`).
  """
  chunk = int(chunk or models.frames_per_call)
  batcher = FlowBatcher(models.flow, frames, batch=chunk) if with_flow else None
  for s in range(0, len(frames), chunk):
    e = min(s + chunk, len(frames))
    seg = segment_frames(models.segment_fn, models.seg_variables, frames[s:e], batch=chunk)
    flows = {t: batcher.flow(t - 1) for t in range(max(s, 1), e)} if batcher else {}
    yield s, seg, flows


# ---------------------------------------------------------------------------------------------
# Trackers.

def pair_flow_fn(flow_fn: Callable, *, batch: int = CHUNK) -> Callable:
  """``fn(image_from, image_to) -> float32 [H, W, 2]`` from a batched flow model (any pair,
  backward too), padded to `batch` pairs so it reuses the program compiled for the forward
  flows (`FlowBatcher`) instead of compiling one more."""
  def one(image_from, image_to):
    out = flow_fn(pad_batch(np.asarray(image_from)[None], batch),
                  pad_batch(np.asarray(image_to)[None], batch))
    return np.asarray(jax.device_get(out))[0].astype(np.float32, copy=False)
  return one


def make_tracker(track_cfg: Mapping[str, Any], *, head=None, max_instances: int, categories,
                 fusion_params=None, flow_model: Callable | None = None,
                 flow_batch: int = CHUNK, backward_flow_fn: Callable | None = None,
                 **overrides) -> tracker_lib.VideoTracker:
  """The `VideoTracker` of a config's ``track`` block: the one tracker factory.

  Args:
    track_cfg: config.track (variant, temporal, mutual_check, threshold, temporal_threshold,
      memory_frames, matcher, temporal_backward, temporal_similarity, temporal_backward_flow),
      or a dict with those keys (temporal_backward may be absent: off; temporal_similarity:
      'direct'; temporal_backward_flow: off).
    head: a `trained_models.Head` (embeddings, dustbin logit, fusion conv); None for 'pixel'.
    max_instances: slots per frame (config.data.max_instances).
    categories: the category table.
    fusion_params: a FusionConv to use instead of the head's (e.g. the plain sum, to compare).
    flow_model: the batched flow model (`TrainedModels.flow`), for temporal_backward_flow's
      backward flow (run `flow_batch` pairs per call, as the forward flows); without it that
      option is a ConfigError.
    backward_flow_fn: or directly ``fn(image_from, image_to) -> [H, W, 2]`` for it.
    **overrides: values that replace track_cfg's (e.g. a paper table row's variant and
      temporal flag).
  """
  keys = ('variant', 'temporal', 'mutual_check', 'threshold', 'temporal_threshold',
          'memory_frames', 'matcher', 'temporal_backward', 'temporal_similarity',
          'temporal_backward_flow')
  optional = ('temporal_backward', 'temporal_similarity',  # older configs, plain dicts
              'temporal_backward_flow')
  values = {k: track_cfg[k] for k in keys if k in track_cfg or k not in optional}
  unknown = set(overrides) - set(keys)
  if unknown:
    raise TypeError(f'make_tracker: unknown overrides {sorted(unknown)}')
  values.update({k: v for k, v in overrides.items() if v is not None})
  variant = values.pop('variant')
  return tracker_lib.VideoTracker(
      variant, max_instances=int(max_instances), categories=categories,
      embed_fn=None if head is None else head.embed_fn,
      fusion_params=(fusion_params if fusion_params is not None
                     else None if head is None else head.fusion_params),
      dustbin_logit=None if head is None else head.dustbin_logit,
      backward_flow_fn=(backward_flow_fn if backward_flow_fn is not None
                        else None if flow_model is None
                        or not values.get('temporal_backward_flow')
                        else pair_flow_fn(flow_model, batch=flow_batch)), **values)


def frame_instances(seg: dict, t: int, max_instances: int) -> instances_lib.FrameInstances:
  """The tracker's padded instances of frame t from the segmenter's outputs."""
  inst = instances_lib.FrameInstances(
      masks=np.asarray(seg['masks'][t]), classes=np.asarray(seg['classes'][t]),
      scores=np.asarray(seg['scores'][t]), boxes=np.asarray(seg['boxes'][t]),
      valid=np.asarray(seg['valid'][t]), kernels=np.asarray(seg['kernels'][t]))
  return instances_lib.pad_to(inst, max_instances)


def track_chunk(tracker: tracker_lib.VideoTracker, frames: np.ndarray, start: int, seg: dict,
                flows: Mapping[int, np.ndarray]) -> np.ndarray:
  """Tracks frames start .. start + len(seg) - 1 (continuing the tracker's clip).

  Returns panoptic int32 [n, H, W] with track ids.
  """
  out = []
  for k in range(len(seg['valid'])):
    t = start + k
    inst = frame_instances(seg, k, tracker.max_instances)
    result = tracker.update(frames[t], inst, panoptic=seg['panoptic'][k], flow=flows.get(t),
                            frame_index=t)
    out.append(result.panoptic)
  return np.stack(out)


def track_clip(tracker: tracker_lib.VideoTracker, frames: np.ndarray,
               preds: ClipPredictions) -> tuple[np.ndarray, float]:
  """Runs `tracker` over a clip; returns (panoptic [T, H, W] with track ids, seconds)."""
  tracker.reset()
  t0 = time.perf_counter()
  flows = {t: preds.flow[t - 1] for t in range(1, len(frames))}
  pan = track_chunk(tracker, frames, 0, preds.seg, flows)
  return pan, time.perf_counter() - t0


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
    div = categories_lib.LABEL_DIVISOR
    frame = np.where(pan >= 0, (pan // div) * div, pan)  # stuff (and void) as given
    for slot in np.flatnonzero(np.asarray(inst.valid)):
      frame[pan == seg_ids[slot]] = int(inst.classes[slot]) * div + slot + 1
    pans.append(frame.astype(np.int32))
  seg = {k: np.stack(v) for k, v in out.items()}
  seg['panoptic'] = np.stack(pans)
  seg['scores'] = np.where(seg['valid'], 1.0, 0.0).astype(np.float32)
  seg['kernels'] = np.zeros(seg['valid'].shape + (1,), np.float32)
  return seg
