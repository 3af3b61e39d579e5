"""benchmarks/device_suite.py --smoke: every section runs end to end at tiny shapes on the CPU
and the JSON document has what the issue asks of the device run."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_device_suite_smoke(tmp_path):
  out = tmp_path / 'suite.json'
  r = subprocess.run([sys.executable, 'benchmarks/device_suite.py', '--smoke', '--repeats', '1',
                      '--out', str(out)], cwd=ROOT, capture_output=True, text=True,
                     timeout=300, env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert r.returncode == 0, r.stderr[-3000:]
  doc = json.loads(out.read_text())
  assert doc == json.loads(r.stdout)
  assert doc['device']['platform'] == 'cpu' and doc['smoke'] is True
  (raft_row,) = doc['raft']
  assert raft_row['ours_pairs_per_s'] > 0
  # torch is a test dependency: torchvision's RAFT runs beside ours on the same weights.
  assert raft_row['torchvision_pairs_per_s'] > 0 and raft_row['ratio'] > 0
  assert doc['segmenter']['frames_per_s'] > 0
  assert doc['tracker']['frames_per_s'] > 0 and doc['tracker']['paper_fps']
  assert [(t['stage'], t['remat']) for t in doc['train']] == [
      ('seg', False), ('seg', True), ('flow', False), ('track', False)]
  assert all(t['steps_per_s'] > 0 and t['compiled_peak_bytes'] > 0 for t in doc['train'])
  assert set(doc['peak_bytes']) == {'raft', 'segmenter', 'tracker', 'train'}
  assert 'Traceback' not in r.stderr


def test_device_suite_refuses_unknown_sections():
  r = subprocess.run([sys.executable, 'benchmarks/device_suite.py', '--smoke', '--skip', 'rafts'],
                     cwd=ROOT, capture_output=True, text=True, timeout=120,
                     env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert r.returncode == 2 and 'rafts' in r.stderr and 'Traceback' not in r.stderr
