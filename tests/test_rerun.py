"""A rerun does no work twice: a finished run returns at once, an interrupted tracking or
evaluation continues from what is done, and a changed setting redoes only what it changes."""

from __future__ import annotations

import glob
import os
import shutil

import pytest

from configs import synthetic as synthetic_config
from hybrid_jax import train
from hybrid_jax import workdirs


def _mtimes(workdir: str, pattern: str) -> dict[str, float]:
  return {p: os.path.getmtime(p) for p in glob.glob(os.path.join(workdir, pattern),
                                                     recursive=True)}


@pytest.fixture()
def run(tiny_run, tmp_path) -> str:
  wd = str(tmp_path / 'run')
  shutil.copytree(tiny_run, wd, ignore=shutil.ignore_patterns(workdirs.LOCK_FILE))
  return wd


def test_a_finished_run_is_not_trained_tracked_or_evaluated_again(run, capsys):
  touched = ('*/final/metadata.json', 'predictions/**/*.png', 'predictions/**/eval.json',
             'report.md', 'predictions/clips/*.npz')
  before = {p: _mtimes(run, p) for p in touched}
  assert all(before.values())
  rows = train.run(synthetic_config.get_config('tiny'), run)
  out = capsys.readouterr().out
  assert 'nothing to do' in out and 'HybridTracker' in out
  assert [r['name'] for r in rows][:4] == [row.name for row in train.TABLE_I_ROWS]
  assert {p: _mtimes(run, p) for p in touched} == before


def test_an_interrupted_tracking_continues_with_the_missing_clips(run):
  clips = os.path.join(run, 'predictions', 'clips')
  with open(os.path.join(run, 'predictions', 'pixel_tracker', 'pred.json')) as f:
    pred_before = f.read()
  # As after a stop while clip 1 was tracked: no predictions yet, clip 0 done.
  os.remove(os.path.join(run, 'predictions', 'record.json'))
  os.remove(os.path.join(run, 'report.json'))
  for name in ('00001.npz', '00001.json'):
    os.remove(os.path.join(clips, name))
  clip0 = os.path.getmtime(os.path.join(clips, '00000.npz'))
  stages = _mtimes(run, '*/final/metadata.json')
  train.run(synthetic_config.get_config('tiny'), run)
  assert os.path.getmtime(os.path.join(clips, '00000.npz')) == clip0   # reused
  assert os.path.exists(os.path.join(clips, '00001.npz'))             # tracked
  assert _mtimes(run, '*/final/metadata.json') == stages               # nothing retrained
  with open(os.path.join(run, 'predictions', 'pixel_tracker', 'pred.json')) as f:
    assert f.read() == pred_before  # the same predictions as in one go


def test_an_interrupted_evaluation_continues_with_the_missing_rows(run):
  os.remove(os.path.join(run, 'report.json'))
  pixel = os.path.join(run, 'predictions', 'pixel_tracker', 'eval.json')
  os.remove(pixel)
  others = _mtimes(run, 'predictions/*/eval.json')
  train.run(synthetic_config.get_config('tiny'), run)
  assert os.path.exists(pixel)
  assert _mtimes(run, 'predictions/*/eval.json') == {**others, pixel: os.path.getmtime(pixel)}


def test_a_tracking_setting_retracks_without_retraining(run):
  config = synthetic_config.get_config('tiny')
  config.track.threshold = 0.5
  stages = _mtimes(run, '*/final/metadata.json')
  png = _mtimes(run, 'predictions/pixel_tracker/pan_pred/*.png')
  train.run(config, run)
  assert _mtimes(run, '*/final/metadata.json') == stages
  assert _mtimes(run, 'predictions/pixel_tracker/pan_pred/*.png') != png  # written again


def test_more_val_clips_reuse_the_trained_stages(tmp_path):
  # The synthetic clips are seeded per (split, index): a larger val split leaves every train
  # clip, and so every trained stage, as it was. Other data values still name the stage.
  from configs import synthetic as synthetic_config
  from hybrid_jax import errors
  from hybrid_jax import run_records
  c = synthetic_config.get_config('tiny')
  workdir = str(tmp_path)
  for stage in run_records.STAGES:
    run_records.record_stage(c, workdir, stage)
  c.data.num_val_clips = 40
  run_records.check_stages(c, workdir)  # no error: nothing to retrain
  assert run_records.relevant(c, 'tracking')['data.num_val_clips'] == 40  # tracking redone
  # A record written before num_val_clips was left out of the stages' records still fits.
  path = run_records.stage_record_path(workdir, 'seg')
  old = dict(run_records.read(path), **{'data.num_val_clips': 2})
  run_records.write(path, old)
  run_records.check_stages(c, workdir)
  c.data.num_train_clips = 5
  with pytest.raises(errors.ConfigError, match='data.num_train_clips: 4 -> 5'):
    run_records.check_stages(c, workdir)
