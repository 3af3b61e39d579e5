r"""Device memory of the paper's settings: training steps and the tracker at full resolution.

  python benchmarks/memory_plan.py [--out memory_plan.json]    # ~25 minutes on 2 CPU cores
  python benchmarks/memory_plan.py --configs configs/synthetic.py:tiny --quick   # seconds

For each config (default: the paper's, configs/cityscapes_vps.py and configs/viper.py, then
the device presets of configs/cityscapes_vps.py as they are set, on their runtime's device
count) it compiles, without running:

- the three stages' training steps at the config's per-device batch, crop and instance count,
  in float32 and bfloat16 (`train.compute_dtype`), with and without `train.remat`, and
  RAFT's step with `flow.train_corr='on_demand'` (float32);
- the tracker's programs at the full frame, `track.frames_per_call` frames per call as
  `mode=track` runs them: the segmenter (the config's test scales), RAFT (the config's
  variant, correlation and iterations), the embedding head (one frame, `data.max_instances`
  instances), mask warping and the dice matrix;

and prints each program's per-device peak from XLA's memory analysis
(`hybrid_jax.training.memory_plan`: arguments + outputs + temporaries - aliases) as a
markdown table, then one JSON document. The analysis is of the programs as compiled for
this machine's backend; a GPU or TPU compiler may differ (see the module's caveats).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

# The paper's settings in every variant; the device presets of configs/cityscapes_vps.py
# (config_lib.DEVICE_PRESETS) as they are set, without the flow stage (neither dataset has
# ground-truth flow, so RAFT is not trained on them).
DEFAULT_CONFIGS = ('configs/cityscapes_vps.py', 'configs/viper.py',
                   'configs/cityscapes_vps.py:gpu80', 'configs/cityscapes_vps.py:gpu16',
                   'configs/cityscapes_vps.py:tpu_v3', 'configs/cityscapes_vps.py:tpu_v2')
STAGES = ('seg', 'flow', 'track')
VARIANTS = (('float32', False), ('float32', True), ('bfloat16', False), ('bfloat16', True))


def load_config(spec: str):
  path, _, preset = spec.partition(':')
  module = importlib.import_module(path.replace('/', '.').removesuffix('.py'))
  return module.get_config(preset)


def training_rows(config, *, variants, stages=STAGES, devices=None,
                  flow_on_demand: bool = False) -> list[dict]:
  """The training steps in each (dtype, remat) variant; `flow_on_demand` adds RAFT's step
  with `flow.train_corr='on_demand'` (float32), the reason its default is 'all_pairs'."""
  from hybrid_jax.training import memory_plan
  runs = [(stage, dtype, remat, None) for stage in stages for dtype, remat in variants]
  if flow_on_demand and 'flow' in stages:
    runs.append(('flow', 'float32', False, 'on_demand'))
  rows = []
  for stage, dtype, remat, train_corr in runs:
    c = config.copy_and_resolve_references()
    with c.unlocked():
      c.train.compute_dtype, c.train.remat = dtype, remat
      if train_corr:
        c.flow.train_corr = train_corr
    t0 = time.perf_counter()
    est = memory_plan.stage_step(c, stage, devices=devices)
    h, w = memory_plan.stage_crop(c, stage)
    name = f'{stage} train step' + (f' (train_corr={train_corr})' if train_corr else '')
    rows.append({'program': name, 'dtype': dtype, 'remat': remat,
                 'batch_per_device': memory_plan.per_device_batch(c, stage, devices),
                 'shape': f'{h}x{w}', 'peak_gib': round(est.peak_gib, 2),
                 'temp_gib': round(est.temp_bytes / memory_plan.GIB, 2),
                 'argument_gib': round(est.argument_bytes / memory_plan.GIB, 2),
                 'compile_s': round(time.perf_counter() - t0, 1)})
    print(f'  {rows[-1]}', file=sys.stderr, flush=True)
  return rows


def tracker_rows(config) -> list[dict]:
  """The tracking programs at the config's full frame size."""
  import jax
  import numpy as np
  from hybrid_jax.models import embedding_head as head_lib
  from hybrid_jax.models.panoptic_fcn import build as pfcn_build
  from hybrid_jax.models.panoptic_fcn import segment as pfcn_segment
  from hybrid_jax.models.raft import model as raft
  from hybrid_jax.tracking import pixel
  from hybrid_jax.training import memory_plan
  from hybrid_jax.training.stages import train_tracker

  h, w = int(config.data.height), int(config.data.width)
  b = int(config.track.frames_per_call)
  n = int(config.data.max_instances)
  frames = jax.ShapeDtypeStruct((b, h, w, 3), np.uint8)
  programs = {}

  model, _ = pfcn_build.segmenter_from_config(config)
  seg_vars = jax.eval_shape(lambda: pfcn_build.init_segmenter(model, jax.random.key(0),
                                                              (64, 64)))
  programs['segmenter'] = (pfcn_segment.make_segment_fn(model), (seg_vars, frames),
                           f'{b}x{h}x{w}, scales {tuple(config.seg.test_scales)}')

  f = config.flow
  raft_vars = jax.eval_shape(lambda: raft.init_raft(0, variant=f.variant, height=64, width=64))
  flow_fn = jax.jit(lambda v, x, y: raft._estimate_impl(  # pylint: disable=protected-access
      v, x, y, None, variant=f.variant, iters=int(f.iters), corr=f.corr, pad_mode='sintel'))
  programs['RAFT'] = (flow_fn, (raft_vars, frames, frames),
                      f'{b} pairs {h}x{w}, {f.variant}, {f.corr}, {f.iters} iterations')

  head = train_tracker.build_head(config)
  head_params = jax.eval_shape(lambda: head_lib.init_head(
      head, jax.random.key(0), image_hw=(64, 64), max_instances=1))
  embed = jax.jit(lambda p, img, m, bx, v: head.apply({'params': p}, img, m, bx, v))
  masks = jax.ShapeDtypeStruct((n, h, w), np.bool_)
  programs['embedding head'] = (
      embed, (head_params, jax.ShapeDtypeStruct((h, w, 3), np.uint8), masks,
              jax.ShapeDtypeStruct((n, 4), np.float32), jax.ShapeDtypeStruct((n,), np.bool_)),
      f'1 frame, {n} instances, canvas {tuple(config.track.canvas)}')
  programs['mask warping'] = (jax.jit(pixel.warp_masks),
                              (masks, jax.ShapeDtypeStruct((h, w, 2), np.float32)),
                              f'{n} masks {h}x{w}')
  valid = jax.ShapeDtypeStruct((n,), np.bool_)
  programs['dice matrix'] = (jax.jit(pixel.dice_matrix), (masks, masks, valid, valid),
                             f'{n}x{n} masks {h}x{w}')

  rows = []
  for name, (fn, args, shape) in programs.items():
    t0 = time.perf_counter()
    est = memory_plan.of_program(fn, *args)
    rows.append({'program': f'tracking: {name}', 'dtype': 'float32', 'remat': False,
                 'batch_per_device': 1 if name != 'segmenter' and name != 'RAFT' else b,
                 'shape': shape, 'peak_gib': round(est.peak_gib, 2),
                 'temp_gib': round(est.temp_bytes / memory_plan.GIB, 2),
                 'argument_gib': round(est.argument_bytes / memory_plan.GIB, 2),
                 'compile_s': round(time.perf_counter() - t0, 1)})
    print(f'  {rows[-1]}', file=sys.stderr, flush=True)
  return rows


