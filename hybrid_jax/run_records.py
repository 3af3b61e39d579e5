"""What a workdir holds, and for which config: so a rerun does no work twice, and a changed
config never silently reuses results it does not fit.

Every finished piece of a run writes a record of the config values that decide its result:

- a training stage (`seg`, `flow`, `track`): ``<workdir>/<stage>/record.json``;
- the val tracking: ``<workdir>/predictions/record.json`` (and one file per finished clip);
- the evaluation: ``<workdir>/report.json`` (the report's rows, to show again).

`check_stages` compares them with the current config before any work. A finished stage
trained with other values is named with the keys that differ; ``--config.force_stages=a,b``
trains those stages (and what was built on them) again in the same workdir. Tracking and
evaluation are simply redone when their values changed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from typing import Any, Mapping

from hybrid_jax import errors

STAGES = ('seg', 'flow', 'track')
RECORD_FILE = 'record.json'
REPORT_RECORD = 'report.json'
# Stages whose results are built on another's (the fusion conv is fitted on RAFT's flow and on
# the segmenter's predicted instances).
DOWNSTREAM = {'seg': ('track',), 'flow': ('track',), 'track': ()}
# Values that never change a result: where things live, how often to log, multi-host setup.
_IGNORED = {'mode', 'input', 'show', 'export', 'distributed', 'train', 'force_stages', 'preset',
            'data.dir', 'data.root', 'data.worker_count', 'seg.eval_every_steps',
            'track.eval_every_steps',
            # Same numbers, other device memory: how many frames a call takes, and the
            # training step's correlation (on-demand equals all-pairs to rounding).
            'track.frames_per_call', 'flow.train_corr'}
# Keys added after records were first written, with the value that gives the behaviour from
# before they existed: a record without one was made with that value, so an older finished
# stage is not reported as trained with other settings.
_ABSENT_MEANS = {'track.roi_input': 'image', 'seg.mask_resolution': 'quarter',
                 'seg.mask_pairs': 32, 'seg.train_crop': [0, 0],
                 'track.temporal_similarity': 'direct', 'track.temporal_backward_flow': False,
                 'track.fusion_objective': 'likelihood', 'track.fusion_targets': 'iou'}
# Data values only the val split depends on: the synthetic generator seeds every clip from
# (seed, split, index), so more val clips leave the train clips, and so every trained stage,
# as they are; on the real datasets the value is informational. A finished stage is reused
# when they change (a larger val split for a less noisy comparison needs no retraining);
# the tracking and the report are redone.
_VAL_ONLY = ('data.num_val_clips',)
# Tracker settings used at tracking time only (not by the track stage's training).
_TRACKING_ONLY = ('variant', 'temporal', 'mutual_check', 'threshold', 'temporal_threshold',
                  'memory_frames', 'matcher', 'temporal_backward', 'temporal_similarity',
                  'temporal_backward_flow')


def _flat(tree: Mapping, prefix: str = '') -> dict[str, Any]:
  out = {}
  for key, value in tree.items():
    path = f'{prefix}{key}'
    if hasattr(value, 'items'):
      out.update(_flat(value, path + '.'))
    else:
      out[path] = list(value) if isinstance(value, tuple) else value
  return out


def relevant(config, what: str) -> dict[str, Any]:
  """The flat config values that decide `what`: a stage, 'tracking' or 'evaluation'."""
  flat = {k: v for k, v in _flat(config.to_dict()).items()
          if k not in _IGNORED and k.split('.')[0] not in _IGNORED}
  data = {k: v for k, v in flat.items()
          if (k.startswith('data.') and k not in _VAL_ONLY) or k == 'seed'}
  if what == 'seg':
    return {**data, **{k: v for k, v in flat.items()
                       if k.startswith('seg.') and k != 'seg.test_scales'}}
  if what == 'flow':
    return {**data, **{k: v for k, v in flat.items()
                       if k.startswith('flow.') and k != 'flow.iters'}}
  if what == 'track':  # the head, and the fusion fitted on the run's flow (and segments)
    track = {k: v for k, v in flat.items() if k.startswith('track.')
             and k.split('.')[1] not in _TRACKING_ONLY}
    if track.get('track.roi_input', 'image') == 'image':
      track.pop('track.feature_dim', None)  # the image crop has no feature projection
    flow = {k: v for k, v in flat.items() if k.startswith('flow.')}
    seg = {}
    if ('predicted' in (flat.get('track.fusion_segments'), flat.get('track.head_segments'))
        or flat.get('track.roi_input', 'image') != 'image'):  # learns on the segmenter's outputs
      seg = {k: v for k, v in flat.items() if k.startswith('seg.')}
    return {**data, **track, **flow, **seg}
  if what == 'tracking':
    return {k: v for k, v in flat.items() if not k.startswith('eval.')}
  if what == 'evaluation':
    return flat
  raise ValueError(what)


def read(path: str) -> dict | None:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def write(path: str, record: Mapping[str, Any]) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(record, f, indent=1, sort_keys=True)
  os.replace(tmp, path)  # never a half-written record


def differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
  """'key: recorded -> current' for every value that differs (keys on either side)."""
  out = []
  for key in sorted(set(recorded) | set(current)):
    a = recorded.get(key, _ABSENT_MEANS.get(key, '<absent>'))
    b = current.get(key, '<absent>')
    if a != b:
      out.append(f'{key}: {a!r} -> {b!r}')
  return out


def same(recorded: Mapping[str, Any] | None, current: Mapping[str, Any]) -> bool:
  """Whether a stored record (None: none) says the same as `current`; a key the record
  predates counts as the value it was made with (`_ABSENT_MEANS`)."""
  return recorded is not None and not differences(recorded, current)


def stage_record_path(workdir: str, stage: str) -> str:
  return os.path.join(workdir, stage, RECORD_FILE)


def record_stage(config, workdir: str, stage: str) -> None:
  """Called when a stage has finished: what it was trained with."""
  write(stage_record_path(workdir, stage), relevant(config, stage))


def parse_force_stages(config) -> tuple[str, ...]:
  raw = str(config.get('force_stages', '') or '')
  stages = tuple(s.strip() for s in raw.split(',') if s.strip())
  bad = [s for s in stages if s not in STAGES]
  if bad:
    raise errors.ConfigError(f'config.force_stages={raw!r}: {bad} are not stages; name some of '
                             f'{list(STAGES)}, comma-separated.')
  return stages


def check_stages(config, workdir: str) -> None:
  """Before any work: a finished stage that does not fit the config is an error naming it.

  Stages in config.force_stages (and the stages built on them) are removed instead, so they
  are trained again; the val tracking and the report are redone after them.
  """
  forced = set(parse_force_stages(config))
  for stage in list(forced):
    forced.update(DOWNSTREAM[stage])
  for stage in STAGES:
    stage_dir = os.path.join(workdir, stage)
    if stage in forced:
      if os.path.isdir(stage_dir):
        logging.warning('force_stages: removing %s to train the %s stage again.', stage_dir,
                        stage)
        shutil.rmtree(stage_dir)
      continue
    recorded = read(stage_record_path(workdir, stage))
    if recorded is None:
      continue
    recorded = {k: v for k, v in recorded.items() if k not in _VAL_ONLY}  # older records
    diff = differences(recorded, relevant(config, stage))
    if diff:
      shown = '; '.join(diff[:6]) + (f'; and {len(diff) - 6} more' if len(diff) > 6 else '')
      again = ','.join([stage] + list(DOWNSTREAM[stage]))
      raise errors.ConfigError(
          f'The finished {stage!r} stage in {workdir} was trained with other settings ({shown}). '
          f'Use a new --workdir for this config, or pass --config.force_stages={again} to train '
          'it again here (the tracking and the report are redone after it).')
  if forced:
    for name in ('predictions', REPORT_RECORD):
      path = os.path.join(workdir, name)
      if os.path.isdir(path):
        shutil.rmtree(path)
      elif os.path.exists(path):
        os.remove(path)
