"""RAFT forward speed: hybrid_jax vs torchvision on the same CPU, weights and input; JSON out.

    python benchmarks/raft_speed.py                       # all sizes/iters + memory
    python benchmarks/raft_speed.py --sizes 368x496 --iters 12 --no-memory   # quick

torchvision's randomly initialised raft_large (or raft_small) is converted with
hybrid_jax.convert.raft, so both run identical weights on an identical textured frame pair.
Times are the median of --repeats timed forwards after one warm-up (which includes our jit
compile); ours and torchvision's forwards alternate, so that load from elsewhere on a shared
machine falls on both. Peak memory (ru_maxrss) of both correlation variants is measured in fresh
subprocesses at --memory-size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)


def textured_pair(h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  from scipy import ndimage
  rng = np.random.default_rng(seed)
  coarse = rng.uniform(0, 255, (h // 8 + 4, w // 8 + 4, 3))
  tex = np.clip(ndimage.zoom(coarse, (8, 8, 1), order=1), 0, 255).astype(np.float32)
  return tex[8:8 + h, 8:8 + w], tex[6:6 + h, 11:11 + w]


def _median_times(fns: dict, repeats: int) -> dict[str, tuple[float, float]]:
  """{name: (median wall s, median process CPU s)} of `repeats` calls of each function after
  one warm-up call each (jit compile / allocator). The calls alternate between the
  functions, so that a slow spell of a shared machine hits all of them alike."""
  for fn in fns.values():
    fn()
  wall = {k: [] for k in fns}
  cpu = {k: [] for k in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      t0, c0 = time.perf_counter(), time.process_time()
      fn()
      wall[name].append(time.perf_counter() - t0)
      cpu[name].append(time.process_time() - c0)
  return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in fns}


def memory_child(mode: str, h: int, w: int, iters: int, variant: str) -> None:
  """Runs one forward and prints peak RSS (MiB) as JSON; used in a subprocess."""
  from hybrid_jax.models.raft import model as raft
  variables = raft.init_raft(0, variant=variant)
  img1, img2 = textured_pair(h, w)
  base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  t0 = time.perf_counter()
  flow = np.asarray(raft.estimate_flow(variables, img1, img2, variant=variant, iters=iters,
                                       corr=mode))
  print(json.dumps({'corr': mode, 'size': f'{h}x{w}', 'iters': iters, 'variant': variant,
                    'peak_rss_mib': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                          / 1024),
                    'rss_before_forward_mib': round(base),
                    'seconds_incl_compile': round(time.perf_counter() - t0, 1),
                    'finite': bool(np.isfinite(flow).all())}))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--sizes', default='368x496,1024x2048')
  parser.add_argument('--iters', default='12,20')
  parser.add_argument('--model', choices=('raft_large', 'raft_small'), default='raft_large')
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--threads', type=int, default=2,
                      help='torch.set_num_threads; with 1, XLA is also made single-threaded '
                      '(a fairer comparison on a busy machine)')
  parser.add_argument('--corr', choices=('all_pairs', 'on_demand'), default='all_pairs')
  parser.add_argument('--no-torch', action='store_true')
  parser.add_argument('--no-memory', action='store_true')
  parser.add_argument('--memory-size', default='1024x2048')
  parser.add_argument('--memory-iters', type=int, default=2)
  parser.add_argument('--memory-modes', default='on_demand,all_pairs')
  parser.add_argument('--memory-child', nargs=5, metavar=('MODE', 'H', 'W', 'ITERS', 'VARIANT'),
                      help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.memory_child:
    mode, h, w, iters, variant = args.memory_child
    memory_child(mode, int(h), int(w), int(iters), variant)
    return 0

  if args.threads == 1:  # must happen before jax initialises its CPU backend
    # XLA sizes its CPU thread pool from the CPUs the process may use; the Eigen flag alone
    # left it on both cores (5.97 CPU-s in 3.54 s wall). Pin the process to one CPU.
    if hasattr(os, 'sched_setaffinity'):
      os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                               ' --xla_cpu_multi_thread_eigen=false')
  import jax
  from hybrid_jax.convert import raft as convert_raft
  from hybrid_jax.models.raft import model as raft
  variant = 'standard' if args.model == 'raft_large' else 'small'
  out = {'benchmark': 'raft_speed', 'model': args.model, 'corr': args.corr,
         'machine': f'{platform.processor() or platform.machine()}, {os.cpu_count()} cores',
         'jax': jax.__version__, 'threads': args.threads,
         'load_average_at_start': os.getloadavg(), 'results': [], 'memory': []}
  torch_model = None
  if not args.no_torch:
    import torch
    import torchvision
    from torchvision.models import optical_flow
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    torch_model = getattr(optical_flow, args.model)(weights=None).eval()
    variables, _ = convert_raft.convert_state_dict(torch_model.state_dict())
    out.update(torch=torch.__version__, torchvision=torchvision.__version__,
               torch_threads=args.threads)
  else:
    variables = raft.init_raft(0, variant=variant)
  for size in args.sizes.split(','):
    h, w = (int(v) for v in size.split('x'))
    img1, img2 = textured_pair(h, w)
    for iters in (int(v) for v in args.iters.split(',')):
      row = {'size': size, 'iters': iters}
      ours = lambda: np.asarray(raft.estimate_flow(  # noqa: E731
          variables, img1, img2, variant=variant, iters=iters, corr=args.corr))
      t0 = time.perf_counter()
      flow_ours = ours()
      row['ours_first_call_s'] = round(time.perf_counter() - t0, 3)
      fns = {'ours': ours}
      if torch_model is not None:
        import torch
        t1 = torch.from_numpy(img1).permute(2, 0, 1)[None] / 127.5 - 1
        t2 = torch.from_numpy(img2).permute(2, 0, 1)[None] / 127.5 - 1

        def theirs():
          with torch.no_grad():
            return torch_model(t1, t2, num_flow_updates=iters)[-1]
        fns['torchvision'] = theirs
      times = _median_times(fns, args.repeats)
      row['ours_s'], row['ours_cpu_s'] = (round(v, 3) for v in times['ours'])
      if torch_model is not None:
        row['torchvision_s'], row['torchvision_cpu_s'] = (round(v, 3) for v in times['torchvision'])
        row['speedup'] = round(row['torchvision_s'] / row['ours_s'], 2)
        row['speedup_cpu_time'] = round(row['torchvision_cpu_s'] / row['ours_cpu_s'], 2)
        flow_tv = theirs()[0].permute(1, 2, 0).numpy()
        row['max_abs_flow_diff_px'] = float(np.abs(flow_tv - flow_ours).max())
      out['results'].append(row)
      print(json.dumps(row), file=sys.stderr, flush=True)
  if not args.no_memory:
    h, w = (int(v) for v in args.memory_size.split('x'))
    for mode in args.memory_modes.split(','):
      cmd = [sys.executable, os.path.abspath(__file__), '--memory-child', mode, str(h), str(w),
             str(args.memory_iters), variant]
      proc = subprocess.run(cmd, capture_output=True, text=True)
      if proc.returncode == 0:
        out['memory'].append(json.loads(proc.stdout.strip().splitlines()[-1]))
      else:
        out['memory'].append({'corr': mode, 'size': args.memory_size, 'failed': proc.returncode,
                              'stderr_tail': proc.stderr[-300:]})
  print(json.dumps(out, indent=2))
  return 0


if __name__ == '__main__':
  sys.exit(main())
