"""The per-stage training state: one pytree holding everything a step changes.

`TrainState` is a `flax.struct` dataclass, so it is a pytree that jit can donate, Orbax can
checkpoint and `jax.device_put` can place. The optimiser (`optax.GradientTransformation`) is
deliberately *not* part of the state: it is code, not data, and is passed to
`make_train_step` and `create_train_state`.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

PyTree = Any


@flax.struct.dataclass
class TrainState:
  """Everything that changes from one training step to the next.

  Attributes:
    step: int32 scalar, number of steps taken (skipped non-finite steps included, so that
      the data position of the next batch is always `step`).
    params: trainable (and frozen) parameters, a nested dict of arrays.
    batch_stats: BatchNorm running statistics (`{}` for models without BN).
    opt_state: the optax state for `params`.
    bad_steps: int32 scalar, consecutive steps whose loss or gradient was NaN/Inf (reset to
      0 by the next finite step).
    total_bad_steps: int32 scalar, all skipped steps since the start of training.
  """
  step: jax.Array
  params: PyTree
  batch_stats: PyTree
  opt_state: PyTree
  bad_steps: jax.Array
  total_bad_steps: jax.Array


def create_train_state(params: PyTree, tx: optax.GradientTransformation, *,
                       batch_stats: PyTree | None = None) -> TrainState:
  """Returns a step-0 `TrainState` (host/default-device arrays; see `mesh.replicate`)."""
  params = jax.tree.map(jnp.asarray, params)
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      batch_stats=jax.tree.map(jnp.asarray, batch_stats if batch_stats is not None else {}),
      opt_state=tx.init(params),
      bad_steps=jnp.zeros((), jnp.int32),
      total_bad_steps=jnp.zeros((), jnp.int32))


def tree_path_str(path) -> str:
  """'a/b/c' for a jax key path (dict keys, attributes, sequence indices)."""
  parts = []
  for k in path:
    for attr in ('key', 'name', 'idx'):
      if hasattr(k, attr):
        parts.append(str(getattr(k, attr)))
        break
    else:
      parts.append(str(k))
  return '/'.join(parts)


def tree_shapes(tree: PyTree) -> dict[str, list[int]]:
  """{'path': shape} for every array leaf; what checkpoints store to detect mismatches."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {tree_path_str(p): [int(d) for d in jnp.shape(x)] for p, x in leaves}
