"""The raw side of a real dataset: its clips as the official layout lists them, not yet decoded
(`RawClip`), and its labels mapped onto our category table.

A dataset module (`cityscapes_vps`, `viper_vps`, `kitti_step`, `vipseg`) lists each split as
`RawClip`s with these helpers; `real` stores them as a TFDS dataset and reads them back.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from typing import Callable, Sequence

import numpy as np

from hybrid_jax import errors
from hybrid_jax.data import categories as categories_lib

LABEL_DIVISOR = categories_lib.LABEL_DIVISOR
VOID = categories_lib.VOID


@dataclasses.dataclass
class RawClip:
  """One clip of the official layout, not yet decoded.

  Attributes:
    video_id: the dataset's video id.
    frame_paths: T image files in time order.
    frame_ids: T frame names (for writing predictions).
    labelled: bool [T].
    image_ids: T image ids of the GT JSON ('' for unlabelled frames).
    load_labels: () -> int32 [L, H, W] labels of the labelled frames, in our category ids.
  """
  video_id: str
  frame_paths: list[str]
  frame_ids: list[str]
  labelled: np.ndarray
  image_ids: list[str]
  load_labels: Callable[[], np.ndarray]


# ---------------------------------------------------------------------------------------------
# Category mapping: the GT JSON's categories -> our table.

def _norm(name: str) -> str:
  n = re.sub(r'[^a-z]', '', str(name).lower())
  return {'vegitation': 'vegetation'}.get(n, n)  # the Cityscapes-VPS file's typo (§1.6)


def category_lut(json_categories: Sequence[dict], table, *, where: str) -> dict[int, int]:
  """Maps the GT JSON's category ids onto `table`'s ids by (normalised) name.

  Names are compared lower-case with non-letters removed ('traffic light' == 'trafficlight'),
  so an id offset or reordering in the JSON is harmless. Raises FormatError for a JSON
  category that has no counterpart in `table` or disagrees on thing/stuff.
  """
  ours = {_norm(c.name): c for c in table}
  lut = {}
  for e in json_categories:
    try:
      cid, name, isthing = int(e['id']), str(e['name']), bool(e.get('isthing', 0))
    except (KeyError, TypeError, ValueError) as exc:
      raise errors.FormatError(f'{where}: malformed category entry {e!r} ({exc}).') from exc
    c = ours.get(_norm(name))
    if c is None:
      raise errors.FormatError(
          f'{where}: category {cid} {name!r} is not in our table '
          f'({", ".join(x.name for x in table)}); use the matching data.categories or extend '
          'hybrid_jax/data/categories.py.')
    if c.isthing != isthing:
      raise errors.FormatError(f'{where}: category {cid} {name!r} has isthing={int(isthing)} '
                               f'but our table says {int(c.isthing)}.')
    lut[cid] = c.id
  return lut


def remap_labels(labels: np.ndarray, lut: dict[int, int], *, where: str) -> np.ndarray:
  """category*1000+track labels with JSON category ids -> the same with our ids (-1 kept)."""
  lab = np.asarray(labels, np.int64)
  cats = np.where(lab >= 0, lab // LABEL_DIVISOR, -1)
  present = set(np.unique(cats).tolist()) - {-1}
  unknown = sorted(present - set(lut))
  if unknown:
    raise errors.FormatError(f'{where}: category id {unknown[0]} is not among the GT JSON '
                             f'categories {sorted(lut)}.')
  keys = np.asarray(sorted(lut), np.int64)
  vals = np.asarray([lut[k] for k in keys.tolist()], np.int64)
  if keys.size == 0:
    return np.full(lab.shape, VOID, np.int32)
  mapped = vals[np.clip(np.searchsorted(keys, cats), 0, keys.size - 1)]
  out = np.where(lab >= 0, mapped * LABEL_DIVISOR + lab % LABEL_DIVISOR, VOID)
  return out.astype(np.int32)


# ---------------------------------------------------------------------------------------------
# Videos whose every frame has its own label file (KITTI-STEP, VIPSeg).

def load_label_files(paths: Sequence[str], read: Callable[[str], np.ndarray],
                     decode: Callable[..., np.ndarray]) -> np.ndarray:
  """int32 [L, H, W]: ``decode(read(path), where=path)`` of every file; an unreadable file is
  a FormatError naming it."""
  out = []
  for p in paths:
    try:
      raw = read(p)
    except OSError as exc:
      raise errors.FormatError(f'Cannot decode the label file {p}: {exc}') from exc
    out.append(decode(raw, where=p))
  return np.stack(out)


def video_clips(video: str, frame_paths: Sequence[str], label_paths: Sequence[str],
                frame_ids: Sequence[str], *, window: int,
                load_labels: Callable[[list[str]], np.ndarray]) -> list[RawClip]:
  """The clips of one video: frame t is ``frame_paths[t]``, labelled when ``label_paths[t]``
  exists. ``window`` > 0 cuts the video into consecutive clips of that many frames (video id
  ``<video>-<k>``), 0 keeps it whole. ``load_labels(labelled paths)`` decodes a clip's labels.
  A clip without any label file is a DatasetError naming the folder looked in."""
  n = len(frame_paths)
  starts = range(0, n, window) if window > 0 else [0]
  clips = []
  for k, s in enumerate(starts):
    e = min(s + window, n) if window > 0 else n
    labels = list(label_paths[s:e])
    labelled = np.asarray([os.path.exists(p) for p in labels])
    if not labelled.any():
      raise errors.DatasetError(f'Video {video}: no label file in {os.path.dirname(labels[0])} '
                                f'for frames {frame_ids[s]} .. {frame_ids[e - 1]}.')
    ids = list(frame_ids[s:e])
    clips.append(RawClip(
        video_id=video if len(starts) == 1 else f'{video}-{k}',
        frame_paths=list(frame_paths[s:e]), frame_ids=ids, labelled=labelled,
        image_ids=[i if ok else '' for i, ok in zip(ids, labelled)],
        load_labels=functools.partial(load_labels,
                                      [p for p, ok in zip(labels, labelled) if ok])))
  return clips


# ---------------------------------------------------------------------------------------------
# Messages for a missing or incomplete layout (the same shape for every dataset).

def layout_tree(tree: str, root: str) -> str:
  """A dataset's LAYOUT_TREE with ROOT spelled out when a root was given."""
  return tree.replace('ROOT/', root.rstrip('/') + '/', 1) if root else tree


def missing_root_message(title: str, root: str, *, tree: str, how_to_obtain: str,
                         example_root: str, export_layout: str | None = None) -> str:
  """'<title> not found': what is wrong with config.data.root, the layout, how to get the
  data, and how to try everything without it (the synthetic data, in this layout when
  `export_layout` names one)."""
  where = (f'config.data.root={root!r} does not exist.' if root else
           f'config.data.root is empty: set --config.data.root={example_root}.')
  without = 'To try everything without downloads, run with --config configs/synthetic.py'
  without += ('.' if export_layout is None else
              ', or write the synthetic data in this layout: --config.mode=export '
              f'--config.export.layout={export_layout}.')
  return (f'{title} not found: {where}\nExpected layout:\n{layout_tree(tree, root)}\n'
          f'How to obtain it:\n{how_to_obtain}\n{without}')
