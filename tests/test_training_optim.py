"""Schedules, optimisers, clipping, frozen subtrees and the NaN-guarded step (hand-computed)."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from hybrid_jax import errors
from hybrid_jax.training import mesh as mesh_lib
from hybrid_jax.training import optim
from hybrid_jax.training import state as state_lib
from hybrid_jax.training import step as step_lib


def _cfg(**kw):
  base = dict(steps=100, batch_size=1, optimizer='sgd', lr=1.0, momentum=0.0,
              weight_decay=0.0, schedule='constant', warmup_steps=0, grad_clip=0.0)
  base.update(kw)
  return ml_collections.ConfigDict(base)


def _lr(cfg, steps):
  schedule = optim.make_schedule(cfg)
  return [float(schedule(jnp.asarray(s, jnp.int32))) for s in steps]


def test_constant_and_cosine_schedules():
  np.testing.assert_allclose(_lr(_cfg(lr=0.3), [0, 50, 99]), [0.3, 0.3, 0.3], rtol=1e-6)
  np.testing.assert_allclose(_lr(_cfg(lr=0.3, warmup_steps=4), [0, 2, 4, 90]),
                             [0.0, 0.15, 0.3, 0.3], rtol=1e-6)
  # Warmup 0 -> 1 over 2 steps, then cosine over the remaining 4 of 6 steps.
  cfg = _cfg(schedule='cosine', steps=6, warmup_steps=2)
  np.testing.assert_allclose(_lr(cfg, [0, 1, 2, 3, 4, 6]),
                             [0.0, 0.5, 1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.0],
                             atol=1e-6)


def test_onecycle_matches_torch_formula():
  # RAFT: OneCycleLR(max_lr=1, total_steps=100+100, pct_start=0.05, linear, div 25, final 1e4)
  # phase 1 ends at step 0.05*200-1 = 9, phase 2 at 199; start 1/25, floor 1/25/1e4.
  cfg = _cfg(schedule='onecycle', steps=100)
  expected = [0.04, 0.04 + 0.96 * 3 / 9, 1.0, 1.0 + (4e-6 - 1.0) * 95 / 190, 4e-6]
  np.testing.assert_allclose(_lr(cfg, [0, 3, 9, 104, 199]), expected, rtol=1e-5)


def test_onecycle_matches_torch_scheduler():
  torch = pytest.importorskip('torch')
  total, peak = 200, 4e-4
  p = torch.nn.Parameter(torch.zeros(1))
  opt = torch.optim.AdamW([p], lr=peak)
  sched = torch.optim.lr_scheduler.OneCycleLR(opt, peak, total_steps=total, pct_start=0.05,
                                              cycle_momentum=False, anneal_strategy='linear')
  want = []
  for _ in range(total):
    want.append(opt.param_groups[0]['lr'])
    opt.step()
    sched.step()
  ours = optim.onecycle_schedule(peak, total, 0.05)
  got = np.array([float(ours(i)) for i in range(total)])
  np.testing.assert_allclose(got, np.array(want), rtol=1e-5, atol=1e-10)


def test_step_and_poly_schedules_detectron_warmup():
  # Milestones default to 2/3 and 8/9 of 90 steps (60, 80); warmup factor 0.001 over 10.
  cfg = _cfg(schedule='step', steps=90, warmup_steps=10)
  np.testing.assert_allclose(_lr(cfg, [0, 5, 10, 59, 60, 80]),
                             [0.001, 0.5005, 1.0, 1.0, 0.1, 0.01], rtol=1e-5)
  cfg = _cfg(schedule='step', steps=90, lr_decay_steps=(30,), lr_decay_factor=0.5)
  np.testing.assert_allclose(_lr(cfg, [29, 30, 89]), [1.0, 0.5, 0.5], rtol=1e-6)
  cfg = _cfg(schedule='poly', steps=100, warmup_steps=10)
  np.testing.assert_allclose(_lr(cfg, [5, 50, 100]),
                             [0.5005 * 0.95 ** 0.9, 0.5 ** 0.9, 0.0], rtol=1e-5, atol=1e-7)


def test_bad_config_values():
  with pytest.raises(errors.ConfigError, match='schedule'):
    optim.make_schedule(_cfg(schedule='linear'))
  with pytest.raises(errors.ConfigError, match='optimizer'):
    optim.make_optimizer(_cfg(optimizer='lamb'))
  with pytest.raises(errors.ConfigError, match='nothing_here'):
    optim.make_optimizer(_cfg(), frozen=('nothing_here/.*',), params={'a': {'w': np.ones(2)}})


def _quadratic_step(cfg, params, coef):
  """One-device train step on loss = sum(coef * p^2) / 2 (gradient coef * p)."""
  mesh = mesh_lib.make_mesh(1)

  def loss_fn(p, bs, batch, rng):
    del batch, rng
    # coef is a prefix of p: one coefficient per top-level subtree.
    terms = jax.tree.map(
        lambda c, sub: sum(jnp.sum(0.5 * c * x ** 2) for x in jax.tree.leaves(sub)), coef, p)
    loss = sum(jax.tree.leaves(terms))
    return loss, ({}, bs)

  tx = optim.make_optimizer(cfg, frozen=cfg.get('frozen', ()),
                            no_weight_decay=cfg.get('no_weight_decay', ()), params=params)
  st = mesh_lib.replicate(state_lib.create_train_state(params, tx), mesh)
  step = step_lib.make_train_step(loss_fn, tx, mesh=mesh, rng=jax.random.key(0),
                                  schedule=optim.make_schedule(cfg))
  return st, step


def test_sgd_momentum_weight_decay_by_hand():
  lr, m, wd, c = 0.1, 0.9, 0.01, 2.0
  cfg = _cfg(optimizer='sgd', lr=lr, momentum=m, weight_decay=wd)
  st, step = _quadratic_step(cfg, {'w': np.array([1.0, -2.0], np.float32)}, {'w': c})
  p0 = np.array([1.0, -2.0])
  d0 = c * p0 + wd * p0           # torch SGD: L2 added to the gradient
  p1 = p0 - lr * d0
  d1 = c * p1 + wd * p1
  p2 = p1 - lr * (m * d0 + d1)    # momentum buffer m * d0 + d1
  st, metrics = step(st, {})
  st, metrics = step(st, {})
  np.testing.assert_allclose(step_lib.to_host(st.params['w']), p2, rtol=1e-6)
  assert float(step_lib.to_host(metrics['lr'])) == pytest.approx(lr)


def test_no_weight_decay_patterns():
  cfg = _cfg(optimizer='sgd', lr=0.5, weight_decay=0.1, no_weight_decay=('norm/.*',))
  params = {'conv': {'w': np.ones(1, np.float32)}, 'norm': {'scale': np.ones(1, np.float32)}}
  st, step = _quadratic_step(cfg, params, {'conv': 0.0, 'norm': 0.0})   # zero gradient
  st, _ = step(st, {})
  host = step_lib.to_host(st.params)
  np.testing.assert_allclose(host['conv']['w'], [1 - 0.5 * 0.1])   # decayed
  np.testing.assert_array_equal(host['norm']['scale'], [1.0])      # excluded


def test_adamw_first_step_and_clipping_by_hand():
  lr, wd = 0.01, 0.1
  cfg = _cfg(optimizer='adamw', lr=lr, weight_decay=wd)
  p0 = np.array([3.0, -0.5], np.float32)
  st, step = _quadratic_step(cfg, {'w': p0}, {'w': 1.0})
  st, _ = step(st, {})
  # Adam's first step is g / (|g| + eps) = sign(g); AdamW adds lr * wd * p decoupled.
  np.testing.assert_allclose(step_lib.to_host(st.params['w']),
                             p0 - lr * (np.sign(p0) + wd * p0), rtol=1e-6)
  # Global-norm clipping: gradient (3, -0.5) * 10 has norm 30.41; clipped to norm 1.
  cfg = _cfg(optimizer='sgd', lr=1.0, grad_clip=1.0)
  st, step = _quadratic_step(cfg, {'w': p0}, {'w': 10.0})
  st, metrics = step(st, {})
  g = 10.0 * p0
  np.testing.assert_allclose(step_lib.to_host(st.params['w']), p0 - g / np.linalg.norm(g),
                             rtol=1e-6)
  assert float(step_lib.to_host(metrics['grad_norm'])) == pytest.approx(np.linalg.norm(g))
  # Element-wise clamping (PanopticFCN's CLIP_VALUE).
  cfg = _cfg(optimizer='sgd', lr=1.0, grad_clip=2.0, grad_clip_mode='value')
  st, step = _quadratic_step(cfg, {'w': p0}, {'w': 10.0})
  st, _ = step(st, {})
  np.testing.assert_allclose(step_lib.to_host(st.params['w']), p0 - np.clip(g, -2, 2))


def test_frozen_subtree_unchanged_and_excluded_from_clipping():
  params = {'backbone': {'w': np.array([1.0, 2.0], np.float32)},
            'head': {'w': np.array([3.0], np.float32)}}
  cfg = _cfg(optimizer='adamw', lr=0.1, weight_decay=0.1, grad_clip=1.0,
             frozen=('backbone/.*',))
  st, step = _quadratic_step(cfg, params, {'backbone': 100.0, 'head': 1.0})
  for _ in range(3):
    st, _ = step(st, {})
  host = step_lib.to_host(st.params)
  np.testing.assert_array_equal(host['backbone']['w'], params['backbone']['w'])
  assert abs(host['head']['w'][0] - 3.0) > 0.2   # ~3 * 0.1 moved; frozen grads not in norm


def test_nan_step_is_skipped_counted_and_leaves_state_unchanged():
  cfg = _cfg(optimizer='adam', lr=0.1)
  mesh = mesh_lib.make_mesh(1)

  def loss_fn(p, bs, batch, rng):
    del rng
    loss = jnp.sum((p['w'] * batch['x']) ** 2)
    return loss, ({'sq': loss}, {'count': bs['count'] + 1})

  params = {'w': np.array([1.0, -1.0], np.float32)}
  tx = optim.make_optimizer(cfg)
  st = mesh_lib.replicate(state_lib.create_train_state(
      params, tx, batch_stats={'count': np.zeros((), np.int32)}), mesh)
  step = step_lib.make_train_step(loss_fn, tx, mesh=mesh, rng=jax.random.key(0),
                                  schedule=optim.make_schedule(cfg))
  ok = {'x': mesh_lib.replicate(np.ones(2, np.float32), mesh)}
  bad = {'x': mesh_lib.replicate(np.array([np.nan, 1.0], np.float32), mesh)}
  st, _ = step(st, ok)
  before = step_lib.to_host((st.params, st.batch_stats, st.opt_state))
  st, metrics = step(st, bad)
  after = step_lib.to_host((st.params, st.batch_stats, st.opt_state))
  jax.tree.map(np.testing.assert_array_equal, before, after)
  host = step_lib.to_host(metrics)
  assert not host['finite'] and host['bad_steps'] == 1 and np.isnan(host['sq'])
  assert step_lib.to_host(st.step) == 2   # the data position still advances
  st, metrics = step(st, bad)
  assert step_lib.to_host(st.bad_steps) == 2
  st, metrics = step(st, ok)
  assert step_lib.to_host(metrics['finite']) and step_lib.to_host(st.bad_steps) == 0
  assert step_lib.to_host(st.total_bad_steps) == 2
  assert step_lib.to_host(st.batch_stats['count']) == 2
