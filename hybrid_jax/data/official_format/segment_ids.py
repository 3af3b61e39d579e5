"""Segment ids of the official PNGs <-> the data contract's category*1000 + track labels.

PNG ids: id = R + 256 G + 65536 B, 0 = void. A stuff class uses its category colour as id; a
thing (class, track) gets one id for its whole video, unique within the split, never 0 and
never a stuff id. Instead of panopticapi's unseeded jitter we use its rule with a seeded
generator (`SegmentIdAllocator`): the category colour if still free, else the colour jittered
by up to ±30 per channel drawn from ``numpy.random.default_rng(0)``, redrawn until unused.
Rewriting the same clips therefore gives byte-identical files. A thing pixel with instance 0
(a group region) becomes one ``iscrowd=1`` segment per class and video, read back as
instance 0.

In memory labels are ``category_id * 1000 + track`` with -1 for void; readers renumber thing
tracks canonically (`canonicalize_tracks`): 1..n per clip, in order of first appearance
scanning frames in time order and each frame in raster order.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from hybrid_jax import errors
from hybrid_jax.data import categories as categories_lib

LABEL_DIVISOR = categories_lib.LABEL_DIVISOR
VOID = categories_lib.VOID


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


def parse_segments(segments_info: Sequence[dict], *, known=None, where: str = '') -> dict:
  """{segment id: segment} of a segments_info list, checked.

  Raises FormatError (naming `where`) for a malformed entry, an id listed twice, or a
  category_id not in `known` (any container of ids; None: not checked).
  """
  info = {}
  for seg in segments_info:
    try:
      sid, cat = int(seg['id']), int(seg['category_id'])
    except (KeyError, TypeError, ValueError) as exc:
      raise errors.FormatError(f'{where}: malformed segment {seg!r} ({exc}).') from exc
    if sid in info:
      raise errors.FormatError(f'{where}: segment id {sid} is listed twice in segments_info.')
    if known is not None and cat not in known:
      raise errors.FormatError(f'{where}: segment {sid} has unknown category_id {cat} '
                               f'(known: {sorted(known)}).')
    info[sid] = seg
  return info


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
  info = parse_segments(segments_info, known=table, where=where)
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


def category_json(c: categories_lib.Category) -> dict:
  """A category as the official JSONs list it."""
  return {**c.to_json(), 'instance_eval': int(c.isthing), 'trainid': c.id}


def _color_id(color) -> int:
  r, g, b = (int(v) for v in color)
  return r + 256 * g + 65536 * b
