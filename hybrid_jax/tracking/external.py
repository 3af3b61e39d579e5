"""Tracking another model's per-frame predictions: official format in, video-consistent ids out.

The input folder holds ``pred.json`` + ``pan_pred/<image id>.png`` with **per-frame** segment
ids (the official prediction format, reference §3.2), as written by any per-frame panoptic
model (e.g. VPSNet without its tracking head: the paper's "VPSNet-FuseTrack + Pixel" row).
Frames are grouped into videos and ordered as the official tools do: the image-id prefix
``VVVV`` is the video, frames are sorted by image id within it (reference §1.3, §3.3).

Each frame goes through `VideoTracker.update_panoptic` (one tracker, reset per video) and the
tracked maps are written back in the same format with one segment id per (class, track) and
video, ready for the official evaluator or ``python -m hybrid_jax.evaluate``.

Inputs per variant (the tracker's needs; every missing one is a ConfigError naming the option):

* flow ('pixel', 'hybrid'): ``flow_dir/<image id>.flo`` = forward flow from that frame to the
  next frame of its video (Middlebury .flo, at the prediction's size), or RAFT run on
  ``images_dir`` (`raft`), or any ``flow_fn(image_prev, image_cur) -> [H, W, 2]``;
* embedding head ('instance', 'hybrid'): a ``train_track`` export (``<workdir>/track/final``)
  and the frames in ``images_dir``. The trained fusion conv is taken from the sibling
  ``<workdir>/track/fusion`` when present (else the paper's plain sum).

Which categories are things: ``pred.json``'s ``categories`` when present, else the `dataset`
table.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from typing import Any, Callable, Iterator, Mapping, Sequence
import warnings
import zlib

import numpy as np

from hybrid_jax import errors
from hybrid_jax.data import categories as categories_lib
from hybrid_jax.data import official_format
from hybrid_jax.tracking import tracker as tracker_lib

VARIANTS = tracker_lib.VARIANTS
HEAD_ARCHITECTURE = 'embedding_head'
FUSION_ARCHITECTURE = 'fusion_conv'
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg')
# Frames decoded per read_predictions call: it parses pred.json each time, so one call per
# frame would be quadratic on long VIPER splits, one call per split would hold every PNG.
_READ_CHUNK = 16


# ---------------------------------------------------------------------------------------------
# The prediction folder.

@dataclasses.dataclass(frozen=True)
class PredictionIndex:
  """What pred.json says, without decoding a PNG.

  Attributes:
    videos: image ids grouped into videos (official order: sorted, split by `video_id_of`).
    categories: the category table to use.
    categories_from: 'pred.json' or 'dataset:<name>'.
    thing_counts: image id -> number of thing segments in that frame.
    max_things: the most thing segments in one frame (sizes the tracker's slots).
    input_thing_ids: distinct thing segment ids per video, summed (the per-frame ids' count).
  """
  videos: list
  categories: tuple
  categories_from: str
  thing_counts: dict
  max_things: int
  input_thing_ids: int


def index_predictions(pred_dir: str, *, dataset: str = 'cityscapes_vps') -> PredictionIndex:
  """Reads ``pred_dir/pred.json``: image ids, videos, category table, thing counts."""
  path = os.path.join(pred_dir, 'pred.json')
  if not os.path.isdir(pred_dir):
    raise errors.DatasetError(f'Prediction folder {pred_dir} does not exist; --pred-dir must hold '
                              'pred.json and pan_pred/<image id>.png (reference §3.2).')
  if not os.path.exists(path):
    raise errors.DatasetError(f'Missing {path}; a prediction folder holds pred.json and '
                              'pan_pred/<image id>.png (reference §3.2).')
  try:
    with open(path) as f:
      pred = json.load(f)
  except json.JSONDecodeError as exc:
    raise errors.FormatError(f'{path}: malformed JSON at line {exc.lineno} column {exc.colno}: '
                             f'{exc.msg}.') from exc
  anns = pred.get('annotations') if isinstance(pred, dict) else None
  if not isinstance(anns, list):
    raise errors.FormatError(f'{path}: missing list "annotations".')
  if isinstance(pred.get('categories'), list) and pred['categories']:
    table = categories_lib.from_json(pred['categories'])
    source = 'pred.json'
  else:
    table = categories_lib.get_categories(dataset)
    source = f'dataset:{dataset}'
  things = set(categories_lib.thing_ids(table))
  ids, counts, thing_ids_of = [], {}, {}
  for k, a in enumerate(anns):
    if not isinstance(a, dict) or not str(a.get('image_id', '')):
      raise errors.FormatError(
          f'{path}: annotation {k} has no "image_id"; tracking needs it to group frames into '
          'videos (write image_id = the frame\'s image id, e.g. 0005_0025_frankfurt_000000_001736).')
    iid = str(a['image_id'])
    if iid in counts:
      raise errors.FormatError(f'{path}: two annotations for image {iid!r}.')
    ids.append(iid)
    try:
      segs = {int(s['id']) for s in a.get('segments_info', [])
              if int(s.get('category_id', -1)) in things}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
      raise errors.FormatError(f'{path}: malformed segments_info for image {iid!r} '
                               f'({exc!r}).') from exc
    counts[iid] = len(segs)
    thing_ids_of.setdefault(official_format.video_id_of(iid), set()).update(segs)
  if not ids:
    raise errors.FormatError(f'{path}: "annotations" is empty; nothing to track.')
  return PredictionIndex(
      videos=official_format.group_by_video(sorted(ids)), categories=table,
      categories_from=source, thing_counts=counts, max_things=max(counts.values()),
      input_thing_ids=sum(len(v) for v in thing_ids_of.values()))


def iter_frames(pred_dir: str, image_ids: Sequence[str], categories
                ) -> Iterator[tuple[str, np.ndarray, dict | None]]:
  """Per-frame contract labels of the given frames, decoded a chunk at a time.

  Yields:
    (image_id, panoptic int32 [H, W] = category*1000 + per-frame instance (-1 void),
    scores {label: score} when the segments carry a 'score', else None).
  """
  table = tuple(categories)
  things = set(categories_lib.thing_ids(table))
  for s in range(0, len(image_ids), _READ_CHUNK):
    chunk = list(image_ids[s:s + _READ_CHUNK])
    for iid, ids, segs in official_format.read_predictions(pred_dir, chunk, categories=table):
      track_of: dict[int, int] = {}  # per-frame: the input ids mean nothing across frames
      pan = official_format.segments_to_panoptic(
          ids, segs, table, track_of_segment=track_of,
          where=os.path.join(pred_dir, 'pan_pred', f'{iid}.png'))
      scores = None
      if any('score' in seg for seg in segs):
        scores = {}
        for seg in segs:
          sid, cat = int(seg['id']), int(seg['category_id'])
          if cat in things and sid in track_of and 'score' in seg:
            scores[cat * categories_lib.LABEL_DIVISOR + track_of[sid]] = float(seg['score'])
      yield iid, pan, scores


def find_image(images_dir: str, image_id: str) -> str:
  """Path of a frame's image: ``<image id>.{png,jpg,jpeg}`` first, then Cityscapes-VPS names.

  Tried in order: ``<id>.png|.jpg|.jpeg``, ``<id>_newImg8bit.png``, ``<id>_leftImg8bit.png``
  (``<split>/img``), ``<city>_<seq>_<frame>_leftImg8bit.png`` (``<split>/img_all``).
  """
  names = [image_id + e for e in IMAGE_EXTENSIONS]
  names += [image_id + official_format.NEW_IMG_SUFFIX, image_id + official_format.IMG_ALL_SUFFIX]
  parts = image_id.split('_')
  if len(parts) >= 3:
    names.append('_'.join(parts[-3:]) + official_format.IMG_ALL_SUFFIX)
  for n in names:
    p = os.path.join(images_dir, n)
    if os.path.isfile(p):
      return p
  raise errors.DatasetError(
      f'No image for frame {image_id} in {images_dir}: tried {", ".join(names)}. Put the frames '
      f'there as <image id>.png (or .jpg) or pass the Cityscapes-VPS img/ folder.')


# ---------------------------------------------------------------------------------------------
# The embedding head.

@dataclasses.dataclass
class HeadBundle:
  """A loaded embedding head and what goes with it into the VideoTracker.

  Attributes:
    model: EmbeddingHead with the recovered hyper-parameters.
    params: its parameters.
    hparams: {'canvas', 'pool', 'hidden_dim', 'embed_dim', 'use_image'}.
    hparams_from: 'metadata', '<path of config.json>' or 'shapes' (canvas/pool guessed).
    dustbin_logit: float or None (see VideoTracker).
    fusion_params: trained FusionConv params or None (plain sum).
    fusion_from: path of the fusion checkpoint or ''.
  """
  model: Any
  params: Any
  hparams: dict
  hparams_from: str
  dustbin_logit: float | None
  fusion_params: Any
  fusion_from: str


def _track_config(head_dir: str) -> tuple[dict, str]:
  """The ``track`` block of ``<stage dir>/config.json`` next to ``<stage dir>/final``."""
  path = os.path.join(os.path.dirname(os.path.abspath(head_dir)), 'config.json')
  if not os.path.isfile(path):
    return {}, ''
  try:
    with open(path) as f:
      cfg = json.load(f)
  except (OSError, json.JSONDecodeError):
    return {}, ''
  track = cfg.get('track') if isinstance(cfg, dict) else None
  return (track, path) if isinstance(track, dict) else ({}, '')


def head_hparams(params: Mapping, metadata: Mapping, track_cfg: Mapping, where: str = ''
                 ) -> tuple[dict, str]:
  """Recovers the EmbeddingHead hyper-parameters of a checkpoint.

  hidden_dim and embed_dim always come from the FC kernel shapes. canvas and pool are read
  from the checkpoint metadata, else from the training config (`track_cfg`), and checked
  against fc1's input size (canvas/pool * canvas/pool * channels). With neither, they cannot
  be told apart from the shapes alone (only canvas/pool is fixed), so the paper's 1:2 canvas
  is assumed at pool 1: a warning says the embeddings then only approximate the trained ones.

  Returns:
    (hparams dict, source): source 'metadata', 'config' or 'shapes'.
  """
  try:
    d_in, hidden = (int(v) for v in np.shape(params['fc1']['kernel']))
    hidden2, embed = (int(v) for v in np.shape(params['fc2']['kernel']))
  except (KeyError, TypeError, ValueError) as exc:
    raise errors.CheckpointError(f'{where}: not an embedding head (no fc1/fc2 kernels).') from exc
  if hidden2 != hidden:
    raise errors.CheckpointError(f'{where}: fc1 has {hidden} outputs but fc2 {hidden2} inputs.')
  out = {'hidden_dim': hidden, 'embed_dim': embed}
  for source, src in (('metadata', metadata), ('config', track_cfg)):
    if src.get('canvas') is None or src.get('pool') is None:
      continue
    canvas = tuple(int(v) for v in src['canvas'])
    pool = int(src['pool'])
    cells = (canvas[0] // pool) * (canvas[1] // pool)
    if cells <= 0 or d_in % cells or d_in // cells not in (1, 4):
      raise errors.CheckpointError(
          f'{where}: canvas {canvas} with pool {pool} (from the {source}) gives {cells} cells, '
          f'which does not fit fc1\'s {d_in} inputs (cells x 4 channels, or x 1 mask-only).')
    use_image = src.get('use_image')
    use_image = (d_in // cells == 4) if use_image is None else bool(use_image)
    return {**out, 'canvas': canvas, 'pool': pool, 'use_image': use_image}, source
  for channels in (4, 1):
    if d_in % (2 * channels):
      continue
    hp = math.isqrt(d_in // (2 * channels))
    if 2 * channels * hp * hp == d_in:
      warnings.warn(
          f'{where}: the checkpoint records neither canvas nor pool; assumed canvas '
          f'{(hp, 2 * hp)} at pool 1 from fc1\'s {d_in} inputs. If it was trained with pool > 1 '
          'the embeddings only approximate the trained ones: put config.json (the train_track '
          'config) next to the checkpoint folder, or "canvas"/"pool" in its metadata.json.',
          stacklevel=3)
      return {**out, 'canvas': (hp, 2 * hp), 'pool': 1, 'use_image': channels == 4}, 'shapes'
  raise errors.CheckpointError(
      f'{where}: cannot infer the canvas from fc1\'s {d_in} inputs; add "canvas" and "pool" to '
      f'its metadata.json (the train_track config\'s track.canvas / track.pool).')


def load_head(path: str) -> HeadBundle:
  """Loads a ``train_track`` export (``<workdir>/track/final``) and its fusion conv if present."""
  from hybrid_jax.models import embedding_head  # pylint: disable=g-import-not-at-top
  from hybrid_jax.training import pretrained  # pylint: disable=g-import-not-at-top
  if not os.path.isdir(path):
    raise errors.CheckpointError(f'Embedding-head checkpoint {path} does not exist; pass the '
                                 'train_track export, e.g. --head WORKDIR/track/final.')
  variables, meta = pretrained.load_pretrained(path, expect_architecture=HEAD_ARCHITECTURE)
  params = variables.get('params', variables)
  track_cfg, cfg_path = _track_config(path)
  hp, source = head_hparams(params, meta, track_cfg, where=path)
  model = embedding_head.EmbeddingHead(canvas=hp['canvas'], pool=hp['pool'],
                                       hidden_dim=hp['hidden_dim'], embed_dim=hp['embed_dim'],
                                       use_image=hp['use_image'])
  # The learned "no counterpart" logit is used when the head was trained with it; a head
  # trained with no_match='mask' never updates it, so exactly 0 means "not trained".
  no_match = meta.get('no_match', track_cfg.get('no_match'))
  logit = params.get('dustbin_logit')
  dustbin = None
  if logit is not None and (no_match == 'dustbin' or (no_match is None and float(logit) != 0.0)):
    dustbin = float(logit)
  fusion_dir = os.path.join(os.path.dirname(os.path.abspath(path)), 'fusion')
  fusion_params, fusion_from = None, ''
  if os.path.isfile(os.path.join(fusion_dir, pretrained.METADATA_FILE)):
    fusion_params = pretrained.load_pretrained(
        fusion_dir, expect_architecture=FUSION_ARCHITECTURE)[0]['params']
    fusion_from = fusion_dir
  return HeadBundle(model, params, hp, cfg_path if source == 'config' else source, dustbin,
                    fusion_params, fusion_from)


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
  """``fn(image_prev, image_cur) -> flow [H, W, 2]`` from a converted RAFT checkpoint."""
  from hybrid_jax.models import raft as raft_lib  # pylint: disable=g-import-not-at-top
  if iters < 1:
    raise errors.ConfigError(f'--iters must be >= 1, got {iters}.')
  variables, variant = raft_lib.load_raft(checkpoint)

  def fn(image_prev, image_cur):
    # float32 in: one compiled function per frame size.
    return raft_lib.estimate_flow(variables, np.asarray(image_prev, np.float32),
                                  np.asarray(image_cur, np.float32), variant=variant,
                                  iters=int(iters))
  return fn, f'raft_{variant}'


# ---------------------------------------------------------------------------------------------
# Output maps, kept compressed until written (a Cityscapes-VPS split decoded is gigabytes).

class _CompressedMaps(Sequence):

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
                      flow_dir: str | None = None, raft: str | None = None, iters: int = 12,
                      flow_fn: Callable | None = None, images_dir: str | None = None,
                      head: str | None = None, dataset: str = 'cityscapes_vps',
                      max_instances: int | None = None,
                      tracker_kwargs: Mapping[str, Any] | None = None,
                      progress: bool = True) -> dict:
  """Per-frame predictions in the official format -> the same format with track ids.

  Args:
    pred_dir: folder with pred.json + pan_pred/<image id>.png (per-frame ids).
    out_dir: where pred.json + pan_pred/ with video-consistent ids go (not `pred_dir`).
    variant: 'pixel' | 'instance' | 'hybrid' (the tracker's association).
    temporal: temporal-consistency memory. mutual_check: keep mutual best matches only.
    flow_dir: folder of ``<image id>.flo``: forward flow to the next frame of the video.
    raft: converted RAFT checkpoint; flow is computed from `images_dir` with `iters` iterations.
    flow_fn: any ``fn(image_prev uint8 [H,W,3], image_cur) -> [H, W, 2]`` (instead of the two).
    images_dir: the frames (`find_image` says which names are tried).
    head: embedding-head checkpoint (``<workdir>/track/final``).
    dataset: category table used when pred.json has no ``categories``.
    max_instances: tracker slots per frame; None: the most thing segments of any frame
      (nothing dropped). Segments beyond it are dropped by score (area) with a warning.
    tracker_kwargs: more VideoTracker arguments (threshold, temporal_threshold,
      memory_frames, matcher, ...).
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
  needs_images = needs_head or (needs_flow and flow_dir is None)
  if needs_images and images_dir is None:
    why = 'the embedding head' if needs_head else 'RAFT'
    raise errors.ConfigError(f'Variant {variant!r} with {why} needs the frames: add --images DIR '
                             '(<image id>.png/.jpg or the Cityscapes-VPS img/ folder).')
  for name, d in (('--flow-dir', flow_dir if needs_flow else None),
                  ('--images', images_dir if needs_images else None)):
    if d is not None and not os.path.isdir(d):
      raise errors.DatasetError(f'{name} {d} is not a folder.')
  if os.path.abspath(out_dir) == os.path.abspath(pred_dir):
    raise errors.ConfigError('--out-dir must differ from --pred-dir (the input would be '
                             'overwritten while it is read).')
  if max_instances is not None and max_instances < 1:
    raise errors.ConfigError(f'--max-instances must be >= 1, got {max_instances}.')

  index = index_predictions(pred_dir, dataset=dataset)
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
  image_paths = {i: find_image(images_dir, i) for i in all_ids} if needs_images else {}

  flow_name = None
  if needs_flow:
    if raft is not None:
      flow_fn, flow_name = make_raft_flow_fn(raft, iters=iters)
    elif flow_fn is not None:
      flow_name = 'flow_fn'
    else:
      flow_name = 'flo'
  bundle = load_head(head) if needs_head else None
  slots = int(max_instances) if max_instances is not None else max(index.max_things, 1)
  kwargs = dict(tracker_kwargs or {})
  if bundle is not None:
    from hybrid_jax.models import embedding_head  # pylint: disable=g-import-not-at-top
    kwargs.setdefault('embed_fn', embedding_head.make_embed_fn(bundle.model, bundle.params))
    kwargs.setdefault('fusion_params', bundle.fusion_params)
    kwargs.setdefault('dustbin_logit', bundle.dustbin_logit)
  tracker = tracker_lib.VideoTracker(variant, temporal=temporal, mutual_check=mutual_check,
                                     max_instances=slots, categories=index.categories, **kwargs)

  bar = None
  if progress and sys.stderr.isatty():
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    bar = tqdm(total=len(all_ids), desc='track', unit='frame', dynamic_ncols=True)
  maps = _CompressedMaps()
  tracks = 0
  dropped = sum(n > slots for n in index.thing_counts.values())
  try:
    for video in index.videos:
      tracker.reset()
      prev_image = None
      prev_id = None
      video_tracks: set = set()
      for t, (iid, pan, scores) in enumerate(iter_frames(pred_dir, video, index.categories)):
        h, w = pan.shape
        image = official_format.read_rgb(image_paths[iid]) if needs_images else np.zeros((h, w, 3), np.uint8)
        flow = None
        if needs_flow and t > 0:
          flow = _frame_flow(flow_dir, flow_fn, prev_id, iid, prev_image, image, (h, w))
        result = tracker.update_panoptic(image, pan, scores=scores, flow=flow, frame_index=t)
        valid = np.asarray(result.instances.valid)
        video_tracks.update(zip(np.asarray(result.instances.classes)[valid].tolist(),
                                np.asarray(result.ids)[valid].tolist()))
        maps.append(result.panoptic)
        prev_image, prev_id = image, iid
        if bar is not None:
          bar.update(1)
      tracks += len(video_tracks)
  finally:
    if bar is not None:
      bar.close()

  official_format.write_predictions(out_dir, all_ids, maps, index.categories)
  seconds = time.perf_counter() - t_start
  return {
      'frames': len(all_ids), 'videos': len(index.videos), 'variant': variant,
      'temporal': bool(temporal), 'mutual_check': bool(mutual_check), 'flow': flow_name,
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
    from hybrid_jax import flow_io  # pylint: disable=g-import-not-at-top
    path = flo_path(flow_dir, prev_id)
    flow = flow_io.read_flo(path)
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
