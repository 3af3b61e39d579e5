r"""One prepared run on an accelerator: speed and peak memory of everything the paper measures.

  python benchmarks/device_suite.py [--out suite.json]     # on a GPU / TPU: the paper's sizes
  python benchmarks/device_suite.py --smoke                # tiny shapes, CPU, under a minute

Prints one JSON document:

- `device`: platform, device kind, count; jax, and torch when present;
- `raft`: pairs/s of our RAFT (standard, all-pairs) at 368x496 and 1024x2048 with 12 and 20
  iterations, and of torchvision's raft_large with the same (randomly initialised, converted)
  weights on the same pair, on torch's best device (CUDA when torch sees one), with the ratio;
- `segmenter`: PanopticFCN R50 frames/s at 1024x2048 (batch 1, one scale);
- `tracker`: the whole tracker at 1024x2048 (segmenter + RAFT 20 iterations + hybrid tracker
  with the temporal memory), frames/s over a short clip, beside the paper's 3.6 fps (TITAN X)
  and VPSNet's 1.3;
- `train`: steps/s of the three stages' jitted train steps at configs/cityscapes_vps.py's
  per-device batch and crop (`training.stages.example_steps`), the segmenter's also with
  `train.remat`, each with its compiled memory analysis on this device's compiler
  (`compiled_peak_bytes`, `training.memory_plan`; the CPU figures in docs/configs.md);
- `peak_bytes`: the device's peak memory after each section (`memory_stats()`; None where the
  backend does not report it, e.g. CPU).

Every timing is the median of `--repeats` calls after one warm-up call (which compiles); the
two RAFT implementations alternate. Random weights throughout: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

PAPER_FPS = {'HybridTracker (TITAN X, 1024x2048)': 3.6, 'VPSNet-FuseTrack': 1.3}

# head: the embedding head's (canvas, pool, hidden, embedding); the paper's in FULL.
FULL = {'raft_sizes': ((368, 496), (1024, 2048)), 'raft_iters': (12, 20),
        'seg_hw': (1024, 2048), 'backbone': 'resnet50', 'tracker_hw': (1024, 2048),
        'tracker_frames': 6, 'tracker_iters': 20, 'head': ((256, 512), 8, 1024, 1024),
        'config': 'configs/cityscapes_vps.py'}
SMOKE = {'raft_sizes': ((128, 128),), 'raft_iters': (2,), 'seg_hw': (64, 128),
         'backbone': 'resnet_tiny', 'tracker_hw': (64, 128), 'tracker_frames': 3,
         'tracker_iters': 2, 'head': ((8, 16), 1, 32, 16), 'config': 'configs/synthetic.py:tiny'}


def _median_seconds(fns: dict, repeats: int) -> dict[str, float]:
  """{name: median wall seconds} of `repeats` alternating calls, after one warm-up each."""
  for fn in fns.values():
    fn()
  times = {k: [] for k in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      t0 = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - t0)
  return {k: statistics.median(v) for k, v in times.items()}


def _peak_bytes():
  import jax
  stats = jax.devices()[0].memory_stats()
  return None if not stats else stats.get('peak_bytes_in_use')


def _block(x):
  import jax
  return jax.block_until_ready(x)


def device_info() -> dict:
  import jax
  dev = jax.devices()[0]
  info = {'platform': dev.platform, 'device_kind': dev.device_kind,
          'device_count': jax.device_count(), 'jax': jax.__version__}
  try:
    import torch
    info['torch'] = torch.__version__
    info['torch_cuda'] = bool(torch.cuda.is_available())
  except ImportError:
    info['torch'] = None
  return info


def raft_section(sizes, iters_list, repeats: int) -> list[dict]:
  """Ours vs torchvision's raft_large on the same weights and pair."""
  from benchmarks.raft_speed import textured_pair
  from hybrid_jax.models.raft import model as raft
  torch_model, variables, device = None, None, None
  try:
    import torch
    from torchvision.models import optical_flow
    from hybrid_jax.convert import raft as convert_raft
    torch.manual_seed(0)
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    torch_model = optical_flow.raft_large(weights=None).eval()
    variables, _ = convert_raft.convert_state_dict(torch_model.state_dict())
    torch_model = torch_model.to(device)
  except ImportError:
    variables = raft.init_raft(0, variant='standard')
  rows = []
  for h, w in sizes:
    img1, img2 = textured_pair(h, w)
    for iters in iters_list:
      fns = {'ours': lambda: _block(raft.estimate_flow(variables, img1, img2, variant='standard',
                                                        iters=iters))}
      if torch_model is not None:
        import torch
        t1 = (torch.from_numpy(img1).permute(2, 0, 1)[None] / 127.5 - 1).to(device)
        t2 = (torch.from_numpy(img2).permute(2, 0, 1)[None] / 127.5 - 1).to(device)

        def theirs(t1=t1, t2=t2, iters=iters):
          with torch.no_grad():
            out = torch_model(t1, t2, num_flow_updates=iters)[-1]
          if device == 'cuda':
            torch.cuda.synchronize()
          return out
        fns['torchvision'] = theirs
      sec = _median_seconds(fns, repeats)
      row = {'size': f'{h}x{w}', 'iters': iters, 'ours_pairs_per_s': 1.0 / sec['ours']}
      if 'torchvision' in sec:
        row.update(torchvision_pairs_per_s=1.0 / sec['torchvision'], torchvision_device=device,
                   ratio=sec['torchvision'] / sec['ours'])
      rows.append(row)
  return rows


