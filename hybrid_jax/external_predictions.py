"""Tracking another model's per-frame predictions: official format in, video-consistent ids out.

The input folder holds ``pred.json`` + ``pan_pred/<image id>.png`` with **per-frame** segment
ids (the official prediction format, reference §3.2), as written by any per-frame panoptic
model (e.g. VPSNet without its tracking head: the paper's "VPSNet-FuseTrack + Pixel" row).
Frames are grouped into videos and ordered as the official tools do: the image-id prefix
``VVVV`` is the video, frames are sorted by image id within it (reference §1.3, §3.3).

Each frame goes through `VideoTracker.update_panoptic` (one tracker from `inference.make_tracker`,
reset per video) and the
tracked maps are written back in the same format with one segment id per (class, track) and
video, ready for the official evaluator or ``python -m hybrid_jax.cli.evaluate``.

Inputs per variant (the tracker's needs; every missing one is a ConfigError naming the option):

* flow ('pixel', 'hybrid'): ``flow_dir/<image id>.flo`` = forward flow from that frame to the
  next frame of its video (Middlebury .flo, at the prediction's size), or RAFT run on
  ``images_dir`` (`raft`), or any ``flow_fn(image_prev, image_cur) -> [H, W, 2]``;
* embedding head ('instance', 'hybrid'): a ``train_track`` export (``<workdir>/track/final``,
  loaded by `trained_models.load_head`) and the frames in ``images_dir``. The trained fusion
  conv is taken from the sibling ``<workdir>/track/fusion`` when present (else the paper's
  plain sum).

Which categories are things: ``pred.json``'s ``categories`` when present, else the `dataset`
table.
"""

from __future__ import annotations

import collections.abc
import os
import time
from typing import Any, Callable, Mapping
import zlib

import numpy as np

from hybrid_jax import console
from hybrid_jax import errors
from hybrid_jax import inference
from hybrid_jax import trained_models
from hybrid_jax.data import flo_files
from hybrid_jax.data import image_files
from hybrid_jax.data import official_format
from hybrid_jax.tracking import tracker as tracker_lib

VARIANTS = tracker_lib.VARIANTS
# The tracker settings of the command line's defaults (the paper's; config.track's names).
DEFAULT_TRACK = dict(variant='hybrid', temporal=True, mutual_check=True, threshold=1e-5,
                     temporal_threshold=0.01, memory_frames=5, matcher='greedy',
                     temporal_backward=True)


# ---------------------------------------------------------------------------------------------
# Flow.

def flo_path(flow_dir: str, image_id: str) -> str:
  return os.path.join(flow_dir, f'{image_id}.flo')


