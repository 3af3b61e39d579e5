"""Pretrained weights merged into a fresh parameter tree with key/shape checks by path."""

import numpy as np
import pytest

from hybrid_jax import errors
from hybrid_jax.training import pretrained


def _fresh():
  return {'backbone': {'conv': {'kernel': np.zeros((3, 3, 3, 4), np.float32),
                                'bias': np.zeros(4, np.float32)}},
          'head': {'kernel': np.zeros((4, 2), np.float32)}}


def test_merge_into_subtree_after_save_load_roundtrip(tmp_path):
  weights = {'conv': {'kernel': np.full((3, 3, 3, 4), 2.0, np.float64),
                      'bias': np.arange(4.0)}}
  pretrained.save_pretrained(str(tmp_path / 'ckpt'), {'params': weights},
                             {'architecture': 'tiny'})
  loaded, meta = pretrained.load_pretrained(str(tmp_path / 'ckpt'), expect_architecture='tiny')
  assert meta['architecture'] == 'tiny'
  merged, report = pretrained.merge_pretrained(_fresh(), loaded['params'], into='backbone')
  np.testing.assert_array_equal(merged['backbone']['conv']['bias'], [0, 1, 2, 3])
  assert merged['backbone']['conv']['kernel'].dtype == np.float32   # the model's dtype
  assert float(merged['backbone']['conv']['kernel'].sum()) == 2.0 * 108
  np.testing.assert_array_equal(merged['head']['kernel'], 0.0)      # untouched, not reported
  assert sorted(report['loaded']) == ['backbone/conv/bias', 'backbone/conv/kernel']
  assert report['missing'] == [] and report['unexpected'] == []


def test_merge_reports_mismatches_by_path():
  bad = {'conv': {'kernel': np.zeros((3, 3, 3, 8)), 'bias': np.zeros(4)},
         'extra': {'w': np.zeros(1)}}
  with pytest.raises(errors.CheckpointError) as info:
    pretrained.merge_pretrained(_fresh(), bad, into='backbone')
  message = str(info.value)
  assert 'backbone/conv/kernel: pretrained (3, 3, 3, 8) vs model (3, 3, 3, 4)' in message
  assert 'backbone/extra/w: in the pretrained weights, not in the model' in message
  partial = {'conv': {'bias': np.ones(4)}}
  merged, report = pretrained.merge_pretrained(_fresh(), partial, into='backbone')
  assert report['missing'] == ['backbone/conv/kernel']
  with pytest.raises(errors.CheckpointError, match='backbone/conv/kernel: in the model'):
    pretrained.merge_pretrained(_fresh(), partial, into='backbone', allow_missing=False)
  with pytest.raises(errors.CheckpointError, match="no subtree 'neck'"):
    pretrained.merge_pretrained(_fresh(), partial, into='neck')
