"""Turns a pure loss function into a jitted, state-donating, NaN-guarded train step.

The loss function contract (every stage writes one)::

  loss_fn(params, batch_stats, batch, rng) -> (loss, (aux, new_batch_stats))

  params:       the model parameters (nested dict of arrays); gradients are taken w.r.t. this.
  batch_stats:  BatchNorm statistics ({} if none); return them unchanged when frozen.
  batch:        dict of global (sharded over 'data') arrays, as `mesh.shard_batch` made them.
  rng:          a typed PRNG key, `fold_in(seed_key, step)`: a different key every step, the
                same key for the same step after a resume.
  loss:         float32 scalar, the mean over the *global* batch (plain `jnp.mean`; no pmean).
  aux:          dict name -> float scalar of loss terms/metrics to log ({} allowed).
  new_batch_stats: the updated statistics (same tree as batch_stats).

The step returns `(new_state, metrics)`; metrics holds 'loss', the aux terms, 'grad_norm'
(before clipping), 'lr' (if a schedule is given), 'finite' (bool: the update was applied)
and 'bad_steps' (consecutive skipped steps so far). All stay on device; the loop fetches them.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hybrid_jax.training import mesh as mesh_lib
from hybrid_jax.training.state import TrainState

LossFn = Callable[[Any, Any, dict, jax.Array], tuple[jax.Array, tuple[dict, Any]]]
TrainStep = Callable[[TrainState, dict], tuple[TrainState, dict]]


def make_train_step(loss_fn: LossFn, tx: optax.GradientTransformation, *, mesh,
                    rng: jax.Array, schedule: Callable | None = None,
                    donate: bool = True, compiler_options: dict | None = None) -> TrainStep:
  """Returns `train_step(state, batch) -> (state, metrics)`, jitted over `mesh`.

  Args:
    loss_fn: see the module docstring.
    tx: the optimiser (e.g. `optim.make_optimizer(cfg)`, unit learning rate when `schedule`
      is given; a self-scheduling optax chain with `schedule=None`).
    mesh: the device mesh; state and metrics come out replicated on it.
    rng: typed base key (`jax.random.key(seed)`); step s uses `fold_in(rng, s)`.
    schedule: lr(step); the update of step s is multiplied by lr(s).
    donate: donate the input state's buffers (never use the old state afterwards).
    compiler_options: XLA options for this step's program only (e.g.
      `models.raft.cpu_compiler_options()`).

  A step whose loss or gradient norm is NaN/Inf leaves params, batch_stats and opt_state
  as they were, still advances `step` (the data position), increments `bad_steps` and
  `total_bad_steps`; a finite step resets `bad_steps` to 0.
  """
  def step_fn(state: TrainState, batch: dict):
    key = jax.random.fold_in(rng, state.step)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, (aux, new_bs)), grads = grad_fn(state.params, state.batch_stats, batch, key)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    updates, new_opt = tx.update(grads, state.opt_state, state.params)
    metrics = {'loss': loss, **aux, 'grad_norm': grad_norm}
    if schedule is not None:
      lr = jnp.asarray(schedule(state.step), jnp.float32)
      updates = jax.tree.map(lambda u: u * lr.astype(u.dtype), updates)
      metrics['lr'] = lr
    new_params = optax.apply_updates(state.params, updates)

    def keep_if_finite(new, old):
      return jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)

    bad = jnp.where(finite, 0, state.bad_steps + 1).astype(jnp.int32)
    new_state = state.replace(
        step=state.step + 1,
        params=keep_if_finite(new_params, state.params),
        batch_stats=keep_if_finite(new_bs, state.batch_stats),
        opt_state=keep_if_finite(new_opt, state.opt_state),
        bad_steps=bad,
        total_bad_steps=state.total_bad_steps + (~finite).astype(jnp.int32))
    metrics.update(finite=finite, bad_steps=bad)
    return new_state, metrics

  rep = mesh_lib.replicated(mesh)
  return jax.jit(step_fn, donate_argnums=(0,) if donate else (), out_shardings=(rep, rep),
                 compiler_options=compiler_options)


def to_host(tree: Any) -> Any:
  """Fetches replicated device arrays as numpy (works when other processes hold copies too)."""
  def fetch(x):
    if isinstance(x, jax.Array):
      return np.asarray(x.addressable_data(0))
    return np.asarray(x)
  return jax.tree.map(fetch, tree)
