"""One validation of the whole config: every value's range and finiteness, every choice, and
the combinations (crops vs frames, batches vs devices, VPQ windows vs clip lengths).

Called once at the start of every run (`train.run`, the experiments) so that a bad value stops
with one clear message (`ConfigError`) before any data is generated or any model is compiled.
ml_collections' locking already catches mistyped keys and wrong types.
"""

from __future__ import annotations

import logging
import math

from hybrid_jax import errors

MODES = ('all', 'data', 'show', 'export', 'train_seg', 'train_flow', 'train_track',
         'track', 'eval')


def _fail(key, value, what):
  raise errors.ConfigError(f'config.{key}={value!r}: {what}')


def _positive(cfg, key, path):
  value = cfg[key]
  if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
      or value <= 0):
    _fail(f'{path}.{key}', value, 'must be a positive (finite) number.')


def _at_least(cfg, key, path, low):
  value = cfg[key]
  if isinstance(value, bool) or not isinstance(value, int) or value < low:
    _fail(f'{path}.{key}', value, f'must be an integer >= {low}.')


def _unit_interval(cfg, key, path):
  value = cfg[key]
  if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
      or not 0 <= value <= 1):
    _fail(f'{path}.{key}', value, 'must lie in [0, 1].')


def _finite_everywhere(tree, path=''):
  """Every float leaf (nested dicts, tuples) is finite: NaN / inf fail here, not in step 1."""
  items = tree.items() if hasattr(tree, 'items') else ()
  for key, value in items:
    where = f'{path}.{key}' if path else str(key)
    if hasattr(value, 'items'):
      _finite_everywhere(value, where)
    elif isinstance(value, float) and not math.isfinite(value):
      _fail(where, value, 'must be a finite number.')
    elif isinstance(value, (tuple, list)):
      for v in value:
        if isinstance(v, float) and not math.isfinite(v):
          _fail(where, tuple(value), 'must hold finite numbers only.')


def _choice(cfg, key, path, choices):
  if cfg[key] not in choices:
    _fail(f'{path}.{key}', cfg[key], f'must be one of {list(choices)}.')


def check_config(config) -> None:
  """Raises ConfigError naming the first invalid value."""
  if config.mode not in MODES:
    _fail('mode', config.mode, f'must be one of {list(MODES)}.')
  _finite_everywhere(config)
  if 'force_stages' in config:
    from hybrid_jax import run_records  # noqa: PLC0415 (lazy)
    run_records.parse_force_stages(config)
  _check_data(config)
  _check_stages(config)
  _check_track(config)
  _check_eval(config)
  _check_train(config)
  _check_export(config)


def _check_data(config) -> None:
  from hybrid_jax.data import categories as categories_lib  # noqa: PLC0415 (lazy)
  from hybrid_jax.data import datasets  # noqa: PLC0415 (lazy)
  d = config.data
  _choice(d, 'name', 'data', tuple(datasets.REGISTRY))
  _choice(d, 'categories', 'data', tuple(categories_lib.TABLES))
  if 'worker_count' in d:
    _at_least(d, 'worker_count', 'data', 0)
  for key in ('height', 'width', 'clip_length', 'label_every', 'num_train_clips',
              'num_val_clips', 'max_instances', 'crop_height', 'crop_width', 'max_delta'):
    if key in d:
      _positive(d, key, 'data')
  if d.crop_height > d.height or d.crop_width > d.width:
    _fail('data.crop_height/crop_width', (d.crop_height, d.crop_width),
          f'the crop must fit in the frame ({d.height}x{d.width}).')
  if d.max_delta > d.clip_length - 1:
    _fail('data.max_delta', d.max_delta,
          f'a frame pair (t - delta, t) needs delta <= clip_length - 1 = {d.clip_length - 1}.')
  if 'label_every' in d and d.label_every > d.clip_length:
    _fail('data.label_every', d.label_every,
          f'no frame of a {d.clip_length}-frame clip would be labelled.')


