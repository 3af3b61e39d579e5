"""Library entry point: ``run(config, workdir)`` dispatches on ``config.mode``.

The modes form an explicit registry (no import magic). A notebook calls the same functions::

  from configs import synthetic
  from hybrid_jax import run
  run.run(synthetic.get_config('tiny'), '/tmp/tiny')
"""

from __future__ import annotations

import logging
import os
from typing import Callable

from hybrid_jax import config_checks
from hybrid_jax import errors


def ensure_workdir(workdir: str) -> str:
  """Creates `workdir` and checks it is writable, before any compute (WorkdirError if not)."""
  if not workdir:
    raise errors.WorkdirError('No --workdir given; pass a directory for outputs.')
  workdir = os.path.abspath(os.path.expanduser(workdir))
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, '.write_test')
    with open(probe, 'w') as f:
      f.write('ok')
    os.remove(probe)
  except OSError as exc:
    raise errors.WorkdirError(
        f'Cannot write to the workdir {workdir}: {exc.strerror or exc}. '
        'Choose another --workdir or fix its permissions.') from exc
  return workdir


def data_dir(config, workdir: str) -> str:
  """Where TFDS files live: config.data.dir, or <workdir>/data."""
  return os.path.abspath(os.path.expanduser(config.data.dir)) if config.data.dir else os.path.join(workdir, 'data')


def _not_available(mode: str, issue: str) -> Callable:
  def fn(config, workdir):
    raise errors.NotAvailableYet(
        f"mode '{mode}' is not available yet ({issue}). Modes that work now: "
        f"{', '.join(m for m, f in MODES.items() if not getattr(f, 'placeholder', False))}.")
  fn.placeholder = True
  return fn


def mode_data(config, workdir):
  from hybrid_jax.data import datasets
  return datasets.prepare(config, data_dir(config, workdir))


def mode_show(config, workdir):
  from hybrid_jax.data import show
  return show.show_clip(config, workdir, data_dir(config, workdir))


def mode_export(config, workdir):
  from hybrid_jax.data import export
  return export.export_split(config, workdir, data_dir(config, workdir))


MODES: dict[str, Callable] = {
    'data': mode_data,
    'show': mode_show,
    'export': mode_export,
    'train_seg': _not_available('train_seg', 'segmenter training, issue 6'),
    'train_flow': _not_available('train_flow', 'RAFT training, issue 5'),
    'train_track': _not_available('train_track', 'tracker training, issue 7'),
    'track': _not_available('track', 'the tracker, issue 7'),
    'eval': _not_available('eval', 'tracking evaluation, issue 7'),
    'all': _not_available('all', 'the end-to-end pipeline, issue 7'),
}
assert set(MODES) == set(config_checks.MODES)


def run(config, workdir: str):
  """Checks the config and the workdir, then runs the selected mode."""
  config_checks.check_config(config)
  workdir = ensure_workdir(workdir)
  logging.info('mode=%s workdir=%s', config.mode, workdir)
  return MODES[config.mode](config, workdir)
