"""Dataset registry: name -> how to prepare it and how to open a split as clip examples.

Explicit dict, no import magic. Each entry's functions are imported lazily so that a user of
one dataset never pays for another's dependencies.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Callable, Sequence

from hybrid_jax import errors


@dataclasses.dataclass(frozen=True)
class DatasetEntry:
  module: str
  prepare: str   # fn(data_cfg, data_dir, *, progress) -> None
  source: str    # fn(data_cfg, split, data_dir) -> Sequence[clip dict]

  def fn(self, attr: str) -> Callable:
    return getattr(importlib.import_module(self.module), getattr(self, attr))


REGISTRY = {
    'synthetic_vps': DatasetEntry('hybrid_jax.data.synthetic.source', 'prepare_synthetic',
                                  'synthetic_source'),
    'cityscapes_vps': DatasetEntry('hybrid_jax.data.cityscapes_vps', 'prepare', 'source'),
    'viper_vps': DatasetEntry('hybrid_jax.data.viper_vps', 'prepare', 'source'),
    'kitti_step': DatasetEntry('hybrid_jax.data.kitti_step', 'prepare', 'source'),
    'vipseg': DatasetEntry('hybrid_jax.data.vipseg', 'prepare', 'source'),
}


def _entry(name: str) -> DatasetEntry:
  if name not in REGISTRY:
    raise errors.ConfigError(
        f'config.data.name={name!r} is not a known dataset; choose one of {sorted(REGISTRY)}.')
  return REGISTRY[name]


def prepare(config, data_dir: str, *, progress: bool = True) -> str:
  """Prepares config.data.name under data_dir (no-op when already prepared)."""
  _entry(config.data.name).fn('prepare')(config.data, data_dir, progress=progress)
  return data_dir


def get_source(config, split: str, data_dir: str) -> Sequence[dict]:
  """Random-access clip examples of a split (prepares the dataset first if needed)."""
  entry = _entry(config.data.name)
  entry.fn('prepare')(config.data, data_dir, progress=True)
  return entry.fn('source')(config.data, split, data_dir)


def labels_on_every_frame(config) -> bool:
  """The synthetic data carry panoptic labels on every frame; real datasets only on some.

  Stages that need labels sample any frame and keep its labels in the first case (the
  synthetic ``labelled`` only marks the frames evaluated, as in Cityscapes-VPS) and only
  labelled frames otherwise; the val report adds the ground-truth-segment rows only then.
  """
  return config.data.name == 'synthetic_vps'
