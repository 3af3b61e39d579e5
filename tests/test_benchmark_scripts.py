"""The benchmark scripts that read a finished run give the run's own numbers."""

import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))

import segmenter_per_class  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_segmenter_per_class_agrees_with_the_stage_evaluation(tiny_run, capsys):
  assert segmenter_per_class.main(['--workdir', tiny_run]) == 0
  out = json.loads(capsys.readouterr().out)
  with open(os.path.join(tiny_run, 'seg', 'eval.json')) as f:
    stage = json.load(f)['ours']
  for group in ('all', 'things', 'stuff'):
    assert out['pq'][group] == pytest.approx(stage[group], abs=0.051)
  # Every ground-truth thing segment is either matched (TP) or missed (FN).
  for name, sizes in out['thing_sizes'].items():
    row = out['per_class'].get(name, {'tp': 0, 'fn': 0})
    assert sizes['segments'] == row['tp'] + row['fn'], name
    assert 0.0 <= sizes['share_under_64px'] <= 1.0


def test_segmenter_per_class_names_a_missing_stage(tmp_path, capsys):
  with pytest.raises(SystemExit) as e:
    segmenter_per_class.main(['--workdir', str(tmp_path)])
  assert e.value.code == 2 and 'train_seg' in capsys.readouterr().err
