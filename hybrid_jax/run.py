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
from hybrid_jax import workdirs


def ensure_workdir(workdir: str) -> str:
  """Creates `workdir` and checks it is writable, before any compute (WorkdirError if not)."""
  return workdirs.ensure_writable_dir(workdir)


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


def _experiment(name: str) -> Callable:
  def fn(config, workdir):
    from hybrid_jax import experiment
    return getattr(experiment, name)(config, workdir)
  fn.__name__ = f'mode_{name}'
  return fn


def mode_track(config, workdir):
  """config.input set: track that video (track_video); else the val split (experiment)."""
  if config.get('input'):
    from hybrid_jax import track_video
    return track_video.track_video(config, workdir, config.input)
  from hybrid_jax import experiment
  return experiment.track(config, workdir)


MODES: dict[str, Callable] = {
    'data': mode_data,
    'show': mode_show,
    'export': mode_export,
    'train_seg': _experiment('train_seg'),
    'train_flow': _experiment('train_flow'),
    'train_track': _experiment('train_track'),
    'track': mode_track,
    'eval': _experiment('evaluate'),
    'all': _experiment('train_and_evaluate'),
}
assert set(MODES) == set(config_checks.MODES)


def run(config, workdir: str):
  """Checks the config and the workdir, then runs the selected mode."""
  config_checks.check_config(config)
  workdir = ensure_workdir(workdir)
  logging.info('mode=%s workdir=%s', config.mode, workdir)
  return MODES[config.mode](config, workdir)
