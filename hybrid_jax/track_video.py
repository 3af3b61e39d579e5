"""Track any video: a user's mp4/avi file or frame folder through the trained HybridTracker.

  python -m hybrid_jax.main --config configs/synthetic.py --workdir DIR \
      --config.mode=track --config.input=clip.mp4

writes into ``<workdir>/track_video/<input stem>/``:

- ``tracked.mp4`` and ``tracked.gif``: each frame next to the coloured prediction overlay
  (a track keeps its colour in every frame);
- ``pred.json`` + ``pan_pred/<image id>.png``: every frame in the official prediction format
  (`official_format.write_predictions`), image ids ``0001_<t+1:04d>_<stem>_000000_<t:06d>``;
- ``tracks.json``: one entry per thing track (see `track_summary`).

Weights: the run's trained stages in the workdir (``seg/final``, ``flow/final``, ``track/final``
and ``track/fusion``, written by ``--config.mode=all`` or the ``train_*`` modes), or converted
checkpoints in ``config.seg.checkpoint`` / ``config.flow.checkpoint``. Nothing is trained here.
The tracker is ``config.track.variant`` / ``temporal`` / ``mutual_check``; the pixel variant
needs no embedding head, the instance variant no RAFT.

Frames keep their native size: the segmenter and RAFT pad to their strides internally, so any
size works, but time and memory grow with the pixel count (large videos: resize them first,
e.g. ``ffmpeg -i in.mp4 -vf scale=1024:-2 out.mp4``). All frames and the tracked panoptic maps
stay in memory (about 7 bytes per pixel per frame); networks run on chunks of 4 frames.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time

import numpy as np

from hybrid_jax import errors
from hybrid_jax import video
from hybrid_jax import visualize
from hybrid_jax.data import categories as categories_lib
from hybrid_jax.data import official_format

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg')
OUT_DIR = 'track_video'
FOLDER_FPS = 10.0   # frame folders carry no frame rate
CHUNK = 4           # frames per network call (one compiled shape)

_FIX = ('Train this run first: python -m hybrid_jax.main --config <the run\'s config> --workdir {wd} '
        '--config.mode=all (or the single stage: --config.mode={mode}), or')


# ---------------------------------------------------------------------------------------------
# Reading.

def read_frames(path: str) -> np.ndarray:
  """A video file (mp4, avi, anything ffmpeg decodes) or a folder of png/jpg frames.

  Folder frames are taken in sorted file-name order. Returns uint8 [T, H, W, 3] RGB.
  Raises DatasetError (missing path, empty folder) or FormatError (undecodable file, frames
  of different sizes).
  """
  return _read(path)[0]


def _read(path: str) -> tuple[np.ndarray, float]:
  """(frames uint8 [T, H, W, 3], frames per second)."""
  if not path:
    raise errors.ConfigError('No input given: pass --config.input=VIDEO_FILE_OR_FRAME_FOLDER.')
  path = os.path.expanduser(path)
  if not os.path.exists(path):
    raise errors.DatasetError(f'Input {path} does not exist; pass a video file (mp4, avi) or a '
                              'folder of png/jpg frames as --config.input.')
  if os.path.isdir(path):
    return _read_folder(path), FOLDER_FPS
  return _read_video(path)


def _read_folder(folder: str) -> np.ndarray:
  from PIL import Image
  names = sorted(n for n in os.listdir(folder)
                 if n.lower().endswith(IMAGE_EXTENSIONS) and
                 os.path.isfile(os.path.join(folder, n)))
  if not names:
    raise errors.DatasetError(
        f'Frame folder {folder} holds no {"/".join(e[1:] for e in IMAGE_EXTENSIONS)} files; put '
        'the frames there (sorted by name) or pass a video file.')
  frames = []
  for name in names:
    p = os.path.join(folder, name)
    try:
      with Image.open(p) as im:
        frame = np.asarray(im.convert('RGB'))
    except Exception as exc:  # PIL raises many types for corrupt files
      raise errors.FormatError(f'Cannot decode frame {p}: {exc}') from exc
    if frames and frame.shape != frames[0].shape:
      raise errors.FormatError(
          f'Frame {p} is {frame.shape[1]}x{frame.shape[0]} (WxH) but the first frame '
          f'{os.path.join(folder, names[0])} is {frames[0].shape[1]}x{frames[0].shape[0]}; '
          'all frames of a video must have one size (resize them first).')
    frames.append(frame)
  return np.stack(frames)


def _ffmpeg_reason(exc: Exception) -> str:
  """The informative last line of an ffmpeg error, without its '[in#0 @ 0x..]' prefix."""
  lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
  for ln in reversed(lines):
    if ln != '=== stderr ===':
      return re.sub(r'^\[[^\]]*\]\s*', '', ln)
  return type(exc).__name__


def _read_video(path: str) -> tuple[np.ndarray, float]:
  try:
    import imageio_ffmpeg
  except ImportError as exc:
    raise visualize.VideoWriterUnavailable(
        f'Cannot decode {path}: imageio-ffmpeg is not installed (pip install imageio-ffmpeg), '
        'or pass a folder of png/jpg frames instead.') from exc
  try:
    gen = imageio_ffmpeg.read_frames(path, pix_fmt='rgb24')
    meta = next(gen)
    w, h = (int(v) for v in meta['size'])
    frames = [np.frombuffer(buf, np.uint8).reshape(h, w, 3) for buf in gen]
  except (OSError, RuntimeError, StopIteration, ValueError, KeyError) as exc:
    raise errors.FormatError(f'Cannot decode the video {path}: {_ffmpeg_reason(exc)}. '
                             'Pass a video ffmpeg can read or a folder of png/jpg frames.'
                             ) from exc
  if not frames:
    raise errors.FormatError(f'The video {path} decodes to no frames; pass another file or a '
                             'folder of png/jpg frames.')
  fps = float(meta.get('fps') or 0) or FOLDER_FPS
  return np.stack(frames), fps


def input_stem(path: str) -> str:
  """'a/b/clip.mp4' -> 'clip'; 'a/frames/' -> 'frames'."""
  path = os.path.normpath(os.path.expanduser(path))
  base = os.path.basename(path)
  return os.path.splitext(base)[0] if os.path.isfile(path) else base


def image_ids(stem: str, num_frames: int) -> list[str]:
  """Official-style image ids of every frame: '0001_<t+1:04d>_<stem>_000000_<t:06d>'.

  The stem is reduced to letters and digits: the official tools split ids on '_'.
  """
  city = re.sub(r'[^A-Za-z0-9]', '', stem) or 'video'
  return [f'0001_{t + 1:04d}_{city}_000000_{t:06d}' for t in range(num_frames)]


# ---------------------------------------------------------------------------------------------
# Weights (load only; training is the other modes' job).

def load_trained_models(config, workdir: str) -> video.TrainedModels:
  """The networks of this run without training anything.

  Segmenter: ``<workdir>/seg/final`` or a converted full PanopticFCN in config.seg.checkpoint.
  RAFT (pixel/hybrid): ``<workdir>/flow/final`` or config.flow.checkpoint. Embedding head
  (instance/hybrid): ``<workdir>/track/final``; fusion (hybrid): ``<workdir>/track/fusion``.
  Raises CheckpointError listing every missing piece and the commands that make it.
  """
  from hybrid_jax.models import raft as raft_lib
  from hybrid_jax.stages import common
  from hybrid_jax.stages import segmenter as seg_stage
  from hybrid_jax.stages import tracker as track_stage
  from hybrid_jax.training import pretrained

  variant = config.track.variant
  needs_flow = variant in ('pixel', 'hybrid')
  needs_head = variant in ('instance', 'hybrid')
  if needs_flow and config.flow.source != 'raft':
    raise errors.ConfigError(
        f"flow.source={config.flow.source!r} has no flow for a new video; the {variant!r} "
        "tracker needs RAFT: --config.flow.source=raft (or --config.track.variant=instance).")
  missing = []
  seg_model, _ = seg_stage.build(config)
  seg_vars = _load_seg(config, workdir, seg_model, missing)
  flow_vars = None
  if needs_flow:
    done = common.load_final(workdir, 'flow', raft_lib.ARCHITECTURES[config.flow.variant])
    if done is not None:
      flow_vars = done[0]
    elif config.flow.checkpoint:
      flow_vars = raft_lib.load_raft(config.flow.checkpoint, variant=config.flow.variant)[0]
    else:
      missing.append(
          f'RAFT ({variant} tracker): no {common.final_path(workdir, "flow")}. '
          + _FIX.format(wd=workdir, mode='train_flow')
          + ' convert the official weights: python -m hybrid_jax.convert raft raft-sintel.pth '
          'OUT [--variant standard], then --config.flow.checkpoint=OUT.')
  head_params = fusion_params = dustbin = None
  head_model = track_stage.build_head(config) if needs_head else None
  if needs_head:
    done = common.load_final(workdir, 'track', track_stage.ARCHITECTURE)
    if done is None:
      missing.append(
          f'Embedding head ({variant} tracker): no {common.final_path(workdir, "track")}. '
          + _FIX.format(wd=workdir, mode='train_track')
          + ' track without it: --config.track.variant=pixel.')
    else:
      head_params, meta = done[0]['params'], done[1]
      _check_meta(meta, common.final_path(workdir, 'track'), config,
                  {'canvas': list(config.track.canvas), 'hidden_dim': int(config.track.hidden_dim),
                   'embed_dim': int(config.track.embed_dim), 'pool': int(config.track.pool)})
      if 'dustbin_logit' in head_params:
        dustbin = float(np.asarray(head_params['dustbin_logit']))
      if variant == 'hybrid':
        path = os.path.join(workdir, 'track', track_stage.FUSION_DIR)
        if not os.path.exists(os.path.join(path, pretrained.METADATA_FILE)):
          missing.append(f'Fusion conv (hybrid tracker): no {path}. '
                         + _FIX.format(wd=workdir, mode='train_track')
                         + ' use --config.track.variant=instance or pixel.')
        else:
          fusion_params = pretrained.load_pretrained(
              path, expect_architecture='fusion_conv')[0]['params']
  if missing:
    raise errors.CheckpointError('Cannot track: weights are missing.\n  - '
                                 + '\n  - '.join(missing))
  return video.TrainedModels(
      seg_model=seg_model, seg_variables=seg_vars, flow_variables=flow_vars,
      flow_variant=config.flow.variant, flow_iters=int(config.flow.iters),
      flow_corr=config.flow.corr, head_model=head_model, head_params=head_params,
      fusion_params=fusion_params, dustbin_logit=dustbin)


def _load_seg(config, workdir, model, missing):
  from hybrid_jax.stages import common
  from hybrid_jax.stages import segmenter as seg_stage
  from hybrid_jax.training import pretrained
  done = common.load_final(workdir, seg_stage.STAGE, seg_stage.ARCHITECTURE)
  if done is not None:
    _check_meta(done[1], common.final_path(workdir, 'seg'), config,
                {'backbone': config.seg.backbone, 'categories': config.data.categories})
    return done[0]
  if config.seg.checkpoint:
    meta = pretrained.load_metadata(config.seg.checkpoint)
    if meta.get('architecture') != 'panoptic_fcn_r50':
      raise errors.CheckpointError(
          f'{config.seg.checkpoint} holds {meta.get("architecture")!r} weights, not a whole '
          'segmenter; its heads would be untrained. Train the segmenter on them '
          '(--config.mode=train_seg) or convert a PanopticFCN checkpoint: python -m '
          'hybrid_jax.convert panoptic_fcn model_final.pth OUT.')
    return seg_stage.initial_variables(config, model)[0]
  missing.append(
      f'Segmenter: no {common.final_path(workdir, "seg")}. '
      + _FIX.format(wd=workdir, mode='train_seg')
      + ' convert PanopticFCN weights: python -m hybrid_jax.convert panoptic_fcn '
      'model_final.pth OUT --categories NAME, then --config.seg.checkpoint=OUT.')
  return None


def _check_meta(meta: dict, path: str, config, expected: dict) -> None:
  """Trained with another preset/config -> a clear error instead of a shape error in JAX."""
  for key, want in expected.items():
    if key in meta and meta[key] != want:
      raise errors.CheckpointError(
          f'{path} was trained with {key}={meta[key]!r} but this config has {want!r}; pass the '
          f'config (and preset) the run was trained with (preset here: {config.get("preset")!r}).')


# ---------------------------------------------------------------------------------------------
# Tracking.

def make_tracker(config, models: video.TrainedModels, table):
  """The VideoTracker of config.track (variant, temporal, mutual_check, thresholds)."""
  return video.tracker_lib.VideoTracker.from_config(
      config.track, max_instances=int(config.data.max_instances), embed_fn=models.embed_fn(),
      fusion_params=models.fusion_params, categories=table, dustbin_logit=models.dustbin_logit)


def track_frames(models: video.TrainedModels, tracker, frames: np.ndarray, *,
                 chunk: int = CHUNK, progress: bool | None = None) -> np.ndarray:
  """Segments, estimates flow and tracks `frames` uint8 [T, H, W, 3] chunk by chunk.

  Only `chunk` frames of network outputs (masks [chunk, N, H, W]) live at a time, so long
  videos fit in memory. Returns panoptic int32 [T, H, W] with track ids.
  """
  from tqdm import tqdm
  from hybrid_jax.stages import segmenter as seg_stage
  n = len(frames)
  needs_flow = tracker.variant in ('pixel', 'hybrid')
  segment_fn = models.segment_fn()
  flow_fn = models.flow_fn() if needs_flow else None
  tracker.reset()
  out = np.empty(frames.shape[:3], np.int32)
  if progress is None:
    progress = sys.stderr.isatty()
  with tqdm(total=n, desc='track', unit='frame', disable=not progress) as bar:
    for s in range(0, n, chunk):
      e = min(s + chunk, n)
      seg = seg_stage.segment_clip(segment_fn, models.seg_variables, frames[s:e], batch=chunk)
      flows = _flows(flow_fn, frames, range(max(s, 1), e), chunk) if needs_flow else {}
      for t in range(s, e):
        inst = video.frame_instances(seg, t - s, tracker.max_instances)
        result = tracker.update(frames[t], inst, panoptic=seg['panoptic'][t - s],
                                flow=flows.get(t), frame_index=t)
        out[t] = result.panoptic
        bar.update(1)
  return out


def _flows(flow_fn, frames, ts, batch) -> dict[int, np.ndarray]:
  """{t: forward flow [H, W, 2] from frame t-1 to t}, padded to `batch` pairs per call."""
  import jax
  ts = np.asarray(list(ts), np.int64)
  if not len(ts):
    return {}
  prev, cur = frames[ts - 1], frames[ts]
  if len(ts) < batch:  # one compiled shape
    pad = batch - len(ts)
    prev = np.concatenate([prev, np.repeat(prev[-1:], pad, 0)], 0)
    cur = np.concatenate([cur, np.repeat(cur[-1:], pad, 0)], 0)
  flow = np.asarray(jax.device_get(flow_fn(prev, cur)))
  return {int(t): flow[k] for k, t in enumerate(ts)}


def track_summary(panoptic: np.ndarray, table) -> list[dict]:
  """Thing tracks of panoptic int [T, H, W] (category*1000 + track id, -1 void).

  Returns one dict per (category, track), sorted by label: 'id' (the label
  category*1000 + track), 'track_id', 'category_id', 'category_name', 'first_frame',
  'last_frame', 'num_frames', and 'boxes': [{'frame', 'box': [x0, y0, x1, y1], 'area'}] for
  each frame the track is visible in; boxes in pixels, x1/y1 exclusive (x1 - x0 = width).
  """
  from scipy import ndimage
  things = set(categories_lib.thing_ids(table))
  names = {c.id: c.name for c in table}
  tracks: dict[int, dict] = {}
  for t, pan in enumerate(np.asarray(panoptic)):
    labels, inverse = np.unique(pan, return_inverse=True)
    inverse = inverse.reshape(pan.shape)
    keep = [(k, int(l)) for k, l in enumerate(labels.tolist())
            if l >= 0 and l // categories_lib.LABEL_DIVISOR in things
            and l % categories_lib.LABEL_DIVISOR]
    if not keep:
      continue
    # find_objects wants 1..n labels; index k+1 is label k of `labels`.
    slices = ndimage.find_objects(inverse + 1)
    areas = np.bincount(inverse.ravel(), minlength=len(labels))
    for k, label in keep:
      ys, xs = slices[k]
      cat, tid = divmod(label, categories_lib.LABEL_DIVISOR)
      tr = tracks.setdefault(label, {
          'id': label, 'track_id': tid, 'category_id': cat, 'category_name': names.get(cat, ''),
          'first_frame': t, 'last_frame': t, 'num_frames': 0, 'boxes': []})
      tr['last_frame'] = t
      tr['num_frames'] += 1
      tr['boxes'].append({'frame': t, 'box': [xs.start, ys.start, xs.stop, ys.stop],
                          'area': int(areas[k])})
  return [tracks[k] for k in sorted(tracks)]


def track_video(config, workdir: str, input_path: str, *,
                models: video.TrainedModels | None = None) -> dict:
  """Tracks the video `input_path` with this run's weights; writes the outputs (module doc).

  Returns {'dir', 'mp4' (None without ffmpeg), 'gif', 'pred_dir', 'pred_json', 'tracks_json',
  'frames', 'seconds'}.
  """
  frames, fps = _read(input_path)
  stem = input_stem(input_path)
  models = models or load_trained_models(config, workdir)
  table = categories_lib.get_categories(config.data.categories)
  tracker = make_tracker(config, models, table)
  logging.info('Tracking %s: %d frames of %dx%d with the %s tracker (temporal=%s).',
               input_path, len(frames), frames.shape[2], frames.shape[1], tracker.variant,
               tracker.temporal)
  t0 = time.perf_counter()
  pan = track_frames(models, tracker, frames)
  seconds = time.perf_counter() - t0
  out_dir = os.path.join(workdir, OUT_DIR, stem)
  os.makedirs(out_dir, exist_ok=True)
  official_format.write_predictions(out_dir, image_ids(stem, len(frames)), list(pan), table)
  tracks = track_summary(pan, table)
  tracks_json = os.path.join(out_dir, 'tracks.json')
  with open(tracks_json, 'w') as f:
    json.dump({'input': os.path.abspath(input_path), 'num_frames': int(len(frames)),
               'height': int(frames.shape[1]), 'width': int(frames.shape[2]), 'fps': fps,
               'tracker': {'variant': tracker.variant, 'temporal': tracker.temporal,
                           'mutual_check': tracker.mutual_check},
               'box_format': 'x0, y0, x1, y1 in pixels; x1, y1 exclusive',
               'tracks': tracks}, f, indent=1)
  over = visualize.overlay(frames, visualize.colorize_panoptic(pan, table), 0.5, panoptic=pan)
  strip = [visualize.compose_strip([[frames[t], over[t]]], 2) for t in range(len(frames))]
  gif = os.path.join(out_dir, 'tracked.gif')
  visualize.write_gif(gif, strip, fps=fps)
  mp4 = os.path.join(out_dir, 'tracked.mp4')
  try:
    visualize.write_mp4(mp4, strip, fps=fps)
  except visualize.VideoWriterUnavailable as exc:
    logging.warning('%s', exc)
    mp4 = None
  result = {'dir': out_dir, 'mp4': mp4, 'gif': gif, 'pred_dir': out_dir,
            'pred_json': os.path.join(out_dir, 'pred.json'), 'tracks_json': tracks_json,
            'frames': int(len(frames)), 'seconds': seconds}
  msg = (f'Tracked {len(frames)} frames ({len(tracks)} tracks) in {seconds:.1f} s '
         f'({len(frames) / max(seconds, 1e-9):.2f} fps incl. compilation); outputs in {out_dir}')
  logging.info(msg)
  print(msg)
  return result
