"""Shared machinery of the real-dataset TFDS builders (Cityscapes-VPS and VIPER-VPS).

A dataset module (`cityscapes_vps`, `viper_vps`) checks its official on-disk layout and lists
each split as `RawClip`s; this module turns those into a TFDS dataset (array_record files, no
TensorFlow) and reads it back as clips in the data contract.

Storage (one TFDS example = one clip)::

  frames     Sequence of bytes     the encoded frames: the original PNG/JPEG file bytes when
                                   the configured size is the native one, else PNG bytes of
                                   the resized frame
  panoptic   int32 [L, H, W] zlib  labels of the L labelled frames only (category*1000+track,
                                   -1 void; categories already mapped onto our table)
  labelled   bool [T]
  video_id   bytes;  frame_ids, image_ids: Sequence of bytes ('' for unlabelled frames)

Why encoded bytes: a decoded Cityscapes-VPS val clip is 30 x 1024 x 2048 x 3 = 189 MB and a
VIPER val clip 373 MB, so raw uint8 would make the prepared val splits 9.4 GB / 3.7 GB; the
original files are already compressed (PNG / JPEG), so copying their bytes is lossless, fast
(no re-encoding at prepare time) and keeps the prepared data about the size of the source.
Unlike a dataset that only references the files, the prepared data stay valid when the raw
folder moves or is deleted. Labels are stored for labelled frames only (Cityscapes-VPS labels
6 of 30 frames); zlib shrinks their piecewise-constant int32 maps many times over.

Each (split, resolution) is its own TFDS builder config, named ``<split>_<H>x<W>``, so adding
the train folder later builds train without touching val, and a 'half' preset prepares its own
smaller copy. A small index (video ids, labelled masks, frame ids) goes into the dataset's
metadata so a source knows every clip's labelled frames without decoding any clip.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import io
import os
import re
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from hybrid_jax import errors
from hybrid_jax.data import categories as categories_lib

LABEL_DIVISOR = categories_lib.LABEL_DIVISOR
VOID = categories_lib.VOID
_VERSION = '1.0.0'


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
# Encoding a raw clip into a TFDS example and decoding it back.

def _resize_labels(lab: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
  """Nearest-neighbour resize of [L, H, W] labels (pixel centres, as PIL's NEAREST)."""
  h, w = lab.shape[1:]
  ys = np.minimum(((np.arange(hw[0]) + 0.5) * h / hw[0]).astype(np.int64), h - 1)
  xs = np.minimum(((np.arange(hw[1]) + 0.5) * w / hw[1]).astype(np.int64), w - 1)
  return lab[:, ys][:, :, xs]


def _frame_bytes(path: str, hw: tuple[int, int]) -> tuple[bytes, tuple[int, int]]:
  """(encoded bytes at size hw, native (H, W)); the file's own bytes when no resize is needed."""
  try:
    with open(path, 'rb') as f:
      data = f.read()
    with Image.open(io.BytesIO(data)) as im:
      native = (im.height, im.width)
      if native == tuple(hw):
        return data, native
      im = im.convert('RGB').resize((hw[1], hw[0]), Image.BILINEAR)
      buf = io.BytesIO()
      im.save(buf, format='PNG', compress_level=1)
      return buf.getvalue(), native
  except OSError as exc:
    raise errors.FormatError(f'Cannot read image {path}: {exc}') from exc


def encode_clip(raw: RawClip, *, height: int, width: int) -> dict:
  """A `RawClip` -> one TFDS example at (height, width) (see module docstring)."""
  hw = (height, width)
  frames, natives = zip(*[_frame_bytes(p, hw) for p in raw.frame_paths])
  if len(set(natives)) != 1:
    raise errors.FormatError(f'Video {raw.video_id}: frames of different sizes '
                             f'{sorted(set(natives))}.')
  labels = np.asarray(raw.load_labels(), np.int32)
  n_lab = int(np.sum(raw.labelled))
  if labels.shape != (n_lab,) + natives[0]:
    raise errors.FormatError(f'Video {raw.video_id}: labels {labels.shape} do not match '
                             f'{n_lab} labelled frames of size {natives[0]}.')
  if natives[0] != hw:
    labels = _resize_labels(labels, hw)
  return {'frames': list(frames), 'panoptic': labels,
          'labelled': np.asarray(raw.labelled, bool), 'video_id': raw.video_id,
          'frame_ids': list(raw.frame_ids), 'image_ids': list(raw.image_ids)}


def _text(v) -> str:
  return v.decode('utf-8') if isinstance(v, bytes) else str(v)


def decode_example(ex: dict, frame_indices: Sequence[int] | None = None) -> dict:
  """A stored example -> a clip in the data contract (plus image_ids).

  Args:
    ex: the stored example.
    frame_indices: decode only these frames (e.g. the two of a training pair), in this
      order; every per-frame field is indexed alike. None: the whole clip.
  """
  labelled_all = np.asarray(ex['labelled'], bool)
  idx = np.arange(labelled_all.size) if frame_indices is None else np.asarray(
      frame_indices, np.int64).reshape(-1)
  frames = []
  for t in idx.tolist():
    with Image.open(io.BytesIO(ex['frames'][t])) as im:
      frames.append(np.asarray(im.convert('RGB')))
  frames = np.stack(frames)
  stored = np.asarray(ex['panoptic'], np.int32)
  # Row of frame t in the stored labels: the number of labelled frames before t.
  row = np.cumsum(labelled_all) - 1
  labelled = labelled_all[idx]
  pan = np.full(frames.shape[:3], VOID, np.int32)
  pan[labelled] = stored[row[idx][labelled]]
  pick = lambda values: [_text(values[t]) for t in idx.tolist()]
  return {'frames': frames, 'panoptic': pan, 'labelled': labelled,
          'video_id': _text(ex['video_id']), 'frame_ids': pick(ex['frame_ids']),
          'image_ids': pick(ex['image_ids'])}


# ---------------------------------------------------------------------------------------------
# The TFDS builder (one class per dataset, subclassing this one) and its source.

def _tfds():
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return tfds


def make_builder_class(name: str, description: str, homepage: str):
  """A GeneratorBasedBuilder subclass registered under `name` (e.g. 'cityscapes_vps')."""
  tfds = _tfds()

  class _Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version(_VERSION)
    RELEASE_NOTES = {_VERSION: 'Clips in the hybrid_jax data contract, frames as encoded bytes.'}

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
      # TFDS's default probes `importlib_resources` (a backport not installed here) for
      # builders inside a package; this module's file is all it needs.
      from etils import epath  # pylint: disable=g-import-not-at-top
      return epath.Path(__file__)

    def __init__(self, *, split: str, height: int, width: int,
                 raw_clips: Callable[[], list[RawClip]] | None = None, **kwargs):
      self._split, self._hw, self._raw_clips = split, (height, width), raw_clips
      super().__init__(config=tfds.core.BuilderConfig(name=f'{split}_{height}x{width}'),
                       **kwargs)

    def _info(self):
      t = tfds.features
      text = lambda: t.Sequence(t.Tensor(shape=(), dtype=np.object_))
      return tfds.core.DatasetInfo(
          builder=self, description=description, homepage=homepage,
          disable_shuffling=True,  # keep clips in video-id order, as the evaluator does
          metadata=tfds.core.MetadataDict(),
          features=t.FeaturesDict({
              'frames': text(),
              'panoptic': t.Tensor(shape=(None, None, None), dtype=np.int32, encoding='zlib'),
              'labelled': t.Tensor(shape=(None,), dtype=np.bool_),
              'video_id': t.Tensor(shape=(), dtype=np.object_),
              'frame_ids': text(),
              'image_ids': text(),
          }))

    def _split_generators(self, dl_manager):
      del dl_manager
      if self._raw_clips is None:
        raise errors.DatasetError(f'{name} split {self._split!r} is not prepared and no raw '
                                  'layout was given.')
      clips = self._raw_clips()
      self.info.metadata['clips'] = [
          {'video_id': c.video_id, 'labelled': [bool(v) for v in c.labelled],
           'frame_ids': list(c.frame_ids)} for c in clips]
      return {self._split: self._generate_examples(clips)}

    def _generate_examples(self, clips):
      for k, c in enumerate(clips):
        yield f'{k:06d}', encode_clip(c, height=self._hw[0], width=self._hw[1])

  _Builder.__name__ = _Builder.__qualname__ = ''.join(p.title() for p in name.split('_'))
  _Builder.name = name
  return _Builder


def is_prepared(builder) -> bool:
  return os.path.exists(os.path.join(builder.data_dir, 'dataset_info.json'))


def prepared_dir(data_dir: str, name: str, split: str, height: int, width: int) -> str:
  """Where TFDS keeps a prepared (split, size) of dataset `name`; no TFDS import needed."""
  return os.path.join(data_dir, name, f'{split}_{height}x{width}', _VERSION)


def any_prepared(data_dir: str, name: str, splits: Sequence[str], height: int,
                 width: int) -> bool:
  return any(os.path.exists(os.path.join(prepared_dir(data_dir, name, s, height, width),
                                         'dataset_info.json')) for s in splits)


def build(builder, *, progress: bool) -> None:
  """Prepares `builder` as array_record files (no TensorFlow involved)."""
  tfds = _tfds()
  tfds.display_progress_bar(progress)
  try:
    builder.download_and_prepare(file_format='array_record')
  except errors.HybridJaxError:
    raise
  except OSError as exc:
    raise errors.DatasetError(f'Cannot write the prepared dataset under {builder.data_dir}: '
                              f'{exc}') from exc


class ClipSource(collections.abc.Sequence):
  """Random-access clips of a prepared split; ``source[i]`` decodes clip i.

  Picklable (grain workers): the file reader is reopened from `make_builder` after unpickling.

  Attributes:
    video_ids: list[str];  labelled_masks: list of bool [T] (from the metadata, no decoding);
    frame_ids: list of list[str];  categories: our category table.
  """

  def __init__(self, make_builder: Callable[[], object], split: str, table):
    self._make_builder, self._split = make_builder, split
    builder = make_builder()
    self._data = builder.as_data_source(split=split)
    index = builder.info.metadata.get('clips', [])
    self.video_ids = [e['video_id'] for e in index]
    self.labelled_masks = [np.asarray(e['labelled'], bool) for e in index]
    self.frame_ids = [list(e['frame_ids']) for e in index]
    self.categories = table
    if len(index) != len(self._data):
      raise errors.DatasetError(f'{builder.data_dir}: the index lists {len(index)} clips but the '
                                f'files hold {len(self._data)}; delete that folder to rebuild.')

  def __getstate__(self):
    state = dict(self.__dict__)
    state['_data'] = None  # file handles do not pickle; reopened on first access
    return state

  def __len__(self) -> int:
    return len(self.video_ids)

  def __getitem__(self, index):
    if isinstance(index, slice):
      return [self[i] for i in range(*index.indices(len(self)))]
    return self.read(index)

  def read(self, index: int, frame_indices: Sequence[int] | None = None) -> dict:
    """Clip `index`, decoding only `frame_indices` (None: all); see `decode_example`."""
    if not -len(self) <= index < len(self):
      raise IndexError(index)
    if self._data is None:
      self._data = self._make_builder().as_data_source(split=self._split)
    return decode_example(self._data[index % len(self)], frame_indices)
