"""The same training on 1 device, 8 forced host devices and 2 processes gives the same params.

Measured on this machine (2 CPU cores, jax 0.10.2): after 6 AdamW steps of the tiny model
the largest absolute parameter difference is ~2e-7 (1 vs 8 devices) and ~1e-7 (1 process vs
2 processes x 1 device); the two processes agree bit for bit. The tolerance is 1e-5 absolute
(parameters are O(1)): reductions over the batch are split differently across devices.
"""

import os
import socket
import subprocess

import numpy as np

import test_training_support as support

ATOL = 1e-5
# The subprocesses compile with LLVM optimisation off: XLA:CPU compiles the step several times
# faster, and the comparison has a tolerance anyway.
FAST_COMPILE = '--xla_backend_optimization_level=0'


def _assert_close(got, want):
  assert got.keys() == want.keys()
  for k in want:
    np.testing.assert_allclose(got[k], want[k], rtol=0, atol=ATOL, err_msg=k)


def _load(path):
  with np.load(path) as f:
    return dict(f)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_one_vs_eight_devices_same_parameters(tmp_path):
  ref = support.reference_run()
  out = tmp_path / 'params8.npz'
  env = support.subprocess_env(
      XLA_FLAGS=f'--xla_force_host_platform_device_count=8 {FAST_COMPILE}')
  proc = subprocess.run(
      [support.PYTHON, support.SCRIPT, '--workdir', str(tmp_path / 'w'), '--out', str(out)],
      env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
  assert 'DEVICES 8 STEP 6' in proc.stdout
  got = _load(out)
  _assert_close(got, ref['params'])
  # Not trivially equal because nothing trained: the run moved the parameters.
  assert np.abs(got['params/head/kernel'] - _load_initial_head()).max() > 1e-3


def _load_initial_head():
  from hybrid_jax.training import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
  state = support.cached_setup(mesh=mesh_lib.make_mesh(1))[0]
  return np.asarray(state.params['head']['kernel'])


def test_two_processes_train_together_and_agree(tmp_path):
  ref = support.reference_run()
  port = _free_port()
  procs = []
  for pid in range(2):
    procs.append(subprocess.Popen(
        [support.PYTHON, support.SCRIPT, '--workdir', str(tmp_path / 'w'),
         '--out', str(tmp_path / f'p{pid}.npz'), '--process-id', str(pid),
         '--num-processes', '2', '--port', str(port)],
        env=support.subprocess_env(XLA_FLAGS=FAST_COMPILE), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True))
  outs = []
  try:
    for p in procs:
      outs.append(p.communicate(timeout=300)[0])
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-4000:]
    assert 'DEVICES 2 STEP 6' in out
  p0, p1 = _load(tmp_path / 'p0.npz'), _load(tmp_path / 'p1.npz')
  for k in p0:
    np.testing.assert_array_equal(p0[k], p1[k], err_msg=k)
  _assert_close(p0, ref['params'])
  # One checkpoint directory, written jointly; only process 0 writes logs.
  assert sorted(os.listdir(tmp_path / 'w' / 'seg' / 'checkpoints')) == ['4', '6']
  assert len((tmp_path / 'w' / 'seg' / 'metrics.jsonl').read_text().splitlines()) == 6
