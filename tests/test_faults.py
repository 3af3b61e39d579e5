"""Faults and bad input: each ends in one clear message, no traceback, nothing lost or wrongly
marked done. One test per case of the fault table (docs/configs.md, "When things go wrong")."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from PIL import Image

import test_training_support as support
from configs import synthetic as synthetic_config
from hybrid_jax import errors
from hybrid_jax import train
from hybrid_jax import trained_models
from hybrid_jax import workdirs
from hybrid_jax.data import categories as categories_lib
from hybrid_jax.data import official_format
from hybrid_jax.evaluation import evaluate_arrays
from hybrid_jax.training import loop
from hybrid_jax.training import mesh as mesh_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, 'JAX_PLATFORMS': 'cpu'}


def _cli(*args, timeout=300, **popen):
  return subprocess.run([sys.executable, *args], cwd=ROOT, env=ENV, capture_output=True,
                        text=True, timeout=timeout, **popen)


def _main(workdir, *overrides, preset='tiny'):
  return _cli('-m', 'hybrid_jax.main', '--config', f'configs/synthetic.py:{preset}',
              '--workdir', str(workdir), *overrides)


def _tiny(**overrides):
  c = synthetic_config.get_config('tiny')
  for key, value in overrides.items():
    section, _, leaf = key.replace('__', '.').rpartition('.')
    target = c
    for part in filter(None, section.split('.')):
      target = target[part]
    target[leaf] = value
  return c


def _copy_run(tiny_run, tmp_path) -> str:
  wd = str(tmp_path / 'run')
  shutil.copytree(tiny_run, wd, ignore=shutil.ignore_patterns(workdirs.LOCK_FILE))
  return wd


# ---- 1. Non-finite values -------------------------------------------------------------------

def test_nan_learning_rate_is_refused_before_any_work(tmp_path):
  r = _main(tmp_path / 'wd', '--config.seg.train.lr=nan')
  assert r.returncode == 2
  assert 'config.seg.train.lr=nan' in r.stderr and 'finite' in r.stderr
  assert 'Traceback' not in r.stderr
  assert not os.path.exists(tmp_path / 'wd' / 'data')  # stopped before preparing anything


def test_a_stage_with_non_finite_parameters_is_not_marked_done(tmp_path):
  # A NaN learning rate reaching the step (the config check bypassed): finite losses at first,
  # NaN parameters after the first update.
  mesh = mesh_lib.make_mesh(1)
  setup = support.setup(mesh=mesh, train_cfg=support.train_config(lr=float('nan')))
  with pytest.raises(errors.TrainingDivergedError) as info:
    support.run(str(tmp_path), support.TOTAL_STEPS, mesh=mesh, setup_out=setup,
                shared=support.shared_config(max_bad_steps=100))
  msg = str(info.value)
  assert '[seg] the trained parameters are not finite' in msg
  assert 'first logged steps with a non-finite loss: [2' in msg
  assert 'delete' in msg and 'lr' in msg
  assert not loop.stage_done(str(tmp_path), 'seg', support.TOTAL_STEPS)
  assert not os.path.exists(tmp_path / 'seg' / loop.DONE_FILE)


def test_a_finished_stage_with_non_finite_weights_is_refused(tiny_run, tmp_path):
  from hybrid_jax.training import pretrained
  wd = _copy_run(tiny_run, tmp_path)
  final = trained_models.final_path(wd, 'track')
  variables, meta = pretrained.load_pretrained(final)
  variables['params']['fc1']['kernel'][:] = np.nan
  shutil.rmtree(final)
  pretrained.save_pretrained(final, variables, meta)
  with pytest.raises(errors.TrainingDivergedError, match=r'non-finite weights.*fc1.*Delete'):
    train.run(_tiny(mode='train_track'), wd)


# ---- 2, 3. Signals --------------------------------------------------------------------------

@pytest.mark.parametrize('sig,code', [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_main_checkpoints_and_exits_nonzero_on_signals(tmp_path, sig, code):
  wd = tmp_path / 'wd'
  proc = subprocess.Popen(
      [sys.executable, '-m', 'hybrid_jax.main', '--config', 'configs/synthetic.py:tiny',
       '--workdir', str(wd), '--config.seg.train.steps=100000', '--config.mode=train_seg',
       '--config.train.checkpoint_every_steps=100000'],
      cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  metrics = wd / 'seg' / 'metrics.jsonl'
  try:
    deadline = time.time() + 240
    while proc.poll() is None and time.time() < deadline:
      if metrics.exists() and metrics.read_text().count('\n') >= 2:
        break
      time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=240)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == code, err[-3000:]
  assert err.count(f'stopped by {signal.Signals(sig).name} at step') == 1, err[-3000:]  # once
  assert 'rerun the same command to resume' in err
  assert 'Traceback' not in err and 'KeyboardInterrupt' not in err
  steps = [int(s) for s in os.listdir(wd / 'seg' / 'checkpoints') if s.isdigit()]
  assert steps and not loop.stage_done(str(wd), 'seg', 100000)


def test_resume_keeps_each_step_once_in_the_metrics(tmp_path):
  mesh = mesh_lib.make_mesh(1)
  support.run(str(tmp_path), 4, mesh=mesh)
  path = tmp_path / 'seg' / 'metrics.jsonl'
  with open(path, 'a') as f:  # what an interrupted run logs after its last checkpoint
    f.write(json.dumps({'step': 5, 'time': 0, 'train/loss': 1.0}) + '\n{"step": 6, "ti')
  support.run(str(tmp_path), support.TOTAL_STEPS, mesh=mesh)
  steps = [json.loads(line)['step'] for line in path.read_text().splitlines()]
  assert steps == sorted(set(steps)) == list(range(1, support.TOTAL_STEPS + 1))


# ---- 4. One run per workdir -----------------------------------------------------------------

def test_a_busy_workdir_names_its_holder(tmp_path):
  holder = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
  try:
    (tmp_path / workdirs.LOCK_FILE).write_text(json.dumps(
        {'pid': holder.pid, 'host': os.uname().nodename, 'started': 'then'}))
    with pytest.raises(errors.WorkdirError) as info:
      train.run(_tiny(mode='data'), str(tmp_path))
  finally:
    holder.kill()
    holder.wait()
  assert f'pid {holder.pid}' in str(info.value) and 'another --workdir' in str(info.value)
  assert not os.path.exists(tmp_path / 'data')


def test_a_stale_lock_is_taken_over(tmp_path):
  dead = subprocess.Popen([sys.executable, '-c', 'pass'])
  dead.wait()
  (tmp_path / workdirs.LOCK_FILE).write_text(json.dumps(
      {'pid': dead.pid, 'host': os.uname().nodename, 'started': 'then'}))
  with pytest.warns(UserWarning, match='no longer running'):
    train.run(_tiny(mode='data'), str(tmp_path))
  assert os.path.isdir(tmp_path / 'data')
  assert not os.path.exists(tmp_path / workdirs.LOCK_FILE)  # released at the end


# ---- 5. A finished stage with another model size --------------------------------------------

@pytest.mark.parametrize('key,value,named', [
    ('track.hidden_dim', 64, 'track.hidden_dim: 32 -> 64'),
    ('seg.backbone', 'resnet_small', "seg.backbone: 'resnet_tiny' -> 'resnet_small'"),
    ('flow.variant', 'standard', "flow.variant: 'small' -> 'standard'"),
])
def test_a_finished_stage_of_another_size_is_named_at_once(tiny_run, tmp_path, key, value,
                                                           named):
  wd = _copy_run(tiny_run, tmp_path)
  stage = key.split('.')[0]
  mode = {'track': 'train_track', 'seg': 'train_seg', 'flow': 'train_flow'}[stage]
  before = open(os.path.join(wd, stage, 'final', 'metadata.json')).read()
  t0 = time.time()
  with pytest.raises(errors.ConfigError) as info:
    train.run(_tiny(mode=mode, **{key: value}), wd)
  assert time.time() - t0 < 30
  msg = str(info.value)
  assert named in msg and 'new --workdir' in msg and '--config.force_stages=' in msg
  assert open(os.path.join(wd, stage, 'final', 'metadata.json')).read() == before


def test_an_export_without_a_record_is_still_checked(tiny_run, tmp_path):
  """Workdirs of older versions have no records: the export's metadata still names the key."""
  wd = _copy_run(tiny_run, tmp_path)
  os.remove(os.path.join(wd, 'track', 'record.json'))
  with pytest.raises(errors.CheckpointError, match='hidden_dim=32 but this config has 64'):
    train.run(_tiny(mode='train_track', **{'track.hidden_dim': 64}), wd)


