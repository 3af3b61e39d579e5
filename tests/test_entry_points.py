"""Entry points: every command's --help, and an installed (non-editable) wheel.

The wheel check installs the package alone (no repository on the path) and writes a report
for a config naming a paper table: the paper's rows must come from inside the package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, 'JAX_PLATFORMS': 'cpu'}

COMMANDS = [
    (['-m', 'hybrid_jax.main', '--helpshort'], '--config'),
    (['-m', 'hybrid_jax.cli.evaluate', '--help'], '--gt-json'),
    (['-m', 'hybrid_jax.cli.track_predictions', '--help'], '--pred-dir'),
    (['-m', 'hybrid_jax.cli.estimate_flow', '--help'], '--checkpoint'),
    (['-m', 'hybrid_jax.cli.convert', '--help'], 'panoptic_fcn'),
    (['-m', 'hybrid_jax.cli.convert', 'raft', '--help'], '--variant'),
    (['experiments/tracker_ablation.py', '--helpshort'], '--max_clips'),
    (['experiments/temporal_threshold.py', '--helpshort'], '--thetas'),
    (['experiments/raft_iterations.py', '--helpshort'], '--iters'),
    (['experiments/raft_checkpoints.py', '--helpshort'], '--checkpoints'),
    (['experiments/external_predictor.py', '--helpshort'], '--pred_dir'),
    (['experiments/dml_losses.py', '--helpshort'], '--losses'),
    (['experiments/roi_input.py', '--helpshort'], '--inputs'),
    (['experiments/tracker_ablation.py', '--helpshort'], '--seeds'),
]


@pytest.mark.parametrize('args,needle', COMMANDS, ids=[' '.join(c[0][:2]) for c in COMMANDS])
def test_help(args, needle):
  r = subprocess.run([sys.executable, *args], cwd=ROOT, env=ENV, capture_output=True,
                     text=True, timeout=120)
  assert 'Traceback' not in r.stderr, r.stderr
  assert r.returncode in (0, 1), r.stderr  # absl's --help exits with 1
  assert needle in r.stdout, r.stdout[-2000:]


def test_installed_wheel_shows_the_paper_rows(tmp_path):
  wheel_dir, site, src = tmp_path / 'wheel', tmp_path / 'site', tmp_path / 'src'
  # Built from a copy: setuptools writes build/ next to the sources.
  shutil.copytree(os.path.join(ROOT, 'hybrid_jax'), src / 'hybrid_jax',
                  ignore=shutil.ignore_patterns('__pycache__'))
  for name in ('pyproject.toml', 'README.md'):
    shutil.copy(os.path.join(ROOT, name), src / name)
  build = subprocess.run([sys.executable, '-m', 'pip', 'wheel', str(src), '--no-deps', '-q',
                          '-w', str(wheel_dir)], capture_output=True, text=True, timeout=300)
  assert build.returncode == 0, build.stderr[-3000:]
  (wheel,) = wheel_dir.glob('hybrid_jax-*.whl')
  install = subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-deps', '-q',
                            '--target', str(site), str(wheel)], capture_output=True, text=True,
                           timeout=300)
  assert install.returncode == 0, install.stderr[-3000:]
  script = (
      'import hybrid_jax, sys\n'
      f'assert hybrid_jax.__file__.startswith({str(site)!r}), hybrid_jax.__file__\n'
      'from hybrid_jax.evaluation import report\n'
      'row = {"pq": 50.0}\n'
      'window = {"all": row, "things": row, "stuff": row}\n'
      'res = {"vpq": {k: window for k in ("0", "5", "10", "15", "final")}}\n'
      'path = report.write_report(sys.argv[1], [{"name": "ours", "results": res, "fps": 1.0}],\n'
      '                           title="t", reference_table="PAPER_TABLE_I_VAL")\n'
      'print(open(path).read())\n')
  env = {**ENV, 'PYTHONPATH': str(site)}
  r = subprocess.run([sys.executable, '-c', script, str(tmp_path / 'out')], cwd=tmp_path,
                     env=env, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  assert 'Paper, Table I, Cityscapes-VPS val' in r.stdout
  assert '| HybridTracker + w/ Temporal | 65.6 / 60.0 / 69.7 |' in r.stdout
