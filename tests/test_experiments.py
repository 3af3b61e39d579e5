"""experiments/: the paper-table sweeps, on ground-truth instances and on a trained tiny run.

The "segmenter output" of each clip is its ground truth split into instances, the flow the
exact synthetic flow, and the instance embedding a one-hot of the ground-truth track, so
the known answers are: per-frame PQ (k = 0) is 100 for every tracker setting, and better flow
can only help the pixel tracker.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import common
from experiments import raft_iterations
from experiments import temporal_threshold
from experiments import tracker_ablation
from hybrid_jax import errors
from hybrid_jax import inference
from hybrid_jax.data import categories as categories_lib
from hybrid_jax.data.synthetic import scene as synthetic
from hybrid_jax.tracking import frame_instances as instances_lib
from hybrid_jax.tracking import tracker as tracker_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_INSTANCES = 16
EMBED_DIM = 32


def _gt_clip(seed: int) -> common.Clip:
  # Every 2nd frame labelled: 5 labelled frames, so every window up to k = 15 (4 frames) exists.
  ex = synthetic.generate_clip(seed, height=64, width=128, clip_length=10, label_every=2)
  table = categories_lib.get_categories('synthetic')
  pan = ex['panoptic']
  track_ids = sorted({int(v) for v in np.unique(pan) if v >= 0 and v % 1000})
  assert 0 < len(track_ids) <= EMBED_DIM
  keys = ('masks', 'classes', 'scores', 'boxes', 'valid', 'kernels')
  seg = {k: [] for k in keys}
  for t in range(len(pan)):
    inst, seg_ids = instances_lib.instances_from_panoptic(pan[t], table, MAX_INSTANCES)
    # The "kernel" of an instance is a one-hot of its ground-truth track: a perfect embedding.
    kernels = np.zeros((MAX_INSTANCES, EMBED_DIM), np.float32)
    for k, sid in enumerate(seg_ids):
      if sid >= 0:
        kernels[k, track_ids.index(int(sid))] = 1.0
    for k in keys[:-1]:
      seg[k].append(np.asarray(getattr(inst, k)))
    seg['kernels'].append(kernels)
  seg = {k: np.stack(v) for k, v in seg.items()}
  seg['panoptic'] = pan
  preds = inference.ClipPredictions(seg, ex['flow'], seg_seconds=0.01, flow_seconds=0.02)
  return common.Clip(ex['video_id'], ex['frames'], pan, ex['labelled'], preds)


@pytest.fixture(scope='module')
def clips():
  return [_gt_clip(1), _gt_clip(2)]


def _tracker_for(setting):
  # The memory spans the whole clip, so a hidden object can always get its id back. With the
  # dustbin logit (a learned head's "no counterpart" column) an instance absent from frame t
  # scores ~1/(e^5 + n) < 0.01 against every instance instead of 1/n; the match threshold
  # 0.5 (instead of 1e-5) then keeps a reappearing object from taking a vanished one's id.
  theta = {} if setting.temporal_threshold is None else {
      'temporal_threshold': setting.temporal_threshold}
  return tracker_lib.VideoTracker(
      setting.variant, temporal=setting.temporal, mutual_check=setting.mutual_check,
      max_instances=MAX_INSTANCES, memory_frames=10, dustbin_logit=5.0, threshold=0.5,
      temporal_backward=setting.temporal_backward is not False,
      embed_fn=lambda image, inst: 10.0 * np.asarray(inst.kernels),
      categories=categories_lib.get_categories('synthetic'), **theta)


def test_tracker_ablation_rows_and_markdown(clips):
  settings = tracker_ablation.settings()
  assert [(s.variant, s.mutual_check, s.temporal) for s in settings[:4]] == [
      ('instance', False, False), ('instance', True, False), ('instance', False, True),
      ('instance', True, True)]
  rows = common.sweep(clips, settings, tracker_for=_tracker_for, categories='synthetic')
  assert [r['name'] for r in rows] == [s.name for s in settings]
  for r in rows:
    vpq = r['results']['vpq']
    # Ground-truth segments: every single frame is perfect whatever the track ids are.
    assert vpq['0']['all']['pq'] == pytest.approx(100.0)
    assert vpq['0']['stuff']['pq'] == pytest.approx(100.0)
    # Stuff has one fixed id per class, so no tracker can lose it at any k.
    assert vpq['final']['stuff']['pq'] == pytest.approx(100.0)
    # Timing of the second clip only: 10 frames / (seg + [flow] + tracker) seconds.
    flow = 0.02 if r['setting'].needs_flow else 0.0
    assert 0 < r['fps'] < 10 / (0.01 + flow)
    assert r['frames'] == 10
  by_name = {r['name']: r['results']['vpq'] for r in rows}
  # A perfect embedding plus a memory over the whole clip keeps every id: 100 at every k.
  for name in ('Instance Tracker + w/ Temporal', 'Instance Tracker + w/ Mutual + Temporal',
               'HybridTracker + w/ Temporal', 'HybridTracker + w/ Temporal (forward only)'):
    assert [by_name[name][k]['all']['pq'] for k in common.KS] == pytest.approx([100.0] * 4)
  # Without the memory, objects hidden for a few frames (the synthetic clips have them)
  # come back with new ids, which the longest window sees.
  assert by_name['Instance Tracker']['15']['things']['pq'] < 100.0
  assert (by_name['Pixel Tracker + w/ Temporal']['final']['things']['pq'] >=
          by_name['Pixel Tracker']['final']['things']['pq'])
  md = tracker_ablation.table(rows)
  assert md[0] == '| Method | k = 0 | k = 5 | k = 10 | k = 15 | VPQ | FPS |'
  assert len(md) == 2 + len(settings)
  assert md[2].startswith('| Instance Tracker | 100.0 / 100.0 / 100.0 |')


def test_temporal_threshold_table(clips):
  thetas = (0.001, 0.02)
  settings = temporal_threshold.settings(thetas)
  assert len(settings) == 3 * len(thetas)
  assert all(s.temporal for s in settings)
  assert {s.temporal_threshold for s in settings} == set(thetas)
  rows = common.sweep(clips, settings, tracker_for=_tracker_for, categories='synthetic')
  md = temporal_threshold.table(rows, thetas)
  assert md[0] == '| Method | θ = 0.001 | θ = 0.02 |'
  assert [line.split(' | ')[0] for line in md[2:]] == [
      '| Instance Tracker', '| Pixel Tracker', '| HybridTracker']
  by_name = {r['name']: r['results']['vpq']['final']['all']['pq'] for r in rows}
  cell = md[3].split(' | ')[1]  # Pixel Tracker, θ = 0.001: three decimals
  assert cell == common.vpq_cell(
      rows[2]['results']['vpq']['final'], digits=3)
  assert float(cell.split(' / ')[0]) == pytest.approx(
      by_name[temporal_threshold.setting_name('Pixel Tracker', 0.001)], abs=5e-4)


def test_raft_iterations_better_flow_scores_higher(clips):
  calls = []

  def flow_for(clip, setting):  # "RAFT" converges to the exact flow by 10 iterations
    iters = setting.flow_iters
    calls.append((clip.video_id, iters))
    return clip.preds.flow * min(1.0, iters / 10), 0.05 * iters

  iterations = (1, 10)
  settings = raft_iterations.settings(iterations)
  rows = common.sweep(clips, settings, tracker_for=_tracker_for, categories='synthetic',
                      flow_for=flow_for)
  # Flow computed once per clip and iteration count.
  assert sorted(calls) == sorted((c.video_id, n) for c in clips for n in iterations)
  assert [r['setting'].flow_iters for r in rows] == list(iterations)
  pq = [r['results']['vpq']['final']['things']['pq'] for r in rows]
  assert pq[1] > pq[0]  # flow at 10% of the motion loses tracks that the exact flow keeps
  # More iterations cost more (fake) flow time: lower FPS.
  assert rows[1]['fps'] < rows[0]['fps']
  md = raft_iterations.table(rows)
  assert md[0] == '| Iterations | PQ | PQ_Th | PQ_St | FPS |'
  assert [line.split(' | ')[0] for line in md[2:]] == ['| 1', '| 10']


def test_sweep_rejects_duplicate_names(clips):
  from hybrid_jax import errors
  s = common.Setting('same', 'pixel')
  with pytest.raises(errors.ConfigError, match='distinct'):
    common.sweep(clips, [s, s], tracker_for=_tracker_for, categories='synthetic')


def test_cli_help_lists_flags():
  out = subprocess.run(
      [sys.executable, os.path.join('experiments', 'temporal_threshold.py'), '--help'],
      cwd=ROOT, capture_output=True, text=True, timeout=120,
      env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert out.returncode in (0, 1), out.stderr  # absl's --help exits with 1
  assert 'Traceback' not in out.stderr
  for flag in ('--config', '--workdir', '--max_clips', '--out', '--thetas'):
    assert flag in out.stdout


def test_hyphenated_flags_are_accepted():
  assert common._underscored('--max-clips=3') == '--max_clips=3'
  assert common._underscored('--max-clips') == '--max_clips'
  assert common._underscored('--config.data.num-x=a-b') == '--config.data.num-x=a-b'
  assert common._underscored('a-b') == 'a-b'


# ---- The real path: a trained tiny run, its segmenter and RAFT (no stand-ins) ------------------

def test_raft_iterations_on_a_trained_run(tiny_run, tmp_path):
  from configs import synthetic as synthetic_config
  config = synthetic_config.get_config('tiny')
  out = str(tmp_path / 'raft_iterations.md')
  path, rows = common.run_experiment(
      config, tiny_run, name=raft_iterations.NAME,
      build_settings=lambda c: raft_iterations.settings((1, 4)),
      to_markdown=raft_iterations.markdown, max_clips=1, out=out, sweeps_flow=True)
  assert path == out
  assert [r['setting'].flow_iters for r in rows] == [1, 4]
  # The same segmenter output under both settings: per-frame PQ (k = 0) cannot differ; the
  # flow (RAFT run with 1 and with 4 iterations) only changes the video windows.
  pq0 = [r['results']['vpq']['0']['all']['pq'] for r in rows]
  assert pq0[0] == pq0[1]
  text = open(out).read()
  assert '| Iterations | PQ | PQ_Th | PQ_St | FPS |' in text
  assert text.count('\n| 1 |') == 1 and text.count('\n| 4 |') == 1


def test_tracker_ablation_command_on_a_trained_run(tiny_run, tmp_path):
  out = str(tmp_path / 'ablation.md')
  r = subprocess.run(
      [sys.executable, os.path.join('experiments', 'tracker_ablation.py'), '--config',
       'configs/synthetic.py:tiny', '--workdir', tiny_run, '--max-clips', '1', '--out', out],
      cwd=ROOT, capture_output=True, text=True, timeout=600,
      env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert r.returncode == 0, r.stderr[-3000:]
  lines = [ln for ln in open(out).read().splitlines() if ln.startswith('| ')]
  names = [ln.split(' | ')[0][2:] for ln in lines[1:]]
  assert names == [s.name for s in tracker_ablation.settings()]
  # The libraries' INFO log goes to the workdir, as with hybrid_jax.main; there it says that
  # the trained stages were reused, not retrained.
  assert 'already trained' not in r.stderr
  assert 'already trained' in open(os.path.join(tiny_run, 'logs', 'hybrid_jax.INFO')).read()


def test_an_experiment_does_not_reuse_a_stage_trained_with_other_settings(tiny_run):
  from configs import synthetic as synthetic_config
  config = synthetic_config.get_config('tiny')
  config.track.fusion_objective = 'likelihood'  # the run's fusion was fitted by decisions
  with pytest.raises(errors.ConfigError, match='force_stages=track') as e:
    common.run_experiment(config, tiny_run, name=tracker_ablation.NAME,
                          build_settings=lambda c: tracker_ablation.settings(),
                          to_markdown=tracker_ablation.markdown, max_clips=1)
  assert "track.fusion_objective: 'decisions' -> 'likelihood'" in str(e.value)
  assert os.path.isdir(os.path.join(tiny_run, 'track', 'fusion'))  # nothing removed


def _row(name, all_, things, stuff=50.0):
  final = {'all': {'pq': all_}, 'things': {'pq': things}, 'stuff': {'pq': stuff}}
  return {'name': name, 'results': {'vpq': {'final': final}}}


def test_seed_summary_and_the_paired_verdict():
  rows = {0: [_row('HybridTracker', 30.0, 16.0), _row('Pixel Tracker', 31.0, 15.0),
              _row('Instance Tracker', 29.0, 16.5)],
          1: [_row('HybridTracker', 32.0, 18.0), _row('Pixel Tracker', 31.0, 17.8),
              _row('Instance Tracker', 29.0, 17.0)]}
  summary = common.seed_summary(rows)
  assert [r['name'] for r in summary] == ['HybridTracker', 'Pixel Tracker', 'Instance Tracker']
  assert summary[0]['mean']['things'] == pytest.approx(17.0)
  assert summary[0]['std']['things'] == pytest.approx(1.0)       # population std of 16, 18
  assert summary[1]['std']['all'] == pytest.approx(0.0)
  md = common.seed_markdown(summary, [0, 1], [('HybridTracker', 'Pixel Tracker'),
                                              ('HybridTracker', 'Instance Tracker'),
                                              ('HybridTracker', 'not a row')])
  assert '| HybridTracker | 31.00 ± 1.00 | 17.00 ± 1.00 | 50.00 ± 0.00 |' in md
  # Paired differences 1.0 and 0.2: +0.60 ± 0.40, above on both seeds, told apart although
  # each row's own spread over seeds (1.0, 1.4) is larger than the difference.
  assert ('- HybridTracker VPQ_Th is above Pixel Tracker: +0.60 ± 0.40 (paired, above on 2 of '
          '2 seeds; more than the spread of the differences).') in md
  # Differences -0.5 and +1.0: +0.25 ± 0.75, not told apart.
  assert any(line.startswith('- HybridTracker VPQ_Th is above Instance Tracker: +0.25 ± 0.75')
             and 'not told apart' in line for line in md)
  assert not any('not a row' in line for line in md)


def test_seeds_are_parsed_and_set_on_the_config():
  assert common.parse_seeds('0,1, 2') == [0, 1, 2] and common.parse_seeds('') == []
  for bad in ('0,x', '1,1'):
    with pytest.raises(errors.ConfigError, match='--seeds'):
      common.parse_seeds(bad)
  from configs import synthetic as synthetic_config
  c = common.seed_config(synthetic_config.get_config('tiny'), 3)
  assert (c.seed, c.data.generator_seed) == (3, 3)


def test_raft_checkpoints_on_a_trained_run(tiny_run, tmp_path):
  from configs import synthetic as synthetic_config
  from experiments import raft_checkpoints
  config = synthetic_config.get_config('tiny')
  own = os.path.join(tiny_run, 'flow', 'final')
  with pytest.raises(errors.CheckpointError, match='does not exist'):
    raft_checkpoints.parse_checkpoints([f'x={tmp_path / "none"}'])
  with pytest.raises(errors.ConfigError, match='distinct'):
    raft_checkpoints.parse_checkpoints([f'a={own}', f'a={own}'])
  # A second 'checkpoint': the run's RAFT with its weights zeroed (flow ~0): another version.
  import jax
  import numpy as np_
  from hybrid_jax.training import pretrained
  variables, meta = pretrained.load_pretrained(own)
  zero = str(tmp_path / 'raft_zero')
  pretrained.save_pretrained(zero, jax.tree.map(np_.zeros_like, variables), meta)
  ckpts = raft_checkpoints.parse_checkpoints([f'run={own}', zero])
  assert [n for n, _ in ckpts] == ['run', 'raft_zero']
  out = str(tmp_path / 'raft_checkpoints.md')
  _, rows = common.run_experiment(
      config, tiny_run, name=raft_checkpoints.NAME,
      build_settings=lambda c: raft_checkpoints.settings(ckpts),
      to_markdown=raft_checkpoints.markdown, max_clips=1, out=out, sweeps_flow=True)
  assert [r['name'] for r in rows] == ['run', 'raft_zero']
  text = open(out).read()
  assert '| version | PQ | PQ_Th | PQ_St | FPS |' in text and '| raft_zero |' in text
  # The same segments under both: frame-level PQ (k = 0) is equal; only the flow differs.
  assert (rows[0]['results']['vpq']['0']['all']['pq']
          == rows[1]['results']['vpq']['0']['all']['pq'])


def test_external_predictor_rows_on_a_trained_run(tiny_run, tmp_path):
  """Per-frame predictions (here: ground-truth segments with per-frame ids, as another
  model's output would come) as given, + our pixel tracker, + temporal."""
  from configs import synthetic as synthetic_config
  from experiments import external_predictor
  from hybrid_jax import val_tracking
  from hybrid_jax import workdirs
  from hybrid_jax.data import datasets
  from hybrid_jax.data import official_format
  config = synthetic_config.get_config('tiny')
  table = categories_lib.get_categories(config.data.categories)
  _, gt_json = val_tracking.gt_layout(config, tiny_run)
  ids_by_video = val_tracking._image_ids_by_video(gt_json)
  ids, maps = [], []
  for clip in datasets.get_source(config, 'val', workdirs.data_dir(config, tiny_run)):
    lab = np.flatnonzero(clip['labelled'])
    seg = inference.ground_truth_segments(clip['panoptic'], table, config.data.max_instances)
    ids += ids_by_video[str(clip['video_id'])]
    maps += list(seg['panoptic'][lab])
  pred_dir = str(tmp_path / 'per_frame')
  official_format.write_predictions(pred_dir, ids, maps, table)
  with pytest.raises(errors.DatasetError, match='pred.json'):
    external_predictor.run(config, tiny_run, str(tmp_path))
  out = str(tmp_path / 'external.md')
  _, rows = external_predictor.run(config, tiny_run, pred_dir, name='GT-per-frame', out=out)
  assert [r['name'] for r in rows] == ['GT-per-frame (per-frame ids)', 'GT-per-frame + Pixel',
                                       'GT-per-frame + Pixel + w/ Temporal']
  for r in rows:  # tracking changes ids only: every single frame stays perfect
    assert r['results']['vpq']['0']['all']['pq'] == pytest.approx(100.0)
  assert rows[0]['fps'] is None and rows[1]['fps'] > 0
  assert rows[1]['results']['vpq']['final']['things']['pq'] > 80.0
  assert '| GT-per-frame + Pixel + w/ Temporal |' in open(out).read()


def test_dml_losses_curves_on_tiny_data(tmp_path):
  from configs import synthetic as synthetic_config
  from experiments import dml_losses
  config = synthetic_config.get_config('tiny')
  with pytest.raises(errors.ConfigError, match='--losses'):
    dml_losses.run(config, str(tmp_path / 'x'), losses=['hinge'])
  out = str(tmp_path / 'fig5.md')
  path, curves = dml_losses.run(config, str(tmp_path / 'run'), losses=['dml', 'triplet'],
                                every=1, out=out)
  steps = config.track.train.steps
  for name in ('dml', 'triplet'):
    assert [p['step'] for p in curves[name]] == list(range(1, steps + 1))
    assert all(0.0 <= p['vpq_things'] <= 100.0 for p in curves[name])
  # The same initialisation and pairs: both heads start from one network, different losses
  # then move them apart; the two exports differ.
  from hybrid_jax.training import pretrained
  a, _ = pretrained.load_pretrained(str(tmp_path / 'run' / 'dml_losses' / 'dml' / 'track' /
                                        'final'))
  b, _ = pretrained.load_pretrained(str(tmp_path / 'run' / 'dml_losses' / 'triplet' /
                                        'track' / 'final'))
  assert not np.array_equal(np.asarray(a['params']['fc2']['kernel']),
                            np.asarray(b['params']['fc2']['kernel']))
  text = open(path).read()
  assert '| step | dml | triplet |' in text and os.path.exists(str(tmp_path / 'fig5.png'))


def test_roi_input_curves_on_a_trained_tiny_run(tiny_run, tmp_path):
  import shutil
  from configs import synthetic as synthetic_config
  from experiments import roi_input
  from hybrid_jax import workdirs
  config = synthetic_config.get_config('tiny')
  config.data.dir = workdirs.data_dir(config, tiny_run)  # the tiny run's data, shared
  with pytest.raises(errors.ConfigError, match='--inputs'):
    roi_input.run(config, str(tmp_path / 'x'), inputs=['rgb'])
  with pytest.raises(errors.CheckpointError, match='mode=train_seg'):  # no segmenter there
    roi_input.run(config, str(tmp_path / 'empty'), inputs=['features'])
  run_dir = str(tmp_path / 'run')
  shutil.copytree(os.path.join(tiny_run, 'seg'), os.path.join(run_dir, 'seg'))
  out = str(tmp_path / 'roi.md')
  path, curves = roi_input.run(config, run_dir, inputs=['image', 'features'], every=1, out=out)
  steps = config.track.train.steps
  for name in ('image', 'features'):
    assert [p['step'] for p in curves[name]] == list(range(1, steps + 1))
  from hybrid_jax.training import pretrained
  params, meta = pretrained.load_pretrained(os.path.join(run_dir, 'roi_input', 'features',
                                                         'track', 'final'))
  assert meta['roi_input'] == 'features' and 'feature_proj' in params['params']
  assert '| step | image | features |' in open(path).read()


def _on_tiny_run(tiny_run, out, module, settings, markdown, **kwargs):
  """An experiment script's sweep on the first val clip of the trained tiny run."""
  from configs import synthetic as synthetic_config
  _, rows = common.run_experiment(
      synthetic_config.get_config('tiny'), tiny_run, name=module.NAME,
      build_settings=lambda c: settings, to_markdown=markdown, max_clips=1, out=out, **kwargs)
  return rows


def test_instance_cue_ceiling_on_a_trained_run(tiny_run, tmp_path):
  from experiments import instance_cue_ceiling
  lazy = instance_cue_ceiling._Lazy()
  out = str(tmp_path / 'ceiling.md')
  rows = _on_tiny_run(tiny_run, out, instance_cue_ceiling, instance_cue_ceiling.settings(),
                      instance_cue_ceiling.markdown, trackers=lazy.trackers,
                      on_clip=lazy.on_clip)
  names = [r['name'] for r in rows]
  assert names == [s.name for s in instance_cue_ceiling.settings()]
  # One segmenter output for every row: per-frame PQ (k = 0) cannot differ between them.
  assert len({r['results']['vpq']['0']['all']['pq'] for r in rows}) == 1
  assert len(lazy.oracle._gt) == 10  # the oracle was handed the clip's 10 frames
  text = open(out).read()
  assert '| HybridTracker, oracle instance cue |' in text


def test_labelled_only_tracks_the_labelled_frames_with_their_own_flow(clips):
  calls = []

  def flow_for(clip, setting):  # the exact motion between labelled frames is not stored
    calls.append((clip.video_id, len(clip.frames), bool(np.all(clip.labelled))))
    return np.zeros((len(clip.frames) - 1, *clip.frames.shape[1:3], 2), np.float32), 0.05

  s = common.Setting
  settings = [s('Pixel', 'pixel'), s('Pixel, labelled', 'pixel', labelled_only=True),
              s('Instance, labelled', 'instance', temporal=True, labelled_only=True)]
  rows = common.sweep(clips, settings, tracker_for=_tracker_for, categories='synthetic',
                      flow_for=flow_for)
  # 10 frames, every 2nd labelled: the labelled-only settings track 5, with one flow pass
  # per clip that they share, and are scored on the same 5 frames as the every-frame rows.
  assert sorted(calls) == sorted((c.video_id, 5, True) for c in clips)
  assert [r['frames'] for r in rows] == [10, 5, 5]
  for r in rows:
    assert r['results']['vpq']['0']['all']['pq'] == pytest.approx(100.0)
  # A perfect embedding with a memory keeps every id whatever the gap.
  vpq = rows[2]['results']['vpq']
  assert [vpq[k]['all']['pq'] for k in common.KS] == pytest.approx([100.0] * 4)


def test_labelled_frames_cuts_the_clip_and_its_segmenter_time(clips):
  clip = clips[0]
  lab = np.flatnonzero(clip.labelled)
  cut = common.labelled_frames(clip)
  assert np.array_equal(cut.frames, clip.frames[lab])
  assert np.array_equal(cut.panoptic, clip.panoptic[lab])
  assert cut.labelled.all() and len(cut.labelled) == len(lab) == 5
  for k, v in clip.preds.seg.items():
    assert np.array_equal(cut.preds.seg[k], np.asarray(v)[lab])
  assert cut.preds.seg_seconds == pytest.approx(clip.preds.seg_seconds * 5 / 10)
  assert cut.preds.flow.shape == (4, *clip.frames.shape[1:3], 2)


def test_frame_gap_on_a_trained_run(tiny_run, tmp_path):
  from experiments import frame_gap
  refit = frame_gap._Refit()
  out = str(tmp_path / 'frame_gap.md')
  rows = _on_tiny_run(tiny_run, out, frame_gap, frame_gap.settings(), refit.markdown,
                      trackers=refit.trackers)
  assert [r['name'] for r in rows] == [s.name for s in frame_gap.settings()]
  # The same segmenter outputs of the same scored frames in every row, at either gap.
  assert len({r['results']['vpq']['0']['all']['pq'] for r in rows}) == 1
  # 10 frames labelled every 5th: 2 tracked frames at the larger gap.
  assert {r['frames'] for r in rows if frame_gap.LABELLED in r['name']} == {2}
  # The refit pairs consecutive labelled frames: one pair per held-out clip, not nine.
  assert refit.report['fit_pairs'] == 1 and refit.report['held_out_pairs'] == 1
  text = open(out).read()
  assert 'Fusion fitted on labelled-frame pairs (decisions, predicted segments, 1 pairs)' in text
  assert f'| HybridTracker{frame_gap.LABELLED}{frame_gap.REFIT} |' in text
  assert f'| HybridTracker{frame_gap.EVERY}{frame_gap.REFIT} |' in text
  # Which cue decides the held-out rows: the refit's figure is the fit report's, on the
  # labelled-frame pairs; every cue is scored on both kinds of pair.
  d = refit.decisions
  assert d['labelled'][frame_gap.REFIT_FUSION] == refit.report['held_out_row_accuracy']
  names = [n for n, _ in frame_gap.CUES] + [frame_gap.RUN_FUSION, frame_gap.REFIT_FUSION]
  assert list(d['consecutive']) == list(d['labelled']) == names
  assert '| pixel cue alone |' in text