def test_force_stages_trains_the_stage_again(tiny_run, tmp_path):
  wd = _copy_run(tiny_run, tmp_path)
  seg_before = open(os.path.join(wd, 'seg', 'record.json')).read()
  train.run(_tiny(mode='train_track', force_stages='track', **{'track.hidden_dim': 64}), wd)
  head = trained_models.load_head(trained_models.final_path(wd, 'track'))
  assert head.hparams['hidden_dim'] == 64
  assert open(os.path.join(wd, 'seg', 'record.json')).read() == seg_before  # kept
  assert not os.path.exists(os.path.join(wd, 'predictions'))  # tracked again next time
  with pytest.raises(errors.ConfigError, match='force_stages'):
    train.run(_tiny(mode='data', force_stages='segmenter'), wd)


# ---- 6. Disk full ---------------------------------------------------------------------------

def test_a_full_disk_is_one_message(tmp_path):
  driver = tmp_path / 'driver.py'
  driver.write_text(
      'import sys\n'
      'from hybrid_jax.training import checkpoints\n'
      'def full(*a, **k):\n'
      '  raise ValueError("RESOURCE_EXHAUSTED: Error writing \\"x\\": Failed to write 1 bytes: '
      'No space left on device [os_error_code=\'28\']")\n'
      'checkpoints.save = full\n'
      'from hybrid_jax import main\n'
      'sys.argv = ["main"] + sys.argv[1:]\n'
      'main._entry()\n')
  r = _cli(str(driver), '--config', 'configs/synthetic.py:tiny', '--workdir',
           str(tmp_path / 'wd'), '--config.mode=train_seg')
  assert r.returncode == 2, r.stderr[-3000:]
  assert 'error: no space left on the device' in r.stderr
  assert 'Free some space' in r.stderr and 'Traceback' not in r.stderr


