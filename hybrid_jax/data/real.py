"""Shared machinery of the real-dataset TFDS builders (storage, the builder, the registry entry).

A dataset module (`cityscapes_vps`, `viper_vps`, `kitti_step`, `vipseg`) checks its official
on-disk layout and lists each split as `raw_layout.RawClip`s; this module turns those into a TFDS dataset (array_record files, no
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

import dataclasses
import functools
import io
import os
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from hybrid_jax import errors
from hybrid_jax.data import categories as categories_lib
from hybrid_jax.data import clip_source
from hybrid_jax.data.raw_layout import RawClip

_VERSION = '1.0.0'


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
  pan = np.full(frames.shape[:3], categories_lib.VOID, np.int32)
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


@functools.cache
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
    clip_source.remove_incomplete(os.path.dirname(str(builder.data_dir)))
    builder.download_and_prepare(file_format='array_record')
  except errors.HybridJaxError:
    raise
  except OSError as exc:
    raise errors.DatasetError(f'Cannot write the prepared dataset under {builder.data_dir}: '
                              f'{exc}') from exc


# ---------------------------------------------------------------------------------------------
# A real dataset: its layout rules plus the shared prepare / open (the registry's entries).

@dataclasses.dataclass(frozen=True)
class RealDataset:
  """What a dataset module provides; `prepare` and `source` do the rest.

  Attributes:
    name: the TFDS name ('cityscapes_vps', 'viper_vps').
    title: human name in messages ('Cityscapes-VPS').
    description, homepage: for the TFDS metadata.
    splits: split names.
    check_layout: ``check_layout(root, split)`` raises DatasetError naming what is missing.
    split_present: ``split_present(root, split)``: its folder or GT JSON exists.
    raw_clips: ``raw_clips(data_cfg, split) -> list[RawClip]`` (indexing, no decoding).
    missing_root_message: ``missing_root_message(root)``: where the data go and how to get them.
  """
  name: str
  title: str
  description: str
  homepage: str
  splits: tuple
  check_layout: Callable[[str, str], None]
  split_present: Callable[[str, str], bool]
  raw_clips: Callable[..., list]
  missing_root_message: Callable[[str], str]

  def builder(self, data_cfg, split: str, data_dir: str):
    cls = make_builder_class(self.name, self.description, self.homepage)
    h, w = int(data_cfg.height), int(data_cfg.width)
    try:
      return cls(split=split, height=h, width=w,
                 raw_clips=lambda: self.raw_clips(data_cfg, split), data_dir=data_dir)
    except Exception as exc:  # pylint: disable=broad-except  # damaged dataset_info.json, ...
      raise errors.DatasetError(clip_source.corrupt_message(
          prepared_dir(data_dir, self.name, split, h, w), exc)) from exc

  def prepare(self, data_cfg, data_dir: str, *, progress: bool = True) -> None:
    """Prepares every split present under data_cfg.root (no-op for splits already prepared).

    A split whose folder and GT JSON are both absent is skipped (`source` names what is missing
    when it is asked for); a missing root, or a root without any split, raises DatasetError.
    """
    root = data_cfg.root
    if not root or not os.path.isdir(root):
      # Data prepared earlier stay usable without the raw folder.
      if any_prepared(data_dir, self.name, self.splits, int(data_cfg.height),
                      int(data_cfg.width)):
        return
      raise errors.DatasetError(self.missing_root_message(root))
    present = [s for s in self.splits if self.split_present(root, s)]
    for split in present or [self.splits[-1]]:
      self.check_layout(root, split)  # every present split, before any slow work
    for split in present:
      b = self.builder(data_cfg, split, data_dir)
      if not is_prepared(b):
        build(b, progress=progress)

  def source(self, data_cfg, split: str, data_dir: str) -> clip_source.ClipSource:
    """Random-access clips of `split` (prepared on first use)."""
    if split not in self.splits:
      raise errors.ConfigError(f'{self.title} has splits {self.splits}; got {split!r}.')
    b = self.builder(data_cfg, split, data_dir)
    if not is_prepared(b):
      self.check_layout(data_cfg.root, split)
      build(b, progress=True)
    opener = functools.partial(_open_prepared, self.name, self.description, self.homepage,
                               split, int(data_cfg.height), int(data_cfg.width), data_dir)
    builder = opener.func(*opener.args, as_builder=True)
    return clip_source.ClipSource(
        opener, name=f'{builder.data_dir} ({split})', decode=decode_example,
        folder=str(builder.data_dir),
        index=builder.info.metadata.get('clips', []),
        categories=categories_lib.get_categories(data_cfg.categories))


def _open_prepared(name, description, homepage, split, height, width, data_dir, *,
                   as_builder: bool = False):
  """The data source (or builder) of a prepared split; module-level, so a partial pickles."""
  cls = make_builder_class(name, description, homepage)
  builder = cls(split=split, height=height, width=width, data_dir=data_dir)
  return builder if as_builder else builder.as_data_source(split=split)
