r"""Where a trained segmenter loses PQ: per-class PQ on val and the size of the things there.

  python benchmarks/segmenter_per_class.py --workdir runs/demo

Reads the config the segmenter stage recorded (``<workdir>/seg/config.json``, so the data folder
and the architecture are the run's own), segments every labelled val frame with
``<workdir>/seg/final`` and prints one JSON document: per class PQ / SQ / RQ with TP, FP and FN
counts, and per thing class the ground-truth segments' median height, width and area, the share
under 64 px of area and the 10/50/90th percentiles of sqrt(h*w). A thing class whose segments are
a few pixels wide cannot be resolved by masks at 1/4 resolution; this is the number to look at
before tuning the optimiser.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from ml_collections import config_dict  # pylint: disable=g-import-not-at-top,wrong-import-position


def _thing_sizes(source, thing_ids):
  """{class id: [(height, width, area), ...]} of the ground-truth things on labelled frames."""
  sizes = {c: [] for c in thing_ids}
  for i in range(len(source)):
    clip = source[i]
    for t in np.flatnonzero(clip['labelled']):
      pan = np.asarray(clip['panoptic'][t])
      for v in np.unique(pan):
        if v < 0 or v % 1000 == 0 or v // 1000 not in sizes:
          continue                          # void, stuff (instance 0) or a stuff class id
        ys, xs = np.nonzero(pan == v)
        sizes[v // 1000].append((ys.max() - ys.min() + 1, xs.max() - xs.min() + 1, len(ys)))
  return sizes


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--workdir', required=True, help='a run whose seg stage is finished')
  parser.add_argument('--data-dir', default=None, help='override the recorded data.dir')
  args = parser.parse_args(argv)
  config_path = os.path.join(args.workdir, 'seg', 'config.json')
  if not os.path.isfile(config_path):
    parser.error(f'{config_path} is missing: train the segmenter there first '
                 '(--config.mode=train_seg).')
  with open(config_path) as f:
    config = config_dict.ConfigDict(json.load(f))
  if args.data_dir:
    config.data.dir = args.data_dir

  from hybrid_jax import inference, trained_models, workdirs  # pylint: disable=g-import-not-at-top
  from hybrid_jax.data import categories, datasets  # pylint: disable=g-import-not-at-top
  from hybrid_jax.evaluation import evaluate_pq_arrays  # pylint: disable=g-import-not-at-top
  from hybrid_jax.models.panoptic_fcn import segment  # pylint: disable=g-import-not-at-top

  table = categories.get_categories(config.data.categories)
  model, variables = trained_models.load_segmenter(config, args.workdir)
  segment_fn = segment.make_segment_fn(model)
  source = datasets.get_source(config, 'val', workdirs.data_dir(config, args.workdir))
  gts, preds = [], []
  for i in range(len(source)):
    clip = source[i]
    labelled = np.flatnonzero(clip['labelled'])
    out = inference.segment_frames(segment_fn, variables, clip['frames'][labelled])
    gts.extend(clip['panoptic'][labelled])
    preds.extend(out['panoptic'])
  result = evaluate_pq_arrays(gts, preds, table)

  per_class = {r['name']: {**{k: round(r[k], 1) for k in ('pq', 'sq', 'rq')},
                           **{k: r[k] for k in ('tp', 'fp', 'fn')}}
               for r in result['per_class'].values() if r['tp'] + r['fp'] + r['fn']}
  names = {c.id: c.name for c in table}
  sizes = {}
  for cid, rows in _thing_sizes(source, categories.thing_ids(table)).items():
    if not rows:
      continue
    a = np.asarray(rows, np.float64)
    sizes[names[cid]] = {
        'segments': len(a), 'median_height': float(np.median(a[:, 0])),
        'median_width': float(np.median(a[:, 1])), 'median_area': float(np.median(a[:, 2])),
        'share_under_64px': round(float((a[:, 2] < 64).mean()), 3),
        'sqrt_hw_p10_p50_p90': np.percentile(np.sqrt(a[:, 0] * a[:, 1]), [10, 50, 90]).round(1)
                               .tolist()}
  print(json.dumps({'workdir': os.path.abspath(args.workdir), 'frames': len(gts),
                    'pq': {k: round(result[k]['pq'], 1) for k in ('all', 'things', 'stuff')},
                    'per_class': per_class, 'thing_sizes': sizes}, indent=1))
  return 0


if __name__ == '__main__':
  sys.exit(main())