def _check_stages(config) -> None:
  for stage in ('seg', 'flow', 'track'):
    if stage in config and 'train' in config[stage]:
      t = config[stage].train
      for key in ('steps', 'batch_size', 'lr'):
        _positive(t, key, f'{stage}.train')
      _choice(t, 'optimizer', f'{stage}.train', ('adamw', 'adam', 'sgd'))
      if 'grad_clip_mode' in t:
        _choice(t, 'grad_clip_mode', f'{stage}.train', ('norm', 'value'))
      _choice(t, 'schedule', f'{stage}.train', ('constant', 'cosine', 'onecycle', 'step', 'poly'))
      for key in ('weight_decay', 'warmup_steps', 'grad_clip', 'momentum'):
        if key in t and (isinstance(t[key], bool) or t[key] < 0):
          _fail(f'{stage}.train.{key}', t[key], 'must be >= 0.')
      _batch_fits_devices(t.batch_size, f'{stage}.train.batch_size')
  if 'seg' in config and 'test_scales' in config.seg:
    from hybrid_jax.models.panoptic_fcn import build as pfcn_build  # noqa: PLC0415 (lazy)
    pfcn_build.check_test_scales(config.seg.test_scales)
  if 'seg' in config and 'position_deform' in config.seg:
    _choice(config.seg, 'position_deform', 'seg', ('v2', 'v1', 'none'))
  if 'seg' in config and 'eval_every_steps' in config.seg:
    _at_least(config.seg, 'eval_every_steps', 'seg', 0)
  if 'seg' in config:
    from hybrid_jax.models import resnet  # noqa: PLC0415 (lazy)
    _choice(config.seg, 'backbone', 'seg', tuple(resnet.RESNETS))
    if 'mask_resolution' in config.seg:
      from hybrid_jax.models.panoptic_fcn import targets as pfcn_targets  # noqa: PLC0415
      _choice(config.seg, 'mask_resolution', 'seg', pfcn_targets.MASK_RESOLUTIONS)
    if 'mask_pairs' in config.seg:
      _positive(config.seg, 'mask_pairs', 'seg')
  for stage in ('seg', 'flow'):
    if stage in config and 'train_crop' in config[stage]:
      _check_train_crop(config, stage)
  if 'flow' in config:
    _choice(config.flow, 'source', 'flow', ('raft', 'gt', 'flo'))
    _choice(config.flow, 'variant', 'flow', ('small', 'standard'))
    _choice(config.flow, 'corr', 'flow', ('all_pairs', 'on_demand'))
    if 'train_corr' in config.flow:
      _choice(config.flow, 'train_corr', 'flow', ('all_pairs', 'on_demand'))
    _positive(config.flow, 'iters', 'flow')
    if 'train_iters' in config.flow:
      _positive(config.flow, 'train_iters', 'flow')


def _check_train_crop(config, stage: str) -> None:
  d = config.data
  key = f'{stage}.train_crop'
  crop = tuple(config[stage].train_crop)
  if (len(crop) != 2 or not all(isinstance(v, int) and v >= 0 for v in crop)
      or (0 in crop and crop != (0, 0))):
    _fail(key, crop, 'must be (height, width) in pixels, or (0, 0) for '
          'data.crop_height/crop_width.')
  if crop != (0, 0) and (crop[0] > d.height or crop[1] > d.width):
    _fail(key, crop, f'the crop must fit in the frame ({d.height}x{d.width}).')


def _check_backward_flow(config) -> None:
  """track.temporal_backward_flow=True: the settings it needs (VideoTracker says why)."""
  tr = config.track
  key = 'track.temporal_backward_flow'
  if tr.get('temporal_backward') is not True:
    _fail(key, True, 'the reverse pixel cue from backward flow belongs to the backward check; '
          'set --config.track.temporal_backward=True too, or leave it False.')
  if tr.get('temporal_similarity', 'direct') == 'chained':
    _fail(key, True, "cannot go with track.temporal_similarity='chained' (its reverse "
          "direction is the chain itself).")
  source = config.flow.source if 'flow' in config else 'raft'
  if source != 'raft':
    _fail(key, True, f"needs flow from frame t back to an earlier frame, which only a flow "
          f"model gives; flow.source={source!r} has forward flow only. Use flow.source='raft' "
          f"or set --config.track.temporal_backward_flow=False.")


