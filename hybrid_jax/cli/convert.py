"""python -m hybrid_jax.cli.convert {raft|resnet50|panoptic_fcn} IN OUT [options]

Converts public PyTorch checkpoints into hybrid_jax pretrained checkpoints
(see `hybrid_jax.training.pretrained`). torch is an optional extra: `pip install -e .[convert]`.
"""

from __future__ import annotations

import argparse
import os
import sys

from hybrid_jax import errors
from hybrid_jax.convert import panoptic_fcn
from hybrid_jax.convert import raft
from hybrid_jax.convert import resnet

# name -> module exposing `add_arguments(parser)` and `convert_file(in_path, out_path, **opts)`.
CONVERTERS = {'raft': raft, 'resnet50': resnet, 'panoptic_fcn': panoptic_fcn}


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog='python -m hybrid_jax.cli.convert', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest='kind', required=True)
  for name, module in CONVERTERS.items():
    p = sub.add_parser(name)
    p.add_argument('input', help='PyTorch checkpoint (.pth / .pkl)')
    p.add_argument('output', help='output directory for the converted checkpoint')
    module.add_arguments(p)
  return parser


def check_output_dir(out: str) -> None:
  """OUT must be a new (or empty) folder: checked before the conversion, not after it."""
  from hybrid_jax.training import pretrained  # pylint: disable=g-import-not-at-top
  if os.path.isfile(out):
    raise errors.CheckpointError(f'{out} is a file; OUT is the folder the converted checkpoint '
                                 'goes to: choose a new folder name.')
  if os.path.isdir(out) and os.listdir(out):
    held = os.path.exists(os.path.join(out, pretrained.VARIABLES_DIR))
    raise errors.CheckpointError(
        f'{out} already holds {"a checkpoint" if held else "files"}; choose a new folder (or '
        'delete that one) so nothing is overwritten.')
  parent = os.path.dirname(os.path.abspath(out))
  if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
    raise errors.CheckpointError(f'Cannot create {out}: {parent} does not exist or is not '
                                 'writable.')


def main(argv=None) -> int:
  args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
  opts = {k: v for k, v in vars(args).items() if k not in ('kind', 'input', 'output')}
  try:
    check_output_dir(args.output)
    report = CONVERTERS[args.kind].convert_file(args.input, args.output, **opts)
  except errors.HybridJaxError as exc:
    print(f'error: {exc}', file=sys.stderr)
    return 2
  if report:
    print(report)
  return 0


if __name__ == '__main__':
  sys.exit(main())
