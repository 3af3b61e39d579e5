"""Command line: give another model's per-frame panoptic predictions video-consistent ids.

  python -m hybrid_jax.cli.track_predictions --pred-dir IN --out-dir OUT [--images DIR] \
      [--flow-dir DIR | --raft CKPT] [--variant pixel|instance|hybrid] \
      [--temporal/--no-temporal] [--temporal-backward/--no-temporal-backward] \
      [--temporal-backward-flow] [--mutual-check/--no-mutual-check] \
      [--dataset cityscapes_vps|viper|synthetic] [--head CKPT] [--max-instances N] [--iters N]

IN holds pred.json + pan_pred/<image id>.png with per-frame segment ids (the official
prediction format); OUT receives the same format with one id per (class, track) and video,
ready for the official evaluator and `python -m hybrid_jax.cli.evaluate`. Frames are grouped into
videos by the image-id prefix VVVV and sorted by image id within a video.

Flow (variants pixel, hybrid): --flow-dir holds <image id>.flo, the forward flow from that frame
to the next frame of its video; or --raft CKPT computes it from the frames in --images.
Embedding head (variants instance, hybrid): --head WORKDIR/track/final (from mode=train_track)
plus --images. Which categories are things: pred.json's "categories", else --dataset.
"""

from __future__ import annotations

import argparse
import json
import sys

from hybrid_jax import errors
from hybrid_jax.data import categories


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog='python -m hybrid_jax.cli.track_predictions', description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--pred-dir', required=True, help='input: pred.json + pan_pred/ (per-frame ids)')
  p.add_argument('--out-dir', required=True, help='output: pred.json + pan_pred/ (track ids)')
  p.add_argument('--images', default=None, help='frames: <image id>.png/.jpg or Cityscapes-VPS img/')
  flow = p.add_mutually_exclusive_group()
  flow.add_argument('--flow-dir', default=None,
                    help='<image id>.flo: forward flow from each frame to the next of its video')
  flow.add_argument('--raft', default=None, help='converted RAFT checkpoint (flow from --images)')
  p.add_argument('--variant', default='hybrid', choices=['pixel', 'instance', 'hybrid'])
  p.add_argument('--temporal', action=argparse.BooleanOptionalAction, default=True,
                 help='temporal-consistency memory (default on)')
  p.add_argument('--temporal-backward', action=argparse.BooleanOptionalAction, default=True,
                 help='memory matches must be confirmed from the current frame back to the '
                      'stored one (default on)')
  p.add_argument('--temporal-backward-flow', action=argparse.BooleanOptionalAction,
                 default=False,
                 help='that confirmation warps the current frame\'s masks back to the stored '
                      'frame with backward flow (needs --raft; default off: the forward-warped '
                      'dice read column-wise)')
  p.add_argument('--mutual-check', action=argparse.BooleanOptionalAction, default=True,
                 help='keep mutual best matches only (default on)')
  p.add_argument('--dataset', default='cityscapes_vps',
                 choices=sorted(categories.TABLES),
                 help='category table when pred.json has no "categories"')
  p.add_argument('--head', default=None, help='embedding-head checkpoint (WORKDIR/track/final)')
  p.add_argument('--max-instances', type=int, default=None,
                 help='tracker slots per frame (default: the most thing segments of any frame)')
  p.add_argument('--iters', type=int, default=12, help='RAFT refinement iterations (12)')
  p.add_argument('--quiet', action='store_true', help='no progress bar, no summary')
  return p


def main(argv=None) -> int:
  args = _parser().parse_args(argv)
  try:
    from hybrid_jax import external_predictions as external  # jax loads only when needed
    summary = external.track_predictions(
        args.pred_dir, args.out_dir, variant=args.variant, temporal=args.temporal,
        mutual_check=args.mutual_check, temporal_backward=args.temporal_backward,
        temporal_backward_flow=args.temporal_backward_flow,
        flow_dir=args.flow_dir, raft=args.raft,
        iters=args.iters, images_dir=args.images, head=args.head, dataset=args.dataset,
        max_instances=args.max_instances, progress=not args.quiet)
  except errors.HybridJaxError as exc:
    print(f'error: {exc}', file=sys.stderr)
    return 2
  if not args.quiet:
    print(f"tracked {summary['frames']} frames in {summary['videos']} videos "
          f"({summary['variant']}, flow: {summary['flow']}, categories from "
          f"{summary['categories_from']}): {summary['input_thing_ids']} per-frame thing ids -> "
          f"{summary['output_tracks']} tracks, {summary['seconds']:.1f} s; wrote "
          f"{summary['out_dir']}")
    print(json.dumps(summary, sort_keys=True))
  return 0


if __name__ == '__main__':
  sys.exit(main())