def _resize_flow(flow: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
  """Bilinear resize of a flow field to `hw`, vectors scaled with the axes."""
  import jax  # pylint: disable=g-import-not-at-top
  h, w = hw
  hi, wi = flow.shape[:2]
  out = np.asarray(jax.image.resize(np.asarray(flow, np.float32), (h, w, 2), 'bilinear'))
  return out * np.asarray([w / wi, h / hi], np.float32)


def make_raft_flow_fn(checkpoint: str, *, iters: int = 12) -> tuple[Callable, str]:
  """``fn(image_prev, image_cur) -> flow [H, W, 2]`` from a converted RAFT checkpoint.

  Frames are read from disk one at a time here, so RAFT runs on one pair per call.
  """
  from hybrid_jax.models.raft import model as raft_lib  # pylint: disable=g-import-not-at-top
  if iters < 1:
    raise errors.ConfigError(f'--iters must be >= 1, got {iters}.')
  variables, variant = raft_lib.load_raft(checkpoint)
  flow_model = trained_models.FlowModel(variables=variables, variant=variant, iters=int(iters))

  def fn(image_prev, image_cur):
    # float32 in: one compiled function per frame size.
    return flow_model(np.asarray(image_prev, np.float32), np.asarray(image_cur, np.float32))
  return fn, f'raft_{variant}'


# ---------------------------------------------------------------------------------------------
# Output maps, kept compressed until written (a Cityscapes-VPS split decoded is gigabytes).

class _CompressedMaps(collections.abc.Sequence):

  def __init__(self):
    self._items: list[tuple[bytes, tuple[int, int]]] = []

  def append(self, pan: np.ndarray) -> None:
    pan = np.ascontiguousarray(pan, np.int32)
    self._items.append((zlib.compress(pan.tobytes(), 1), pan.shape))

  def __len__(self) -> int:
    return len(self._items)

  def __getitem__(self, i):
    data, shape = self._items[i]
    return np.frombuffer(zlib.decompress(data), np.int32).reshape(shape)


# ---------------------------------------------------------------------------------------------
# The command.

def track_predictions(pred_dir: str, out_dir: str, *, variant: str = 'hybrid',
                      temporal: bool = True, mutual_check: bool = True,
                      temporal_backward: bool = True, temporal_backward_flow: bool = False,
                      flow_dir: str | None = None, raft: str | None = None, iters: int = 12,
                      flow_fn: Callable | None = None, images_dir: str | None = None,
                      head: str | None = None, dataset: str = 'cityscapes_vps',
                      max_instances: int | None = None,
                      track_settings: Mapping[str, Any] | None = None,
                      progress: bool = True) -> dict:
  """Per-frame predictions in the official format -> the same format with track ids.

  Args:
    pred_dir: folder with pred.json + pan_pred/<image id>.png (per-frame ids).
    out_dir: where pred.json + pan_pred/ with video-consistent ids go (not `pred_dir`).
    variant: 'pixel' | 'instance' | 'hybrid' (the tracker's association).
    temporal: temporal-consistency memory. mutual_check: keep mutual best matches only.
    temporal_backward: a memory match must be confirmed from the current frame back to the
      stored one (`tracking.temporal_consistency.backward_confirms`).
    temporal_backward_flow: that confirmation's pixel cue from backward flow (the current
      frame's masks warped back to the stored frame); needs `raft` or `flow_fn` (a model runs
      on any pair of frames), not `flow_dir` (forward flow only).
    flow_dir: folder of ``<image id>.flo``: forward flow to the next frame of the video.
    raft: converted RAFT checkpoint; flow is computed from `images_dir` with `iters` iterations.
    flow_fn: any ``fn(image_prev uint8 [H,W,3], image_cur) -> [H, W, 2]`` (instead of the two).
    images_dir: the frames (`find_image` says which names are tried).
    head: embedding-head checkpoint (``<workdir>/track/final``).
    dataset: category table used when pred.json has no ``categories``.
    max_instances: tracker slots per frame; None: the most thing segments of any frame
      (nothing dropped). Segments beyond it are dropped by score (area) with a warning.
    track_settings: other tracker settings by their config.track names (threshold,
      temporal_threshold, memory_frames, matcher); defaults `DEFAULT_TRACK`.
    progress: tqdm bar over frames (shown only when stderr is a terminal).

  Returns:
    Summary dict: frames, videos, variant, flow, categories_from, max_instances, input thing
    ids vs output tracks, head/fusion provenance, seconds.
  Raises:
    ConfigError for a missing requirement (the message names the option to add),
    DatasetError / FormatError / CheckpointError for missing or malformed files.
  """
  t_start = time.perf_counter()
  if variant not in VARIANTS:
    raise errors.ConfigError(f'Unknown variant {variant!r}; choose one of {", ".join(VARIANTS)}.')
  needs_flow = variant in ('pixel', 'hybrid')
  needs_head = variant in ('instance', 'hybrid')
  given = [n for n, v in (('--flow-dir', flow_dir), ('--raft', raft), ('flow_fn', flow_fn))
           if v is not None]
  if len(given) > 1:
    raise errors.ConfigError(f'Give one flow source, not {" and ".join(given)}.')
  if needs_flow and not given:
    raise errors.ConfigError(
        f'Variant {variant!r} needs optical flow: add --flow-dir DIR (<image id>.flo, forward '
        'flow to the next frame of the video) or --raft CKPT with --images DIR, or use '
        '--variant instance.')
  if needs_head and head is None:
    raise errors.ConfigError(
        f'Variant {variant!r} needs the instance embedding head: add --head WORKDIR/track/final '
        '(written by mode=train_track), or use --variant pixel.')
  if (temporal_backward_flow and temporal and temporal_backward and needs_flow
      and flow_dir is not None):
    raise errors.ConfigError(
        '--temporal-backward-flow needs flow from the current frame back to an earlier one, '
        'which --flow-dir (forward flow to the next frame only) cannot give: use --raft CKPT '
        'with --images DIR, or drop --temporal-backward-flow.')
  needs_images = needs_head or (needs_flow and flow_dir is None)
  if needs_images and images_dir is None:
    why = 'the embedding head' if needs_head else 'RAFT'
    raise errors.ConfigError(f'Variant {variant!r} with {why} needs the frames: add --images DIR '
                             '(<image id>.png/.jpg or the Cityscapes-VPS img/ folder).')
  for name, d in (('--flow-dir', flow_dir if needs_flow else None),
                  ('--images', images_dir if needs_images else None)):
    if d is not None and not os.path.isdir(d):
      raise errors.DatasetError(f'{name} {d} is not a folder.')
  if os.path.isfile(out_dir):
    raise errors.ConfigError(f'--out-dir {out_dir} is a file; give a folder for pred.json and '
                             'pan_pred/.')
  if os.path.abspath(out_dir) == os.path.abspath(pred_dir):
    raise errors.ConfigError('--out-dir must differ from --pred-dir (the input would be '
                             'overwritten while it is read).')
  if max_instances is not None and max_instances < 1:
    raise errors.ConfigError(f'--max-instances must be >= 1, got {max_instances}.')

  index = official_format.index_predictions(pred_dir, dataset=dataset)
  all_ids = [i for v in index.videos for i in v]
  # Every file is checked before any compute, so a missing one fails in seconds.
  if needs_flow and flow_dir is not None:
    missing = [flo_path(flow_dir, i) for v in index.videos for i in v[:-1]
               if not os.path.isfile(flo_path(flow_dir, i))]
    if missing:
      raise errors.DatasetError(
          f'Missing {missing[0]} ({len(missing)} .flo files missing in all). --flow-dir needs '
          '<image id>.flo for every frame but the last of each video: the forward flow from '
          'that frame to the next.')
  image_paths = ({i: official_format.find_image(images_dir, i) for i in all_ids}
                 if needs_images else {})

  flow_name = None
  if needs_flow:
    if raft is not None:
      flow_fn, flow_name = make_raft_flow_fn(raft, iters=iters)
    elif flow_fn is not None:
      flow_name = 'flow_fn'
    else:
      flow_name = 'flo'
  bundle = trained_models.load_head(head) if needs_head else None
  slots = int(max_instances) if max_instances is not None else max(index.max_things, 1)
  track_cfg = {**DEFAULT_TRACK, **(track_settings or {}), 'variant': variant,
               'temporal': bool(temporal), 'mutual_check': bool(mutual_check),
               'temporal_backward': bool(temporal_backward),
               'temporal_backward_flow': bool(temporal_backward_flow)}
  tracker = inference.make_tracker(track_cfg, head=bundle, max_instances=slots,
                                   categories=index.categories, backward_flow_fn=flow_fn)

  bar = console.progress(total=len(all_ids), desc='track', unit='frame', enabled=progress)
  maps = _CompressedMaps()
  tracks = 0
  dropped = sum(n > slots for n in index.thing_counts.values())
  try:
    for video in index.videos:
      tracker.reset()
      prev_image = None
      prev_id = None
      video_tracks: set = set()
      for t, (iid, pan, scores) in enumerate(
          official_format.iter_frames(pred_dir, video, index.categories)):
        h, w = pan.shape
        image = (image_files.read_rgb(image_paths[iid]) if needs_images
                 else np.zeros((h, w, 3), np.uint8))
        flow = None
        if needs_flow and t > 0:
          flow = _frame_flow(flow_dir, flow_fn, prev_id, iid, prev_image, image, (h, w))
        result = tracker.update_panoptic(image, pan, scores=scores, flow=flow, frame_index=t)
        valid = np.asarray(result.instances.valid)
        video_tracks.update(zip(np.asarray(result.instances.classes)[valid].tolist(),
                                np.asarray(result.ids)[valid].tolist()))
        maps.append(result.panoptic)
        prev_image, prev_id = image, iid
        bar.update(1)
      tracks += len(video_tracks)
  finally:
    bar.close()

  official_format.write_predictions(out_dir, all_ids, maps, index.categories)
  seconds = time.perf_counter() - t_start
  return {
      'frames': len(all_ids), 'videos': len(index.videos), 'variant': variant,
      'temporal': bool(temporal), 'mutual_check': bool(mutual_check),
      'temporal_backward': bool(temporal_backward),
      'temporal_backward_flow': tracker.backward_flow_fn is not None, 'flow': flow_name,
      'categories_from': index.categories_from, 'max_instances': slots,
      'frames_with_dropped_segments': dropped, 'input_thing_ids': index.input_thing_ids,
      'output_tracks': tracks,
      'head_hparams': None if bundle is None else {**bundle.hparams,
                                                   'canvas': list(bundle.hparams['canvas'])},
      'head_hparams_from': None if bundle is None else bundle.hparams_from,
      'dustbin_logit': None if bundle is None else bundle.dustbin_logit,
      'fusion': (None if variant != 'hybrid' else
                 (bundle.fusion_from if bundle.fusion_from else 'plain sum')),
      'out_dir': os.path.abspath(out_dir), 'seconds': seconds,
      'frames_per_second': len(all_ids) / max(seconds, 1e-9),
  }


def _frame_flow(flow_dir, flow_fn, prev_id, iid, prev_image, image, hw) -> np.ndarray:
  """Forward flow [H, W, 2] from the previous frame to this one, at the prediction size."""
  h, w = hw
  if flow_dir is not None:
    path = flo_path(flow_dir, prev_id)
    flow = flo_files.read_flo(path)
    if flow.shape[:2] != (h, w):
      raise errors.FormatError(
          f'{path}: flow is {flow.shape[1]}x{flow.shape[0]} (WxH) but the prediction '
          f'{prev_id} is {w}x{h}; write the .flo files at the prediction\'s size.')
    return flow
  flow = np.asarray(flow_fn(prev_image, image), np.float32)
  if flow.ndim != 3 or flow.shape[-1] != 2:
    raise errors.FormatError(f'The flow function returned shape {flow.shape}; expected [H, W, 2].')
  if flow.shape[:2] != (h, w):
    # Frames at another resolution than the predictions: resize, scaling the vectors.
    flow = _resize_flow(flow, (h, w))
  return flow