@functools.lru_cache(maxsize=None)
def _segmenter(backbone: str):
  """(model, variables, jitted segment fn), built once per backbone (one compile per shape)."""
  from configs import synthetic
  from hybrid_jax.models.panoptic_fcn import build as pfcn_build
  from hybrid_jax.models.panoptic_fcn import segment as pfcn_segment
  c = synthetic.get_config()
  c.seg.backbone, c.data.categories = backbone, 'cityscapes_vps'
  model, _ = pfcn_build.segmenter_from_config(c)
  variables, _ = pfcn_build.initial_variables(c, model)
  return model, variables, pfcn_segment.make_segment_fn(model)


def segmenter_section(hw, backbone: str, repeats: int) -> dict:
  _, variables, fn = _segmenter(backbone)
  frames = np.zeros((1,) + tuple(hw) + (3,), np.uint8)
  sec = _median_seconds({'seg': lambda: _block(fn(variables, frames))}, repeats)['seg']
  return {'size': f'{hw[0]}x{hw[1]}', 'backbone': backbone, 'frames_per_s': 1.0 / sec}


def tracker_section(hw, backbone: str, frames: int, iters: int, head_dims) -> dict:
  """Segmenter + RAFT + hybrid tracker with the temporal memory, frame by frame."""
  import jax
  from benchmarks.raft_speed import textured_pair
  from hybrid_jax import inference
  from hybrid_jax.data import categories as categories_lib
  from hybrid_jax.models import embedding_head as head_lib
  from hybrid_jax.models.raft import model as raft
  from hybrid_jax.tracking import tracker as tracker_lib
  h, w = hw
  _, seg_vars, seg_fn = _segmenter(backbone)
  raft_vars = raft.init_raft(0, variant='standard')
  canvas, pool, hidden, embed = head_dims
  head = head_lib.EmbeddingHead(canvas=tuple(canvas), pool=pool, hidden_dim=hidden,
                                embed_dim=embed)
  head_params = head_lib.init_head(head, jax.random.key(0), image_hw=(h, w), max_instances=32)
  tracker = tracker_lib.VideoTracker(
      'hybrid', temporal=True, max_instances=32,
      embed_fn=head_lib.make_embed_fn(head, head_params),
      categories=categories_lib.get_categories('cityscapes_vps'))
  a, b = textured_pair(h, w)
  clip = np.stack([a if t % 2 == 0 else b for t in range(frames)]).astype(np.uint8)

  def run_clip():
    tracker.reset()
    prev = None
    for t in range(frames):
      seg = jax.device_get(seg_fn(seg_vars, clip[t:t + 1]))
      flow = None
      if prev is not None:
        flow = np.asarray(raft.estimate_flow(raft_vars, clip[t - 1].astype(np.float32),
                                             clip[t].astype(np.float32), variant='standard',
                                             iters=iters))
      inst = inference.frame_instances(seg, 0, tracker.max_instances)
      tracker.update(clip[t], inst, panoptic=seg['panoptic'][0], flow=flow, frame_index=t)
      prev = t

  run_clip()  # compiles
  t0 = time.perf_counter()
  run_clip()
  sec = time.perf_counter() - t0
  return {'size': f'{h}x{w}', 'frames': frames, 'raft_iters': iters,
          'frames_per_s': frames / sec, 'paper_fps': PAPER_FPS}


