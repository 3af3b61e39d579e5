"""TFDS builder `synthetic_vps`: the procedural synthetic VPS dataset as array_record files.

No TensorFlow is needed, at import, preparation or reading time: every feature is a
`tfds.features.Tensor` (zlib-compressed where that pays) or `Text`, written to array_record
and read back with random access (`builder.as_data_source(split)` or `tfds.data_source`).

Each set of generation parameters is its own `SyntheticVpsConfig`, whose name spells out the
parameters (e.g. ``h128_w256_t30_l5_n48-8_s0``), so different settings live in different
folders ``<data_dir>/synthetic_vps/<config name>/<version>/`` and never mix. The category
table (`categories.SYNTHETIC`) and the parameters are stored in the dataset metadata
(``metadata.json`` beside the records).

One example = one clip (the project's data contract): frames uint8 [T,H,W,3], panoptic int32
[T,H,W], labelled bool [T], flow float32 [T-1,H,W,2], flow_valid bool [T-1,H,W], video_id,
frame_ids [T] (bytes when read back; `synthetic.source.synthetic_source` decodes them).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import zlib

from etils import epath
import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core import utils as tfds_utils
import tqdm

from hybrid_jax import errors
from hybrid_jax.data import categories
from hybrid_jax.data.synthetic import scene as synthetic

# Bump when the generator's output changes, so that old folders are not read as new data.
GENERATOR_VERSION = '1.0.0'

# Video ids are 4 digits (the Cityscapes-VPS convention); validation clips start here so that
# ids are unique across splits.
VAL_ID_OFFSET = 5000

# The demo dataset of configs/synthetic.py (used when the builder is made without a config).
DEMO_PARAMS = dict(height=128, width=256, clip_length=30, label_every=5, num_train_clips=48,
                   num_val_clips=8, generator_seed=0)


@dataclasses.dataclass
class SyntheticVpsConfig(tfds.core.BuilderConfig):
  """Generation parameters; build one with `make_config` so that the name encodes them."""
  height: int = 128
  width: int = 256
  clip_length: int = 30
  label_every: int = 5
  num_train_clips: int = 48
  num_val_clips: int = 8
  generator_seed: int = 0

  def params(self) -> dict:
    return dict(height=self.height, width=self.width, clip_length=self.clip_length,
                label_every=self.label_every, num_train_clips=self.num_train_clips,
                num_val_clips=self.num_val_clips, generator_seed=self.generator_seed)


def config_name(*, height, width, clip_length, label_every, num_train_clips, num_val_clips,
                generator_seed) -> str:
  return (f'h{height}_w{width}_t{clip_length}_l{label_every}_n{num_train_clips}-'
          f'{num_val_clips}_s{generator_seed}')


def make_config(*, height: int, width: int, clip_length: int, label_every: int,
                num_train_clips: int, num_val_clips: int,
                generator_seed: int) -> SyntheticVpsConfig:
  """Validates the parameters (ConfigError) and returns the config named after them."""
  synthetic.check_sizes(height=height, width=width, clip_length=clip_length,
                        label_every=label_every)
  for name, value in (('num_train_clips', num_train_clips), ('num_val_clips', num_val_clips),
                      ('generator_seed', generator_seed)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
      raise errors.ConfigError(
          f'Synthetic data: {name}={value!r} is invalid; it must be an integer >= 0 '
          f'(set config.data.{name}).')
  if num_train_clips >= VAL_ID_OFFSET or num_val_clips >= 10000 - VAL_ID_OFFSET:
    raise errors.ConfigError(
        f'Synthetic data: at most {VAL_ID_OFFSET - 1} train and {9999 - VAL_ID_OFFSET} val '
        f'clips (4-digit video ids); got {num_train_clips} and {num_val_clips}.')
  params = dict(height=int(height), width=int(width), clip_length=int(clip_length),
                label_every=int(label_every), num_train_clips=int(num_train_clips),
                num_val_clips=int(num_val_clips), generator_seed=int(generator_seed))
  return SyntheticVpsConfig(
      name=config_name(**params),
      description=f'Synthetic VPS clips generated with {params}.', **params)


def clip_seed(generator_seed: int, split: str, index: int) -> int:
  """The generate_clip seed of clip `index` of `split` (independent streams per split)."""
  code = {'train': 0, 'val': 1}[split]
  return int(np.random.SeedSequence([int(generator_seed), code, int(index)]).generate_state(1)[0])


def video_id(split: str, index: int) -> str:
  return f'{index + 1 + (VAL_ID_OFFSET if split == "val" else 0):04d}'


def generate_split_clip(params: dict, split: str, index: int) -> dict:
  """Clip `index` of `split` exactly as the builder writes it (numpy, str ids)."""
  return synthetic.generate_clip(
      clip_seed(params['generator_seed'], split, index), height=params['height'],
      width=params['width'], clip_length=params['clip_length'],
      label_every=params['label_every'], video_id=video_id(split, index))


class FastZlibTensor(tfds.features.Tensor):
  """`Tensor(encoding='zlib')` written at zlib level 1 instead of the default 6.

  Decoding is the parent's (zlib.decompress does not care about the level). On a clip's float
  flow level 6 is ~10x slower than level 1 and compresses no better; on frames level 1 costs
  ~10% more space for 2.5x less time. This keeps the demo set's preparation under a minute.
  """

  def __init__(self, *, shape, dtype):
    super().__init__(shape=shape, dtype=dtype, encoding='zlib')

  @property
  def _fully_qualified_class_name(self) -> str:
    # Saved as a plain Tensor: any TFDS reader decodes the files without this module.
    return f'{tfds.features.Tensor.__module__}.{tfds.features.Tensor.__name__}'

  def encode_example(self, example_data):
    arr = np.asarray(example_data)
    if arr.dtype != self.np_dtype or arr.shape != tuple(self.shape):
      raise ValueError(f'Expected {self.np_dtype}{tuple(self.shape)}, got '
                       f'{arr.dtype}{arr.shape}.')
    return zlib.compress(np.ascontiguousarray(arr).tobytes(), 1)


class _QuietCustomConfig(logging.Filter):
  """Drops TFDS's notes about our custom configs (every config of ours is custom by design)
  and about the half-written folder it is preparing; other messages pass."""

  def filter(self, record: logging.LogRecord) -> bool:
    try:
      msg = record.getMessage()
    except Exception:  # pylint: disable=broad-except  # a malformed record: let it through
      return True
    return not ('SyntheticVpsConfig(' in msg or
                ('synthetic_vps' in msg and 'has no dataset_info.json' in msg))


logging.getLogger('absl').addFilter(_QuietCustomConfig())


class SyntheticVps(tfds.core.GeneratorBasedBuilder):
  """Procedural street-scene clips with panoptic tracks and exact optical flow."""

  VERSION = tfds.core.Version(GENERATOR_VERSION)
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  # No predefined configs: every parameter set is a custom config (see `make_config`).
  BUILDER_CONFIGS = []

  def __init__(self, *, config: SyntheticVpsConfig | None = None, progress: bool = False,
               **kwargs):
    kwargs.setdefault('file_format', 'array_record')
    super().__init__(config=config or make_config(**DEMO_PARAMS), **kwargs)
    self._progress = progress

  @tfds_utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS's default probes `importlib_resources` (a backport not installed here) for
    # builders that live in a package; the module's own file is all it needs.
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    p = self.builder_config.params()
    t, h, w = p['clip_length'], p['height'], p['width']
    features = tfds.features.FeaturesDict({
        'frames': FastZlibTensor(shape=(t, h, w, 3), dtype=np.uint8),
        'panoptic': FastZlibTensor(shape=(t, h, w), dtype=np.int32),
        'labelled': tfds.features.Tensor(shape=(t,), dtype=np.bool_),
        'flow': FastZlibTensor(shape=(t - 1, h, w, 2), dtype=np.float32),
        'flow_valid': FastZlibTensor(shape=(t - 1, h, w), dtype=np.bool_),
        'video_id': tfds.features.Text(),
        'frame_ids': tfds.features.Sequence(tfds.features.Text(), length=t),
    })
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=features,
        # Keep clip i at index i of its split (TFDS shuffles records by key otherwise).
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(
            categories=[c.to_json() for c in categories.SYNTHETIC],
            label_divisor=categories.LABEL_DIVISOR,
            generator=dict(p, generator_version=GENERATOR_VERSION)),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    p = self.builder_config.params()
    return {'train': self._generate_examples('train', p['num_train_clips']),
            'val': self._generate_examples('val', p['num_val_clips'])}

  def _generate_examples(self, split: str, count: int):
    p = self.builder_config.params()
    show = self._progress and sys.stderr.isatty()
    for i in tqdm.tqdm(range(count), desc=f'synthetic_vps {split}', unit='clip',
                       disable=not show, leave=False):
      clip = generate_split_clip(p, split, i)
      yield i, clip
