"""VIPER-VPS: layout check, TFDS builder ``viper_vps``, clip source and a small layout writer.

The VPS authors converted VIPER's 'day' scenes to the VPS format (reference §2) and share the
result on request only. The layout their code reads (``tools/dataset/viper.py``)::

  ROOT/viper_panoptic_val_day_video.json   images / annotations / categories (COCO panoptic)
  ROOT/val_day/img/<video>_<frame>.jpg     frames (1080x1920)
  ROOT/val_day/panoptic_video/<video>_<frame>.png   RGB-id GT (id = R + 256 G + 65536 B)

An image's GT PNG is its base name with ``.jpg`` -> ``.png`` (an annotation's ``file_name``
when given); only base names are used, since the JSON's file names may carry folders.

Splits:

- ``val`` (folder ``val_day``): one clip per video = its first ``data.clip_length`` (60) frames
  in frame-number order, as in the VPS paper (10 videos x 60 frames = 600, all labelled).
  Frames listed in the JSON are labelled; the rest (if any) are unlabelled.
- ``train`` (folder ``train_day`` with ``viper_panoptic_train_day_video.json``, same layout):
  the VPS release has no train folder (its train JSON, ``instances_train_05_viper_coco.json``,
  labels every 5th frame). Whatever ``train_day`` holds is cut, per video, into consecutive
  non-overlapping windows of ``data.clip_length`` frames (the last window may be shorter);
  window k of video V has video id ``V-k``. Frames without a JSON entry are unlabelled.

Category ids are taken from the JSON's ``categories`` and mapped onto our VIPER table by name.
"""

from __future__ import annotations

import collections
import functools
import json
import os
import re
from typing import Sequence

import numpy as np
from PIL import Image

from hybrid_jax import errors
from hybrid_jax.data import categories as categories_lib
from hybrid_jax.data import official_format
from hybrid_jax.data import panoptic_png
from hybrid_jax.data import raw_layout
from hybrid_jax.data import real

NAME = 'viper_vps'
SPLIT_DIRS = {'train': 'train_day', 'val': 'val_day'}
SPLITS = tuple(SPLIT_DIRS)
NATIVE_HW = (1080, 1920)
_FRAME_NAME = re.compile(r'^(?P<video>.+)_(?P<frame>\d+)\.jpg$')

LAYOUT_TREE = """\
  ROOT/                                  (config.data.root)
    val_day/
      img/             <video>_<frame>.jpg   (first 60 frames of 10 day videos)
      panoptic_video/  <video>_<frame>.png   (RGB-id GT, id = R + 256 G + 65536 B)
    viper_panoptic_val_day_video.json
    train_day/         (optional; same layout, for training)
    viper_panoptic_train_day_video.json"""

HOW_TO_OBTAIN = """\
  The VPS version of VIPER is not downloadable: the VPS authors share it on request (see
  the README of github.com/mcahny/vps, "VIPER"). Its conversion code was not released; the
  original frames and labels are VIPER's "Playing for Benchmarks" release
  (playing-for-benchmarks.org), from which the 'day' videos were converted."""


def _tree(root: str) -> str:
  return raw_layout.layout_tree(LAYOUT_TREE, root)


def missing_root_message(root: str) -> str:
  return raw_layout.missing_root_message('VIPER-VPS', root, tree=LAYOUT_TREE,
                                         how_to_obtain=HOW_TO_OBTAIN, example_root='/path/to/viper_vps',
                                         export_layout=None)


def json_path(root: str, split: str) -> str:
  return os.path.join(root, f'viper_panoptic_{SPLIT_DIRS[split]}_video.json')


def split_paths(root: str, split: str) -> list[str]:
  """The paths a split needs, in the order `check_layout` checks them."""
  d = os.path.join(root, SPLIT_DIRS[split])
  return [root, d, os.path.join(d, 'img'), os.path.join(d, 'panoptic_video'),
          json_path(root, split)]


