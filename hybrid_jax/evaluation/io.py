"""The official on-disk layout (reference §1.4, §3.2, §3.3) as lists of per-video frame files.

Ground truth: a panoptic json (`images`, `annotations` with `segments_info`, `categories`) and a
folder of RGB-id PNGs (`panoptic_video/`).  Prediction: a folder with `pred.json` (one
`annotations` entry per GT frame) and `pan_pred/<image id>.png`.  Frames are ordered by GT PNG
name (the official evaluator sorts them) and cut into videos: consecutive chunks of
`frames_per_video` (6 on Cityscapes-VPS), checked against the image-id video prefix.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from hybrid_jax import errors


@dataclasses.dataclass(frozen=True)
class FrameFiles:
  """One labelled frame of the official layout."""
  image_id: str
  gt_png: str
  gt_segments: tuple
  pred_png: str
  pred_segments: tuple


@dataclasses.dataclass(frozen=True)
class Layout:
  """Videos (video id, frames) plus the GT json's categories."""
  categories: list
  videos: list


def read_json(path: str, *, what: str) -> Any:
  if not os.path.isfile(path):
    raise errors.FormatError(f'{what} not found: {path}')
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as exc:
    raise errors.FormatError(f'{what} {path} is not valid JSON: {exc}') from exc


def _gt_png_name(image: dict) -> str:
  # The Cityscapes-VPS image -> GT PNG renaming (reference §1.3), used when the annotation has no
  # file_name of its own.
  name = os.path.basename(image['file_name'])
  name = name.replace('_newImg8bit.png', '_final_mask.png').replace(
      '_leftImg8bit.png', '_gtFine_color.png')
  return os.path.splitext(name)[0] + '.png'


def video_prefix(image_id: str) -> str | None:
  """The video part of an image id ('0005' in '0005_0025_frankfurt_000000_001736')."""
  return image_id.split('_', 1)[0] if '_' in image_id else None


def group_videos(image_ids: list, *, frames_per_video: int | None, check_prefix: bool = True,
                 where: str = 'ground truth') -> list:
  """Splits sorted frame indices into videos: [(video id, [frame indices])].

  frames_per_video=None groups consecutive runs of the same image-id prefix.  Otherwise the
  frames are cut into consecutive chunks (the official tool) and, with `check_prefix`, each chunk
  must hold exactly one prefix, different from its neighbours'.
  """
  n = len(image_ids)
  prefixes = [video_prefix(i) for i in image_ids]
  if frames_per_video is None:
    if any(p is None for p in prefixes):
      raise errors.FormatError(
          f'{where}: image ids without a "<video>_" prefix cannot be grouped into videos;'
          ' pass --frames-per-video N.')
    videos = []
    for i, p in enumerate(prefixes):
      if not videos or videos[-1][0] != p:
        videos.append((p, []))
      videos[-1][1].append(i)
    if len({v for v, _ in videos}) != len(videos):
      raise errors.FormatError(f'{where}: frames of one video prefix are not contiguous in the'
                               ' sorted order; pass --frames-per-video N.')
    return videos
  if frames_per_video <= 0 or n % frames_per_video:
    raise errors.FormatError(
        f'{where}: {n} labelled frames cannot be cut into videos of {frames_per_video} frames;'
        ' pass the right --frames-per-video.')
  videos = []
  for v in range(n // frames_per_video):
    idx = list(range(v * frames_per_video, (v + 1) * frames_per_video))
    chunk = {prefixes[i] for i in idx}
    if check_prefix and None not in chunk:
      if len(chunk) != 1 or (videos and videos[-1][0] in chunk):
        raise errors.FormatError(
            f'{where}: frames {image_ids[idx[0]]} .. {image_ids[idx[-1]]} do not form one video'
            f' of {frames_per_video} frames (video prefixes {sorted(chunk)}). Pass the right'
            ' --frames-per-video, or disable the prefix check.')
      videos.append((chunk.pop(), idx))
    else:
      videos.append((f'video_{v:04d}', idx))
  return videos


def load_layout(gt_dir: str, gt_json: str, pred_dir: str, *, frames_per_video: int | None,
                check_prefix: bool = True) -> Layout:
  """Reads both jsons and pairs every GT frame with its prediction (no PNG is decoded here)."""
  gt = read_json(gt_json, what='Ground-truth json')
  for key in ('images', 'annotations', 'categories'):
    if key not in gt:
      raise errors.FormatError(f'{gt_json}: missing the "{key}" list.')
  pred_json = os.path.join(pred_dir, 'pred.json')
  pred = read_json(pred_json, what='Prediction json')
  if 'annotations' not in pred:
    raise errors.FormatError(f'{pred_json}: missing the "annotations" list.')
  gt_anns, pred_anns = gt['annotations'], pred['annotations']
  if len(pred_anns) != len(gt_anns):
    raise errors.FormatError(
        f'{pred_json}: {len(pred_anns)} prediction entries for {len(gt_anns)} ground-truth'
        ' frames; write one entry per GT frame, in the GT order.')
  images = {}
  for im in gt['images']:
    images[str(im['id'])] = im
  # Pair by image_id when every prediction entry names one, else by position like the official
  # evaluator.
  by_id = all('image_id' in a for a in pred_anns)
  pred_of = {str(a['image_id']): a for a in pred_anns} if by_id else None
  frames = []
  for pos, ann in enumerate(gt_anns):
    image_id = str(ann.get('image_id'))
    if image_id not in images:
      raise errors.FormatError(f'{gt_json}: annotation {pos} has image_id {image_id!r} that is'
                               ' not in "images".')
    if by_id:
      if image_id not in pred_of:
        raise errors.FormatError(f'{pred_json}: no entry for image {image_id}.')
      p_ann = pred_of[image_id]
    else:
      p_ann = pred_anns[pos]
    gt_name = ann.get('file_name') or _gt_png_name(images[image_id])
    frames.append(FrameFiles(
        image_id=image_id, gt_png=os.path.join(gt_dir, gt_name),
        gt_segments=tuple(ann.get('segments_info', ())),
        pred_png=os.path.join(pred_dir, 'pan_pred', image_id + '.png'),
        pred_segments=tuple(p_ann.get('segments_info', ()))))
  frames.sort(key=lambda f: os.path.basename(f.gt_png))
  groups = group_videos([f.image_id for f in frames], frames_per_video=frames_per_video,
                        check_prefix=check_prefix, where=gt_json)
  return Layout(categories=gt['categories'],
                videos=[(vid, [frames[i] for i in idx]) for vid, idx in groups])
