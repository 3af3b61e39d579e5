"""Reading PyTorch checkpoint files safely: ``torch.load(weights_only=True)``, clear refusals.

Only tensors and plain containers are loaded; a pickle that asks for any other Python object
is refused without running it. Every failure is a CheckpointError that says what the file is
not and what file to pass instead.
"""

from __future__ import annotations

import os
import re
from typing import Any

from hybrid_jax import errors

_HINT = 'Pass the .pth / .pt file written by torch.save (a state dict, or a dict holding one).'


def load(path: str) -> Any:
  """The object stored in `path` (tensors and containers only)."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as exc:
    raise errors.CheckpointError('Reading .pth files needs PyTorch: pip install -e .[convert]'
                                 ) from exc
  if not os.path.isfile(path):
    raise errors.CheckpointError(f'{path} does not exist or is not a file. {_HINT}')
  if os.path.getsize(path) == 0:
    raise errors.CheckpointError(f'{path} is empty (0 bytes), not a PyTorch checkpoint. {_HINT}')
  try:
    return torch.load(path, map_location='cpu', weights_only=True)
  except Exception as exc:  # pylint: disable=broad-except  # pickle, zip and torch errors
    text = str(exc)
    found = re.search(r'Unsupported global: GLOBAL ([\w.]+)', text)
    if found:  # a real pickle asking for a Python object (anything else is not a checkpoint)
      what = f' ({found.group(1)})'
      raise errors.CheckpointError(
          f'{path} holds Python objects besides tensors{what}; hybrid_jax loads weights only '
          '(torch.load(weights_only=True)) and does not run such pickles. Save the weights '
          'alone, e.g. torch.save(model.state_dict(), "weights.pth"), and convert that file.'
          ) from None
    raise errors.CheckpointError(
        f'{path} is not a PyTorch checkpoint torch.load can read ({type(exc).__name__}). '
        f'{_HINT}') from None