def _check_track(config) -> None:
  if 'track' in config:
    tr = config.track
    _choice(tr, 'variant', 'track', ('instance', 'pixel', 'hybrid'))
    _at_least(tr, 'memory_frames', 'track', 0)
    _unit_interval(tr, 'temporal_threshold', 'track')
    if 'roi_input' in tr:
      _choice(tr, 'roi_input', 'track', ('image', 'features', 'both'))
    if 'temporal_similarity' in tr:
      from hybrid_jax.tracking import tracker  # noqa: PLC0415 (lazy)
      _choice(tr, 'temporal_similarity', 'track', tracker.TEMPORAL_SIMILARITIES)
    if tr.get('temporal_backward_flow', False):
      _check_backward_flow(config)
    for key in ('pool', 'hidden_dim', 'embed_dim', 'frames_per_call', 'feature_dim'):
      if key in tr:
        _at_least(tr, key, 'track', 1)
    if 'eval_every_steps' in tr:
      _at_least(tr, 'eval_every_steps', 'track', 0)
    if 'fusion_holdout_clips' in tr:
      _at_least(tr, 'fusion_holdout_clips', 'track', 2)
    for key in ('fusion_segments', 'head_segments'):
      if key in tr:
        _choice(tr, key, 'track', ('predicted', 'gt'))
    if 'fusion_objective' in tr:
      from hybrid_jax.training import fusion_fit  # noqa: PLC0415 (lazy)
      _choice(tr, 'fusion_objective', 'track', fusion_fit.OBJECTIVES)
    if 'fusion_targets' in tr:
      from hybrid_jax.training import fusion_data  # noqa: PLC0415 (lazy)
      _choice(tr, 'fusion_targets', 'track', fusion_data.TARGETS)
    if 'canvas' in tr:
      canvas = tuple(tr.canvas)
      if (len(canvas) != 2 or not all(isinstance(v, int) and v >= 1 for v in canvas)
          or any(v % tr.pool for v in canvas)):
        _fail('track.canvas', canvas, f'must be (height, width), positive and divisible by '
              f'track.pool={tr.pool}.')
    if 'matcher' in config.track:
      from hybrid_jax.tracking import matching  # noqa: PLC0415 (lazy: the registry)
      _choice(config.track, 'matcher', 'track', tuple(matching.MATCHERS))
    if 'loss' in config.track:
      _choice(config.track, 'loss', 'track', ('dml', 'contrastive', 'triplet'))
      _choice(config.track, 'no_match', 'track', ('dustbin', 'mask'))
    _unit_interval(config.track, 'threshold', 'track')


def _check_eval(config) -> None:
  """The evaluation settings, checked now rather than after all the training of mode=all."""
  from hybrid_jax import paper_tables  # noqa: PLC0415 (lazy)
  from hybrid_jax.evaluation import protocols  # noqa: PLC0415 (lazy)
  from hybrid_jax.evaluation import runner  # noqa: PLC0415 (lazy)
  e = config.eval
  metrics = [m.strip() for m in str(e.metrics).split(',') if m.strip()]
  if not metrics or any(m not in runner.METRICS for m in metrics):
    _fail('eval.metrics', e.metrics, f"must be a comma-separated list of {list(runner.METRICS)}, "
          "e.g. 'vpq,stq'.")
  _choice(e, 'dataset', 'eval', tuple(protocols.PROTOCOLS))
  if 'vpq' in metrics and not protocols.PROTOCOLS[e.dataset].has_vpq:
    _fail('eval.metrics', e.metrics, protocols.PROTOCOLS[e.dataset].vpq_note)
  if e.reference_table and e.reference_table not in paper_tables.TABLES:
    _fail('eval.reference_table', e.reference_table,
          f"must be '' or one of {sorted(paper_tables.TABLES)}.")
  d = config.data
  if 'vpq' in metrics and 'label_every' in d and d.name == 'synthetic_vps':
    labelled = d.clip_length // d.label_every
    window = protocols.PROTOCOLS[e.dataset].window_frames
    short = [k for k, n in window.items() if n > labelled]
    if short:
      logging.warning(
          'Val clips have %d labelled frames, too few for the VPQ windows k = %s (%s frames): '
          'those k are left out of the mean VPQ (report.md says so). Raise data.clip_length or '
          'lower data.label_every for every window.', labelled, ', '.join(short),
          [window[k] for k in short])


def _batch_fits_devices(batch_size: int, where: str) -> None:
  import jax  # noqa: PLC0415 (lazy)
  devices = jax.device_count()
  if batch_size % devices:
    _fail(where, batch_size, f'a global batch is split over the {devices} devices; use a '
          f'multiple of {devices}.')


def _check_train(config) -> None:
  t = config.train
  if 'compute_dtype' in t:
    _choice(t, 'compute_dtype', 'train', ('float32', 'bfloat16'))
  if 'device_memory_gib' in t:
    gib = t.device_memory_gib
    if (isinstance(gib, bool) or not isinstance(gib, (int, float)) or not math.isfinite(gib)
        or gib < 0):
      _fail('train.device_memory_gib', gib, 'must be a number of GiB >= 0 (0: no device named).')
  for key in ('checkpoint_every_steps', 'keep_checkpoints', 'log_every_steps', 'max_bad_steps'):
    _positive(t, key, 'train')
  if t.profile_steps:
    parts = str(t.profile_steps).split(',')
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts) or int(parts[0]) > int(parts[1]):
      _fail('train.profile_steps', t.profile_steps, "must be 'a,b' with integers a <= b.")


def _check_export(config) -> None:
  if 'export' not in config:
    return
  from hybrid_jax.data import export  # noqa: PLC0415 (lazy)
  _choice(config.export, 'layout', 'export', export.LAYOUTS)
  export.parse_splits(config.export.splits)