def _hint(root: str) -> str:
  if os.path.isdir(os.path.join(root, 'viper_vps')):
    return (f' Found unexpected {os.path.join(root, "viper_vps")}: set config.data.root to '
            'that folder.')
  for sub in ('img', 'panoptic_video'):
    if os.path.isdir(os.path.join(root, sub)):
      return (f' Found unexpected {os.path.join(root, sub)}: ROOT looks like a split folder; '
              'set config.data.root to its parent.')
  return ''


def check_layout(root: str, split: str) -> None:
  """Raises DatasetError naming the first missing (or unexpected) path of `split`."""
  if split not in SPLITS:
    raise errors.ConfigError(f'VIPER-VPS has splits {SPLITS}; got {split!r}.')
  if not root or not os.path.isdir(root):
    raise errors.DatasetError(missing_root_message(root))
  for p in split_paths(root, split):
    if not os.path.exists(p):
      raise errors.DatasetError(
          f'VIPER-VPS layout under {root}: missing {p}.{_hint(root)}\n'
          f'Expected layout:\n{_tree(root)}\nHow to obtain it:\n{HOW_TO_OBTAIN}')
  img_dir = os.path.join(root, SPLIT_DIRS[split], 'img')
  for n in sorted(os.listdir(img_dir)):
    if not _FRAME_NAME.match(n):
      raise errors.DatasetError(f'Unexpected {os.path.join(img_dir, n)}: img holds only '
                                '<video>_<frame number>.jpg frames.')


def split_present(root: str, split: str) -> bool:
  return bool(root) and (os.path.isdir(os.path.join(root, SPLIT_DIRS[split])) or
                         os.path.exists(json_path(root, split)))


# ---------------------------------------------------------------------------------------------
# Raw clips.

def _read_json(path: str) -> dict:
  try:
    with open(path) as f:
      gt = json.load(f)
  except json.JSONDecodeError as exc:
    raise errors.FormatError(f'{path}: malformed JSON at line {exc.lineno}: {exc.msg}.') from exc
  for key in ('images', 'annotations', 'categories'):
    if not isinstance(gt.get(key), list):
      raise errors.FormatError(f'{path}: missing list {key!r}.')
  return gt


def raw_clips(data_cfg, split: str) -> list[raw_layout.RawClip]:
  """Indexes `split` under data_cfg.root (JSON + listing, no decoding); see module doc."""
  root = data_cfg.root
  check_layout(root, split)
  table = categories_lib.get_categories(data_cfg.categories)
  split_dir = os.path.join(root, SPLIT_DIRS[split])
  jpath = json_path(root, split)
  gt = _read_json(jpath)
  lut = raw_layout.category_lut(gt['categories'], table, where=jpath)
  json_table = categories_lib.from_json(gt['categories'])
  anns = {str(a.get('image_id')): a for a in gt['annotations']}
  labelled = {}  # image base name -> (image id, annotation)
  for e in gt['images']:
    iid = str(e.get('id'))
    if iid not in anns:
      raise errors.FormatError(f'{jpath}: image {iid!r} has no annotation.')
    labelled[os.path.basename(str(e.get('file_name')))] = (iid, anns[iid])

  videos = collections.defaultdict(list)
  for n in os.listdir(os.path.join(split_dir, 'img')):
    m = _FRAME_NAME.match(n)
    videos[m['video']].append((int(m['frame']), n))
  for n in sorted(labelled):
    v = _FRAME_NAME.match(n)
    if v is None or (int(v['frame']), n) not in videos.get(v['video'], []):
      raise errors.DatasetError(f'Missing {os.path.join(split_dir, "img", n)} (listed in '
                                f'{jpath}).')
  length = int(data_cfg.clip_length)
  clips = []
  for vid in sorted(videos):
    frames = sorted(videos[vid])
    windows = [frames[:length]] if split == 'val' else [
        frames[i:i + length] for i in range(0, len(frames), length)]
    for k, win in enumerate(windows):
      names = [n for _, n in win]
      image_ids = [labelled[n][0] if n in labelled else '' for n in names]
      gt_files = []
      for n in names:
        if n in labelled:
          ann = labelled[n][1]
          gt_name = os.path.basename(str(ann.get('file_name') or n[:-4] + '.png'))
          gt_files.append((os.path.join(split_dir, 'panoptic_video', gt_name), ann))
      for png, _ in gt_files:
        if not os.path.exists(png):
          raise errors.DatasetError(f'Missing {png} (listed in {jpath}).')
      clips.append(raw_layout.RawClip(
          video_id=vid if split == 'val' else f'{vid}-{k}',
          frame_paths=[os.path.join(split_dir, 'img', n) for n in names],
          frame_ids=[n[:-4] for n in names], labelled=np.asarray([bool(i) for i in image_ids]),
          image_ids=image_ids,
          load_labels=functools.partial(_load_labels, gt_files, json_table, lut, jpath)))
  return clips


