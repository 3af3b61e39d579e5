"""The Cityscapes-VPS on-disk layout (VPSNet's ``data/cityscapes_vps/``): read, write, predict.

Layout under ``root`` (reference §1.2–1.4)::

  root/panoptic_gt_<split>_city_vps.json   images / annotations / categories (sorted file names)
  root/panoptic_im_<split>_city_vps.json   images / categories of the labelled frames
  root/im_all_info_<split>_city_vps.json   every frame, integer ids
  root/<split>/img_all/<city>_<seq:6>_<frame:6>_leftImg8bit.png         every frame
  root/<split>/img/VVVV_NNNN_<city>_<seq>_<frame>_newImg8bit.png       labelled frames
  root/<split>/panoptic_video/VVVV_NNNN_<city>_<seq>_<frame>_final_mask.png   RGB-id GT

The image id of a labelled frame is its file name without the suffix, e.g.
``0001_0001_synth_000000_000004``; its video id is the first 4 characters. The writer keeps the
clips' ``video_id`` when all are distinct 4-digit strings (else numbers them 0001.. in input
order) and their ``frame_ids`` when Cityscapes-style (``<letters>_<6 digits>_<6 digits>``); other
frames are named ``synth_<rank of the video id:06d>_<frame index:06d>``. NNNN counts the
labelled frames from 0001 in video-id order.

Segment ids (id = R + 256 G + 65536 B, 0 = void): a stuff class uses its category colour as id;
a thing (class, track) gets one id for its whole video, unique within the split, never 0 and never
a stuff id. Instead of panopticapi's unseeded jitter we use its rule with a seeded generator
(`SegmentIdAllocator`): the category colour if still free, else the colour jittered by up to ±30
per channel drawn from ``numpy.random.default_rng(0)``, redrawn until unused. Rewriting the same
clips therefore gives byte-identical files. A thing pixel with instance 0 (a group region)
becomes one ``iscrowd=1`` segment per class and video, and is read back as instance 0.

In memory (the data contract) labels are ``category_id * 1000 + track`` with -1 for void. The
reader renumbers thing tracks canonically (`canonicalize_tracks`): 1..n per clip, in order of
first appearance scanning frames in time order and each frame in raster order.
"""

from __future__ import annotations

import collections
import collections.abc
import json
import os
import re
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from hybrid_jax import errors
from hybrid_jax.data import categories as categories_lib
from hybrid_jax.data import panoptic_png

LABEL_DIVISOR = categories_lib.LABEL_DIVISOR
VOID = categories_lib.VOID

IMG_ALL_SUFFIX = '_leftImg8bit.png'
NEW_IMG_SUFFIX = '_newImg8bit.png'
_CITY_NAME = re.compile(r'^[A-Za-z]+_\d{6}_\d{6}$')
_VIDEO_ID = re.compile(r'^\d{4}$')

LAYOUT_HELP = (
    'Expected layout: ROOT/panoptic_gt_SPLIT_city_vps.json, ROOT/SPLIT/img/ (labelled frames '
    'VVVV_NNNN_<city>_<seq>_<frame>_newImg8bit.png), ROOT/SPLIT/panoptic_video/ (RGB-id PNGs '
    '..._final_mask.png) and optionally ROOT/SPLIT/img_all/ (all frames '
    '<city>_<seq>_<frame>_leftImg8bit.png). Write it with hybrid_jax.data.official_format.'
    'write_split or follow reference §1.2.')


# ---------------------------------------------------------------------------------------------
# Names.

def image_id_from_file_name(file_name: str) -> str:
  """'0001_0001_synth_000000_000004_newImg8bit.png' -> '0001_0001_synth_000000_000004'.

  The reference describes the id as the name without its last two ``_`` tokens; that holds for
  GT names (``..._final_mask.png``, ``..._gtFine_color.png``) but an image name has a one-token
  suffix (``..._newImg8bit.png``). We drop the extension and then the trailing non-numeric
  tokens (at most two), which gives the same id for an image and its GT PNG.
  """
  base = os.path.basename(file_name)
  stem = base[:-4] if base.lower().endswith('.png') else base
  parts = stem.split('_')
  for _ in range(2):
    if len(parts) > 1 and not parts[-1].isdigit():
      parts = parts[:-1]
  if len(parts) < 3 or parts == stem.split('_'):
    raise errors.FormatError(f'Cannot derive an image id from file name {file_name!r}: expected '
                             '<...>_<city>_<seq:6>_<frame:6>_<suffix>.png.')
  return '_'.join(parts)


