"""train_loop: resume, logging, NaN stop, corrupt/incompatible checkpoints, workdir, profile,
SIGTERM / SIGINT (subprocess). The tiny model lives in test_training_support.py."""

import glob
import json
import logging
import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest

import test_training_support as support
from hybrid_jax import errors
from hybrid_jax.training import loop
from hybrid_jax.training import mesh as mesh_lib
from hybrid_jax.training import step as step_lib

N = support.TOTAL_STEPS


def _assert_same_params(got: dict, want: dict, atol: float = 0.0):
  assert got.keys() == want.keys()
  for k in want:
    np.testing.assert_allclose(got[k], want[k], rtol=0, atol=atol, err_msg=k)


def _recording_factory(starts, **kw):
  make = support.data_factory(**kw)

  def factory(start_step):
    starts.append(start_step)
    return make(start_step)
  return factory


def test_resume_equals_uninterrupted_run_and_writes_logs(tmp_path):
  ref = support.reference_run()
  mesh = mesh_lib.make_mesh(1)
  state, train_step, _, schedule = support.cached_setup(mesh=mesh)
  starts = []
  kw = dict(workdir=str(tmp_path), train_step=train_step, mesh=mesh,
            train_cfg=support.shared_config(), stage_name='seg',
            make_data_iterator=_recording_factory(starts), config_to_save={'seg': {'lr': 0.03}})
  loop.train_loop(state=state, num_steps=3, **kw)           # "interrupted" after step 3
  assert not loop.stage_done(str(tmp_path), 'seg', N)
  final = loop.train_loop(state=state, num_steps=N, **kw)   # rerun: resumes at 3
  assert starts == [0, 3]                                   # data order continues
  _assert_same_params(support.flat_params(final), ref['params'])  # bit-identical
  assert loop.stage_done(str(tmp_path), 'seg', N) and not loop.stage_done(str(tmp_path), 'seg', N + 1)
  assert loop.stage_done(ref['workdir'], 'seg', N)

  stage = tmp_path / 'seg'
  lines = [json.loads(l) for l in (stage / 'metrics.jsonl').read_text().splitlines()]
  assert [l['step'] for l in lines] == list(range(1, N + 1))
  # Step 3 trained with lr(2): the end of the 2-step warmup, the peak 0.03.
  assert lines[2]['train/lr'] == pytest.approx(0.03)
  assert lines[2]['train/lr'] == pytest.approx(float(schedule(np.int32(2))))
  assert {'train/loss', 'train/mse', 'train/l1', 'train/grad_norm', 'steps_per_sec',
          'eta_sec'} <= set(lines[0])
  assert glob.glob(str(stage / 'events' / 'events.out.tfevents.*'))
  assert json.loads((stage / 'config.json').read_text()) == {'seg': {'lr': 0.03}}
  platform = json.loads((stage / 'platform.json').read_text())
  assert platform['device_count'] >= 1 and platform['jax'] and platform['orbax_checkpoint']
  # Saved 2, 3 (end of first run), 4, 6; keep_checkpoints=2 keeps the newest two.
  assert sorted(os.listdir(stage / 'checkpoints')) == ['4', '6']


def test_nan_batch_skipped_then_divergence_stops(tmp_path):
  mesh = mesh_lib.make_mesh(1)
  seen = {}

  def hook(step, state, metrics):
    seen[step] = (support.flat_params(state), bool(step_lib.to_host(metrics['finite'])))

  final = support.run(str(tmp_path / 'a'), 4, mesh=mesh, nan_steps={2}, hooks=(hook,))
  assert [seen[s][1] for s in (1, 2, 3, 4)] == [True, True, False, True]
  _assert_same_params(seen[3][0], seen[2][0])          # step index 2 changed nothing
  assert not np.array_equal(seen[4][0]['params/head/kernel'], seen[3][0]['params/head/kernel'])
  assert step_lib.to_host(final.total_bad_steps) == 1
  assert step_lib.to_host(final.bad_steps) == 0

  with pytest.raises(errors.TrainingDivergedError) as info:
    support.run(str(tmp_path / 'b'), N, mesh=mesh, nan_steps={1, 2, 3})  # max_bad_steps=3
  message = str(info.value)
  assert 'stopped at step 3' in message and '(1..3)' in message and "'mse': nan" in message