# ---- 7. Damaged dataset files ---------------------------------------------------------------

def test_damaged_dataset_files_name_the_folder_to_delete(tmp_path):
  wd = tmp_path / 'wd'
  train.run(_tiny(mode='data'), str(wd))
  (folder,) = [os.path.join(dp, '') for dp, _, fs in os.walk(wd / 'data')
               if 'dataset_info.json' in fs]
  (train_file,) = [f for f in os.listdir(folder) if 'train.array_record' in f]
  with open(os.path.join(folder, train_file), 'r+b') as f:
    f.truncate(1000)
  r = _main(wd, '--config.mode=show', '--config.show.split=train')
  assert r.returncode == 2 and 'Traceback' not in r.stderr
  assert 'cannot be read' in r.stderr and folder.rstrip('/') in r.stderr
  assert '--config.mode=data' in r.stderr
  with open(os.path.join(folder, 'dataset_info.json'), 'w') as f:
    f.write('{broken')
  r = _main(wd, '--config.mode=show')
  assert r.returncode == 2 and 'Traceback' not in r.stderr
  assert 'cannot be read' in r.stderr and 'delete' in r.stderr


def test_an_interrupted_preparation_leaves_nothing_behind(tmp_path):
  wd = tmp_path / 'wd'
  cfg = _tiny(mode='data')
  from hybrid_jax.data.synthetic import source
  name = source.synthetic_config(cfg.data).name
  leftover = wd / 'data' / 'synthetic_vps' / name / 'incomplete.ABC123_1.0.0'
  leftover.mkdir(parents=True)
  train.run(cfg, str(wd))
  assert not leftover.exists()


# ---- 8. Memory ------------------------------------------------------------------------------

def test_a_pair_too_large_for_memory_is_a_message(tmp_path, monkeypatch, capsys):
  from hybrid_jax.cli import estimate_flow
  from hybrid_jax.models.raft import memory
  monkeypatch.setattr(memory, 'available_bytes', lambda: 16 * 2**30)
  img = np.zeros((3000, 4000, 3), np.uint8)
  for name in ('a.png', 'b.png'):
    Image.fromarray(img).save(tmp_path / name)
  rc = estimate_flow.main([str(tmp_path / 'a.png'), str(tmp_path / 'b.png'), '--checkpoint',
                           str(tmp_path / 'no_checkpoint'), '--out', str(tmp_path / 'f.flo')])
  err = capsys.readouterr().err
  assert rc == 2
  assert '4000x3000' in err and 'GiB' in err and '--corr on_demand' in err and 'resize' in err
  assert memory.estimate_bytes(3000, 4000) > 300 * 2**30  # measured: 327 GB asked for
  assert memory.estimate_bytes(3000, 4000, corr='on_demand') < 16 * 2**30


# ---- 9. VPQ windows longer than the videos --------------------------------------------------