def markdown(results: dict) -> str:
  lines = []
  for spec, rows in results.items():
    lines += [f'**{spec}**', '',
              '| program | dtype | remat | per-device batch | shape | peak GiB | of which temporaries |',
              '|---|---|---|---|---|---|---|']
    for r in rows:
      lines.append(f"| {r['program']} | {r['dtype']} | {'yes' if r['remat'] else 'no'} | "
                   f"{r['batch_per_device']} | {r['shape']} | {r['peak_gib']:.2f} | "
                   f"{r['temp_gib']:.2f} |")
    lines.append('')
  return '\n'.join(lines)


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--configs', default=','.join(DEFAULT_CONFIGS),
                      help='comma-separated config specs (path[:preset])')
  parser.add_argument('--quick', action='store_true',
                      help='float32 without remat only (a smoke run)')
  parser.add_argument('--stages', default=','.join(STAGES),
                      help='training steps to compile (comma-separated; empty for none)')
  parser.add_argument('--skip-tracker', action='store_true')
  parser.add_argument('--out', default=None, help='also write the JSON here')
  args = parser.parse_args(argv)
  import jax
  from hybrid_jax import config_lib
  stages = [s for s in args.stages.split(',') if s]
  unknown = sorted(set(stages) - set(STAGES))
  if unknown:
    parser.error(f'--stages: unknown {unknown}; choose from {STAGES}')
  results = {}
  for spec in [s for s in args.configs.split(',') if s]:
    print(f'{spec}:', file=sys.stderr, flush=True)
    config = load_config(spec)
    device = config_lib.DEVICE_PRESETS.get(config.preset)
    if device:  # as the preset is set, on its runtime's device count
      variants = ((config.train.compute_dtype, config.train.remat),)
      rows = training_rows(config, variants=variants, devices=device['devices'],
                           stages=[s for s in stages if s != 'flow'])
    else:
      rows = training_rows(config, variants=VARIANTS[:1] if args.quick else VARIANTS,
                           stages=stages, flow_on_demand=not args.quick)
    if not args.skip_tracker:
      rows += tracker_rows(config)
    results[spec] = rows
  print(markdown(results))
  doc = {'benchmark': 'memory_plan', 'backend': jax.default_backend(),
         'device_kind': jax.devices()[0].device_kind,
         'date': time.strftime('%Y-%m-%d'), 'results': results}
  print(json.dumps(doc, indent=1))
  if args.out:
    with open(args.out, 'w') as fh:
      json.dump(doc, fh, indent=1)
  return doc


if __name__ == '__main__':
  main()
