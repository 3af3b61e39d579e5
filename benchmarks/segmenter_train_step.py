r"""The demo segmenter's training step: where its time goes and what two choices save; JSON out.

  python benchmarks/segmenter_train_step.py                 # step times (about 2 minutes)
  python benchmarks/segmenter_train_step.py --assignments   # + the mask slots the data needs

The timed program is the jitted loss and gradient of `training.stages.train_segmenter` on
one batch of the demo's config (configs/synthetic.py: 2 whole 128x256 frames of the
synthetic train split, seg.mask_resolution='full'). Two choices are compared on the same
batch and weights, the programs alternating and the median of --repeats calls reported:

- the x4 upsampling of mask logits: `targets.upsample4_2d` (its last axis as a banded
  matrix product, `upsample4_last`) against the element-wise filter on both axes (the
  earlier form, `upsample4` twice);
- seg.mask_pairs, the (instance, level) slots per frame that the 'full' Dice evaluates,
  used or not: the config's value against 32 (the earlier default).

With --assignments it also counts the (instance, level) assignments of every train frame of
the demo's data for generator seeds 0, 1 and 2 (48 clips of 30 frames each): the largest
count is the fewest slots that drop none.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from demo_profile import cpu_name  # noqa: E402  (this folder: the script's own path entry)


def _elementwise_upsample4_2d(x):
  from hybrid_jax.models.panoptic_fcn import targets  # pylint: disable=g-import-not-at-top
  return targets.upsample4(targets.upsample4(x, -2), -1)


def _batch(config):
  """Frame 5 of train clips 0 and 1, as the stage's iterator shapes a batch."""
  from hybrid_jax.data.synthetic import tfds_builder  # pylint: disable=g-import-not-at-top
  params = {k: config.data[k] for k in ('height', 'width', 'clip_length', 'label_every',
                                        'generator_seed')}
  clips = [tfds_builder.generate_split_clip(params, 'train', i) for i in range(2)]
  frames = np.stack([np.stack([c['frames'][4], c['frames'][5]]) for c in clips])
  panoptic = np.stack([np.stack([c['panoptic'][4], c['panoptic'][5]]) for c in clips])
  return {'frames': frames, 'panoptic': panoptic}


def step_times(repeats: int) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  from configs import synthetic  # pylint: disable=g-import-not-at-top
  from hybrid_jax.models.panoptic_fcn import build  # pylint: disable=g-import-not-at-top
  from hybrid_jax.models.panoptic_fcn import targets  # pylint: disable=g-import-not-at-top
  from hybrid_jax.training.stages import train_segmenter  # pylint: disable=g-import-not-at-top

  config = synthetic.get_config('')
  demo_pairs = int(config.seg.mask_pairs)
  batch = {k: jax.numpy.asarray(v) for k, v in _batch(config).items()}
  banded = targets.upsample4_2d
  model, _ = build.segmenter_from_config(config)
  variables, _ = build.initial_variables(config, model)  # the slots are the loss's, not weights
  variants = {}
  for pairs in sorted({demo_pairs, 32}):
    config.unlock()
    config.seg.mask_pairs = pairs
    model, _ = build.segmenter_from_config(config)
    loss_fn = train_segmenter.make_loss_fn(model)
    for upsample in ('banded', 'elementwise'):
      # The loss looks the filter up when it is traced: swap it in for this program only.
      targets.upsample4_2d = banded if upsample == 'banded' else _elementwise_upsample4_2d
      try:
        t0 = time.perf_counter()
        fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True)).lower(
            variables['params'], variables['batch_stats'], batch, None).compile()
        compile_s = time.perf_counter() - t0
      finally:
        targets.upsample4_2d = banded
      args = (variables['params'], variables['batch_stats'], batch, None)
      jax.block_until_ready(fn(*args))
      variants[f'{upsample}, mask_pairs {pairs}'] = {'fn': fn, 'args': args, 'times': [],
                                                    'compile_s': round(compile_s, 1)}
  for _ in range(repeats):  # alternate, so that drift in the machine's speed falls on all
    for v in variants.values():
      t0 = time.perf_counter()
      jax.block_until_ready(v['fn'](*v['args']))
      v['times'].append(time.perf_counter() - t0)
  out = {name: {'median_s': round(statistics.median(v['times']), 4),
                'compile_s': v['compile_s']} for name, v in variants.items()}
  ours = f'banded, mask_pairs {demo_pairs}'
  base = 'elementwise, mask_pairs 32'
  out['ratio_earlier_to_config'] = round(out[base]['median_s'] / out[ours]['median_s'], 2)
  out['config'] = ours
  return out


def assignment_counts(seeds=(0, 1, 2)) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  from configs import synthetic  # pylint: disable=g-import-not-at-top
  from hybrid_jax.data.synthetic import tfds_builder  # pylint: disable=g-import-not-at-top
  from hybrid_jax.models.panoptic_fcn import build  # pylint: disable=g-import-not-at-top
  from hybrid_jax.models.panoptic_fcn import inputs  # pylint: disable=g-import-not-at-top
  from hybrid_jax.models.panoptic_fcn import targets  # pylint: disable=g-import-not-at-top

  config = synthetic.get_config('')
  model, _ = build.segmenter_from_config(config)
  spec = model.spec.targets
  count = jax.jit(lambda pan: targets.build_batch_targets(
      inputs.pad_panoptic(pan), spec=spec)['inst_levels'].sum((1, 2)))
  out = {}
  for seed in seeds:
    params = {k: config.data[k] for k in ('height', 'width', 'clip_length', 'label_every')}
    params['generator_seed'] = seed
    counts = []
    for i in range(config.data.num_train_clips):
      pan = tfds_builder.generate_split_clip(params, 'train', i)['panoptic'].astype(np.int32)
      counts.extend(int(c) for c in np.asarray(count(pan)))
    counts = np.asarray(counts)
    out[f'seed {seed}'] = {'frames': int(counts.size), 'max': int(counts.max()),
                           'median': float(np.median(counts)),
                           'p99': float(np.percentile(counts, 99))}
  return out


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--repeats', type=int, default=15)
  parser.add_argument('--assignments', action='store_true',
                      help='also count the assignments of the demo data (seeds 0, 1, 2)')
  args = parser.parse_args(argv)
  import jax  # pylint: disable=g-import-not-at-top
  result = {'machine': f'{cpu_name()}, {os.cpu_count()} cores, {jax.default_backend()}',
            'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
            'step': step_times(args.repeats)}
  if args.assignments:
    result['assignments_per_frame'] = assignment_counts()
  print(json.dumps(result, indent=1))
  return result


if __name__ == '__main__':
  main()
