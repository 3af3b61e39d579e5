"""absl flag parsing for the config-driven commands (`hybrid_jax.main`, `experiments/*.py`).

absl's parser with the mistakes a user makes in a config reported in one line (exit 2)
instead of a traceback from inside ml_collections.
"""

from __future__ import annotations

import sys

from absl import flags


def parse_flags(argv):
  """`flags.FLAGS(argv)`; unknown keys, bad values and bad config files exit with one line."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as exc:
    msg = str(exc)
    if 'Traceback (most recent call last)' in msg:
      # ml_collections embeds the config file's traceback; its last line is the message.
      head = msg.split('\n', 1)[0].rstrip(': ')
      last = [ln for ln in msg.strip().splitlines() if ln.strip()][-1].strip()
      msg = f'{head}: {last.split(": ", 1)[-1]}'
    print(f'error: {msg}\nPass --helpshort for the flags.', file=sys.stderr)
    sys.exit(2)
  except (KeyError, AttributeError, ValueError, TypeError, FileNotFoundError) as exc:
    # ml_collections raises these for unknown keys, bad presets and bad config files.
    msg = (str(exc.args[0]) if exc.args else str(exc)).replace('\n', ' ')
    if isinstance(exc, KeyError):
      msg = f'unknown config key {msg}'
    print(f'error: invalid config: {msg}', file=sys.stderr)
    sys.exit(2)
