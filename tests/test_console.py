"""The terminal: stage lines and progress bars on a terminal, not in a pipe; the library log
goes to <workdir>/logs/ unless --alsologtostderr asks for it."""

from __future__ import annotations

import glob
import os
import pty
import shutil
import subprocess
import sys

from hybrid_jax import workdirs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'COLUMNS': '120'}


def _args(workdir, *extra):
  return [sys.executable, '-m', 'hybrid_jax.main', '--config', 'configs/synthetic.py:tiny',
          '--workdir', workdir, '--config.mode=eval', *extra]


def _on_terminal(args) -> str:
  """Runs `args` with stdout and stderr on a pseudo-terminal; returns what it printed."""
  leader, follower = pty.openpty()
  proc = subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=follower, stderr=follower,
                          stdin=subprocess.DEVNULL)
  os.close(follower)
  chunks = []
  while True:
    try:
      data = os.read(leader, 65536)
    except OSError:  # the child closed the terminal
      break
    if not data:
      break
    chunks.append(data)
  proc.wait(timeout=300)
  os.close(leader)
  assert proc.returncode == 0, b''.join(chunks).decode(errors='replace')[-3000:]
  return b''.join(chunks).decode(errors='replace')


def test_stage_lines_and_bars_show_on_a_terminal_not_in_a_pipe(tiny_run, tmp_path):
  wd = str(tmp_path / 'run')
  shutil.copytree(tiny_run, wd, ignore=shutil.ignore_patterns(workdirs.LOCK_FILE))
  shown = _on_terminal(_args(wd))
  assert 'evaluate' in shown and 'row/s' in shown          # the progress bar, with its rate
  assert f'log: {wd}/logs' in shown
  assert 'I12' not in shown.replace('\r', '\n').split('log:')[-1]  # no INFO chatter
  piped = subprocess.run(_args(wd), cwd=ROOT, env=ENV, capture_output=True, text=True,
                         timeout=300)
  assert piped.returncode == 0, piped.stderr[-3000:]
  assert 'row/s' not in piped.stderr and 'log:' not in piped.stderr
  assert not [ln for ln in piped.stderr.splitlines() if ln.startswith('I1')]
  assert 'Wrote' in piped.stdout                            # results stay on stdout
  logs = glob.glob(os.path.join(wd, 'logs', 'hybrid_jax.*INFO*'))
  assert logs and any('mode=eval' in open(p).read() for p in logs)


def test_stage_lines_on_a_terminal(tiny_run, tmp_path):
  wd = str(tmp_path / 'run')
  shutil.copytree(tiny_run, wd, ignore=shutil.ignore_patterns(workdirs.LOCK_FILE))
  shown = _on_terminal(_args(wd, '--config.mode=train_seg'))
  assert '[seg] the PanopticFCN segmenter ...' in shown
  assert '[seg] done in' in shown and 'val PQ' in shown
  piped = subprocess.run(_args(wd, '--config.mode=train_seg'), cwd=ROOT, env=ENV,
                         capture_output=True, text=True, timeout=300)
  assert '[seg]' not in piped.stderr + piped.stdout


def test_alsologtostderr_brings_the_log_back(tiny_run, tmp_path):
  wd = str(tmp_path / 'run')
  shutil.copytree(tiny_run, wd, ignore=shutil.ignore_patterns(workdirs.LOCK_FILE))
  r = subprocess.run(_args(wd, '--alsologtostderr'), cwd=ROOT, env=ENV, capture_output=True,
                     text=True, timeout=300)
  assert r.returncode == 0
  assert [ln for ln in r.stderr.splitlines() if ln.startswith('I1') and 'mode=eval' in ln]
