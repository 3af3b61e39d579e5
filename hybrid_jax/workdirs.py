"""Work directories: create one and prove it is writable; hold it for one run at a time.

Run before any compute, so an unwritable or busy --workdir fails in one line, not after
training.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
import warnings

from hybrid_jax import errors


def data_dir(config, workdir: str) -> str:
  """Where TFDS files live: config.data.dir, or <workdir>/data."""
  if config.data.dir:
    return os.path.abspath(os.path.expanduser(config.data.dir))
  return os.path.join(workdir, 'data')


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


# ---- One run per workdir ---------------------------------------------------------------------

LOCK_FILE = '.hybrid_jax.lock'


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, owned by another user
    return True
  return True


@contextlib.contextmanager
def locked(workdir: str, *, enabled: bool = True):
  """Holds `<workdir>/.hybrid_jax.lock` for the block: one run per workdir at a time.

  The lock names its holder (pid, host, start time). A lock left by a process that no longer
  runs on this host is taken over with a warning; one held by a live process, or by another
  host, is a WorkdirError naming the holder and what to do.
  """
  if not enabled:
    yield
    return
  path = os.path.join(workdir, LOCK_FILE)
  me = {'pid': os.getpid(), 'host': socket.gethostname(),
        'started': time.strftime('%Y-%m-%d %H:%M:%S %Z')}
  for _ in range(2):
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      try:
        with open(path) as f:
          holder = json.load(f)
      except (OSError, ValueError):
        holder = {}
      pid, host = holder.get('pid'), holder.get('host')
      if host == me['host'] and isinstance(pid, int) and not _alive(pid):
        warnings.warn(f'{path}: taking over the lock of process {pid} (started '
                      f'{holder.get("started")}), which is no longer running.', stacklevel=3)
        os.remove(path)
        continue
      raise errors.WorkdirError(
          f'{workdir} is in use by another run (pid {pid} on {host}, started '
          f'{holder.get("started")}). Wait for it to finish or use another --workdir; if '
          f'that run is gone, delete {path}.') from None
    with os.fdopen(fd, 'w') as f:
      json.dump(me, f)
    break
  try:
    yield
  finally:
    try:
      with open(path) as f:
        if json.load(f).get('pid') == me['pid']:
          os.remove(path)
    except (OSError, ValueError):
      pass
