"""Named exceptions for mistakes a user can make.

Every error a user can cause (a missing dataset folder, a bad config value, a malformed
prediction file, a checkpoint of the wrong architecture) raises one of these with a message
that names the thing and says what to do. ``main`` prints the message without a traceback.
"""


class HybridJaxError(Exception):
  """Base class: a problem the user can fix; the message says how."""


class ConfigError(HybridJaxError):
  """A config value is missing, mistyped or out of range."""


class DatasetError(HybridJaxError):
  """A dataset folder is missing, unreadable or in the wrong layout."""


class FormatError(HybridJaxError):
  """A file (PNG, JSON, .flo, video) is malformed or inconsistent with its partner."""


class CheckpointError(HybridJaxError):
  """A checkpoint is missing, corrupt, or belongs to another architecture/config."""


class WorkdirError(HybridJaxError):
  """The work directory cannot be created or written."""


class TrainingDivergedError(HybridJaxError):
  """Too many consecutive non-finite steps."""


def disk_full(exc: BaseException) -> str | None:
  """The message for an error caused by a full disk (anywhere in its chain), else None."""
  import errno  # pylint: disable=g-import-not-at-top
  seen = set()
  while exc is not None and id(exc) not in seen:
    seen.add(id(exc))
    # Orbax / tensorstore report it as a ValueError carrying the OS message and code.
    text = str(exc)
    if ((isinstance(exc, OSError) and exc.errno == errno.ENOSPC)
        or 'No space left on device' in text or "os_error_code='28'" in text):
      filename = getattr(exc, 'filename', None)
      where = f' while writing {filename}' if filename else ''
      return (f'no space left on the device{where}. Free some space (or choose another '
              '--workdir / config.data.dir) and rerun the same command: finished stages and '
              'the last complete checkpoint are kept.')
    exc = exc.__cause__ or exc.__context__
  return None