def test_corrupt_latest_checkpoint_falls_back_to_previous(tmp_path, caplog):
  ref = support.reference_run()
  workdir = tmp_path / 'run'
  shutil.copytree(ref['workdir'], workdir)
  os.remove(workdir / 'seg' / loop.DONE_FILE)
  for path in glob.glob(str(workdir / 'seg' / 'checkpoints' / '6' / 'state' / '**' / 'd' / '*'),
                        recursive=True):
    with open(path, 'r+b') as f:   # truncate the array data: a partial write
      f.truncate(3)
  # An interrupted write of step 8 (Orbax writes into a tmp directory, then renames).
  os.makedirs(workdir / 'seg' / 'checkpoints' / '8.orbax-checkpoint-tmp-1234' / 'state')
  with caplog.at_level(logging.WARNING):
    final = support.run(str(workdir), N, mesh=mesh_lib.make_mesh(1))
  warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
  assert any('step 8' in w and 'partial' in w for w in warnings), warnings
  assert any('step 6' in w and 'previous' in w for w in warnings), warnings
  # Restored step 4, retrained steps 5-6 on the same data: the reference parameters again.
  _assert_same_params(support.flat_params(final), ref['params'])
  assert (workdir / 'seg' / 'checkpoints' / 'corrupt-6').is_dir()   # set aside, not deleted


def test_incompatible_checkpoint_is_a_clear_error():
  ref = support.reference_run()
  mesh = mesh_lib.make_mesh(1)
  wider = support.setup(mesh=mesh, width=6)
  with pytest.raises(errors.CheckpointError) as info:
    support.run(ref['workdir'], N, mesh=mesh, setup_out=wider)
  message = str(info.value)
  assert 'params/conv1/kernel: checkpoint (3, 3, 3, 4) vs model (3, 3, 3, 6)' in message
  assert 'another --workdir or delete' in message and 'checkpoints' in message


def test_unwritable_workdir_fails_before_compute(tmp_path):
  blocker = tmp_path / 'a_file'
  blocker.write_text('not a directory')

  def must_not_run(*args):
    raise AssertionError('computed before checking the workdir')

  with pytest.raises(errors.WorkdirError, match='a_file'):
    loop.train_loop(workdir=str(blocker / 'run'), state=None, train_step=must_not_run,
                    make_data_iterator=must_not_run, num_steps=1, mesh=None, train_cfg={})


def test_profile_steps_write_a_trace_and_eval_runs(tmp_path):
  evaluated = []

  def eval_fn(state):
    evaluated.append(int(step_lib.to_host(state.step)))
    return {'score': 0.5}

  support.run(str(tmp_path), 3, mesh=mesh_lib.make_mesh(1),
              shared=support.shared_config(profile_steps='1,2'), eval_fn=eval_fn,
              eval_every_steps=2)
  assert evaluated == [2, 3]   # every 2 steps and at the end
  lines = [json.loads(l) for l in (tmp_path / 'seg' / 'metrics.jsonl').read_text().splitlines()]
  assert [l['step'] for l in lines if 'eval/score' in l] == [2, 3]
  traces = glob.glob(str(tmp_path / 'seg' / 'profile' / 'plugins' / 'profile' / '*' / '*.xplane.pb'))
  assert len(traces) == 1
  with pytest.raises(errors.ConfigError):
    loop.parse_profile_steps('3,1')


@pytest.mark.parametrize('sig,code', [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_saves_exits_nonzero_and_rerun_matches_uninterrupted(tmp_path, sig, code):
  ref = support.reference_run()
  marker = tmp_path / 'step2'
  proc = subprocess.Popen(
      [support.PYTHON, support.SCRIPT, '--workdir', str(tmp_path), '--num-steps', str(N),
       '--sleep', '0.3', '--marker', str(marker)],
      env=support.subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  try:
    deadline = time.time() + 120
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
      time.sleep(0.05)
    assert marker.exists(), proc.communicate()[0].decode()[-3000:]
    proc.send_signal(sig)
    out = proc.communicate(timeout=120)[0].decode()
  finally:
    if proc.poll() is None:
      proc.kill()
  # Not a success: the stage did not finish (schedulers and `&&` chains must see that).
  assert proc.returncode == code, out[-3000:]
  assert f'stopped by {signal.Signals(sig).name} at step' in out
  assert 'rerun the same command to resume' in out
  assert 'Traceback' not in out and 'KeyboardInterrupt' not in out
  steps = sorted(int(s) for s in os.listdir(tmp_path / 'seg' / 'checkpoints') if s.isdigit())
  assert 2 <= steps[-1] < N and not loop.stage_done(str(tmp_path), 'seg', N)
  final = support.run(str(tmp_path), N, mesh=mesh_lib.make_mesh(1))
  _assert_same_params(support.flat_params(final), ref['params'])
