"""`ClipSource`: random access to the clips of a prepared TFDS split, in the data contract.

Every dataset (synthetic, Cityscapes-VPS, VIPER-VPS) is read through this one class: a
picklable opener of the TFDS data source (so grain workers can reopen the files), a decoder of
one stored example into a clip dict, and optionally a per-clip index (video ids, labelled
masks, frame ids) that lets the pipeline pick frames without decoding any clip.
"""

from __future__ import annotations

import collections.abc
import os
from typing import Any, Callable, Sequence

import numpy as np

from hybrid_jax import errors

Decoder = Callable[[dict, 'Sequence[int] | None'], dict]


class ClipSource(collections.abc.Sequence):
  """Random-access clips of one split; ``source[i]`` decodes clip i.

  Args:
    open_data: zero-argument, picklable callable returning the TFDS data source of the split.
    name: names the split in messages ('synthetic_vps/<config>/val').
    decode: ``decode(example, frame_indices)`` -> clip dict; frame_indices None = all frames.
    index: optional [{'video_id', 'labelled', 'frame_ids'}] per clip, from the dataset's
      metadata; sets `video_ids`, `labelled_masks` (bool [T] each) and `frame_ids`.
    categories: the category table, when the dataset has one.
    folder: the prepared folder, named when its files cannot be read (default `name`).
  """

  def __init__(self, open_data: Callable[[], Any], *, name: str, decode: Decoder,
               index: Sequence[dict] | None = None, categories=None, folder: str = ''):
    self._open, self._name, self._decode = open_data, name, decode
    self._folder = folder or name
    try:
      self._data = open_data()
    except errors.HybridJaxError:
      raise
    except Exception as exc:  # pylint: disable=broad-except  # a broken dataset_info.json, ...
      raise errors.DatasetError(corrupt_message(self._folder, exc)) from exc
    self.categories = categories
    if index is not None:
      self.video_ids = [e['video_id'] for e in index]
      self.labelled_masks = [np.asarray(e['labelled'], bool) for e in index]
      self.frame_ids = [list(e['frame_ids']) for e in index]
      if len(index) != len(self._data):
        raise errors.DatasetError(f'{name}: the index lists {len(index)} clips but the files '
                                  f'hold {len(self._data)}; delete the prepared folder to '
                                  'rebuild it.')
    self._len = len(self._data)

  def __getstate__(self):
    state = dict(self.__dict__)
    state['_data'] = None  # file handles do not pickle; reopened on first access
    return state

  def __len__(self) -> int:
    return self._len

  def __getitem__(self, index):
    if isinstance(index, slice):
      return [self[i] for i in range(*index.indices(len(self)))]
    return self.read(index)

  def read(self, index: int, frame_indices: Sequence[int] | None = None) -> dict:
    """Clip `index`, decoding only `frame_indices` (None: all frames)."""
    n = len(self)
    index = int(index)
    if not -n <= index < n:
      raise IndexError(f'{self._name} has {n} clips; index {index} is out of range.')
    try:
      if self._data is None:
        self._data = self._open()
      example = self._data[index % n]
    except errors.HybridJaxError:
      raise
    except Exception as exc:  # pylint: disable=broad-except  # array_record / TFDS read errors
      raise errors.DatasetError(corrupt_message(self._folder, exc)) from exc
    return self._decode(example, frame_indices)

  def __repr__(self) -> str:
    return f'ClipSource({self._name}, {len(self)} clips)'


def corrupt_message(folder: str, exc: BaseException) -> str:
  """What to do when prepared dataset files cannot be read (truncated, edited, half written)."""
  reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
  return (f'The prepared dataset in {folder} cannot be read ({type(exc).__name__}: '
          f'{reason[:300]}). Its files are damaged: delete {folder!r} and rerun (or run '
          '--config.mode=data) to rebuild it.')


def remove_incomplete(dataset_dir: str) -> None:
  """Deletes TFDS's ``incomplete.*`` folders that an interrupted preparation left behind."""
  import glob  # pylint: disable=g-import-not-at-top
  import logging  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top
  for path in glob.glob(os.path.join(dataset_dir, 'incomplete.*')):
    logging.warning('Removing %s, left by an interrupted dataset preparation.', path)
    shutil.rmtree(path, ignore_errors=True)