def test_windows_no_video_has_are_left_out_of_the_mean():
  table = categories_lib.get_categories('synthetic')
  gt = np.full((4, 6), 1000, np.int32)
  gt[1:3, 1:3] = 6001
  videos = [[gt, gt], [gt, gt]]  # 2 labelled frames per video: windows k = 0 and 5 only
  with pytest.warns(UserWarning, match=r'k = 10, 15 do not exist'):
    res = evaluate_arrays(videos, videos, table, metrics=('vpq',))['vpq']
  assert [res[k]['windows'] for k in ('0', '5', '10', '15')] == [4, 2, 0, 0]
  assert res['final']['ks'] == ['0', '5']
  assert res['final']['all']['pq'] == pytest.approx(100.0)  # not (100 + 100 + 0 + 0) / 4


# ---- 10. Config values, all checked before any work -----------------------------------------

@pytest.mark.parametrize('override,needle', [
    ('--config.track.memory_frames=-1', 'config.track.memory_frames=-1'),
    ('--config.track.temporal_threshold=-0.5', 'config.track.temporal_threshold=-0.5'),
    ('--config.eval.metrics=foo', 'config.eval.metrics'),
    ('--config.eval.dataset=kitti', 'config.eval.dataset'),
    ('--config.eval.reference_table=TABLE_9', 'config.eval.reference_table'),
    ('--config.seg.backbone=resnet18', 'config.seg.backbone'),
    ('--config.track.canvas=(8,15)', 'config.track.canvas'),
    ('--config.seg.train.batch_size=0', 'config.seg.train.batch_size'),
])
def test_bad_values_stop_mode_all_in_seconds(tmp_path, override, needle):
  t0 = time.time()
  r = _main(tmp_path / 'wd', override)
  assert r.returncode == 2 and needle in r.stderr, r.stderr[-2000:]
  assert 'Traceback' not in r.stderr
  assert time.time() - t0 < 60 and not os.path.exists(tmp_path / 'wd' / 'data')


def test_a_preset_typo_is_one_line():
  r = _cli('-m', 'hybrid_jax.main', '--config', 'configs/synthetic.py:tinyy', '--workdir', '/x')
  assert r.returncode == 2 and 'Traceback' not in r.stderr
  assert "Unknown preset 'tinyy'" in r.stderr


# ---- 11, 12. Outputs checked before compute, never shared -----------------------------------

def test_flow_outputs_are_checked_before_compute(tmp_path, capsys):
  from hybrid_jax.cli import estimate_flow
  img = np.zeros((16, 16, 3), np.uint8)
  for name in ('a.png', 'b.png'):
    Image.fromarray(img).save(tmp_path / name)
  base = [str(tmp_path / 'a.png'), str(tmp_path / 'b.png'), '--checkpoint', str(tmp_path)]
  assert estimate_flow.main(base + ['--out', str(tmp_path / 'missing' / 'f.flo')]) == 2
  assert 'does not exist; create it first' in capsys.readouterr().err
  assert estimate_flow.main(base + ['--out', str(tmp_path)]) == 2
  assert 'is a folder' in capsys.readouterr().err


def test_convert_refuses_an_existing_output_before_converting(tmp_path, capsys):
  from hybrid_jax.cli import convert
  out = tmp_path / 'out.txt'
  out.write_text('keep me')
  assert convert.main(['raft', str(tmp_path / 'missing.pth'), str(out)]) == 2
  assert 'is a file' in capsys.readouterr().err and out.read_text() == 'keep me'


@pytest.mark.parametrize('content,needle', [
    (b'', 'is empty (0 bytes)'),
    (b'not a checkpoint\n', 'is not a PyTorch checkpoint'),
])
def test_convert_names_what_the_input_is_not(tmp_path, capsys, content, needle):
  from hybrid_jax.cli import convert
  src = tmp_path / 'in.pth'
  src.write_bytes(content)
  assert convert.main(['raft', str(src), str(tmp_path / 'out')]) == 2
  err = capsys.readouterr().err
  assert needle in err and 'torch.save' in err and 'pop from empty list' not in err


def test_convert_refuses_pickles_without_repeating_the_unsafe_advice(tmp_path, capsys):
  torch = pytest.importorskip('torch')
  src = tmp_path / 'evil.pth'
  torch.save({'w': torch.zeros(2), 'x': _Evil()}, src)
  from hybrid_jax.cli import convert
  assert convert.main(['raft', str(src), str(tmp_path / 'out')]) == 2
  err = capsys.readouterr().err
  assert 'does not run such pickles' in err
  assert 'weights_only=False' not in err and 'EVIL RAN' not in err


