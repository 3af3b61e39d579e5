r"""The README's demo, measured: wall time per stage, the key numbers, the segmenter's curve.

  python benchmarks/demo_profile.py [--seed S] [--workdir DIR] [--curve N] [-- --config.x=y ...]

Runs ``python -m hybrid_jax.main --config configs/synthetic.py`` in a fresh workdir (seed S sets
both ``seed`` and ``data.generator_seed``), then prints one JSON document: the machine, the
date, the total wall time, seconds per stage (from the run's log), the segmenter's val PQ
(all / things / stuff), RAFT's val EPE against zero flow, and VPQ of every Table I row. With
``--curve N`` the segmenter also evaluates val PQ every N steps (``seg.eval_every_steps``) and
the curve (step, seconds since the stage started, PQ, things PQ) is included; that costs time,
so the stage times of such a run are not the demo's.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_name() -> str:
  """The CPU's model name (/proc/cpuinfo), else what platform knows."""
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def _read(path):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--workdir', default=None, help='fresh folder (default: a temp dir)')
  parser.add_argument('--curve', type=int, default=0, help='val PQ every N segmenter steps')
  parser.add_argument('overrides', nargs='*', help='more --config.x=y after --')
  args = parser.parse_args(argv)
  workdir = args.workdir or tempfile.mkdtemp(prefix='demo_profile_')
  if os.path.exists(os.path.join(workdir, 'report.md')):
    parser.error(f'{workdir} already holds a run; give a fresh --workdir.')
  cmd = [sys.executable, '-m', 'hybrid_jax.main', '--config', 'configs/synthetic.py',
         '--workdir', workdir, f'--config.seed={args.seed}',
         f'--config.data.generator_seed={args.seed}', *args.overrides]
  if args.curve:
    cmd.append(f'--config.seg.eval_every_steps={args.curve}')
  t0 = time.perf_counter()
  run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
  wall = time.perf_counter() - t0
  if run.returncode != 0:
    print(run.stderr[-4000:], file=sys.stderr)
    return run.returncode
  log = ''.join(open(p).read() for p in glob.glob(os.path.join(workdir, 'logs', '*.INFO.*')))
  stages = {m.group(1): float(m.group(2))
            for m in re.finditer(r'stage_seconds (\S+) ([\d.]+)', log)}
  seg = _read(os.path.join(workdir, 'seg', 'eval.json')) or {}
  flow = _read(os.path.join(workdir, 'flow', 'eval.json')) or {}
  report = _read(os.path.join(workdir, 'report.json')) or {}
  out = {
      'command': ' '.join(cmd[1:]), 'date': datetime.date.today().isoformat(),
      'machine': {'cpu': cpu_name(), 'cores': os.cpu_count(), 'python': platform.python_version()},
      'wall_seconds': round(wall, 1), 'stage_seconds': stages,
      'segmenter_val_pq': seg.get('ours'), 'flow_val_epe': flow.get('epe'),
      'flow_val_epe_zero_flow': flow.get('epe_zero_flow'),
      'vpq': {r['name']: round(r['results']['vpq']['final']['all']['pq'], 2)
              for r in report.get('rows', [])},
      'workdir': workdir,
  }
  if args.curve:
    curve, start = [], None
    for line in open(os.path.join(workdir, 'seg', 'metrics.jsonl')):
      rec = json.loads(line)
      start = rec['time'] if start is None else start
      if 'eval/pq' in rec:
        curve.append({'step': rec['step'], 'seconds': round(rec['time'] - start, 1),
                      'pq': round(rec['eval/pq'], 1), 'pq_things': round(rec['eval/pq_things'], 1)})
    out['segmenter_curve'] = curve
  print(json.dumps(out, indent=1))
  return 0


if __name__ == '__main__':
  sys.exit(main())
