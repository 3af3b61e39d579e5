"""One path through the code: every entry point that tracks gives the same tracks.

The tiny pipeline runs once per "no counterpart" rule (no_match 'dustbin' and 'mask'); then
the frames of a val clip are written to a folder and tracked with ``--config.mode=track
--config.input=FOLDER`` for each Table I row. Its predictions on the labelled frames must be
exactly those ``mode=all`` wrote for that clip: same segments and the same track of every
segment in every frame (the official format stores tracks as segment ids, so both sides are
read back with the same canonical track numbering), and the VideoTracker each path builds
must have the same settings, down to the dustbin logit (on the tiny clips a spurious 0.0
logit moves probabilities but rarely an arg-max, so the tracks alone would not show it).
"""

from __future__ import annotations

import os
import shutil

import jax
import numpy as np
import pytest
from PIL import Image

from configs import synthetic as synthetic_config
from hybrid_jax import train
from hybrid_jax import trained_models
from hybrid_jax import user_video
from hybrid_jax import val_tracking
from hybrid_jax import workdirs
from hybrid_jax.data import categories as categories_lib
from hybrid_jax.data import datasets
from hybrid_jax.data import official_format
from hybrid_jax.tracking import tracker as tracker_lib

TABLE = categories_lib.get_categories('synthetic')


def _config(no_match: str, **overrides):
  c = synthetic_config.get_config('tiny')
  c.track.no_match = no_match
  for key, value in overrides.items():
    section, _, leaf = key.rpartition('.')
    (c[section] if section else c)[leaf] = value
  return c


@pytest.fixture(scope='module')
def runs(tiny_run, tmp_path_factory):
  """{no_match: workdir} of two finished tiny pipelines (the second reuses seg and flow)."""
  out = {}
  dustbin = str(tmp_path_factory.mktemp('dustbin'))
  shutil.copytree(tiny_run, dustbin, dirs_exist_ok=True)  # tests below write into it
  out['dustbin'] = dustbin
  mask = str(tmp_path_factory.mktemp('mask'))
  for part in ('data', 'seg', 'flow'):  # same segmenter and RAFT; the tracker stage differs
    shutil.copytree(os.path.join(dustbin, part), os.path.join(mask, part))
  train.run(_config('mask'), mask)
  out['mask'] = mask
  return out


def _canonical(pred_dir: str, image_ids) -> list[np.ndarray]:
  """The frames' labels with tracks numbered 1.. by first appearance over these frames."""
  tracks: dict[int, int] = {}
  return [official_format.segments_to_panoptic(ids, segs, TABLE, track_of_segment=tracks)
          for _, ids, segs in official_format.read_predictions(pred_dir, image_ids,
                                                               categories=TABLE)]


def test_the_rule_for_rows_without_counterpart_follows_the_training(runs):
  dustbin = trained_models.load_head(trained_models.final_path(runs['dustbin'], 'track'))
  mask = trained_models.load_head(trained_models.final_path(runs['mask'], 'track'))
  assert dustbin.dustbin_logit is not None
  assert mask.dustbin_logit is None  # Eq. 4 has no dustbin column: none is added at test time


def _record_trackers(monkeypatch) -> list[dict]:
  """Every VideoTracker built from now on, as the settings that decide its tracks."""
  built = []
  init = tracker_lib.VideoTracker.__init__

  def recording_init(self, *args, **kwargs):
    init(self, *args, **kwargs)
    built.append({
        'variant': self.variant, 'temporal': self.temporal, 'mutual': self.mutual_check,
        'threshold': self.threshold, 'theta': self.temporal_threshold,
        'memory': self.memory.max_frames, 'matcher': self.matcher_name,
        # What only some variants use: the instance softmax's dustbin, the hybrid's fusion.
        'dustbin': self.dustbin_logit if self.variant != 'pixel' else 'unused',
        'fusion': ([np.asarray(v).ravel().tolist() for v in jax.tree.leaves(self.fusion_params)]
                   if self.variant == 'hybrid' else 'unused')})
  monkeypatch.setattr(tracker_lib.VideoTracker, '__init__', recording_init)
  return built


@pytest.mark.parametrize('no_match', ['dustbin', 'mask'])
def test_tracking_a_frame_folder_equals_the_val_tracking(runs, no_match, tmp_path, monkeypatch):
  workdir = runs[no_match]
  config = _config(no_match)
  source = datasets.get_source(config, 'val', workdirs.data_dir(config, workdir))
  clip = source[0]
  folder = tmp_path / 'val_clip'
  folder.mkdir()
  for t, frame in enumerate(clip['frames']):
    Image.fromarray(frame).save(folder / f'frame_{t:03d}.png')
  lab = np.flatnonzero(clip['labelled'])
  gt_json = official_format.json_paths(os.path.join(workdir, 'export'), 'val')['gt']
  all_ids = sorted(str(e['id']) for e in official_format.read_json(gt_json)['images'])
  ids_of_clip = [i for i in all_ids if official_format.video_id_of(i) == str(clip['video_id'])]
  assert len(ids_of_clip) == len(lab) > 0
  # What mode=all wrote, read before anything else runs in this workdir.
  val_of_row = {name: _canonical(os.path.join(workdir, 'predictions', val_tracking._slug(name)),
                                 ids_of_clip) for name, *_ in train.TABLE_I_ROWS}
  built = _record_trackers(monkeypatch)
  # Track the val split again, as mode=all does (its finished tracking would be reused).
  os.remove(os.path.join(workdir, 'predictions', 'record.json'))
  shutil.rmtree(os.path.join(workdir, 'predictions', 'clips'))
  train.run(_config(no_match, mode='track'), workdir)
  val_trackers = list(built)
  # Table I's instance row runs without the mutual check (Table V's row of that name).
  assert [(b['variant'], b['temporal'], b['mutual']) for b in val_trackers] == [
      ('instance', False, False), ('pixel', False, True), ('hybrid', False, True),
      ('hybrid', True, True)]
  checked = 0
  for row, (name, variant, temporal, mutual) in enumerate(train.TABLE_I_ROWS):
    del built[:]
    mutual = {} if mutual is None else {'track.mutual_check': mutual}
    result = train.run(_config(no_match, mode='track', input=str(folder),
                               **{'track.variant': variant, 'track.temporal': temporal},
                               **mutual), workdir)
    video_ids = user_video.image_ids('val_clip', len(clip['frames']))
    assert built == [val_trackers[row]], name  # the same tracker, down to the dustbin rule
    ours = _canonical(result['pred_dir'], [video_ids[t] for t in lab])
    for t, (a, b) in enumerate(zip(ours, val_of_row[name])):
      np.testing.assert_array_equal(a, b, err_msg=f'{name}, no_match={no_match}, frame {lab[t]}')
    checked += 1
  assert checked == 4
