"""Command line: VPQ / STQ of a prediction in the official layout.

  python -m hybrid_jax.cli.evaluate --gt-dir data/cityscapes_vps/val/panoptic_video \
      --gt-json data/cityscapes_vps/panoptic_gt_val_city_vps.json --pred-dir work/val_pred \
      [--dataset cityscapes_vps|viper|vipseg|kitti_step|synthetic] [--metrics vpq,stq] \
      [--frames-per-video N] \
      [--output-json PATH] [--workers N]

`--pred-dir` holds pred.json and pan_pred/<image id>.png.  Prints the paper's table, writes
vpq-0.txt ... vpq-15.txt and vpq-final.txt (like the official tool) into --text-dir (default:
--pred-dir; '' to skip) and, with --output-json, every number at full precision.
"""

from __future__ import annotations

import argparse
import os
import sys

from hybrid_jax import errors
from hybrid_jax.evaluation import outputs as report
from hybrid_jax.evaluation import protocols
from hybrid_jax.evaluation import runner


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog='python -m hybrid_jax.cli.evaluate', description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--gt-dir', required=True, help='folder of ground-truth RGB-id PNGs')
  p.add_argument('--gt-json', required=True, help='ground-truth panoptic json')
  p.add_argument('--pred-dir', required=True, help='folder with pred.json and pan_pred/')
  p.add_argument('--dataset', default='cityscapes_vps', choices=sorted(protocols.PROTOCOLS))
  p.add_argument('--metrics', default='vpq,stq', help='comma-separated: vpq, stq')
  p.add_argument('--frames-per-video', type=int, default=None,
                 help='cut the sorted GT frames into videos of N frames, as the official '
                      'Cityscapes-VPS tool does with 6 (default: one video per image-id '
                      'prefix, read from the ground truth; equal to 6-frame chunks on '
                      'Cityscapes-VPS)')
  p.add_argument('--no-prefix-check', action='store_true',
                 help='do not require each video chunk to share one image-id prefix')
  p.add_argument('--output-json', default=None, help='write all results here')
  p.add_argument('--text-dir', default=None,
                 help="where vpq-<k>.txt go (default: --pred-dir; '' = do not write)")
  p.add_argument('--workers', type=int, default=1, help='processes (1 = in-process)')
  return p


def main(argv=None) -> int:
  args = _parser().parse_args(argv)
  metrics = tuple(m.strip() for m in args.metrics.split(',') if m.strip())
  if args.frames_per_video is not None and args.frames_per_video < 1:
    print(f'error: --frames-per-video must be a positive number of frames, got '
          f'{args.frames_per_video}; leave it out to group frames by their video id.',
          file=sys.stderr)
    return 2
  fpv = args.frames_per_video  # None: by image-id prefix
  try:
    results = runner.evaluate_official(
        args.gt_dir, args.gt_json, args.pred_dir, dataset=args.dataset, metrics=metrics,
        frames_per_video=fpv, check_prefix=not args.no_prefix_check, workers=args.workers,
        progress=True)
    print(report.format_table(results))
    text_dir = args.pred_dir if args.text_dir is None else args.text_dir
    if 'vpq' in results and text_dir:
      report.write_vpq_texts(results['vpq'], text_dir)
    if args.output_json:
      report.write_json(results, args.output_json)
      print(f'wrote {os.path.abspath(args.output_json)}')
  except errors.HybridJaxError as exc:
    print(f'error: {exc}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())
