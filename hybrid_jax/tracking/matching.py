"""Turning a fused m×n matching matrix into matches (§III.D), plus alternatives to compare.

Every matcher has one signature::

  matcher(score [M, N], *, allowed [M, N] bool, threshold, mutual_check) -> int32 [M]

returning, for each row (an instance of frame t-δ), the matched column (instance of frame t)
or -1. `allowed` carries validity of both slots and the same-category rule. `MATCHERS` maps
names ('greedy' = the paper, 'hungarian', 'sinkhorn') to them.

What is thresholded: the fused score itself, as the paper's "match probabilities": at the
plain-sum initialisation it is (instance softmax probability + dice), so the 1e-5 threshold
drops a pixel-tracker row whose dice is 0 everywhere (its arg-max would otherwise be an
arbitrary column). A row-softmax over the fused matrix would never fall below 1e-5 for such a
row (it would be uniform), so the threshold would be void; hence no second softmax.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from hybrid_jax import errors

_NEG = -1e30


@jax.jit
def _greedy(score, allowed, threshold, mutual_check):
  s = jnp.where(allowed, score, _NEG)
  best_col = jnp.argmax(s, axis=1)                     # row-wise arg-max
  best = jnp.take_along_axis(s, best_col[:, None], axis=1)[:, 0]
  ok = allowed.any(axis=1) & (best >= threshold)
  # Mutual check: column j's own arg-max over rows must point back to row i.
  best_row = jnp.argmax(s, axis=0)                     # [N]
  mutual = best_row[best_col] == jnp.arange(s.shape[0])
  ok = ok & jnp.where(mutual_check, mutual, True)
  return jnp.where(ok, best_col, -1).astype(jnp.int32)


def greedy_match(score, *, allowed, threshold: float = 1e-5, mutual_check: bool = True):
  """The paper's rule: row arg-max, drop scores below `threshold`, 1-to-1 mutual check.

  Without the mutual check several rows may claim the same column (many-to-one); the tracker
  then gives the column to the first such row and treats the others as unmatched.
  """
  return np.asarray(_greedy(jnp.asarray(score, jnp.float32), jnp.asarray(allowed, bool),
                            jnp.float32(threshold), jnp.asarray(bool(mutual_check))))


def hungarian_match(score, *, allowed, threshold: float = 1e-5, mutual_check: bool = True):
  """Maximum-total-score 1-to-1 assignment (scipy), then the same threshold.

  Already one-to-one, so `mutual_check` has nothing left to remove (accepted for the common
  signature).
  """
  del mutual_check
  score = np.asarray(score, np.float64)
  allowed = np.asarray(allowed, bool)
  out = np.full((score.shape[0],), -1, np.int32)
  rows = np.flatnonzero(allowed.any(axis=1))
  cols = np.flatnonzero(allowed.any(axis=0))
  if rows.size == 0 or cols.size == 0:
    return out
  sub = np.where(allowed[np.ix_(rows, cols)], score[np.ix_(rows, cols)], -1e9)
  r, c = scipy.optimize.linear_sum_assignment(sub, maximize=True)
  for i, j in zip(rows[r], cols[c]):
    if allowed[i, j] and score[i, j] >= threshold:
      out[i] = j
  return out


@jax.jit
def sinkhorn_plan(score, allowed, temperature, iterations):
  """Log-domain Sinkhorn normalisation of exp(score / temperature) over allowed entries.

  Returns the transport plan [M, N] whose valid rows and columns each sum to ~1 (up to the
  imbalance of M and N), a soft one-to-one assignment (dual-softmax in the limit of one step).
  """
  logk = jnp.where(allowed, score / temperature, _NEG)
  row_any = allowed.any(axis=1, keepdims=True)
  col_any = allowed.any(axis=0, keepdims=True)

  def body(_, logp):
    logp = logp - jnp.where(row_any, jax.nn.logsumexp(logp, axis=1, keepdims=True), 0.0)
    logp = logp - jnp.where(col_any, jax.nn.logsumexp(logp, axis=0, keepdims=True), 0.0)
    return logp

  logp = jax.lax.fori_loop(0, iterations, body, logk)
  return jnp.where(allowed, jnp.exp(logp), 0.0)


def sinkhorn_match(score, *, allowed, threshold: float = 1e-5, mutual_check: bool = True,
                   temperature: float = 0.1, iterations: int = 20):
  """Sinkhorn plan, then the paper's arg-max + mutual check on the plan.

  The threshold applies to the original score (same meaning as for 'greedy'), so switching
  matchers changes only how conflicts are resolved.
  """
  score = jnp.asarray(score, jnp.float32)
  allowed = jnp.asarray(allowed, bool)
  plan = sinkhorn_plan(score, allowed, jnp.float32(temperature), iterations)
  match = np.asarray(_greedy(plan, allowed, jnp.float32(0.0), jnp.asarray(bool(mutual_check))))
  s = np.asarray(score)
  keep = match >= 0
  keep[keep] = s[np.flatnonzero(keep), match[keep]] >= threshold
  return np.where(keep, match, -1).astype(np.int32)


MATCHERS: dict[str, Callable[..., np.ndarray]] = {
    'greedy': greedy_match,
    'hungarian': hungarian_match,
    'sinkhorn': sinkhorn_match,
}


def get_matcher(name: str):
  if name not in MATCHERS:
    raise errors.ConfigError(f'Unknown matcher {name!r}; choose one of {sorted(MATCHERS)}.')
  return MATCHERS[name]


def resolve_conflicts(match: np.ndarray, score: np.ndarray) -> np.ndarray:
  """One row per column: among rows claiming the same column the highest score keeps it.

  Needed only when the mutual check is off (the check already makes matches one-to-one).
  """
  match = np.asarray(match).copy()
  score = np.asarray(score)
  rows = np.flatnonzero(match >= 0)
  order = rows[np.argsort(-score[rows, match[rows]], kind='stable')]
  seen = set()
  for i in order:
    j = int(match[i])
    if j in seen:
      match[i] = -1
    else:
      seen.add(j)
  return match
