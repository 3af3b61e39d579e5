"""What the terminal shows during long work: one line per stage, progress bars; the rest is log.

`log_to_workdir` (called by `main` and the experiments) sends the libraries' log (absl, Orbax, TFDS at INFO) to ``<workdir>/logs/``; the
terminal keeps warnings, errors, the stage lines below and progress bars with rate and ETA.
Stage lines and bars show only when stderr is a terminal (a pipe or a CI log gets the log's
warnings and the results on stdout); every stage line is also written to the log.
``--alsologtostderr`` brings the whole log back to the terminal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from typing import Iterable


def log_to_workdir(workdir: str | None) -> str | None:
  """The libraries' INFO log goes to <workdir>/logs/; the terminal keeps warnings and errors.

  Returns the log folder, or None when the log stays on the terminal: --alsologtostderr (or
  --logtostderr) keeps absl's default, and an unwritable workdir is reported later by the
  command itself.
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  if not workdir or flags.FLAGS.logtostderr or flags.FLAGS.alsologtostderr:
    return None
  log_dir = os.path.join(os.path.abspath(os.path.expanduser(workdir)), 'logs')
  try:
    os.makedirs(log_dir, exist_ok=True)
  except OSError:
    return None
  absl_logging.get_absl_handler().use_absl_log_file('hybrid_jax', log_dir)
  flags.FLAGS.stderrthreshold = 'warning'
  return log_dir


def interactive() -> bool:
  """Stage lines and bars are for a person at a terminal (process 0 of a job only)."""
  if not sys.stderr.isatty():
    return False
  import jax  # pylint: disable=g-import-not-at-top
  return jax.process_index() == 0


def say(text: str) -> None:
  """One line for the person at the terminal (and the log)."""
  logging.info('%s', text)
  if interactive():
    print(text, file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
  return f'{seconds:.0f} s' if seconds < 90 else f'{seconds / 60:.1f} min'


@contextlib.contextmanager
def stage(name: str, what: str):
  """``with stage('seg', 'training the segmenter') as result: ... result['summary'] = ...``

  Prints ``[seg] training the segmenter ...`` when entered and ``[seg] done in 4.1 min:
  <summary>`` when left (``[seg] stopped after ...`` on an error).
  """
  say(f'[{name}] {what} ...')
  t0 = time.perf_counter()
  result: dict = {}
  try:
    yield result
  except BaseException:
    say(f'[{name}] stopped after {_duration(time.perf_counter() - t0)}')
    raise
  summary = result.get('summary')
  seconds = time.perf_counter() - t0
  logging.info('stage_seconds %s %.2f', name.replace(' ', '_'), seconds)  # for profiles
  say(f'[{name}] done in {_duration(seconds)}' + (f': {summary}' if summary else ''))


def progress(iterable: Iterable | None = None, *, desc: str, unit: str = 'it',
             total: int | None = None, enabled: bool = True):
  """A tqdm bar over `iterable` (or a manual one with `total`), shown only on a terminal.

  Hidden when stderr is not a terminal (logs and pipes stay clean), when `enabled` is False,
  and on every process but the first of a multi-host job.
  """
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  show = enabled and interactive()
  return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not show, **bar_width())


def bar_width() -> dict:
  """tqdm size options: follow the terminal, or 100x20 where it reports no size (tqdm would
  otherwise draw an empty bar, or hide it below a screen of 0 rows)."""
  try:
    size = os.get_terminal_size(sys.stderr.fileno())
  except OSError:
    size = os.terminal_size((0, 0))
  if size.columns > 0 and size.lines > 0:
    return {'dynamic_ncols': True}
  return {'ncols': 100, 'nrows': 20}
