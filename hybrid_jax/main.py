r"""Command-line entry point: parse flags, then call the library.

  python -m hybrid_jax.main --config configs/synthetic.py --workdir /tmp/demo [--config.x=y]

Everything this does is available without flags from a notebook:
``hybrid_jax.train.run(config, workdir)`` with a config from ``configs/<name>.py:get_config()``
(``train.train_and_evaluate(config, workdir)`` for the whole pipeline).
"""

from __future__ import annotations

import logging
import os
import sys
import threading

from absl import app
from absl import flags
from ml_collections import config_flags

from hybrid_jax.cli import flag_parsing
from hybrid_jax import console
from hybrid_jax import errors

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Config file, e.g. configs/synthetic.py or configs/synthetic.py:tiny.',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for data, checkpoints and outputs.')


def _log_background_errors() -> None:
  """Errors in library threads (the checkpointer's writers) become one log line each.

  The failure they cause reaches the main thread anyway (as the error of the step that
  waited for them); without this, one full disk printed hundreds of tracebacks.
  """
  def thread_hook(args):
    logging.error('background thread %s: %s: %s', getattr(args.thread, 'name', '?'),
                  args.exc_type.__name__, args.exc_value)

  def unraisable_hook(unraisable):
    logging.debug('ignored in %r: %r', unraisable.object, unraisable.exc_value)

  threading.excepthook = thread_hook
  sys.unraisablehook = unraisable_hook
  logging.captureWarnings(True)  # Python warnings as one log line each, like the others


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  _log_background_errors()
  log_dir = console.log_to_workdir(_WORKDIR.value)
  from hybrid_jax import train  # imported after flag parsing: keeps --help fast
  from hybrid_jax.training import mesh
  from hybrid_jax.training import writers
  from hybrid_jax.training import loop
  try:
    # Multi-host: join the job before anything touches a JAX device.
    mesh.initialize_distributed(_CONFIG.value.distributed)
    logging.info('platform: %s', writers.platform_info())
    if log_dir:
      console.say(f'log: {log_dir} (--alsologtostderr shows it here)')
    train.run(_CONFIG.value, _WORKDIR.value)
  except errors.HybridJaxError as exc:
    print(f'error: {exc}', file=sys.stderr)
    sys.exit(2)
  except loop.Preempted as exc:
    print(exc, file=sys.stderr)
    sys.exit(exc.code)
  except KeyboardInterrupt:
    print('interrupted: finished stages and checkpoints are kept; rerun the same command to '
          'resume.', file=sys.stderr)
    sys.exit(130)
  except Exception as exc:  # pylint: disable=broad-except  # only a full disk is handled here
    full = errors.disk_full(exc)
    if full is None:
      raise
    print(f'error: {full}', file=sys.stderr)
    # Skip interpreter shutdown: the checkpointer's writer threads that lost the race with
    # the full disk would only print tracebacks of the same failure.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(2)  # pylint: disable=protected-access


def _entry():
  flags.mark_flags_as_required(['config', 'workdir'])
  app.run(main, flags_parser=flag_parsing.parse_flags)


if __name__ == '__main__':
  _entry()
