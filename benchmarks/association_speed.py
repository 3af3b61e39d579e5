r"""Association speed: the batched m×n dice matrix vs a per-pair loop; tracker frames/second.

Run (prints one JSON object)::

  python benchmarks/association_speed.py            # 64 x 64 masks at 1024 x 2048
  python benchmarks/association_speed.py --quick    # small shapes, a smoke run

Peers, in the same process and on the same masks:
* NumPy per-pair loop: ``for i in m: for j in n: dice(mask_i, mask_j)``, the way a direct
  port of a PyTorch tracker computes it;
* the same loop in PyTorch (bool tensors, CPU), when torch is importable.
The loops are timed on a subset of pairs and extrapolated to all m*n pairs (the work per pair
is identical, so the extrapolation is linear); the JSON says how many pairs were timed.

Tracker frames/second (`VideoTracker.update`, after warm-up, excluding the segmenter and the
flow network, whose outputs are given): the pixel tracker with given flow, and the hybrid
tracker with an untrained embedding head of modest size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from hybrid_jax.models import embedding_head  # noqa: E402
from hybrid_jax.tracking import pixel  # noqa: E402
from hybrid_jax.tracking import frame_instances as instances_lib  # noqa: E402
from hybrid_jax.tracking import tracker as tracker_lib  # noqa: E402


def random_masks(rng, n, h, w):
  """n axis-aligned blobs (random boxes with a random ellipse inside) of varied size."""
  masks = np.zeros((n, h, w), bool)
  yy, xx = np.ogrid[:h, :w]
  for k in range(n):
    bh = int(rng.integers(h // 32, h // 3))
    bw = int(rng.integers(w // 32, w // 3))
    y0 = int(rng.integers(0, h - bh))
    x0 = int(rng.integers(0, w - bw))
    cy, cx = y0 + bh / 2, x0 + bw / 2
    masks[k] = ((yy - cy) / (bh / 2)) ** 2 + ((xx - cx) / (bw / 2)) ** 2 <= 1.0
  return masks


def time_best(fn, repeats):
  """Best wall time of `repeats` calls (the box is shared: the best is the least disturbed)."""
  return min(time_both(fn)[0] for _ in range(repeats))


def time_both(fn):
  """(wall s, process CPU s) of one call; CPU time sums all threads of this process."""
  t, c = time.perf_counter(), time.process_time()
  fn()
  return time.perf_counter() - t, time.process_time() - c


def bench_dice(m, h, w, loop_pairs, repeats):
  rng = np.random.default_rng(0)
  a = random_masks(rng, m, h, w)
  b = random_masks(rng, m, h, w)
  out = {'m': m, 'n': m, 'height': h, 'width': w}

  a_j, b_j = jnp.asarray(a), jnp.asarray(b)
  t = time.perf_counter()
  ours = np.asarray(pixel.dice_matrix(a_j, b_j))
  out['jax_compile_and_first_s'] = time.perf_counter() - t
  runs = [time_both(lambda: pixel.dice_matrix(a_j, b_j).block_until_ready())
          for _ in range(repeats)]
  out['jax_s'], out['jax_cpu_s'] = min(runs)

  pairs = [(i, j) for i in range(m) for j in range(m)]
  sel = [pairs[k] for k in np.random.default_rng(1).choice(len(pairs), loop_pairs, False)]

  def np_dice(x, y):
    return 2.0 * np.logical_and(x, y).sum() / (x.sum() + y.sum())

  ref = []
  np_s, np_cpu = time_both(lambda: ref.extend(np_dice(a[i], b[j]) for i, j in sel))
  err = max(abs(ours[i, j] - r) for (i, j), r in zip(sel, ref))
  out['numpy_loop_pairs_timed'] = loop_pairs
  out['numpy_loop_s_extrapolated'] = np_s / loop_pairs * m * m
  out['max_abs_diff_vs_numpy'] = float(err)
  out['numpy_loop_cpu_s_extrapolated'] = np_cpu / loop_pairs * m * m
  out['speedup_vs_numpy_loop'] = out['numpy_loop_s_extrapolated'] / out['jax_s']
  out['speedup_vs_numpy_loop_cpu_time'] = out['numpy_loop_cpu_s_extrapolated'] / out['jax_cpu_s']

  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    out['torch'] = 'not importable'
    return out
  torch.set_num_threads(max(1, os.cpu_count() or 1))
  ta, tb = torch.from_numpy(a), torch.from_numpy(b)

  def t_dice(x, y):
    return (2.0 * (x & y).sum() / (x.sum() + y.sum())).item()

  t_dice(ta[0], tb[0])
  t_s, _ = time_both(lambda: [t_dice(ta[i], tb[j]) for i, j in sel])
  out['torch_version'] = torch.__version__
  out['torch_loop_s_extrapolated'] = t_s / loop_pairs * m * m
  out['speedup_vs_torch_loop'] = out['torch_loop_s_extrapolated'] / out['jax_s']
  return out


def bench_warp(m, h, w, repeats):
  rng = np.random.default_rng(2)
  masks = jnp.asarray(random_masks(rng, m, h, w))
  flow = jnp.asarray(rng.normal(0, 3, (h, w, 2)).astype(np.float32))
  pixel.warp_masks(masks, flow).block_until_ready()
  return {'warp_masks_s': time_best(
      lambda: pixel.warp_masks(masks, flow).block_until_ready(), repeats)}


def bench_tracker(n, h, w, frames, head_kwargs):
  rng = np.random.default_rng(3)
  masks = random_masks(rng, n, h, w)
  inst = instances_lib.from_arrays(masks, np.full((n,), 6), rng.random(n), max_instances=n)
  image = rng.integers(0, 255, (h, w, 3)).astype(np.uint8)
  flow = np.zeros((h, w, 2), np.float32)
  flow[..., 0] = 1.0
  out = {'instances': n, 'height': h, 'width': w, 'frames_timed': frames}
  head = embedding_head.EmbeddingHead(**head_kwargs)
  params = embedding_head.init_head(head, jax.random.PRNGKey(0), image_hw=(h, w),
                                    max_instances=n)
  out['head'] = dict(head_kwargs, params=int(sum(x.size for x in jax.tree.leaves(params))))
  for variant in ('pixel', 'hybrid'):
    embed = embedding_head.make_embed_fn(head, params) if variant == 'hybrid' else None
    trk = tracker_lib.VideoTracker(variant, max_instances=n, embed_fn=embed)
    for _ in range(2):   # warm-up: compile
      trk.update(image, inst, flow=flow)
    t = time.perf_counter()
    for _ in range(frames):
      trk.update(image, inst, flow=flow)
    out[f'{variant}_fps'] = frames / (time.perf_counter() - t)
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--quick', action='store_true', help='small shapes (smoke run)')
  args = p.parse_args(argv)
  if args.quick:
    dice_cfg = dict(m=16, h=128, w=256, loop_pairs=64, repeats=2)
    trk_cfg = dict(n=8, h=64, w=128, frames=3,
                   head_kwargs=dict(canvas=(32, 64), pool=4, hidden_dim=64, embed_dim=64))
  else:
    dice_cfg = dict(m=64, h=1024, w=2048, loop_pairs=128, repeats=3)
    trk_cfg = dict(n=16, h=256, w=512, frames=10,
                   head_kwargs=dict(canvas=(128, 256), pool=8, hidden_dim=1024,
                                    embed_dim=1024))
  result = {
      'benchmark': 'association_speed',
      'machine': {'platform': platform.platform(), 'cpu_count': os.cpu_count(),
                  'jax': jax.__version__, 'backend': jax.default_backend(),
                  'devices': [str(d) for d in jax.devices()]},
      'dice': bench_dice(dice_cfg['m'], dice_cfg['h'], dice_cfg['w'], dice_cfg['loop_pairs'],
                         dice_cfg['repeats']),
      'warp': bench_warp(dice_cfg['m'], dice_cfg['h'], dice_cfg['w'], dice_cfg['repeats']),
      'tracker': bench_tracker(**trk_cfg),
  }
  print(json.dumps(result, indent=1))
  return result


if __name__ == '__main__':
  main()
