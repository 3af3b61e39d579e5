"""python -m hybrid_jax.convert {raft|resnet50|panoptic_fcn} IN OUT [options]

Converts public PyTorch checkpoints into hybrid_jax pretrained checkpoints
(see `hybrid_jax.training.pretrained`). torch is an optional extra: `pip install -e .[convert]`.
"""

from __future__ import annotations

import importlib
import sys

from hybrid_jax import errors

# name -> module exposing `add_arguments(parser)` and `convert_file(in_path, out_path, **opts)`.
CONVERTERS = {
    'raft': 'hybrid_jax.convert.raft',
    'resnet50': 'hybrid_jax.convert.resnet',
    'panoptic_fcn': 'hybrid_jax.convert.panoptic_fcn',
}


def main(argv=None) -> int:
  import argparse
  argv = sys.argv[1:] if argv is None else argv
  parser = argparse.ArgumentParser(prog='python -m hybrid_jax.convert', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest='kind', required=True)
  modules = {}
  for name, modname in CONVERTERS.items():
    p = sub.add_parser(name)
    p.add_argument('input', help='PyTorch checkpoint (.pth / .pkl)')
    p.add_argument('output', help='output directory for the converted checkpoint')
    try:
      mod = importlib.import_module(modname)
    except ModuleNotFoundError as exc:
      if exc.name != modname:
        raise
      mod = None
    modules[name] = mod
    if mod is not None and hasattr(mod, 'add_arguments'):
      mod.add_arguments(p)
  args = parser.parse_args(argv)
  mod = modules[args.kind]
  if mod is None:
    print(f'error: the {args.kind} converter is not available yet.', file=sys.stderr)
    return 2
  opts = {k: v for k, v in vars(args).items() if k not in ('kind', 'input', 'output')}
  try:
    report = mod.convert_file(args.input, args.output, **opts)
  except errors.HybridJaxError as exc:
    print(f'error: {exc}', file=sys.stderr)
    return 2
  if report:
    print(report)
  return 0


if __name__ == '__main__':
  sys.exit(main())
