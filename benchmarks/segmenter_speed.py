r"""PanopticFCN inference speed (frames/s) on this machine, with parameter counts; prints JSON.

  python benchmarks/segmenter_speed.py                      # R50, 512x1024 and 1024x2048
  python benchmarks/segmenter_speed.py --sizes 512x1024 --repeats 3 --backbone resnet50

Random weights (speed does not depend on the values). The timed call is the whole jitted
`models.panoptic_fcn.segment.segment` (normalise, network, peaks, fusion, masks, panoptic merge) on a batch of
one uint8 frame, after one warm-up call that compiles. Compile time is reported separately.

Paper / README figures for comparison (reference panoptic_fcn.md §4.1, checkpoints §1.3):
PanopticFCN R50 3x: 12.8 FPS on one V100, batch 1, COCO 800x1333 input, "pure network time";
37,105,751 stored elements (FrozenBN buffers included) in the official R50 checkpoint.
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
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from hybrid_jax.data import categories as cat_lib  # noqa: E402
from hybrid_jax.models import resnet  # noqa: E402
from hybrid_jax.models.panoptic_fcn import build as pfcn_build  # noqa: E402
from hybrid_jax.models.panoptic_fcn import segment as pfcn_segment  # noqa: E402

PAPER = {'model': 'PanopticFCN R50 3x (COCO)', 'fps_v100': 12.8, 'input': '800x1333',
         'checkpoint_elements': 37_105_751}


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--backbone', default='resnet50')
  p.add_argument('--categories', default='cityscapes_vps')
  p.add_argument('--sizes', default='512x1024,1024x2048')
  p.add_argument('--repeats', type=int, default=3)
  p.add_argument('--max-instances', type=int, default=100)
  p.add_argument('--position-deform', default='v2')
  p.add_argument('--peer', action='store_true',
                 help='also time the ResNet-50 trunk alone against torchvision (same sizes)')
  p.add_argument('--skip-full', action='store_true', help='only the --peer comparison')
  args = p.parse_args(argv)
  cfg = ml_collections.ConfigDict({'backbone': args.backbone,
                                   'position_deform': args.position_deform,
                                   'inference': {'max_instances': args.max_instances}})
  model = pfcn_build.build_segmenter(cfg, cat_lib.get_categories(args.categories))
  variables = pfcn_build.init_segmenter(model, jax.random.key(0), (64, 64))
  n_params = resnet.count_parameters(variables)
  n_elems = sum(int(a.size) for a in jax.tree_util.tree_leaves(variables))
  n_bytes = sum(int(a.size) * a.dtype.itemsize for a in jax.tree_util.tree_leaves(variables))
  fn = pfcn_segment.make_segment_fn(model)
  results = []
  sizes = [] if args.skip_full else args.sizes.split(',')
  for size in sizes:
    h, w = (int(v) for v in size.lower().split('x'))
    img = jnp.asarray(np.random.default_rng(0).integers(0, 256, (1, h, w, 3), np.uint8))
    t0 = time.perf_counter()
    jax.block_until_ready(fn(variables, img))
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(args.repeats):
      t0 = time.perf_counter()
      jax.block_until_ready(fn(variables, img))
      times.append(time.perf_counter() - t0)
    best = min(times)
    results.append({'size': f'{h}x{w}', 'first_call_s': round(compile_s, 2),
                    'seconds_per_frame_best': round(best, 3),
                    'seconds_per_frame_median': round(float(np.median(times)), 3),
                    'fps': round(1.0 / best, 3)})
  peer = _backbone_peer(args.sizes.split(','), args.repeats) if args.peer else None
  report = {
      'benchmark': 'segmenter_speed', 'backbone': args.backbone,
      'categories': args.categories, 'num_thing': model.num_thing,
      'num_stuff': model.num_stuff, 'position_deform': args.position_deform,
      'max_instances': args.max_instances,
      'parameters': n_params, 'stored_elements': n_elems, 'parameter_bytes': n_bytes,
      'results': results, 'backbone_vs_torchvision': peer, 'paper': PAPER,
      'machine': {'platform': platform.platform(), 'cpu_count': os.cpu_count(),
                  'jax': jax.__version__, 'device': str(jax.devices()[0]),
                  'note': 'shared machine: other jobs were running, timings are upper bounds'},
  }
  print(json.dumps(report, indent=2))
  return report


def _best_time(fn, repeats: int) -> float:
  fn()  # warm-up / compile
  best = float('inf')
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - t0)
  return best


def _backbone_peer(sizes, repeats: int) -> list[dict]:
  """ResNet-50 trunk (res2..res5) forward: ours (jit) vs torchvision (eval, no_grad)."""
  import torch
  import torchvision
  tv = torchvision.models.resnet50(weights=None).eval()
  trunk = torch.nn.Sequential(*list(tv.children())[:-2])
  ours = resnet.ResNet('resnet50', stride_in_1x1=False)
  v = jax.jit(ours.init)(pfcn_build._init_key(jax.random.key(0)), jnp.zeros((1, 64, 64, 3)))
  fwd = jax.jit(ours.apply)
  out = []
  for size in sizes:
    h, w = (int(s) for s in size.lower().split('x'))
    x = np.random.default_rng(0).standard_normal((1, h, w, 3)).astype(np.float32)
    xj = jnp.asarray(x)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    t_ours = _best_time(lambda: jax.block_until_ready(fwd(v, xj)), repeats)
    with torch.no_grad():
      t_tv = _best_time(lambda: trunk(xt), repeats)
    out.append({'size': f'{h}x{w}', 'ours_s': round(t_ours, 3), 'torchvision_s': round(t_tv, 3),
                'torch_threads': torch.get_num_threads(),
                'ratio_ours_over_torch': round(t_ours / t_tv, 3)})
  return out


if __name__ == '__main__':
  main()
