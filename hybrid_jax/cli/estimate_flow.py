"""Optical flow between two images with a converted RAFT checkpoint.

    python -m hybrid_jax.cli.estimate_flow IMG1 IMG2 --checkpoint CKPT_DIR [--iters 12] \
        [--corr all_pairs|on_demand] --out OUT.flo [--png OUT.png]

CKPT_DIR comes from `python -m hybrid_jax.cli.convert raft raft-sintel.pth CKPT_DIR`; its metadata
says whether it is the standard or the small model. `--corr on_demand` bounds memory for
large frames (same result). The flow is written as a Middlebury .flo (u = x first, pixels).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from hybrid_jax import errors
from hybrid_jax.data import image_files


def _check_output_file(flag: str, path: str) -> None:
  """Before any compute: the output must be a file path in an existing, writable folder."""
  if os.path.isdir(path):
    raise errors.ConfigError(f'{flag} {path} is a folder; give a file name, e.g. '
                             f'{os.path.join(path, "flow.flo" if flag == "--out" else "flow.png")}.')
  parent = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(parent):
    raise errors.ConfigError(f'{flag} {path}: the folder {parent} does not exist; create it '
                             'first or write elsewhere.')
  if not os.access(parent, os.W_OK):
    raise errors.ConfigError(f'{flag} {path}: the folder {parent} is not writable.')


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m hybrid_jax.cli.estimate_flow', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('image1')
  parser.add_argument('image2')
  parser.add_argument('--checkpoint', required=True, help='converted RAFT checkpoint directory')
  parser.add_argument('--iters', type=int, default=12, help='refinement iterations (12)')
  parser.add_argument('--corr', choices=('all_pairs', 'on_demand'), default='all_pairs')
  parser.add_argument('--out', required=True, help='output .flo file')
  parser.add_argument('--png', default=None, help='optional colour-wheel visualisation (PNG)')
  args = parser.parse_args(argv)
  try:
    if args.iters < 1:
      raise errors.ConfigError(f'--iters must be >= 1, got {args.iters}.')
    for flag, path in (('--out', args.out), ('--png', args.png)):
      if path:
        _check_output_file(flag, path)
    from hybrid_jax.data import flo_files
    from hybrid_jax.models.raft import memory as raft_memory
    from hybrid_jax.models.raft import model as raft
    img1 = image_files.read_rgb(args.image1, convert=False)
    img2 = image_files.read_rgb(args.image2, convert=False)
    if img1.shape != img2.shape:
      raise errors.FormatError(f'{args.image1} is {img1.shape[1]}x{img1.shape[0]} but '
                               f'{args.image2} is {img2.shape[1]}x{img2.shape[0]}; the frames '
                               'must have the same size.')
    raft_memory.check_fits(img1.shape[0], img1.shape[1], corr=args.corr)
    variables, variant = raft.load_raft(args.checkpoint)
    # float32 in: the same compiled function then serves every float caller of this size.
    img1, img2 = img1.astype(np.float32), img2.astype(np.float32)
    flow = np.asarray(raft.estimate_flow(variables, img1, img2, variant=variant,
                                         iters=args.iters, corr=args.corr))
    flo_files.write_flo(args.out, flow)
    msg = (f'RAFT {variant}, {args.iters} iterations, {args.corr}: flow {flow.shape[1]}x'
           f'{flow.shape[0]} written to {args.out} (max |flow| '
           f'{float(np.linalg.norm(flow, axis=-1).max()):.2f} px)')
    if args.png:
      from PIL import Image  # pylint: disable=g-import-not-at-top
      from hybrid_jax import visualize  # pylint: disable=g-import-not-at-top
      Image.fromarray(np.asarray(visualize.flow_to_rgb(flow), np.uint8)).save(args.png)
      msg += f'\nvisualisation written to {args.png}'
  except errors.HybridJaxError as exc:
    print(f'error: {exc}', file=sys.stderr)
    return 2
  print(msg)
  return 0


if __name__ == '__main__':
  sys.exit(main())
