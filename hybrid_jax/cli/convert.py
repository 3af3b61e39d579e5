"""python -m hybrid_jax.cli.convert {raft|resnet50|panoptic_fcn} IN OUT [options]

Converts public PyTorch checkpoints into hybrid_jax pretrained checkpoints
(see `hybrid_jax.training.pretrained`). torch is an optional extra: `pip install -e .[convert]`.
"""

from __future__ import annotations

import argparse
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


def main(argv=None) -> int:
  args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
  opts = {k: v for k, v in vars(args).items() if k not in ('kind', 'input', 'output')}
  try:
    report = CONVERTERS[args.kind].convert_file(args.input, args.output, **opts)
  except errors.HybridJaxError as exc:
    print(f'error: {exc}', file=sys.stderr)
    return 2
  if report:
    print(report)
  return 0


if __name__ == '__main__':
  sys.exit(main())
