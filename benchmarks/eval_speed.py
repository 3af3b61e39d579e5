"""VPQ evaluation speed: hybrid_jax.evaluation against a per-segment Python loop (the peer).

  python benchmarks/eval_speed.py [--videos 50] [--height 1024] [--width 2048]
      [--workers 2] [--loop-videos 1] [--distinct 5]

Synthetic Cityscapes-VPS-like videos (6 labelled frames, 19 classes): blocky stuff bands and
~24 moving thing boxes, the prediction a perturbed copy (shifted boxes, a dropped box, an
identity switch, shifted stuff borders).  `--distinct` different videos are generated and reused
to make `--videos` (memory: ~100 MB per distinct full-size video); nothing is cached between
videos by the evaluator.

The peer is what a direct port of the official evaluator's logic looks like when written with
boolean masks: per window, one mask per segment, and an intersection sum per (gt, pred) pair
of the same category.  It is slow, so it is timed on `--loop-videos` videos only and reported
per video.  Prints one JSON object.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hybrid_jax.data import categories as categories_lib  # noqa: E402
from hybrid_jax.evaluation import runner  # noqa: E402
from tests import reference_vpq  # noqa: E402  (the tests' reference loop is the peer)

CITY = categories_lib.CITYSCAPES_VPS
WINDOWS = {'0': 1, '5': 2, '10': 3, '15': 4}


def synthetic_video(seed: int, height: int, width: int, frames: int = 6):
  """(gt, pred): lists of int32 [H, W] panoptic maps (category*1000 + track, -1 void)."""
  rng = np.random.default_rng(seed)
  cell = 8 if height % 8 == 0 and width % 8 == 0 else 1
  h, w = height // cell, width // cell
  n_boxes = 24
  cats = rng.choice([11, 13, 13, 13, 18], size=n_boxes)  # person, car, bicycle
  size = rng.integers([max(2, h // 40), max(2, w // 80)], [max(3, h // 6), max(3, w // 10)],
                      size=(n_boxes, 2))
  pos = rng.integers([0, 0], [h, w], size=(n_boxes, 2)).astype(float)
  vel = rng.normal(0, max(1.0, w / 200), size=(n_boxes, 2))
  bands = np.sort(rng.integers(0, h, size=5))
  stuff = np.array([10, 2, 8, 1, 0, 0])  # sky, building, vegetation, sidewalk, road, road
  switch_box, switch_at = int(rng.integers(n_boxes)), int(rng.integers(1, frames))
  dropped = int(rng.integers(n_boxes))
  gt, pred = [], []
  for t in range(frames):
    rows = np.arange(h)[:, None]
    g = stuff[np.searchsorted(bands, rows, side='right')].repeat(w, 1) * 1000
    p_shift = int(rng.integers(-2, 3))
    p = stuff[np.searchsorted(bands + p_shift, rows, side='right')].repeat(w, 1) * 1000
    g[: h // 30, : w // 20] = -1  # void
    for b in range(n_boxes):
      y, x = (pos[b] + vel[b] * t).astype(int) % np.array([h, w])
      dy, dx = size[b]
      g[y:y + dy, x:x + dx] = cats[b] * 1000 + b + 1
      if b == dropped and t % 2:
        continue
      jy, jx = rng.integers(-1, 2, size=2)
      track = b + 1 + (100 if (b == switch_box and t >= switch_at) else 0)
      p[max(0, y + jy):y + jy + dy, max(0, x + jx):x + jx + dx] = cats[b] * 1000 + track
    gt.append(np.ascontiguousarray(g.repeat(cell, 0).repeat(cell, 1).astype(np.int32)))
    pred.append(np.ascontiguousarray(p.repeat(cell, 0).repeat(cell, 1).astype(np.int32)))
  return gt, pred


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument('--videos', type=int, default=50)
  ap.add_argument('--height', type=int, default=1024)
  ap.add_argument('--width', type=int, default=2048)
  ap.add_argument('--workers', type=int, default=2)
  ap.add_argument('--loop-videos', type=int, default=1)
  ap.add_argument('--distinct', type=int, default=5)
  args = ap.parse_args(argv)

  t0 = time.perf_counter()
  pool = [synthetic_video(s, args.height, args.width) for s in range(min(args.distinct,
                                                                        args.videos))]
  gen_s = time.perf_counter() - t0
  gt = [pool[i % len(pool)][0] for i in range(args.videos)]
  pred = [pool[i % len(pool)][1] for i in range(args.videos)]

  # Warm-up (imports, first allocations) outside the timings.
  runner.evaluate_arrays(gt[:1], pred[:1], CITY, metrics=('vpq', 'stq'))
  # Wall time, plus CPU time of this process for the in-process runs: the CPU time is what the
  # ratio uses, because wall time on a shared 2-core box depends on the other jobs.
  timings, cpu, results = {}, {}, {}
  for workers in sorted({1, args.workers}):
    t0, c0 = time.perf_counter(), time.process_time()
    results[workers] = runner.evaluate_arrays(gt, pred, CITY, metrics=('vpq', 'stq'),
                                              workers=workers)
    timings[workers] = time.perf_counter() - t0
    cpu[workers] = time.process_time() - c0
  t0, c0 = time.perf_counter(), time.process_time()
  vpq_only = runner.evaluate_arrays(gt, pred, CITY, metrics=('vpq',), workers=1)
  vpq_only_s = time.perf_counter() - t0
  vpq_only_cpu = time.process_time() - c0

  # The peer, on a subset (0 = skip it); checked against ours on the same videos.
  n_loop = min(args.loop_videos, args.videos)
  loop_s, loop_cpu, agree = None, None, None
  if n_loop:
    thing_ids = {c.id for c in CITY if c.isthing}
    t0, c0 = time.perf_counter(), time.process_time()
    loop = [reference_vpq.loop_vpq_video(gt[i], pred[i], thing_ids) for i in range(n_loop)]
    loop_s = (time.perf_counter() - t0) / n_loop
    loop_cpu = (time.process_time() - c0) / n_loop
    ours_subset = runner.evaluate_arrays(gt[:n_loop], pred[:n_loop], CITY,
                                         metrics=('vpq',))['vpq']
    agree = True
    for k in WINDOWS:
      total = collections.defaultdict(lambda: [0, 0, 0, 0.0])
      for video in loop:
        for cat, s in video[k].items():
          total[cat] = [a + b for a, b in zip(total[cat], s)]
      for cat, (tp, fp, fn, iou) in total.items():
        mine = ours_subset[k]['per_class'][str(cat)]
        agree &= (mine['tp'], mine['fp'], mine['fn']) == (tp, fp, fn)
        agree &= abs(mine['iou'] - iou) < 1e-9

  ours_1 = timings[1] / args.videos
  cpu_model = 'unknown'
  try:
    with open('/proc/cpuinfo') as f:
      cpu_model = next(line.split(':', 1)[1].strip() for line in f
                       if line.startswith('model name'))
  except (OSError, StopIteration):
    pass
  print(json.dumps({
      'benchmark': 'eval_speed',
      'machine': {'cpu': cpu_model, 'cores': os.cpu_count(), 'python': platform.python_version(),
                  'numpy': np.__version__},
      'videos': args.videos, 'distinct_videos': len(pool), 'frames_per_video': 6,
      'height': args.height, 'width': args.width, 'generate_s': round(gen_s, 2),
      'ours_vpq_stq_workers1_s_per_video': round(ours_1, 4),
      f'ours_vpq_stq_workers{args.workers}_total_s': round(timings[args.workers], 2),
      f'ours_vpq_stq_workers{args.workers}_s_per_video':
          round(timings[args.workers] / args.videos, 4),
      'ours_vpq_stq_workers1_cpu_s_per_video': round(cpu[1] / args.videos, 4),
      'ours_vpq_only_workers1_s_per_video': round(vpq_only_s / args.videos, 4),
      'ours_vpq_only_workers1_cpu_s_per_video': round(vpq_only_cpu / args.videos, 4),
      'loop_peer_vpq_s_per_video': loop_s and round(loop_s, 3),
      'loop_peer_vpq_cpu_s_per_video': loop_cpu and round(loop_cpu, 3),
      'loop_peer_videos_timed': n_loop,
      'speedup_vpq_only_vs_loop_cpu': loop_cpu and round(
          loop_cpu / (vpq_only_cpu / args.videos), 1),
      'speedup_vpq_stq_vs_loop_cpu': loop_cpu and round(loop_cpu / (cpu[1] / args.videos), 1),
      'speedup_vpq_only_vs_loop_wall': loop_s and round(loop_s / (vpq_only_s / args.videos), 1),
      'results_agree_with_loop': agree,
      'workers_agree': results[1] == results[args.workers],
      'vpq_final_all': round(vpq_only['vpq']['final']['all']['pq'], 3),
  }, indent=1))


if __name__ == '__main__':
  main()
