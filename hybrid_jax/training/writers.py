"""Training logs: TensorBoard events, a JSON-lines metrics file, progress, platform, config.

Only process 0 writes files; other processes get a writer that does nothing, so the loop
calls it unconditionally. TensorBoard files are written with tensorboardX (no TensorFlow).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any, Mapping

import jax
import numpy as np

METRICS_FILE = 'metrics.jsonl'
EVENTS_SUBDIR = 'events'
CONFIG_FILE = 'config.json'
PLATFORM_FILE = 'platform.json'


class MetricWriter:
  """Writes scalars to `<dir>/events` (TensorBoard) and `<dir>/metrics.jsonl`.

  Each JSON line is {"step": int, "time": unix seconds, name: float, ...}.
  """

  def __init__(self, directory: str, *, enabled: bool | None = None,
               resume_step: int | None = None):
    """resume_step: the step training continues from; lines logged after it by the interrupted
    run (steps the resumed run trains again) are dropped, so every step appears once."""
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self._tb = None
    self._jsonl = None
    if self.enabled:
      path = os.path.join(directory, METRICS_FILE)
      if resume_step is not None:
        _truncate_after(path, resume_step)
      self._tb = _import_summary_writer()(os.path.join(directory, EVENTS_SUBDIR))
      self._jsonl = open(path, 'a')

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    if not self.enabled:
      return
    values = {k: float(np.asarray(v)) for k, v in scalars.items()}
    for name, value in values.items():
      self._tb.add_scalar(name, value, step)
    self._jsonl.write(json.dumps({'step': int(step), 'time': time.time(), **values}) + '\n')
    self._jsonl.flush()

  def write_text(self, tag: str, text: str, step: int = 0) -> None:
    if self.enabled:
      self._tb.add_text(tag, text, step)

  def flush(self) -> None:
    if self.enabled:
      self._tb.flush()
      self._jsonl.flush()

  def close(self) -> None:
    if self.enabled:
      self._tb.close()
      self._jsonl.close()
      self.enabled = False


def _truncate_after(path: str, step: int) -> None:
  """Keeps the lines of `path` (metrics.jsonl) whose step is <= `step`."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = f.readlines()
  keep = []
  for line in lines:
    try:
      if int(json.loads(line)['step']) <= step:
        keep.append(line)
    except (ValueError, KeyError, TypeError):
      continue  # a line cut off by the interruption
  if len(keep) != len(lines):
    with open(path, 'w') as f:
      f.writelines(keep)


def _import_summary_writer():
  """tensorboardX.SummaryWriter, imported without dragging in PyTorch.

  tensorboardX's writer module runs `import torch` only to accept torch tensors, which costs
  seconds and hundreds of MB when torch (an optional extra here) is installed. Hiding torch
  during that one import makes it fall back to numpy-only behaviour; we only log floats.
  """
  if 'tensorboardX' in sys.modules or 'torch' in sys.modules:
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    return SummaryWriter
  sys.modules['torch'] = None  # makes `import torch` raise ImportError
  try:
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
  finally:
    del sys.modules['torch']
  return SummaryWriter


def platform_info() -> dict[str, Any]:
  """Devices, process count and library versions, as logged at the start of training."""
  import flax  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  devices = jax.devices()
  return {
      'backend': jax.default_backend(),
      'device_kind': devices[0].device_kind,
      'device_count': jax.device_count(),
      'local_device_count': jax.local_device_count(),
      'process_index': jax.process_index(),
      'process_count': jax.process_count(),
      'python': sys.version.split()[0],
      'jax': jax.__version__,
      'flax': flax.__version__,
      'optax': optax.__version__,
      'orbax_checkpoint': getattr(ocp, '__version__', 'unknown'),
  }


def _jsonable(value):
  if hasattr(value, 'to_dict'):
    value = value.to_dict()
  if isinstance(value, Mapping):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if isinstance(value, (str, int, float, bool)) or value is None:
    return value
  return repr(value)


def save_config(directory: str, config: Any, filename: str = CONFIG_FILE) -> str:
  """Writes the resolved config (ConfigDict or dict) as JSON; process 0 only."""
  path = os.path.join(directory, filename)
  if jax.process_index() == 0:
    with open(path, 'w') as f:
      json.dump(_jsonable(config), f, indent=2, sort_keys=True)
  return path


class Progress:
  """Steps/s and ETA between calls, plus a tqdm bar when stderr is a terminal (else quiet)."""

  def __init__(self, *, start_step: int, num_steps: int, desc: str = 'train',
               use_tqdm: bool | None = None):
    self.num_steps = num_steps
    self._last_step = start_step
    self._last_time = time.perf_counter()
    if use_tqdm is None:
      use_tqdm = jax.process_index() == 0 and sys.stderr.isatty()
    self._bar = None
    if use_tqdm:
      from tqdm import tqdm  # pylint: disable=g-import-not-at-top
      from hybrid_jax import console  # pylint: disable=g-import-not-at-top
      self._bar = tqdm(total=num_steps, initial=start_step, desc=desc, **console.bar_width())

  def update(self, step: int, postfix: Mapping[str, float] | None = None) -> None:
    """Advances the bar to `step` (steps completed)."""
    if self._bar is not None:
      self._bar.update(step - self._bar.n)
      if postfix:
        self._bar.set_postfix({k: f'{v:.4g}' for k, v in postfix.items()}, refresh=False)

  def rate(self, step: int) -> dict[str, float]:
    """{'steps_per_sec', 'eta_sec'} since the previous call (at a log step)."""
    now = time.perf_counter()
    dt = max(now - self._last_time, 1e-9)
    rate = (step - self._last_step) / dt
    self._last_step, self._last_time = step, now
    eta = (self.num_steps - step) / rate if rate > 0 else float('inf')
    return {'steps_per_sec': rate, 'eta_sec': eta}

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
      self._bar = None


def log_platform(directory: str | None = None) -> dict[str, Any]:
  info = platform_info()
  logging.info('Platform: %s', json.dumps(info, sort_keys=True))
  if directory is not None and jax.process_index() == 0:
    with open(os.path.join(directory, PLATFORM_FILE), 'w') as f:
      json.dump(info, f, indent=2, sort_keys=True)
  return info
