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
stay in memory (about 7 bytes per pixel per frame); networks run on `track.frames_per_call` frames (4) at a time.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time

import numpy as np

from hybrid_jax import console
from hybrid_jax import errors
from hybrid_jax import inference
from hybrid_jax import trained_models
from hybrid_jax import visualize
from hybrid_jax.data import categories as categories_lib
from hybrid_jax.data import image_files
from hybrid_jax.data import official_format

IMAGE_EXTENSIONS = official_format.IMAGE_EXTENSIONS
OUT_DIR = 'track_video'
FOLDER_FPS = 10.0   # frame folders carry no frame rate


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
    frame = image_files.read_rgb(p)
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
    with visualize.ffmpeg_subprocess():
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
# Tracking.

def load_models(config, workdir: str) -> trained_models.TrainedModels:
  """The networks `config.track.variant` needs, from the run in `workdir` (nothing trained)."""
  variant = config.track.variant
  if variant in trained_models.NEEDS_FLOW and config.flow.source != 'raft':
    raise errors.ConfigError(
        f"flow.source={config.flow.source!r} has no flow for a new video; the {variant!r} "
        "tracker needs RAFT: --config.flow.source=raft (or --config.track.variant=instance).")
  return trained_models.load_models(config, workdir)


def make_tracker(config, models: trained_models.TrainedModels, table):
  """The VideoTracker of config.track (variant, temporal, mutual_check, thresholds)."""
  return inference.make_tracker(config.track, head=models.head,
                                max_instances=int(config.data.max_instances), categories=table,
                                flow_model=models.flow, flow_batch=models.frames_per_call)


def track_frames(models: trained_models.TrainedModels, tracker, frames: np.ndarray, *,
                 chunk: int | None = None, progress: bool = True) -> np.ndarray:
  """Segments, estimates flow and tracks `frames` uint8 [T, H, W, 3] chunk by chunk.

  Only `chunk` (default `models.frames_per_call`) frames of network outputs (masks
  [chunk, N, H, W]) live at a time, so long
  videos fit in memory; the numbers equal those of tracking the frames as one clip
  (`inference.iter_chunks`). Returns panoptic int32 [T, H, W] with track ids.
  """
  tracker.reset()
  out = np.empty(frames.shape[:3], np.int32)
  with_flow = tracker.variant in trained_models.NEEDS_FLOW
  with console.progress(total=len(frames), desc='track', unit='frame', enabled=progress) as bar:
    for s, seg, flows in inference.iter_chunks(models, frames, with_flow=with_flow, chunk=chunk):
      n = len(seg['valid'])
      out[s:s + n] = inference.track_chunk(tracker, frames, s, seg, flows)
      bar.update(n)
  return out


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


def claim_output_dir(out_dir: str, input_path: str) -> None:
  """The outputs of one input only: a folder that holds another input's tracking is an error.

  ``clip.mp4`` and a frame folder ``clip/`` both map to ``track_video/clip``; tracking the same
  input again replaces its outputs.
  """
  tracks_json = os.path.join(out_dir, 'tracks.json')
  if not os.path.exists(tracks_json):
    return
  try:
    with open(tracks_json) as f:
      previous = json.load(f).get('input')
  except (OSError, ValueError, AttributeError):
    previous = None
  here = os.path.abspath(os.path.expanduser(input_path))
  if previous and os.path.normpath(previous) != os.path.normpath(here):
    raise errors.WorkdirError(
        f'{out_dir} already holds the tracking of {previous}; tracking {here} there would mix '
        'two inputs. Rename the input, use another --workdir, or delete that folder.')


def track_video(config, workdir: str, input_path: str, *,
                models: trained_models.TrainedModels | None = None) -> dict:
  """Tracks the video `input_path` with this run's weights; writes the outputs (module doc).

  Returns {'dir', 'mp4' (None without ffmpeg), 'gif', 'pred_dir', 'pred_json', 'tracks_json',
  'frames', 'seconds'}.
  """
  stem = input_stem(input_path)
  out_dir = os.path.join(workdir, OUT_DIR, stem)
  claim_output_dir(out_dir, input_path)  # before any compute
  frames, fps = _read(input_path)
  models = models or load_models(config, workdir)
  table = categories_lib.get_categories(config.data.categories)
  tracker = make_tracker(config, models, table)
  logging.info('Tracking %s: %d frames of %dx%d with the %s tracker (temporal=%s).',
               input_path, len(frames), frames.shape[2], frames.shape[1], tracker.variant,
               tracker.temporal)
  t0 = time.perf_counter()
  pan = track_frames(models, tracker, frames)
  seconds = time.perf_counter() - t0
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
