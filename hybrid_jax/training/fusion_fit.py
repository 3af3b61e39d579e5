"""Fitting the 1x1 fusion conv's three numbers: full-batch Newton on the rule's likelihood.

The conv is w_inst * instance + w_pix * pixel + b, linear in its three numbers, and the loss
(`losses.fusion.fusion_row_loss`: a softmax over each row's allowed columns and a "no match"
option at logit 0) is a log-sum-exp of linear functions: convex. Newton's method with a small
L2 term on the two weights (so that separable data stays finite) converges in a handful of
steps, in float64, without a learning rate, and gives the same numbers on every run. Starting
from the paper's plain sum only matters for the step count.
"""

from __future__ import annotations

import numpy as np

from hybrid_jax.models import fusion
from hybrid_jax.tracking import matching


def _rows(inst, pix, target, allowed):
  """Candidate features x [R, N + 1, 3] (last = "no match", all zero), their mask [R, N + 1]
  and the target index [R], for the rows with at least one allowed entry."""
  allowed = np.asarray(allowed, bool)
  keep = allowed.any(-1)
  inst = np.asarray(inst, np.float64)[keep]
  pix = np.asarray(pix, np.float64)[keep]
  mask = allowed[keep]
  r, n = mask.shape
  x = np.zeros((r, n + 1, 3))
  x[:, :n, 0], x[:, :n, 1], x[:, :n, 2] = inst, pix, 1.0
  mask = np.concatenate([mask, np.ones((r, 1), bool)], 1)
  t = np.asarray(target)[keep]
  return x, mask, np.where(t >= 0, t, n)


def _as_vector(params) -> np.ndarray:
  k = np.asarray(params['conv']['kernel'], np.float64).ravel()
  return np.array([k[0], k[1], float(np.asarray(params['conv']['bias']).ravel()[0])])


def _as_params(v: np.ndarray):
  return {'conv': {'kernel': np.asarray(v[:2], np.float32).reshape(1, 1, 2, 1),
                   'bias': np.asarray(v[2:], np.float32)}}


def _softmax(v, x, mask):
  f = np.where(mask, x @ v, -np.inf)
  f = f - f.max(-1, keepdims=True)
  e = np.where(mask, np.exp(f), 0.0)
  return f, e / e.sum(-1, keepdims=True)


def _loss(v, x, mask, t, l2):
  f, p = _softmax(v, x, mask)
  logz = np.log(np.where(mask, np.exp(f), 0.0).sum(-1))
  nll = logz - f[np.arange(len(t)), t]
  return float(nll.mean() + 0.5 * l2 * np.sum(v[:2] ** 2))


def fit_fusion(inst, pix, target, allowed, *, l2: float = 1e-3, iterations: int = 50,
               tolerance: float = 1e-10, params=None):
  """Newton's method on `fusion_row_loss`; returns (params, losses).

  Args:
    inst, pix: float [B, M, N] instance and pixel matrices of training pairs.
    target: int [B, M] true column of each row or -1; allowed: bool [B, M, N].
    l2: weight of 0.5 * l2 * (w_inst^2 + w_pix^2) (the bias is not penalised).
    iterations: at most this many Newton steps; stops when the loss changes by < tolerance.
    params: start (default: the plain sum).

  Returns:
    (FusionConv params as float32 numpy, [loss before the first step, after each step]).
  """
  x, mask, t = _rows(inst, pix, target, allowed)
  v = _as_vector(fusion.init_fusion_params() if params is None else params)
  if len(t) == 0:
    return _as_params(v), [0.0]
  reg = np.diag([l2, l2, 0.0])
  losses = [_loss(v, x, mask, t, l2)]
  rows = np.arange(len(t))
  for _ in range(iterations):
    _, p = _softmax(v, x, mask)
    mean_x = np.einsum('rk,rkd->rd', p, x)
    grad = (mean_x - x[rows, t]).mean(0) + reg @ v
    second = np.einsum('rk,rkd,rke->de', p, x, x) / len(t)
    hess = second - mean_x.T @ mean_x / len(t) + reg + 1e-12 * np.eye(3)
    step = np.linalg.solve(hess, grad)
    scale = 1.0  # damped Newton: halve the step until the loss does not rise
    while scale > 1e-4 and _loss(v - scale * step, x, mask, t, l2) > losses[-1]:
      scale *= 0.5
    v = v - scale * step
    losses.append(_loss(v, x, mask, t, l2))
    if abs(losses[-2] - losses[-1]) < tolerance:
      break
  return _as_params(v), losses


def held_out_loss(params, inst, pix, target, allowed) -> float | None:
  """`fusion_row_loss` (without the L2 term) of `params` on other pairs; None without rows."""
  x, mask, t = _rows(inst, pix, target, allowed)
  return _loss(_as_vector(params), x, mask, t, 0.0) if len(t) else None


def row_decision_accuracy(params, inst, pix, target, allowed, *, threshold: float = 1e-5,
                          mutual_check: bool = True) -> float | None:
  """Fraction of rows the paper's matcher decides right with this fusion.

  A row with a counterpart is right when it is matched to it; a row without one when it is left
  unmatched. Rows are the valid instances of frame t-δ with at least one allowed entry or a
  counterpart. None when there is no such row.

  Args:
    params: FusionConv params (the plain sum or fitted).
    inst, pix: float [B, M, N]; target: int [B, M] true column or -1; allowed: bool [B, M, N].
  """
  right = total = 0
  for b in range(len(inst)):
    fused = np.asarray(fusion.fuse(params, np.asarray(inst[b]), np.asarray(pix[b])))
    match = matching.greedy_match(fused, allowed=allowed[b], threshold=threshold,
                                  mutual_check=mutual_check)
    rows = np.asarray(allowed[b]).any(1) | (np.asarray(target[b]) >= 0)
    right += int(((match == np.asarray(target[b])) & rows).sum())
    total += int(rows.sum())
  return right / total if total else None