class _Evil:
  def __reduce__(self):
    return (print, ('EVIL RAN',))


def test_two_inputs_never_share_an_output_folder(tiny_run, tmp_path):
  from hybrid_jax import visualize
  wd = _copy_run(tiny_run, tmp_path)
  frames = np.zeros((3, 32, 64, 3), np.uint8)
  folder = tmp_path / 'good'
  folder.mkdir()
  for t, f in enumerate(frames):
    Image.fromarray(f).save(folder / f'{t}.png')
  config = _tiny(mode='track', input=str(folder), **{'track.variant': 'pixel'})
  first = train.run(config, wd)
  before = open(first['tracks_json']).read()
  mp4 = tmp_path / 'other' / 'good.mp4'
  visualize.write_mp4(str(mp4), list(frames), fps=5)
  config.input = str(mp4)
  with pytest.raises(errors.WorkdirError, match='already holds the tracking of'):
    train.run(config, wd)
  assert open(first['tracks_json']).read() == before


def test_a_shorter_prediction_leaves_no_stale_frames(tmp_path):
  table = categories_lib.get_categories('synthetic')
  pan = np.full((4, 6), 1000, np.int32)
  ids = [f'0001_{t:04d}_x_000000_{t:06d}' for t in range(3)]
  official_format.write_predictions(str(tmp_path), ids, [pan] * 3, table)
  official_format.write_predictions(str(tmp_path), ids[:1], [pan], table)
  assert os.listdir(tmp_path / 'pan_pred') == [ids[0] + '.png']


def test_reading_a_video_does_not_warn_about_fork(tmp_path):
  from hybrid_jax import user_video
  from hybrid_jax import visualize
  import jax  # the warning needs JAX's threads to exist
  jax.numpy.zeros(1).block_until_ready()
  visualize.write_mp4(str(tmp_path / 'v.mp4'), [np.zeros((16, 16, 3), np.uint8)] * 3)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    frames = user_video.read_frames(str(tmp_path / 'v.mp4'))
  assert len(frames) == 3
  assert not [w for w in caught if 'fork' in str(w.message)]


# ---- 13. Messages with a remedy -------------------------------------------------------------

def test_an_unreadable_export_says_how_to_rebuild_it(tiny_run, tmp_path):
  wd = _copy_run(tiny_run, tmp_path)
  final = trained_models.final_path(wd, 'seg')
  for dp, _, fs in os.walk(os.path.join(final, 'variables')):
    for f in fs:
      if os.path.getsize(os.path.join(dp, f)) > 1000:
        with open(os.path.join(dp, f), 'r+b') as fh:
          fh.truncate(10)
  with pytest.raises(errors.CheckpointError) as info:
    train.run(_tiny(mode='train_seg'), wd)
  msg = str(info.value)
  assert 'Cannot read the weights in' in msg and 'exports it again from its last checkpoint' in msg
  # The remedy works: without the export the finished stage re-exports it, training nothing.
  shutil.rmtree(final)
  train.run(_tiny(mode='train_seg'), wd)
  assert trained_models.has_export(final)


def test_hints_quote_paths_with_spaces(tmp_path):
  wd = tmp_path / 'my runs' / 'demo'
  wd.mkdir(parents=True)
  with pytest.raises(errors.CheckpointError) as info:
    trained_models.load_models(_tiny(), str(wd))
  assert f"--workdir '{wd}'" in str(info.value)


# ---- 14. The evaluator on the product's own export ------------------------------------------

def test_the_evaluator_reads_video_lengths_from_the_ground_truth(tiny_run):
  export = os.path.join(tiny_run, 'export')
  gt_json = official_format.json_paths(export, 'val')['gt']
  pred = os.path.join(tiny_run, 'predictions', 'pixel_tracker')
  r = _cli('-m', 'hybrid_jax.cli.evaluate', '--gt-dir', os.path.join(export, 'val',
           'panoptic_video'), '--gt-json', gt_json, '--pred-dir', pred, '--text-dir', '')
  assert r.returncode == 0, r.stderr[-2000:]  # 2 labelled frames per video, not the default 6
  assert 'videos 2' in r.stdout
  r = _cli('-m', 'hybrid_jax.cli.evaluate', '--gt-dir', export, '--gt-json', gt_json,
           '--pred-dir', pred, '--frames-per-video', '-1')
  assert r.returncode == 2 and 'positive number of frames' in r.stderr
  assert 'Traceback' not in r.stderr
