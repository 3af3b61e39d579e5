"""One check for every directory the library writes into: create it, prove it is writable.

Run before any compute, so an unwritable --workdir fails in one line, not after training.
"""

from __future__ import annotations

import os
import uuid

from hybrid_jax import errors


def ensure_writable_dir(path: str) -> str:
  """Creates `path` (and parents), writes and removes a probe file; returns the absolute path.

  Raises:
    WorkdirError: no path given, or the directory cannot be created or written.
  """
  if not path:
    raise errors.WorkdirError('No --workdir given; pass a directory for outputs.')
  path = os.path.abspath(os.path.expanduser(path))
  probe = os.path.join(path, f'.write_test_{uuid.uuid4().hex}')
  try:
    os.makedirs(path, exist_ok=True)
    with open(probe, 'w') as f:
      f.write('ok')
    os.remove(probe)
  except OSError as exc:
    raise errors.WorkdirError(
        f'Cannot write to the workdir {path}: {exc.strerror or exc}. '
        'Choose another --workdir or fix its permissions.') from exc
  return path