def train_section(config_spec: str, repeats: int, *, smoke: bool) -> list[dict]:
  """Steps/s of the three stages at the config's per-device batch and crop."""
  import importlib
  import jax
  from hybrid_jax.training.stages import example_steps
  path, _, preset = config_spec.partition(':')
  module = importlib.import_module(path.replace('/', '.').removesuffix('.py'))
  c = module.get_config(preset)
  from hybrid_jax.training import memory_plan
  rows = []
  # The segmenter once more with train.remat: on this device's compiler, what it saves.
  for stage, remat in (('seg', False), ('seg', True), ('flow', False), ('track', False)):
    c = c.copy_and_resolve_references()
    with c.unlocked():
      c.train.remat = remat
    per_device = max(1, c[stage].train.batch_size // jax.device_count())
    hw = memory_plan.stage_crop(c, stage)
    kwargs = ({'max_instances': min(int(c.data.max_instances), 8 if smoke else 32)}
              if stage == 'track' else {})
    step, state, batch = example_steps.STAGE_STEPS[stage](c, batch_size=per_device, hw=hw,
                                                          **kwargs)
    analysis = memory_plan.of_program(step, state, memory_plan.shapes_of(batch))
    holder = {'state': state}

    def one(step=step, batch=batch, holder=holder):
      holder['state'], metrics = step(holder['state'], batch)
      _block(metrics['loss'])

    sec = _median_seconds({stage: one}, repeats)[stage]
    rows.append({'stage': stage, 'remat': remat, 'batch_per_device': per_device,
                 'crop': f'{hw[0]}x{hw[1]}', 'steps_per_s': 1.0 / sec,
                 'compiled_peak_bytes': analysis.peak_bytes, 'peak_bytes': _peak_bytes()})
    del holder, step, state, batch
  return rows


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--smoke', action='store_true', help='tiny shapes (CPU, < 1 minute)')
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--out', default=None, help='also write the JSON here')
  parser.add_argument('--skip', default='', help='sections to leave out, e.g. raft,train')
  args = parser.parse_args(argv)
  plan = SMOKE if args.smoke else FULL
  skip = {s.strip() for s in args.skip.split(',') if s.strip()}
  out = {'benchmark': 'device_suite', 'smoke': args.smoke, 'device': device_info(),
         'peak_bytes': {}}
  t_start = time.perf_counter()
  sections = {
      'raft': lambda: raft_section(plan['raft_sizes'], plan['raft_iters'], args.repeats),
      'segmenter': lambda: segmenter_section(plan['seg_hw'], plan['backbone'], args.repeats),
      'tracker': lambda: tracker_section(plan['tracker_hw'], plan['backbone'],
                                         plan['tracker_frames'], plan['tracker_iters'],
                                         plan['head']),
      'train': lambda: train_section(plan['config'], args.repeats, smoke=args.smoke),
  }
  unknown = skip - set(sections)
  if unknown:
    parser.error(f'--skip: unknown sections {sorted(unknown)}; choose from {sorted(sections)}')
  for name, run in sections.items():
    if name in skip:
      continue
    t0 = time.perf_counter()
    out[name] = run()
    out['peak_bytes'][name] = _peak_bytes()
    print(f'[device_suite] {name} done in {time.perf_counter() - t0:.1f} s', file=sys.stderr,
          flush=True)
  out['seconds'] = time.perf_counter() - t_start
  text = json.dumps(out, indent=2, default=float)
  print(text)
  if args.out:
    with open(args.out, 'w') as f:
      f.write(text + '\n')
  return out


if __name__ == '__main__':
  main()
