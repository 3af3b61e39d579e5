"""Reading and writing the layouts' JSON files, with errors that name the file."""

from __future__ import annotations

import json
import os

from hybrid_jax import errors


def write_json(path: str, obj) -> None:
  """Writes `obj` to `path` (parents created); WorkdirError when it cannot be written."""
  try:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
      json.dump(obj, f)
  except OSError as exc:
    raise errors.WorkdirError(f'Cannot write {path}: {exc}') from exc


def read_json(path: str, *, what: str = ''):
  """The parsed JSON at `path`.

  Raises:
    DatasetError: the file is missing or unreadable (`what` names it: 'Ground-truth json').
    FormatError: it is not valid JSON (line and column in the message).
  """
  label = f'{what} ' if what else ''
  if not os.path.isfile(path):
    raise errors.DatasetError(f'{label}{path} does not exist.')
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as exc:
    raise errors.FormatError(f'{label}{path}: malformed JSON at line {exc.lineno} column '
                             f'{exc.colno} (char {exc.pos}): {exc.msg}.') from exc
  except (OSError, UnicodeDecodeError) as exc:
    raise errors.DatasetError(f'Cannot read {label}{path}: {exc}') from exc
