"""Checks of config values that ml_collections' type locking cannot catch (ranges, choices).

Called once at the start of every run so that a bad value stops with one clear message
(`ConfigError`) before any data is generated or any model is compiled.
"""

from __future__ import annotations

from hybrid_jax import errors

MODES = ('all', 'data', 'show', 'export', 'train_seg', 'train_flow', 'train_track',
         'track', 'eval')


def _fail(key, value, what):
  raise errors.ConfigError(f'config.{key}={value!r}: {what}')


def _positive(cfg, key, path):
  value = cfg[key]
  if not isinstance(value, (int, float)) or value <= 0:
    _fail(f'{path}.{key}', value, 'must be a positive number.')


def _choice(cfg, key, path, choices):
  if cfg[key] not in choices:
    _fail(f'{path}.{key}', cfg[key], f'must be one of {list(choices)}.')


def check_config(config) -> None:
  """Raises ConfigError naming the first invalid value."""
  if config.mode not in MODES:
    _fail('mode', config.mode, f'must be one of {list(MODES)}.')
  d = config.data
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
  for stage in ('seg', 'flow', 'track'):
    if stage in config and 'train' in config[stage]:
      t = config[stage].train
      for key in ('steps', 'batch_size', 'lr'):
        _positive(t, key, f'{stage}.train')
      _choice(t, 'optimizer', f'{stage}.train', ('adamw', 'adam', 'sgd'))
      if 'grad_clip_mode' in t:
        _choice(t, 'grad_clip_mode', f'{stage}.train', ('norm', 'value'))
      _choice(t, 'schedule', f'{stage}.train', ('constant', 'cosine', 'onecycle', 'step', 'poly'))
  if 'seg' in config and 'test_scales' in config.seg:
    from hybrid_jax.models.panoptic_fcn import build as pfcn_build  # noqa: PLC0415 (lazy)
    pfcn_build.check_test_scales(config.seg.test_scales)
  if 'seg' in config and 'position_deform' in config.seg:
    _choice(config.seg, 'position_deform', 'seg', ('v2', 'v1', 'none'))
  if 'flow' in config:
    _choice(config.flow, 'source', 'flow', ('raft', 'gt', 'flo'))
    _choice(config.flow, 'variant', 'flow', ('small', 'standard'))
    _choice(config.flow, 'corr', 'flow', ('all_pairs', 'on_demand'))
    _positive(config.flow, 'iters', 'flow')
    if 'train_iters' in config.flow:
      _positive(config.flow, 'train_iters', 'flow')
    if 'train_crop' in config.flow:
      crop = tuple(config.flow.train_crop)
      if (len(crop) != 2 or not all(isinstance(v, int) and v >= 0 for v in crop)
          or (0 in crop and crop != (0, 0))):
        _fail('flow.train_crop', crop, 'must be (height, width) in pixels, or (0, 0) for '
              'data.crop_height/crop_width.')
      if crop != (0, 0) and (crop[0] > d.height or crop[1] > d.width):
        _fail('flow.train_crop', crop, f'the crop must fit in the frame ({d.height}x{d.width}).')
  if 'track' in config:
    _choice(config.track, 'variant', 'track', ('instance', 'pixel', 'hybrid'))
    if 'matcher' in config.track:
      from hybrid_jax.tracking import matching  # noqa: PLC0415 (lazy: the registry)
      _choice(config.track, 'matcher', 'track', tuple(matching.MATCHERS))
    if 'loss' in config.track:
      _choice(config.track, 'loss', 'track', ('dml', 'contrastive', 'triplet'))
      _choice(config.track, 'no_match', 'track', ('dustbin', 'mask'))
    if not 0 <= config.track.threshold <= 1:
      _fail('track.threshold', config.track.threshold, 'must lie in [0, 1].')
  t = config.train
  for key in ('checkpoint_every_steps', 'keep_checkpoints', 'log_every_steps', 'max_bad_steps'):
    _positive(t, key, 'train')
  if t.profile_steps:
    parts = str(t.profile_steps).split(',')
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts) or int(parts[0]) > int(parts[1]):
      _fail('train.profile_steps', t.profile_steps, "must be 'a,b' with integers a <= b.")
