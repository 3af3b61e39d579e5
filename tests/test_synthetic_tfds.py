"""Tests of the TFDS builder `synthetic_vps` and the synthetic clip source."""

import os
import sys

import ml_collections
import numpy as np
import pytest

from hybrid_jax import errors
from hybrid_jax.data import categories
from hybrid_jax.data.synthetic import source as sources
from hybrid_jax.data.synthetic import tfds_builder as synthetic_tfds


def _data_cfg(**kw):
  cfg = dict(height=32, width=64, clip_length=4, label_every=2, num_train_clips=2,
             num_val_clips=1, generator_seed=0)
  cfg.update(kw)
  return ml_collections.ConfigDict(cfg)


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp('synthetic_data'))
  cfg = _data_cfg()
  sources.prepare_synthetic(cfg, data_dir, progress=False)
  return cfg, data_dir


def test_round_trip_equals_generator(prepared):
  cfg, data_dir = prepared
  params = sources.synthetic_config(cfg).params()
  seen_ids = set()
  for split, count in (('train', 2), ('val', 1)):
    src = sources.synthetic_source(cfg, split, data_dir)
    assert len(src) == count
    for i in range(count):
      clip, ref = src[i], synthetic_tfds.generate_split_clip(params, split, i)
      for key in ('frames', 'panoptic', 'labelled', 'flow', 'flow_valid'):
        assert clip[key].dtype == ref[key].dtype
        np.testing.assert_array_equal(clip[key], ref[key])
      assert clip['video_id'] == ref['video_id'] and isinstance(clip['video_id'], str)
      assert clip['frame_ids'] == ref['frame_ids']
      assert all(isinstance(f, str) for f in clip['frame_ids'])
      seen_ids.add(clip['video_id'])
    assert src[-1]['video_id'] == src[count - 1]['video_id']
    with pytest.raises(IndexError):
      src[count]
  assert seen_ids == {'0001', '0002', '5001'}   # unique across splits, 4 digits
  # Clips differ from each other (independent seeds per split and index).
  train = sources.synthetic_source(cfg, 'train', data_dir)
  assert not np.array_equal(train[0]['frames'], train[1]['frames'])
  assert 'tensorflow' not in sys.modules


def test_metadata_and_no_regeneration(prepared):
  cfg, data_dir = prepared
  builder = synthetic_tfds.SyntheticVps(config=sources.synthetic_config(cfg), data_dir=data_dir)
  assert builder.is_prepared()
  meta = builder.info.metadata
  assert [c['name'] for c in meta['categories']] == [c.name for c in categories.SYNTHETIC]
  assert meta['generator']['height'] == 32 and meta['generator']['clip_length'] == 4
  record = [f for f in os.listdir(builder.data_dir) if 'array_record' in f][0]
  before = os.path.getmtime(os.path.join(builder.data_dir, record))
  sources.prepare_synthetic(cfg, data_dir, progress=False)   # already there: a no-op
  assert os.path.getmtime(os.path.join(builder.data_dir, record)) == before


def test_other_settings_live_in_other_folders(prepared, tmp_path):
  cfg, data_dir = prepared
  other = _data_cfg(generator_seed=1, num_train_clips=1, num_val_clips=1)
  # Not prepared yet for these settings, even though the folder holds another variant.
  with pytest.raises(errors.DatasetError, match='prepare'):
    sources.synthetic_source(other, 'val', data_dir)
  a = sources.synthetic_config(cfg).name
  b = sources.synthetic_config(other).name
  assert a != b and 's0' in a and 's1' in b


def test_tfds_data_source_reads_it(prepared):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  cfg, data_dir = prepared
  ds = tfds.data_source('synthetic_vps', split='val', data_dir=data_dir, download=False,
                        builder_kwargs=dict(config=sources.synthetic_config(cfg)))
  assert len(ds) == 1 and ds[0]['frames'].shape == (4, 32, 64, 3)


def test_missing_data_dir_raises_dataset_error(tmp_path):
  with pytest.raises(errors.DatasetError, match='does not exist'):
    sources.synthetic_source(_data_cfg(), 'train', str(tmp_path / 'nowhere'))
  with pytest.raises(errors.DatasetError):
    sources.synthetic_source(_data_cfg(), 'train', str(tmp_path))   # empty folder


def test_bad_settings_raise_config_error(tmp_path):
  with pytest.raises(errors.ConfigError, match='height'):
    sources.prepare_synthetic(_data_cfg(height=-8), str(tmp_path), progress=False)
  with pytest.raises(errors.ConfigError, match='num_train_clips'):
    sources.synthetic_config(_data_cfg(num_train_clips=-1))
  with pytest.raises(errors.ConfigError, match='split'):
    sources.synthetic_source(_data_cfg(), 'test', str(tmp_path))
