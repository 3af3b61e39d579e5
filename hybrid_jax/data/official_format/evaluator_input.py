"""What the official evaluators read: every GT frame paired with its prediction, cut into videos.

Ground truth: a panoptic json (``images``, ``annotations`` with ``segments_info``,
``categories``) and a folder of RGB-id PNGs (``panoptic_video/``). Prediction: ``pred.json``
(one ``annotations`` entry per GT frame) and ``pan_pred/<image id>.png`` (reference §1.4,
§3.2, §3.3). Frames are ordered by GT PNG name (the official evaluator sorts them) and cut
into videos by `names.group_by_video`.
"""

from __future__ import annotations

import dataclasses
import os

from hybrid_jax import errors
from hybrid_jax.data.official_format import json_files
from hybrid_jax.data.official_format import names as names_lib


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


def load_layout(gt_dir: str, gt_json: str, pred_dir: str, *, frames_per_video: int | None,
                check_prefix: bool = True) -> Layout:
  """Reads both jsons and pairs every GT frame with its prediction (no PNG is decoded here)."""
  gt = json_files.read_json(gt_json, what='Ground-truth json')
  for key in ('images', 'annotations', 'categories'):
    if key not in gt:
      raise errors.FormatError(f'{gt_json}: missing the "{key}" list.')
  pred_json = os.path.join(pred_dir, 'pred.json')
  pred = json_files.read_json(pred_json, what='Prediction json')
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
    gt_name = ann.get('file_name') or names_lib.gt_file_name(images[image_id]['file_name'])
    frames.append(FrameFiles(
        image_id=image_id, gt_png=os.path.join(gt_dir, gt_name),
        gt_segments=tuple(ann.get('segments_info', ())),
        pred_png=os.path.join(pred_dir, 'pan_pred', image_id + '.png'),
        pred_segments=tuple(p_ann.get('segments_info', ()))))
  frames.sort(key=lambda f: os.path.basename(f.gt_png))
  groups = names_lib.group_by_video([f.image_id for f in frames],
                                    frames_per_video=frames_per_video, check_prefix=check_prefix,
                                    where=gt_json)
  videos, start = [], 0
  for vid, ids in groups:  # the groups cut the sorted frames in order
    videos.append((vid, frames[start:start + len(ids)]))
    start += len(ids)
  return Layout(categories=gt['categories'], videos=videos)