def video_id_of(image_id: str) -> str:
  """The video id of an image id: its first 4 characters (as the official tools do)."""
  return image_id[:4]


def gt_file_name(image_file_name: str) -> str:
  """Image file name -> GT PNG name, exactly as the evaluator maps them."""
  return image_file_name.replace('_newImg8bit.png', '_final_mask.png').replace(
      '_leftImg8bit.png', '_gtFine_color.png')


def frame_name_of(file_name: str) -> str:
  """'..._<city>_<seq>_<frame>_<suffix>.png' -> '<city>_<seq>_<frame>' (the last 3 id tokens)."""
  return '_'.join(image_id_from_file_name(file_name).split('_')[-3:])


def group_by_video(image_ids: Sequence[str], frames_per_video: int | None = None
                   ) -> list[list[str]]:
  """Groups sorted image ids into videos.

  Args:
    image_ids: ids in the (sorted) order the evaluator uses.
    frames_per_video: None groups consecutive ids with equal `video_id_of`; an integer cuts
      the list into chunks of that many (what the official evaluator does with 6).
  """
  ids = list(image_ids)
  if frames_per_video is not None:
    if frames_per_video < 1 or len(ids) % frames_per_video:
      raise errors.FormatError(
          f'{len(ids)} images cannot be cut into videos of {frames_per_video} frames.')
    return [ids[i:i + frames_per_video] for i in range(0, len(ids), frames_per_video)]
  groups: list[list[str]] = []
  for i in ids:
    if groups and video_id_of(groups[-1][-1]) == video_id_of(i):
      groups[-1].append(i)
    else:
      groups.append([i])
  return groups


def json_paths(root: str, split: str) -> dict[str, str]:
  return {
      'gt': os.path.join(root, f'panoptic_gt_{split}_city_vps.json'),
      'im': os.path.join(root, f'panoptic_im_{split}_city_vps.json'),
      'all': os.path.join(root, f'im_all_info_{split}_city_vps.json'),
  }


# ---------------------------------------------------------------------------------------------
# Labels <-> segment ids.

