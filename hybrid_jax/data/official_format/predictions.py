"""Predictions in the official format: ``pred.json`` + ``pan_pred/<image id>.png``.

What the official evaluators read (reference §3.2): one ``annotations`` entry per frame with
``image_id``, ``file_name`` and ``segments_info``; the PNG holds RGB segment ids
(`segment_ids`). A (class, track) keeps one segment id across the frames of its video.
`index_predictions` / `iter_frames` read another model's per-frame predictions for tracking.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from typing import Iterator, Sequence

import numpy as np

from hybrid_jax import errors
from hybrid_jax.data import categories as categories_lib
from hybrid_jax.data import panoptic_png
from hybrid_jax.data.official_format import json_files
from hybrid_jax.data.official_format import names as names_lib
from hybrid_jax.data.official_format import segment_ids

# Frames decoded per read_predictions call in `iter_frames`: it parses pred.json each time, so
# one call per frame would be quadratic on long VIPER splits, one per split holds every PNG.
_READ_CHUNK = 16


def write_predictions(out_dir: str, image_ids: Sequence[str],
                      panoptic_maps: Sequence[np.ndarray], categories) -> None:
  """Writes ``out_dir/pred.json`` and ``out_dir/pan_pred/<image id>.png`` (PNGs already in
  ``pan_pred/`` are removed first, so a shorter prediction leaves no stale frames).

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
  for name in os.listdir(pan_dir):  # a previous, longer prediction must not leave PNGs behind
    if name.endswith('.png'):
      os.remove(os.path.join(pan_dir, name))
  allocator = segment_ids.SegmentIdAllocator(table)
  annotations = []
  prev_video = None
  for iid, pan in zip(image_ids, panoptic_maps):
    if names_lib.video_id_of(iid) != prev_video:
      allocator.new_video()
      prev_video = names_lib.video_id_of(iid)
    try:
      ids, segments = segment_ids.panoptic_to_segments(pan, allocator, table, with_bbox=True,
                                           crowd_things=False)
    except errors.FormatError as exc:
      raise errors.FormatError(f'Prediction for {iid}: {exc}') from exc
    panoptic_png.write_id_png(os.path.join(pan_dir, f'{iid}.png'), ids)
    annotations.append({'image_id': iid, 'file_name': f'{iid}.png', 'segments_info': segments})
  json_files.write_json(os.path.join(out_dir, 'pred.json'),
              {'annotations': annotations,
               'categories': [segment_ids.category_json(c) for c in table]})


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
  pred = json_files.read_json(path)
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
    info = segment_ids.parse_segments(a.get('segments_info', []), known=known, where=where)
    segs = []
    for sid, seg in info.items():
      if sid not in counts:
        raise errors.FormatError(f'{where}: segment id {sid} is listed in the JSON but absent '
                                 'from the PNG.')
      segs.append({**seg, 'area': int(counts[sid])})
    extra = sorted(set(counts) - set(info) - {0})
    if extra:
      raise errors.FormatError(f'{where}: segment id {extra[0]} appears in the PNG but not in '
                               'the JSON segments_info.')
    out.append((iid, ids, segs))
  return out


# ---------------------------------------------------------------------------------------------
# Another model's per-frame predictions, for tracking.

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
  pred = json_files.read_json(path)
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
    thing_ids_of.setdefault(names_lib.video_id_of(iid), set()).update(segs)
  if not ids:
    raise errors.FormatError(f'{path}: "annotations" is empty; nothing to track.')
  return PredictionIndex(
      videos=[v for _, v in names_lib.group_by_video(sorted(ids), where=path)],
      categories=table,
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
    for iid, ids, segs in read_predictions(pred_dir, chunk, categories=table):
      track_of: dict[int, int] = {}  # per-frame: the input ids mean nothing across frames
      pan = segment_ids.segments_to_panoptic(
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
