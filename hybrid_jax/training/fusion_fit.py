"""Fitting the 1x1 fusion conv's three numbers: the rule's likelihood, or its decisions.

The conv is w_inst * instance + w_pix * pixel + b. Two objectives (`OBJECTIVES`,
config track.fusion_objective):

* 'likelihood' (`fit_fusion`): the loss (`losses.fusion.fusion_row_loss`: a softmax over each
  row's allowed columns and a "no match" option at logit 0) is a log-sum-exp of linear
  functions: convex. Newton's method with a small L2 term on the two weights (so that
  separable data stays finite) converges in a handful of steps, in float64, without a
  learning rate, and gives the same numbers on every run. Starting from the paper's plain sum
  only matters for the step count.
* 'decisions' (`fit_fusion_decisions`): the rows the tracker's own rule (matcher, threshold,
  mutual check) decides right, maximised over a grid of the instance weight and the bias with
  the pixel weight 1 (the rule only sees the ratios when the threshold is ~0). Why: the
  likelihood places the "no match" boundary where it is best calibrated, and on ground-truth
  segments any dice threshold between ~0 and ~0.3 separates the rows; on predicted segments
  a fragment or a small person keeps its track only through a low dice, and the likelihood
  fit's boundary (dice ~0.12 on the demo) breaks those links where the pixel tracker (any
  overlap) keeps them (benchmarks/RESULTS.md, "The fusion's objective").
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
  return fusion.fusion_params(*(float(x) for x in v))


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


OBJECTIVES = ('likelihood', 'decisions')
# The decision fit's grid (pixel weight 1): the instance weight and the bias, from "pixel cue
# only" and "accept any overlap" to the instance cue 5x the pixel cue and "dice > 1 needed".
INSTANCE_WEIGHTS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0)
BIASES = (0.0, -0.001, -0.003, -0.01, -0.02, -0.05, -0.1, -0.2, -0.3, -0.5, -0.7, -1.0)


def _decisions(v, inst, pix, target, allowed, *, threshold, mutual_check, matcher):
  """(rows decided right, rows) with fusion vector `v` (w_inst, w_pix, b) and the rule."""
  match_fn = matching.get_matcher(matcher)
  right = total = 0
  for b in range(len(inst)):
    fused = v[0] * np.asarray(inst[b], np.float64) + v[1] * np.asarray(pix[b], np.float64) + v[2]
    match = np.asarray(match_fn(fused, allowed=allowed[b], threshold=threshold,
                                mutual_check=mutual_check))
    if not mutual_check:  # as VideoTracker.match: one row per column
      match = matching.resolve_conflicts(match, fused)
    rows = np.asarray(allowed[b]).any(1) | (np.asarray(target[b]) >= 0)
    right += int(((match == np.asarray(target[b])) & rows).sum())
    total += int(rows.sum())
  return right, total


def row_decision_accuracy(params, inst, pix, target, allowed, *, threshold: float = 1e-5,
                          mutual_check: bool = True, matcher: str = 'greedy') -> float | None:
  """Fraction of rows the tracker's matcher decides right with this fusion.

  A row with a counterpart is right when it is matched to it; a row without one when it is left
  unmatched. Rows are the valid instances of frame t-δ with at least one allowed entry or a
  counterpart. None when there is no such row.

  Args:
    params: FusionConv params (the plain sum or fitted).
    inst, pix: float [B, M, N]; target: int [B, M] true column or -1; allowed: bool [B, M, N].
    threshold, mutual_check, matcher: the tracker's rule (config.track).
  """
  right, total = _decisions(_as_vector(params), inst, pix, target, allowed, threshold=threshold,
                            mutual_check=mutual_check, matcher=matcher)
  return right / total if total else None


def fit_fusion_decisions(inst, pix, target, allowed, *, threshold: float = 1e-5,
                         mutual_check: bool = True, matcher: str = 'greedy',
                         instance_weights=INSTANCE_WEIGHTS, biases=BIASES):
  """The grid point (w_inst, 1, b) whose fusion the tracker's rule decides most rows right with.

  Ties (the count is an integer) go to the point whose 3x3 grid neighbourhood decides best on
  average (a point inside a plateau, not on its edge), then to the first in grid order (the
  smaller instance weight, the bias nearer 0). Exhaustive, so deterministic; ~1 s per 100 pairs.

  Args:
    inst, pix: float [B, M, N]; target: int [B, M] true column or -1; allowed: bool [B, M, N].
    threshold, mutual_check, matcher: the tracker's rule (config.track).

  Returns:
    (FusionConv params as float32 numpy, accuracy [len(instance_weights), len(biases)]; all
    zeros without rows, and the params are then the plain sum).
  """
  acc = np.zeros((len(instance_weights), len(biases)))
  for i, wi in enumerate(instance_weights):
    for j, b in enumerate(biases):
      right, total = _decisions(np.array([wi, 1.0, b]), inst, pix, target, allowed,
                                threshold=threshold, mutual_check=mutual_check, matcher=matcher)
      acc[i, j] = right / total if total else 0.0
  if not acc.any():
    return fusion.init_fusion_params(), acc
  padded = np.pad(acc, 1, constant_values=np.nan)
  neighbourhood = np.nanmean(np.stack([padded[1 + di:1 + di + acc.shape[0],
                                              1 + dj:1 + dj + acc.shape[1]]
                                       for di in (-1, 0, 1) for dj in (-1, 0, 1)]), axis=0)
  best = np.flatnonzero(acc.ravel() == acc.max())
  pick = best[np.argmax(neighbourhood.ravel()[best])]  # argmax: the first on ties
  i, j = np.unravel_index(pick, acc.shape)
  return _as_params(np.array([instance_weights[i], 1.0, biases[j]])), acc
