"""Mixed precision for training (`config.train.compute_dtype`): float32 or bfloat16.

Parameters and optimiser state stay float32 (Flax's `param_dtype`); with bfloat16 the networks'
activations run in bfloat16 (the modules' `dtype`), while what needs the range or the
precision stays float32: RAFT's correlation volume and refinement loop, the embeddings'
softmax, every loss. Each stage clones its module with `dtype=compute_dtype(config)` for the
train step only; evaluation and tracking run in float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hybrid_jax import errors

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def compute_dtype(config):
  """The activation dtype of the training steps (config.train.compute_dtype)."""
  name = str(config.train.get('compute_dtype', 'float32'))
  if name not in DTYPES:
    raise errors.ConfigError(f'config.train.compute_dtype={name!r}: choose one of '
                             f'{sorted(DTYPES)}.')
  return DTYPES[name]


def to_float32(tree):
  """Every floating leaf of `tree` as float32 (network outputs before a loss)."""
  return jax.tree.map(
      lambda a: a.astype(jnp.float32) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)
