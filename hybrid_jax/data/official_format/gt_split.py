"""The Cityscapes-VPS ground-truth layout (VPSNet's ``data/cityscapes_vps/``): write and read.

Layout under ``root`` (reference §1.2–1.4)::

  root/panoptic_gt_<split>_city_vps.json   images / annotations / categories (sorted file names)
  root/panoptic_im_<split>_city_vps.json   images / categories of the labelled frames
  root/im_all_info_<split>_city_vps.json   every frame, integer ids
  root/<split>/img_all/<city>_<seq:6>_<frame:6>_leftImg8bit.png         every frame
  root/<split>/img/VVVV_NNNN_<city>_<seq>_<frame>_newImg8bit.png       labelled frames
  root/<split>/panoptic_video/VVVV_NNNN_<city>_<seq>_<frame>_final_mask.png   RGB-id GT

The writer keeps the clips' ``video_id`` when all are distinct 4-digit strings (else numbers
them 0001.. in input order) and their ``frame_ids`` when Cityscapes-style
(``<letters>_<6 digits>_<6 digits>``); other frames are named
``synth_<rank of the video id:06d>_<frame index:06d>``. NNNN counts the labelled frames from
0001 in video-id order. Segment ids: `segment_ids`.
"""

from __future__ import annotations

import collections
import collections.abc
import os
from typing import Iterable

import numpy as np
from PIL import Image

from hybrid_jax import errors
from hybrid_jax.data import categories as categories_lib
from hybrid_jax.data import image_files
from hybrid_jax.data import panoptic_png
from hybrid_jax.data.official_format import json_files
from hybrid_jax.data.official_format import names as names_lib
from hybrid_jax.data.official_format import segment_ids

VOID = categories_lib.VOID


def layout_video_ids(video_ids) -> list[str]:
  """The video ids `write_split` gives clips with these ids (in this order): their own when
  all are distinct 4-digit strings, else 0001, 0002, ... in order (KITTI-STEP's sequences keep
  theirs; VIPER's 001 or VIPSeg's names are numbered)."""
  given = [str(v) for v in video_ids]
  if all(names_lib.VIDEO_ID.match(v) for v in given) and len(set(given)) == len(given):
    return given
  return [f'{i + 1:04d}' for i in range(len(given))]


def write_split(clips: Iterable[dict], root: str, split: str, categories) -> None:
  """Writes clips (data contract) in the Cityscapes-VPS layout under `root` (see module doc).

  Every frame goes to ``<split>/img_all``; labelled frames also to ``<split>/img`` and
  ``<split>/panoptic_video`` and into the three JSON files. GT flow is not part of the layout
  and is not written.
  """
  table = categories_lib.as_table(categories)
  cat_json = [segment_ids.category_json(c) for c in table]
  clips = list(clips)
  given = layout_video_ids([str(c.get('video_id', '')) for c in clips])
  # Frame names: the clips' own when Cityscapes-style, else synth_<rank of the video>_<t>, so
  # sorted img_all names follow the sorted video order (the official inference relies on it).
  rank = {v: r for r, v in enumerate(sorted(given))}
  names = []
  for vid, clip in zip(given, clips):
    t = len(clip['frames'])
    fids = [str(f) for f in clip.get('frame_ids', [])]
    if len(fids) != t or not all(names_lib.CITY_NAME.match(f) for f in fids):
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

  allocator = segment_ids.SegmentIdAllocator(table)
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
      name = fids[j] + names_lib.IMG_ALL_SUFFIX
      Image.fromarray(frames[j]).save(os.path.join(dirs['img_all'], name))
      all_images.append({'file_name': name, 'width': w, 'height': h})
      if not labelled[j]:
        continue
      counter += 1
      file_name = f'{vid}_{counter:04d}_{fids[j]}{names_lib.NEW_IMG_SUFFIX}'
      Image.fromarray(frames[j]).save(os.path.join(dirs['img'], file_name))
      try:
        ids, segments = segment_ids.panoptic_to_segments(pan[j], allocator, table, with_bbox=False)
      except errors.FormatError as exc:
        raise errors.DatasetError(f'Clip {vid} frame {j}: {exc}') from exc
      gt_name = names_lib.gt_file_name(file_name)
      panoptic_png.write_id_png(os.path.join(dirs['panoptic_video'], gt_name), ids)
      image_id = names_lib.image_id_from_file_name(file_name)
      images.append({'id': image_id, 'width': w, 'height': h, 'file_name': file_name})
      annotations.append({'image_id': image_id, 'file_name': gt_name,
                          'segments_info': segments})
  images.sort(key=lambda e: e['file_name'])
  annotations.sort(key=lambda e: e['file_name'])
  all_images.sort(key=lambda e: e['file_name'])
  for i, e in enumerate(all_images):
    e['id'] = i + 1
  paths = names_lib.json_paths(root, split)
  json_files.write_json(paths['gt'], {'images': images, 'annotations': annotations,
                            'categories': cat_json})
  json_files.write_json(paths['im'], {'images': images, 'categories': cat_json})
  json_files.write_json(paths['all'], {'images': [{'id': e['id'], 'width': e['width'],
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
  paths = names_lib.json_paths(root, split)
  for p in (root, split_dir, os.path.join(split_dir, 'img'),
            os.path.join(split_dir, 'panoptic_video'), paths['gt']):
    if not os.path.exists(p):
      raise errors.DatasetError(f'Missing {p}. {names_lib.LAYOUT_HELP}')
  gt = json_files.read_json(paths['gt'])
  for key in ('images', 'annotations', 'categories'):
    if not isinstance(gt.get(key), list):
      raise errors.FormatError(f'{paths["gt"]}: missing list {key!r}.')
  table = (categories_lib.as_table(categories) if categories is not None
           else categories_lib.from_json(gt['categories']))

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
        raise errors.DatasetError(f'Missing {p} (listed in {paths["gt"]}). {names_lib.LAYOUT_HELP}')

  label_of_frame = {names_lib.frame_name_of(e['file_name']): iid for iid, e in images.items()}
  all_dir = os.path.join(split_dir, 'img_all')
  videos = []  # (video id, image paths, frame names)
  if os.path.isdir(all_dir):
    all_names = sorted(f for f in os.listdir(all_dir) if f.endswith('.png'))
    for names in _group_all_frames(all_names, frames_per_video):
      fids = [names_lib.frame_name_of(n) for n in names]
      vids = {names_lib.video_id_of(label_of_frame[f]) for f in fids if f in label_of_frame}
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
    for vid, ids in names_lib.group_by_video(sorted(images), where=paths['gt']):
      fids = [names_lib.frame_name_of(images[i]['file_name']) for i in ids]
      videos.append((vid,
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
    frames = np.stack([image_files.read_rgb(p) for p in paths_])
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
      pan[j] = segment_ids.segments_to_panoptic(ids, ann.get('segments_info', []), self.categories,
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
    city, seq, frame = names_lib.frame_name_of(n).rsplit('_', 2)
    key = (city, seq, int(frame)) if frame.isdigit() else (city, seq, None)
    if prev is not None and key[:2] == prev[:2] and key[2] is not None and prev[2] is not None \
        and key[2] == prev[2] + 1:
      groups[-1].append(n)
    else:
      groups.append([n])
    prev = key
  return groups
