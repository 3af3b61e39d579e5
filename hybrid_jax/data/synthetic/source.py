"""The synthetic dataset's entries in the dataset registry: prepare it, open a split.

`prepare_synthetic` writes the TFDS `synthetic_vps` dataset for a `config.data` ConfigDict
(a no-op when it is already there); `synthetic_source` opens one split of it as a
`clip_source.ClipSource` of clip dicts (numpy arrays, ``video_id`` str, ``frame_ids``
list[str]) that grain or a plain loop can index.
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import Any, Sequence

import numpy as np

from hybrid_jax import errors
from hybrid_jax.data import clip_source
from hybrid_jax.data.synthetic import tfds_builder as synthetic_tfds

SPLITS = ('train', 'val')


def synthetic_config(data_cfg: Any) -> synthetic_tfds.SyntheticVpsConfig:
  """The TFDS config for config.data (height, width, clip_length, label_every,
  num_train_clips, num_val_clips, generator_seed); ConfigError for bad values."""
  try:
    params = {k: data_cfg[k] for k in ('height', 'width', 'clip_length', 'label_every',
                                       'num_train_clips', 'num_val_clips', 'generator_seed')}
  except (KeyError, AttributeError, TypeError) as exc:
    raise errors.ConfigError(f'config.data lacks a synthetic-data field: {exc}') from exc
  return synthetic_tfds.make_config(**params)


@contextlib.contextmanager
def _tfds_bars(enabled: bool):
  """Turns TFDS's own progress bars on or off for the block (ours replace them)."""
  from tensorflow_datasets.core.utils import tqdm_utils  # pylint: disable=g-import-not-at-top
  before = tqdm_utils._active  # pylint: disable=protected-access
  tqdm_utils.display_progress_bar(enabled)
  try:
    yield
  finally:
    tqdm_utils.display_progress_bar(before)


def prepare_synthetic(data_cfg: Any, data_dir: str, *, progress: bool = True) -> None:
  """Generates the synthetic dataset of `data_cfg` under `data_dir` unless already there.

  A progress bar (one per split, clips) shows on a terminal when `progress`.
  Raises ConfigError for bad sizes, DatasetError when `data_dir` cannot be written.
  """
  config = synthetic_config(data_cfg)
  if not data_dir:
    raise errors.DatasetError('No data directory given for the synthetic dataset; set '
                              'config.data.dir (or --workdir).')
  try:
    os.makedirs(data_dir, exist_ok=True)
  except OSError as exc:
    raise errors.DatasetError(
        f'Cannot create the synthetic data directory {data_dir!r}: {exc}. Choose a writable '
        'config.data.dir.') from exc
  if not os.access(data_dir, os.W_OK):
    raise errors.DatasetError(f'The synthetic data directory {data_dir!r} is not writable; '
                              'choose another config.data.dir.')
  builder = _builder(config, data_dir, progress=progress)
  if builder.is_prepared():
    return
  # TFDS prints a "Downloading and preparing" banner on stdout: the stage line says it, and
  # stdout is kept for results. Our own per-clip bar (tfds_builder) shows on a terminal.
  with _tfds_bars(False), open(os.devnull, 'w') as devnull, contextlib.redirect_stdout(devnull):
    clip_source.remove_incomplete(os.path.dirname(str(builder.data_dir)))
    builder.download_and_prepare()


def decode_clip(example: dict, frame_indices: Sequence[int] | None = None) -> dict:
  """A record as read back from TFDS -> the data contract dict (bytes ids -> str).

  frame_indices: keep only these frames (every per-frame field alike; flow is indexed by its
  source frame); None: the whole clip.
  """
  out = {k: np.asarray(v) for k, v in example.items() if k not in ('video_id', 'frame_ids')}
  out['video_id'] = _text(example['video_id'])
  out['frame_ids'] = [_text(f) for f in example['frame_ids']]
  if frame_indices is not None:
    idx = np.asarray(frame_indices, np.int64).reshape(-1)
    for k in ('frames', 'panoptic', 'labelled'):
      out[k] = out[k][idx]
    out['frame_ids'] = [out['frame_ids'][t] for t in idx.tolist()]
    for k in ('flow', 'flow_valid'):
      out.pop(k, None)  # flow belongs to consecutive pairs, not to picked frames
  return out


def _text(v) -> str:
  return v.decode('utf-8') if isinstance(v, (bytes, np.bytes_)) else str(v)


def synthetic_source(data_cfg: Any, split: str, data_dir: str) -> clip_source.ClipSource:
  """Opens split 'train' or 'val' of the prepared synthetic dataset (random access).

  Raises DatasetError when `data_dir` is missing or does not hold the dataset for these
  settings (call `prepare_synthetic` first, or run ``--config.mode=data``).
  """
  if split not in SPLITS:
    raise errors.ConfigError(f'Unknown split {split!r} for the synthetic dataset; use one of '
                             f'{SPLITS}.')
  config = synthetic_config(data_cfg)
  if not data_dir or not os.path.isdir(data_dir):
    raise errors.DatasetError(
        f'Synthetic data directory {data_dir!r} does not exist. Prepare it with '
        'hybrid_jax.data.synthetic.source.prepare_synthetic(config.data, DIR) or run main with '
        '--config.mode=data.')
  builder = _builder(config, data_dir)
  prepared = builder.is_prepared()
  if not prepared:
    raise errors.DatasetError(
        f'No synthetic dataset with settings {config.name} in {data_dir!r} (expected '
        f'{builder.data_dir}). Prepare it with prepare_synthetic(config.data, {data_dir!r}) '
        'or run main with --config.mode=data.')
  opener = functools.partial(_open_split, config, data_dir, split)
  return clip_source.ClipSource(opener, name=f'{builder.data_dir} ({split})',
                                decode=decode_clip, folder=str(builder.data_dir))


def _builder(config, data_dir: str, **kwargs):
  """The TFDS builder; damaged metadata (dataset_info.json) is a DatasetError saying what to do."""
  try:
    return synthetic_tfds.SyntheticVps(config=config, data_dir=data_dir, **kwargs)
  except OSError as exc:
    raise errors.DatasetError(f'Cannot read the synthetic data directory {data_dir!r}: '
                              f'{exc}.') from exc
  except Exception as exc:  # pylint: disable=broad-except  # e.g. a protobuf ParseError
    name = os.path.join(data_dir, 'synthetic_vps', config.name)
    raise errors.DatasetError(clip_source.corrupt_message(name, exc)) from exc


def _open_split(config, data_dir: str, split: str):
  """The TFDS data source of a prepared split (module-level, so a partial pickles)."""
  return synthetic_tfds.SyntheticVps(config=config, data_dir=data_dir).as_data_source(split=split)
