r"""Command-line entry point: parse flags, then call the library.

  python -m hybrid_jax.main --config configs/synthetic.py --workdir /tmp/demo [--config.x=y]

Everything this does is available without flags from a notebook:
``hybrid_jax.train.run(config, workdir)`` with a config from ``configs/<name>.py:get_config()``
(``train.train_and_evaluate(config, workdir)`` for the whole pipeline).
"""

from __future__ import annotations

import logging
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from hybrid_jax.cli import flag_parsing
from hybrid_jax import errors

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Config file, e.g. configs/synthetic.py or configs/synthetic.py:tiny.',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for data, checkpoints and outputs.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  from hybrid_jax import train  # imported after flag parsing: keeps --help fast
  from hybrid_jax.training import mesh
  from hybrid_jax.training import writers
  try:
    # Multi-host: join the job before anything touches a JAX device.
    mesh.initialize_distributed(_CONFIG.value.distributed)
    logging.info('platform: %s', writers.platform_info())
    train.run(_CONFIG.value, _WORKDIR.value)
  except errors.HybridJaxError as exc:
    print(f'error: {exc}', file=sys.stderr)
    sys.exit(2)


def _entry():
  flags.mark_flags_as_required(['config', 'workdir'])
  app.run(main, flags_parser=flag_parsing.parse_flags)


if __name__ == '__main__':
  _entry()
