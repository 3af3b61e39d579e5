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