def canonicalize_tracks(panoptic: np.ndarray, categories=None) -> np.ndarray:
  """Renumbers thing tracks of one clip to 1..n by first appearance (time, then raster order).

  Args:
    panoptic: int [T, H, W] (or [H, W]) = category * 1000 + instance, -1 void.
    categories: optional table; when given only thing classes are renumbered, otherwise every
      label with a positive instance is.
  Returns:
    int32 array of the same shape; stuff (instance 0) and void are unchanged.
  """
  pan = np.asarray(panoptic).astype(np.int64)
  flat = pan.reshape(-1)
  inst = np.where(flat >= 0, flat % LABEL_DIVISOR, 0)
  cand = inst > 0
  if categories is not None:
    things = set(categories_lib.thing_ids(categories_lib.as_table(categories)))
    cand &= np.isin(flat // LABEL_DIVISOR, list(things))
  labels, first = np.unique(flat[cand], return_index=True)
  order = labels[np.argsort(first)]
  out = flat.copy()
  if order.size:
    if order.size >= LABEL_DIVISOR:
      raise errors.FormatError(f'A clip has {order.size} thing tracks; at most '
                               f'{LABEL_DIVISOR - 1} fit the category*1000+track encoding.')
    new = (order // LABEL_DIVISOR) * LABEL_DIVISOR + np.arange(1, order.size + 1)
    idx = np.searchsorted(labels, flat[cand])
    remap = dict(zip(order.tolist(), new.tolist()))
    out[cand] = np.asarray([remap[v] for v in labels.tolist()])[idx]
  return out.reshape(pan.shape).astype(np.int32)


class SegmentIdAllocator:
  """Deterministic version of panopticapi's IdGenerator (see module docstring).

  One allocator serves a whole split so ids are unique split-wide; `new_video` forgets the
  (category, track) -> id map, as the official generator does at each new video.
  """

  def __init__(self, categories, seed: int = 0):
    self._cats = {c.id: c for c in categories_lib.as_table(categories)}
    self._rng = np.random.default_rng(seed)
    self._stuff = {}
    for c in self._cats.values():
      cid = _color_id(c.color)
      if cid == 0:
        raise errors.ConfigError(f'Category {c.id} ({c.name}) has colour (0, 0, 0), which is the '
                                 'void id; give it another colour.')
      if not c.isthing:
        self._stuff[c.id] = cid
    if len(set(self._stuff.values())) != len(self._stuff):
      raise errors.ConfigError('Two stuff categories share a colour; stuff ids must be unique.')
    self._used = set(self._stuff.values()) | {0}
    self._video: dict[int, int] = {}

  def new_video(self) -> None:
    self._video = {}

  def id_for(self, label: int) -> int:
    """Segment id of a contract label (category*1000+instance, >= 0) in the current video."""
    cat = label // LABEL_DIVISOR
    if cat not in self._cats:
      raise errors.FormatError(f'Label {label} has category {cat}, which is not in the category '
                               f'table (ids {sorted(self._cats)}).')
    if not self._cats[cat].isthing:
      return self._stuff[cat]
    if label not in self._video:
      self._video[label] = self._fresh(self._cats[cat].color)
    return self._video[label]

  def _fresh(self, color) -> int:
    cid = _color_id(color)
    base = np.asarray(color, np.int64)
    for _ in range(10000):
      if cid not in self._used:
        self._used.add(cid)
        return cid
      rgb = np.clip(base + self._rng.integers(-30, 31, size=3), 0, 255)
      cid = _color_id(rgb)
    # Never reached in practice (61**3 colours around each class colour).
    cid = 1
    while cid in self._used:
      cid += 1
    self._used.add(cid)
    return cid


def panoptic_to_segments(panoptic: np.ndarray, allocator: SegmentIdAllocator, categories, *,
                         with_bbox: bool, crowd_things: bool = True):
  """One frame's contract labels [H, W] -> (ids int64 [H, W], segments_info list)."""
  pan = np.asarray(panoptic).astype(np.int64)
  if pan.size and pan.min() < VOID:
    raise errors.FormatError(f'Panoptic labels must be >= -1 (void); got {pan.min()}.')
  table = {c.id: c for c in categories_lib.as_table(categories)}
  # A stuff class is one segment whatever instance number it carries.
  stuff = np.isin(pan // LABEL_DIVISOR, categories_lib.stuff_ids(table.values())) & (pan >= 0)
  pan = np.where(stuff, pan // LABEL_DIVISOR * LABEL_DIVISOR, pan)
  ids = np.zeros(pan.shape, np.int64)
  segments = []
  labels, inverse, counts = np.unique(pan, return_inverse=True, return_counts=True)
  seg_of_label = np.zeros(labels.shape, np.int64)
  for k, (label, count) in enumerate(zip(labels.tolist(), counts.tolist())):
    if label < 0:
      continue
    sid = allocator.id_for(label)
    seg_of_label[k] = sid
    cat = label // LABEL_DIVISOR
    seg = {'id': int(sid), 'category_id': int(cat),
           'iscrowd': int(crowd_things and table[cat].isthing and label % LABEL_DIVISOR == 0),
           'area': int(count)}
    if with_bbox:
      ys, xs = np.nonzero(pan == label)
      seg['bbox'] = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                     int(ys.max() - ys.min() + 1)]
    segments.append(seg)
  ids = seg_of_label[inverse.reshape(pan.shape)]
  segments.sort(key=lambda s: s['id'])
  return ids, segments


def segments_to_panoptic(ids: np.ndarray, segments_info: Sequence[dict], categories, *,
                         track_of_segment: dict[int, int] | None = None,
                         where: str = '') -> np.ndarray:
  """Segment ids [H, W] + segments_info -> contract labels int32 [H, W].

  Stuff segments become ``category*1000``, crowd thing segments ``category*1000`` (instance 0),
  other thing segments ``category*1000 + track``, with the track taken from (and added to)
  `track_of_segment` (segment id -> track; new segments get the next number). Void (id 0) -> -1.
  Raises FormatError (naming `where` and the segment) for an id missing from either side or
  an unknown category.
  """
  table = {c.id: c for c in categories_lib.as_table(categories)}
  if track_of_segment is None:
    track_of_segment = {}
  info = {}
  for seg in segments_info:
    try:
      sid, cat = int(seg['id']), int(seg['category_id'])
    except (KeyError, TypeError, ValueError) as exc:
      raise errors.FormatError(f'{where}: malformed segment {seg!r} ({exc}).') from exc
    if sid in info:
      raise errors.FormatError(f'{where}: segment id {sid} is listed twice in segments_info.')
    if cat not in table:
      raise errors.FormatError(f'{where}: segment {sid} has unknown category_id {cat} '
                               f'(known: {sorted(table)}).')
    info[sid] = seg
  ids = np.asarray(ids, np.int64)
  present, first = np.unique(ids.reshape(-1), return_index=True)
  in_png = set(present.tolist()) - {0}
  for sid in sorted(in_png - set(info)):
    raise errors.FormatError(f'{where}: segment id {sid} appears in the PNG but not in the JSON '
                             'segments_info.')
  for sid in sorted(set(info) - in_png):
    raise errors.FormatError(f'{where}: segment id {sid} is listed in the JSON but absent from '
                             'the PNG.')
  lut = {0: VOID}
  # Raster order of first appearance, so a fresh track map numbers tracks canonically.
  for sid in present[np.argsort(first)].tolist():
    if sid == 0:
      continue
    seg = info[sid]
    cat = int(seg['category_id'])
    if not table[cat].isthing or int(seg.get('iscrowd', 0)):
      lut[sid] = cat * LABEL_DIVISOR
    else:
      if sid not in track_of_segment:
        track_of_segment[sid] = len(track_of_segment) + 1
        if track_of_segment[sid] >= LABEL_DIVISOR:
          raise errors.FormatError(f'{where}: more than {LABEL_DIVISOR - 1} thing tracks.')
      lut[sid] = cat * LABEL_DIVISOR + track_of_segment[sid]
  keys = np.asarray(sorted(lut), np.int64)
  vals = np.asarray([lut[k] for k in keys.tolist()], np.int64)
  return vals[np.searchsorted(keys, ids)].astype(np.int32)


# ---------------------------------------------------------------------------------------------
# Writing a split.

def write_split(clips: Iterable[dict], root: str, split: str, categories) -> None:
  """Writes clips (data contract) in the Cityscapes-VPS layout under `root` (see module doc).

  Every frame goes to ``<split>/img_all``; labelled frames also to ``<split>/img`` and
  ``<split>/panoptic_video`` and into the three JSON files. GT flow is not part of the layout
  and is not written.
  """
  table = categories_lib.as_table(categories)
  cat_json = [_category_json(c) for c in table]
  clips = list(clips)
  # Video ids: the clips' own when all are distinct 4-digit strings, else 0001, 0002, ...
  given = [str(c.get('video_id', '')) for c in clips]
  if not (all(_VIDEO_ID.match(v) for v in given) and len(set(given)) == len(given)):
    given = [f'{i + 1:04d}' for i in range(len(clips))]
  # Frame names: the clips' own when Cityscapes-style, else synth_<rank of the video>_<t>, so
  # sorted img_all names follow the sorted video order (the official inference relies on it).
  rank = {v: r for r, v in enumerate(sorted(given))}
  names = []
  for vid, clip in zip(given, clips):
    t = len(clip['frames'])
    fids = [str(f) for f in clip.get('frame_ids', [])]
    if len(fids) != t or not all(_CITY_NAME.match(f) for f in fids):
      fids = [f'synth_{rank[vid]:06d}_{j:06d}' for j in range(t)]
    names.append((vid, fids))
  dup = [k for k, n in collections.Counter(f for _, fs in names for f in fs).items() if n > 1]
  if dup:
    raise errors.DatasetError(f'Duplicate frame id {dup[0]!r} among the clips to write.')

  split_dir = os.path.join(root, split)
  dirs = {k: os.path.join(split_dir, k) for k in ('img_all', 'img', 'panoptic_video')}
  try:
    for d in dirs.values():
      os.makedirs(d, exist_ok=True)
  except OSError as exc:
    raise errors.DatasetError(f'Cannot create {split_dir}: {exc}') from exc

  allocator = SegmentIdAllocator(table)
  images, annotations, all_images = [], [], []
  counter = 0
  for index in sorted(range(len(clips)), key=lambda i: names[i][0]):
    clip, (vid, fids) = clips[index], names[index]
    frames = np.asarray(clip['frames'])
    pan = np.asarray(clip['panoptic'])
    labelled = np.asarray(clip['labelled'], bool)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
      raise errors.DatasetError(f'Clip {vid}: frames must be uint8 [T, H, W, 3], got '
                                f'{frames.dtype} {frames.shape}.')
    t, h, w = frames.shape[:3]
    if pan.shape != (t, h, w) or labelled.shape != (t,):
      raise errors.DatasetError(f'Clip {vid}: panoptic {pan.shape} / labelled {labelled.shape} '
                                f'do not match frames {frames.shape}.')
    allocator.new_video()
    for j in range(t):
      name = fids[j] + IMG_ALL_SUFFIX
      Image.fromarray(frames[j]).save(os.path.join(dirs['img_all'], name))
      all_images.append({'file_name': name, 'width': w, 'height': h})
      if not labelled[j]:
        continue
      counter += 1
      file_name = f'{vid}_{counter:04d}_{fids[j]}{NEW_IMG_SUFFIX}'
      Image.fromarray(frames[j]).save(os.path.join(dirs['img'], file_name))
      try:
        ids, segments = panoptic_to_segments(pan[j], allocator, table, with_bbox=False)
      except errors.FormatError as exc:
        raise errors.DatasetError(f'Clip {vid} frame {j}: {exc}') from exc
      gt_name = gt_file_name(file_name)
      panoptic_png.write_id_png(os.path.join(dirs['panoptic_video'], gt_name), ids)
      image_id = image_id_from_file_name(file_name)
      images.append({'id': image_id, 'width': w, 'height': h, 'file_name': file_name})
      annotations.append({'image_id': image_id, 'file_name': gt_name,
                          'segments_info': segments})
  images.sort(key=lambda e: e['file_name'])
  annotations.sort(key=lambda e: e['file_name'])
  all_images.sort(key=lambda e: e['file_name'])
  for i, e in enumerate(all_images):
    e['id'] = i + 1
  paths = json_paths(root, split)
  _write_json(paths['gt'], {'images': images, 'annotations': annotations,
                            'categories': cat_json})
  _write_json(paths['im'], {'images': images, 'categories': cat_json})
  _write_json(paths['all'], {'images': [{'id': e['id'], 'width': e['width'],
                                         'height': e['height'], 'file_name': e['file_name']}
                                        for e in all_images],
                             'categories': cat_json})


# ---------------------------------------------------------------------------------------------
# Reading a split.

def read_split(root: str, split: str, *, frames_per_video: int | None = None,
               categories=None) -> list[dict]:
  """Reads a whole split into memory: ``list(open_split(...))`` (see `open_split`)."""
  return list(open_split(root, split, frames_per_video=frames_per_video, categories=categories))


def open_split(root: str, split: str, *, frames_per_video: int | None = None,
               categories=None) -> 'SplitSource':
  """Indexes a split in the Cityscapes-VPS layout; clips are decoded lazily on access.

  Args:
    root: the folder holding the JSON files and the ``<split>/`` folder.
    split: 'train', 'val', ...
    frames_per_video: how to cut ``img_all`` into videos. None: by (city, seq) runs of
      consecutive frame numbers, each matched to its video through the labelled frames; an
      integer: consecutive chunks of the sorted names (the official inference protocol, 30).
      Without ``img_all`` the clips hold only the labelled frames.
    categories: table to validate against; default: the GT JSON's ``categories``.
  Returns:
    A random-access `SplitSource` (usable by `pipeline`), one clip per video sorted by video
    id. A clip is a dict: frames uint8 [T,H,W,3], panoptic int32 [T,H,W] (thing tracks
    renumbered canonically, -1 on unlabelled frames), labelled bool [T], video_id ('VVVV'),
    frame_ids ('<city>_<seq>_<frame>'), image_ids (labelled frames' image ids, '' otherwise).
  Raises:
    DatasetError for missing folders/files, FormatError for malformed or inconsistent JSON.
    Per-PNG checks (ids vs segments_info, categories) run when a clip is read.
  """
  split_dir = os.path.join(root, split)
  paths = json_paths(root, split)
  for p in (root, split_dir, os.path.join(split_dir, 'img'),
            os.path.join(split_dir, 'panoptic_video'), paths['gt']):
    if not os.path.exists(p):
      raise errors.DatasetError(f'Missing {p}. {LAYOUT_HELP}')
  gt = _read_json(paths['gt'])
  for key in ('images', 'annotations', 'categories'):
    if not isinstance(gt.get(key), list):
      raise errors.FormatError(f'{paths["gt"]}: missing list {key!r}.')
  table = categories_lib.as_table(categories) if categories is not None else categories_lib.from_json(
      gt['categories'])

  # Labelled frames: image id -> (image entry, annotation).
  images = {}
  for e in gt['images']:
    iid = str(e.get('id'))
    if iid in images:
      raise errors.FormatError(f'{paths["gt"]}: duplicate image id {iid!r} in "images".')
    images[iid] = e
  anns = {}
  for a in gt['annotations']:
    iid = str(a.get('image_id'))
    if iid in anns:
      raise errors.FormatError(f'{paths["gt"]}: duplicate annotation for image {iid!r}.')
    if iid not in images:
      raise errors.FormatError(f'{paths["gt"]}: annotation for unknown image id {iid!r}.')
    anns[iid] = a
  for iid in images:
    if iid not in anns:
      raise errors.FormatError(f'{paths["gt"]}: image {iid!r} has no annotation.')
  img_dir = os.path.join(split_dir, 'img')
  for iid, e in images.items():
    for p in (os.path.join(img_dir, str(e.get('file_name'))),
              os.path.join(split_dir, 'panoptic_video', str(anns[iid].get('file_name')))):
      if not os.path.exists(p):
        raise errors.DatasetError(f'Missing {p} (listed in {paths["gt"]}). {LAYOUT_HELP}')

  label_of_frame = {frame_name_of(e['file_name']): iid for iid, e in images.items()}
  all_dir = os.path.join(split_dir, 'img_all')
  videos = []  # (video id, image paths, frame names)
  if os.path.isdir(all_dir):
    all_names = sorted(f for f in os.listdir(all_dir) if f.endswith('.png'))
    for names in _group_all_frames(all_names, frames_per_video):
      fids = [frame_name_of(n) for n in names]
      vids = {video_id_of(label_of_frame[f]) for f in fids if f in label_of_frame}
      if len(vids) > 1:
        raise errors.DatasetError(f'{all_dir}: frames {fids[0]}..{fids[-1]} form one clip but '
                                  f'hold labelled frames of videos {sorted(vids)}; pass '
                                  'frames_per_video.')
      videos.append((vids.pop() if vids else '', [os.path.join(all_dir, n) for n in names],
                     fids))
    missing = set(label_of_frame) - {f for _, _, fs in videos for f in fs}
    if missing:
      raise errors.DatasetError(f'Labelled frame {sorted(missing)[0]} has no image in {all_dir}.')
  else:
    for ids in group_by_video(sorted(images)):
      fids = [frame_name_of(images[i]['file_name']) for i in ids]
      videos.append((video_id_of(ids[0]),
                     [os.path.join(img_dir, images[i]['file_name']) for i in ids], fids))
  # Videos without labels get an id that sorts after the labelled ones.
  videos = [(v or f'x{k:03d}', p, f) for k, (v, p, f) in enumerate(videos)]
  videos.sort(key=lambda v: v[0])
  return SplitSource(videos, label_of_frame, anns, table,
                     os.path.join(split_dir, 'panoptic_video'), paths['gt'])


class SplitSource(collections.abc.Sequence):
  """Random-access clips of one split; ``source[i]`` decodes video i (see `open_split`).

  Attributes:
    video_ids: list[str], one per clip.
    labelled_masks: list of bool [T], without decoding anything (pass as the pipeline's
      ``clip_labelled``).
    categories: the category table.
  """

  def __init__(self, videos, label_of_frame, anns, table, gt_dir, gt_json):
    self._videos, self._label_of_frame, self._anns = videos, label_of_frame, anns
    self.categories, self._gt_dir, self._gt_json = table, gt_dir, gt_json
    self.video_ids = [v for v, _, _ in videos]
    self.labelled_masks = [np.asarray([f in label_of_frame for f in fids], bool)
                           for _, _, fids in videos]

  def __len__(self) -> int:
    return len(self._videos)

  def __getitem__(self, index):
    if isinstance(index, slice):
      return [self[i] for i in range(*index.indices(len(self)))]
    vid, paths_, fids = self._videos[index]
    frames = np.stack([read_rgb(p) for p in paths_])
    t, h, w = frames.shape[:3]
    pan = np.full((t, h, w), VOID, np.int32)
    labelled = np.zeros((t,), bool)
    image_ids = [''] * t
    tracks: dict[int, int] = {}
    for j, f in enumerate(fids):
      iid = self._label_of_frame.get(f)
      if iid is None:
        continue
      ann = self._anns[iid]
      png = os.path.join(self._gt_dir, str(ann.get('file_name')))
      ids = panoptic_png.read_id_png(png)
      if ids.shape != (h, w):
        raise errors.FormatError(f'{png}: size {ids.shape} differs from its image {(h, w)}.')
      pan[j] = segments_to_panoptic(ids, ann.get('segments_info', []), self.categories,
                                    track_of_segment=tracks, where=f'{png} ({self._gt_json})')
      labelled[j] = True
      image_ids[j] = iid
    return {'frames': frames, 'panoptic': pan, 'labelled': labelled, 'video_id': vid,
            'frame_ids': list(fids), 'image_ids': image_ids}


def _group_all_frames(names: list[str], frames_per_video: int | None) -> list[list[str]]:
  if frames_per_video is not None:
    if frames_per_video < 1 or len(names) % frames_per_video:
      raise errors.DatasetError(f'{len(names)} frames in img_all cannot be cut into videos of '
                                f'{frames_per_video} frames.')
    return [names[i:i + frames_per_video] for i in range(0, len(names), frames_per_video)]
  groups: list[list[str]] = []
  prev = None
  for n in names:
    city, seq, frame = frame_name_of(n).rsplit('_', 2)
    key = (city, seq, int(frame)) if frame.isdigit() else (city, seq, None)
    if prev is not None and key[:2] == prev[:2] and key[2] is not None and prev[2] is not None \
        and key[2] == prev[2] + 1:
      groups[-1].append(n)
    else:
      groups.append([n])
    prev = key
  return groups


# ---------------------------------------------------------------------------------------------
# Predictions (what the official evaluator reads).

def write_predictions(out_dir: str, image_ids: Sequence[str],
                      panoptic_maps: Sequence[np.ndarray], categories) -> None:
  """Writes ``out_dir/pred.json`` and ``out_dir/pan_pred/<image id>.png``.

  Args:
    image_ids: labelled-frame image ids in the GT's (sorted) order; the evaluator pairs
      entries by position.
    panoptic_maps: int [H, W] each, category*1000 + track (-1 void). A (class, track) keeps one
      segment id across the frames of its video (`video_id_of`).
  """
  image_ids = [str(i) for i in image_ids]
  if len(image_ids) != len(panoptic_maps):
    raise errors.FormatError(f'{len(image_ids)} image ids but {len(panoptic_maps)} panoptic maps.')
  dup = [i for i, n in collections.Counter(image_ids).items() if n > 1]
  if dup:
    raise errors.FormatError(f'Duplicate image id {dup[0]!r} in the predictions to write.')
  table = categories_lib.as_table(categories)
  pan_dir = os.path.join(out_dir, 'pan_pred')
  os.makedirs(pan_dir, exist_ok=True)
  allocator = SegmentIdAllocator(table)
  annotations = []
  prev_video = None
  for iid, pan in zip(image_ids, panoptic_maps):
    if video_id_of(iid) != prev_video:
      allocator.new_video()
      prev_video = video_id_of(iid)
    try:
      ids, segments = panoptic_to_segments(pan, allocator, table, with_bbox=True,
                                           crowd_things=False)
    except errors.FormatError as exc:
      raise errors.FormatError(f'Prediction for {iid}: {exc}') from exc
    panoptic_png.write_id_png(os.path.join(pan_dir, f'{iid}.png'), ids)
    annotations.append({'image_id': iid, 'file_name': f'{iid}.png', 'segments_info': segments})
  _write_json(os.path.join(out_dir, 'pred.json'),
              {'annotations': annotations, 'categories': [_category_json(c) for c in table]})


def read_predictions(pred_dir: str, image_ids: Sequence[str] | None = None, *,
                     categories=None) -> list[tuple[str, np.ndarray, list[dict]]]:
  """Reads ``pred.json`` + ``pan_pred/`` -> [(image_id, ids int64 [H, W], segments_info)].

  Args:
    image_ids: when given, the entries for exactly these ids in this order (FormatError if one
      is missing); otherwise every entry in file order.
    categories: table to validate category ids against (default: pred.json's categories).
  Areas in the returned segments_info are recomputed from the PNG, as the evaluator does.
  """
  path = os.path.join(pred_dir, 'pred.json')
  if not os.path.exists(path):
    raise errors.DatasetError(f'Missing {path}; a prediction folder holds pred.json and '
                              'pan_pred/<image id>.png (reference §3.2).')
  pred = _read_json(path)
  if not isinstance(pred.get('annotations'), list):
    raise errors.FormatError(f'{path}: missing list "annotations".')
  if categories is not None:
    table = categories_lib.as_table(categories)
  elif isinstance(pred.get('categories'), list):
    table = categories_lib.from_json(pred['categories'])
  else:
    table = None
  known = None if table is None else {c.id for c in table}
  by_id = {}
  for a in pred['annotations']:
    iid = str(a.get('image_id', ''))
    if iid in by_id:
      raise errors.FormatError(f'{path}: duplicate annotation for image {iid!r}.')
    by_id[iid] = a
  order = list(by_id) if image_ids is None else [str(i) for i in image_ids]
  out = []
  for iid in order:
    if iid not in by_id:
      raise errors.FormatError(f'{path}: no annotation for image {iid!r}.')
    a = by_id[iid]
    png = os.path.join(pred_dir, 'pan_pred', str(a.get('file_name') or f'{iid}.png'))
    ids = panoptic_png.read_id_png(png)
    where = f'{png} ({path})'
    counts = dict(zip(*[v.tolist() for v in np.unique(ids, return_counts=True)]))
    segs, seen = [], set()
    for s in a.get('segments_info', []):
      try:
        sid, cat = int(s['id']), int(s['category_id'])
      except (KeyError, TypeError, ValueError) as exc:
        raise errors.FormatError(f'{where}: malformed segment {s!r} ({exc}).') from exc
      if sid in seen:
        raise errors.FormatError(f'{where}: segment id {sid} is listed twice.')
      seen.add(sid)
      if known is not None and cat not in known:
        raise errors.FormatError(f'{where}: segment {sid} has unknown category_id {cat}.')
      if sid not in counts:
        raise errors.FormatError(f'{where}: segment id {sid} is listed in the JSON but absent '
                                 'from the PNG.')
      segs.append({**s, 'area': int(counts[sid])})
    extra = sorted(set(counts) - seen - {0})
    if extra:
      raise errors.FormatError(f'{where}: segment id {extra[0]} appears in the PNG but not in '
                               'the JSON segments_info.')
    out.append((iid, ids, segs))
  return out


# ---------------------------------------------------------------------------------------------
# Small helpers.

def _category_json(c: categories_lib.Category) -> dict:
  return {**c.to_json(), 'instance_eval': int(c.isthing), 'trainid': c.id}


def _color_id(color) -> int:
  r, g, b = (int(v) for v in color)
  return r + 256 * g + 65536 * b


def _write_json(path: str, obj) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'w') as f:
    json.dump(obj, f)


def _read_json(path: str):
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as exc:
    raise errors.FormatError(f'{path}: malformed JSON at line {exc.lineno} column {exc.colno} '
                             f'(char {exc.pos}): {exc.msg}.') from exc
  except OSError as exc:
    raise errors.DatasetError(f'Cannot read {path}: {exc}') from exc


def read_rgb(path: str) -> np.ndarray:
  """An image file as uint8 RGB [H, W, 3]; FormatError when it cannot be decoded."""
  try:
    with Image.open(path) as im:
      return np.asarray(im.convert('RGB'))
  except Exception as exc:  # PIL raises many types for corrupt files
    raise errors.FormatError(f'Cannot decode image {path}: {exc}') from exc