def _load_labels(gt_files, json_table, lut, jpath) -> np.ndarray:
  """int32 [L, H, W] labels of a clip's labelled frames, tracks numbered across the clip."""
  tracks: dict[int, int] = {}
  out = []
  for png, ann in gt_files:
    where = f'{png} ({jpath})'
    lab = official_format.segments_to_panoptic(
        panoptic_png.read_id_png(png), ann.get('segments_info', []), json_table,
        track_of_segment=tracks, where=where)
    out.append(raw_layout.remap_labels(lab, lut, where=where))
  return np.stack(out)


# ---------------------------------------------------------------------------------------------
# A writer for the layout (test fixtures, or converting other data into it).

def write_layout(clips: Sequence[dict], root: str, split: str, categories, *,
                 json_categories: Sequence[dict] | None = None, quality: int = 95) -> None:
  """Writes clips (data contract) in the VIPER-VPS layout (see module docstring).

  Frame t of clip ``video_id`` V is ``<V>_<t:05d>.jpg``; labelled frames get a GT PNG and a
  JSON entry. `json_categories` (default: `categories` as JSON) is what goes into the JSON's
  ``categories``; segment category ids are mapped onto it by name, so a test can write the
  ids the way another release numbers them.
  """
  table = (categories_lib.get_categories(categories) if isinstance(categories, str)
           else tuple(categories))
  cats_json = list(json_categories) if json_categories is not None else [
      c.to_json() for c in table]
  to_json_id = raw_layout.category_lut(cats_json, table, where='json_categories')
  ours_to_json = {v: k for k, v in to_json_id.items()}
  split_dir = os.path.join(root, SPLIT_DIRS[split])
  for sub in ('img', 'panoptic_video'):
    os.makedirs(os.path.join(split_dir, sub), exist_ok=True)
  allocator = official_format.SegmentIdAllocator(table)
  images, annotations = [], []
  for clip in sorted(clips, key=lambda c: str(c['video_id'])):
    vid = str(clip['video_id'])
    allocator.new_video()
    for t, frame in enumerate(np.asarray(clip['frames'])):
      name = f'{vid}_{t:05d}'
      Image.fromarray(frame).save(os.path.join(split_dir, 'img', name + '.jpg'), quality=quality)
      if not clip['labelled'][t]:
        continue
      ids, segs = official_format.panoptic_to_segments(clip['panoptic'][t], allocator, table,
                                                       with_bbox=True)
      for s in segs:
        s['category_id'] = ours_to_json[s['category_id']]
      panoptic_png.write_id_png(os.path.join(split_dir, 'panoptic_video', name + '.png'), ids)
      h, w = ids.shape
      images.append({'id': name, 'file_name': f'{SPLIT_DIRS[split]}/img/{name}.jpg',
                     'width': w, 'height': h})
      annotations.append({'image_id': name, 'file_name': name + '.png', 'segments_info': segs})
  with open(json_path(root, split), 'w') as f:
    json.dump({'images': images, 'annotations': annotations, 'categories': cats_json}, f)


# ---------------------------------------------------------------------------------------------
# The dataset registry's entries (the TFDS builder and the reading are `real`'s).

DATASET = real.RealDataset(
    name=NAME, title='VIPER-VPS',
    description='VIPER-VPS clips (VPS layout) in the hybrid_jax data contract.',
    homepage='https://github.com/mcahny/vps', splits=SPLITS, check_layout=check_layout,
    split_present=split_present, raw_clips=raw_clips, missing_root_message=missing_root_message)
prepare = DATASET.prepare
source = DATASET.source
