"""Learning-rate schedules and optimisers built from a stage's `train` config.

The optimiser returned by `make_optimizer` works at a *unit* learning rate; the train step
multiplies its update by `schedule(state.step)`. Keeping the schedule outside the optax state
means (1) a skipped non-finite step (whose optax state is discarded) does not shift the
schedule against the data position, and (2) the learning rate of every step is known without
digging through nested optax states, so it can be logged. For adamw/adam/sgd the result is
bit-identical to optax's own `adamw(schedule)` etc., whose last transform is the same scaling.

Config fields (`config.<stage>.train`): steps, optimizer ('adamw'|'adam'|'sgd'), lr, momentum,
weight_decay, schedule ('constant'|'cosine'|'onecycle'|'step'|'poly'), warmup_steps, grad_clip.
Optional fields read with a default (not in configs/synthetic.py): grad_clip_mode ('norm' |
'value'; PanopticFCN clamps element-wise), lr_decay_steps (milestones of 'step'; default
2/3 and 8/9 of steps, detectron's 1x ratio), lr_decay_factor (0.1), poly_power (0.9),
warmup_factor (0.001, detectron's linear warmup start for 'step'/'poly'), onecycle_pct_start
(0.05, RAFT).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from hybrid_jax import errors
from hybrid_jax.training import state as state_lib

Schedule = Callable[[jax.Array], jax.Array]

SCHEDULES = ('constant', 'cosine', 'onecycle', 'step', 'poly')
OPTIMIZERS = ('adamw', 'adam', 'sgd')


def _get(cfg, name, default):
  """cfg.name if the (ConfigDict or dict) config has it, else `default`."""
  try:
    value = cfg[name]
  except (KeyError, AttributeError):
    return default
  return default if value is None else value


def make_schedule(cfg) -> Schedule:
  """Returns lr(step) for `cfg.schedule`, a jittable function of the int32 step count.

  - constant: lr, after a linear warmup from 0 over warmup_steps.
  - cosine:   linear warmup 0 -> lr over warmup_steps, then cosine decay to 0 at `steps`.
  - onecycle: torch's OneCycleLR(lr, total_steps=steps + 100, pct_start=0.05 (or
              warmup_steps / total if warmup_steps > 0), anneal_strategy='linear',
              div_factor=25, final_div_factor=1e4), exactly as RAFT trains.
  - step:     detectron's WarmupMultiStepLR: lr * factor**(#milestones <= step), times the
              linear warmup factor warmup_factor*(1 - a) + a, a = step / warmup_steps.
  - poly:     detectron/PanopticFCN's WarmupPolyLR: lr * warmup * (1 - step/steps)**power.
  """
  name = cfg.schedule
  lr = float(cfg.lr)
  steps = int(cfg.steps)
  warmup = int(_get(cfg, 'warmup_steps', 0))
  if name not in SCHEDULES:
    raise errors.ConfigError(f'train.schedule={name!r} is unknown; use one of {SCHEDULES}.')
  if lr < 0 or steps <= 0 or warmup < 0:
    raise errors.ConfigError(f'train.lr ({lr}), train.steps ({steps}) and train.warmup_steps '
                             f'({warmup}) must be >= 0 (steps > 0).')

  if name == 'constant':
    if warmup == 0:
      return optax.constant_schedule(lr)
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup),
                                 optax.constant_schedule(lr)], [warmup])
  if name == 'cosine':
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(steps, warmup + 1), 0.0)
  if name == 'onecycle':
    total = steps + 100
    pct = warmup / total if warmup > 0 else float(_get(cfg, 'onecycle_pct_start', 0.05))
    return onecycle_schedule(lr, total, pct)

  # Detectron-style warmup: a multiplicative factor rising linearly from warmup_factor to 1.
  factor0 = float(_get(cfg, 'warmup_factor', 0.001))

  def warmup_factor(step):
    if warmup == 0:
      return jnp.ones_like(step, jnp.float32)
    alpha = jnp.minimum(step.astype(jnp.float32) / warmup, 1.0)
    return factor0 * (1.0 - alpha) + alpha

  if name == 'step':
    milestones = tuple(int(m) for m in _get(cfg, 'lr_decay_steps', ())) or (
        int(steps * 2 / 3), int(steps * 8 / 9))
    gamma = float(_get(cfg, 'lr_decay_factor', 0.1))

    def step_schedule(step):
      step = jnp.asarray(step)
      passed = sum((step >= m).astype(jnp.float32) for m in milestones)
      return lr * warmup_factor(step) * gamma ** passed
    return step_schedule

  power = float(_get(cfg, 'poly_power', 0.9))

  def poly_schedule(step):
    step = jnp.asarray(step)
    frac = jnp.clip(1.0 - step.astype(jnp.float32) / steps, 0.0, 1.0)
    return lr * warmup_factor(step) * frac ** power
  return poly_schedule


def onecycle_schedule(max_lr: float, total: int, pct_start: float, div: float = 25.0,
                      final_div: float = 1e4) -> Schedule:
  """torch.optim.lr_scheduler.OneCycleLR with two linear phases (cycle_momentum off)."""
  initial = max_lr / div
  final = initial / final_div
  end1 = float(pct_start * total) - 1.0   # torch: phase 1 ends at this (float) step
  end2 = float(total - 1)

  def schedule(step):
    s = jnp.asarray(step).astype(jnp.float32)
    # Convex combinations (not start + (end - start) * pct): exact at both ends in float32.
    pct1 = jnp.clip(s / end1, 0.0, 1.0) if end1 > 0 else 1.0
    pct2 = jnp.clip((s - end1) / (end2 - end1), 0.0, 1.0)
    up = initial * (1.0 - pct1) + max_lr * pct1
    down = max_lr * (1.0 - pct2) + final * pct2
    return jnp.where(s <= end1, up, down)
  return schedule


def frozen_mask(params, patterns: Sequence[str]):
  """Pytree of bools: True where the '/'-joined parameter path fully matches a pattern."""
  compiled = [re.compile(p) for p in patterns]
  return jax.tree_util.tree_map_with_path(
      lambda path, _: any(c.fullmatch(state_lib.tree_path_str(path)) for c in compiled), params)


def _check_patterns(patterns: Sequence[str], params: Any) -> None:
  """ConfigError for a pattern that matches no parameter (a typo would be silently ignored)."""
  if not patterns:
    return
  paths = list(state_lib.tree_shapes(params))
  for pattern in patterns:
    if not any(re.fullmatch(pattern, p) for p in paths):
      raise errors.ConfigError(f'Parameter pattern {pattern!r} matches no parameter path '
                               f'(paths look like {paths[0]!r}).')


def make_optimizer(cfg, *, frozen: Sequence[str] = (), no_weight_decay: Sequence[str] = (),
                   params: Any = None) -> optax.GradientTransformation:
  """Returns the unit-learning-rate optimiser for `cfg` (use with `make_schedule(cfg)`).

  Args:
    cfg: a stage's train config (optimizer, momentum, weight_decay, grad_clip, ...).
    frozen: regular expressions over '/'-joined parameter paths (e.g. 'backbone/stem/.*',
      '.*/BatchNorm_\\d+/.*'); matching parameters get a zero update, no weight decay and
      do not count towards the clipping norm. Needs `params` (a pytree or its shapes) to
      check that every pattern matches something (a typo would otherwise train everything).
    no_weight_decay: patterns of parameters trained without weight decay (detectron's
      WEIGHT_DECAY_NORM=0: e.g. '.*/(GroupNorm|BatchNorm)_\\d+/.*'). Needs `params`.
    params: the parameter tree (arrays or ShapeDtypeStructs), for the two pattern lists.

  The chain is: clip (global norm, or element-wise if grad_clip_mode='value'; off when
  grad_clip <= 0) -> optimiser -> weight decay, as torch does: adamw = decoupled decay
  (lr * wd * p), adam and sgd = L2 added to the gradient (torch's weight_decay argument).
  """
  name = cfg.optimizer
  wd = float(_get(cfg, 'weight_decay', 0.0))
  clip = float(_get(cfg, 'grad_clip', 0.0))
  clip_mode = _get(cfg, 'grad_clip_mode', 'norm')
  if name not in OPTIMIZERS:
    raise errors.ConfigError(f'train.optimizer={name!r} is unknown; use one of {OPTIMIZERS}.')
  if clip_mode not in ('norm', 'value'):
    raise errors.ConfigError(f"train.grad_clip_mode={clip_mode!r}; use 'norm' or 'value'.")
  for patterns in (frozen, no_weight_decay):
    if patterns and params is None:
      raise ValueError('make_optimizer(frozen=/no_weight_decay=...) needs params=.')
    _check_patterns(patterns, params)
  decay_mask = None
  if no_weight_decay:
    decay_mask = jax.tree.map(lambda m: not m, frozen_mask(params, no_weight_decay))
  parts = []
  if clip > 0:
    parts.append(optax.clip_by_global_norm(clip) if clip_mode == 'norm' else optax.clip(clip))
  if name == 'adamw':
    parts.append(optax.adamw(1.0, weight_decay=wd, mask=decay_mask))
  elif name == 'adam':
    if wd:
      parts.append(optax.add_decayed_weights(wd, mask=decay_mask))
    parts.append(optax.adam(1.0))
  else:
    if wd:
      parts.append(optax.add_decayed_weights(wd, mask=decay_mask))
    parts.append(optax.sgd(1.0, momentum=float(_get(cfg, 'momentum', 0.0)) or None))
  tx = optax.chain(*parts)
  if not frozen:
    return tx
  mask = frozen_mask(params, frozen)
  labels = jax.tree.map(lambda m: 'frozen' if m else 'trainable', mask)
  return optax.partition({'trainable': tx, 'frozen': optax.set_to_zero()}, labels)
