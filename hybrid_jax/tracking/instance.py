"""Instance tracker's association (§III.B, eq. 4): p(j | i) from instance embeddings.

The embeddings come from `models.embedding_head` (masked RoIs -> two FC layers); this is the
matrix the instance tracker feeds to matching, and the one the DML loss trains
(`losses.tracking.dml_loss` is the same softmax with a cross-entropy on top).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

@jax.jit
def instance_similarity(emb_prev, emb_cur, valid_prev, valid_cur, dustbin_logit=None):
  """The instance tracker's matrix: p(j | i) = softmax over valid j of M_i . N_j (eq. 4).

  Args:
    emb_prev: float [M, D]; emb_cur: float [N, D]; valid_prev: bool [M]; valid_cur: bool [N].
    dustbin_logit: optional scalar. When the head was trained with the DML 'dustbin' rule,
      passing its learned logit adds the "no counterpart" column to the softmax (then drops
      it), so an instance that left the view gets low probabilities everywhere instead of
      at least 1/n on every column.

  Returns:
    float32 [M, N] row-stochastic over valid columns (sub-stochastic with a dustbin); 0 in
    invalid rows and columns.
  """
  logits = jnp.matmul(emb_prev.astype(jnp.float32), emb_cur.astype(jnp.float32).T,
                      precision=jax.lax.Precision.HIGHEST)
  logits = jnp.where(valid_cur[None, :], logits, -jnp.inf)
  if dustbin_logit is not None:
    col = jnp.full((logits.shape[0], 1), dustbin_logit, jnp.float32)
    p = jax.nn.softmax(jnp.concatenate([logits, col], axis=1), axis=-1)[:, :-1]
  else:
    p = jax.nn.softmax(jnp.where(valid_cur.any(), logits, 0.0), axis=-1)
  return jnp.where(valid_prev[:, None] & valid_cur[None, :], p, 0.0)
