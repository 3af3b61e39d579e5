"""What the terminal shows during long work: progress bars, quiet when not a terminal."""

from __future__ import annotations

import sys
from typing import Iterable


def progress(iterable: Iterable | None = None, *, desc: str, unit: str = 'it',
             total: int | None = None, enabled: bool = True):
  """A tqdm bar over `iterable` (or a manual one with `total`), shown only on a terminal.

  Hidden when stderr is not a terminal (logs and pipes stay clean), when `enabled` is False,
  and on every process but the first of a multi-host job.
  """
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  show = enabled and sys.stderr.isatty()
  if show:
    import jax  # pylint: disable=g-import-not-at-top
    show = jax.process_index() == 0
  return tqdm(iterable, total=total, desc=desc, unit=unit, dynamic_ncols=True, disable=not show)
