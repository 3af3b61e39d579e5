"""Matching rules (greedy + threshold + mutual check, Hungarian, Sinkhorn) and fusion."""

import numpy as np
import pytest

from hybrid_jax import errors
from hybrid_jax.losses import fusion as fusion_losses
from hybrid_jax.models import fusion
from hybrid_jax.training import fusion_fit
from hybrid_jax.tracking import matching

ALL = np.ones((2, 2), bool)


def test_mutual_check_removes_many_to_one():
  score = np.array([[0.6, 0.1, 0.0],
                    [0.9, 0.2, 0.0],
                    [0.0, 0.1, 0.7]], np.float32)
  allowed = np.ones((3, 3), bool)
  with_check = matching.greedy_match(score, allowed=allowed, mutual_check=True)
  np.testing.assert_array_equal(with_check, [-1, 0, 2])   # row 0 loses column 0 to row 1
  without = matching.greedy_match(score, allowed=allowed, mutual_check=False)
  np.testing.assert_array_equal(without, [0, 0, 2])
  np.testing.assert_array_equal(matching.resolve_conflicts(without, score), [-1, 0, 2])


def test_threshold_drops_rows_without_evidence():
  score = np.array([[0.0, 0.0], [2e-5, 0.0]], np.float32)   # row 0: dice 0 everywhere
  got = matching.greedy_match(score, allowed=ALL, threshold=1e-5, mutual_check=False)
  np.testing.assert_array_equal(got, [-1, 0])
  got = matching.greedy_match(score, allowed=ALL, threshold=3e-5, mutual_check=False)
  np.testing.assert_array_equal(got, [-1, -1])


def test_allowed_mask_excludes_pairs():
  score = np.array([[0.9, 0.5]], np.float32)
  got = matching.greedy_match(score, allowed=np.array([[False, True]]))
  np.testing.assert_array_equal(got, [1])
  got = matching.greedy_match(score, allowed=np.zeros((1, 2), bool))
  np.testing.assert_array_equal(got, [-1])


def test_hungarian_and_sinkhorn_resolve_conflict_globally():
  # Greedy: both rows want column 0; the mutual check gives it to row 0 and row 1 is lost.
  # The best 1-to-1 assignment is row0->1, row1->0 (0.8 + 0.85 > 0.9 + 0.1).
  score = np.array([[0.9, 0.8], [0.85, 0.1]], np.float32)
  np.testing.assert_array_equal(matching.greedy_match(score, allowed=ALL), [0, -1])
  np.testing.assert_array_equal(matching.MATCHERS['hungarian'](score, allowed=ALL), [1, 0])
  # Sinkhorn at temperature 0.1: doubly-stochastic plan [[p, 1-p], [1-p, p]] with
  # p / (1 - p) = exp(-3.25) by the cross-ratio, i.e. p ~= 0.037.
  plan = np.asarray(matching.sinkhorn_plan(score, ALL, np.float32(0.1), 50))
  p = np.exp(-3.25) / (1 + np.exp(-3.25))
  np.testing.assert_allclose(plan, [[p, 1 - p], [1 - p, p]], atol=1e-4)
  np.testing.assert_array_equal(matching.MATCHERS['sinkhorn'](score, allowed=ALL), [1, 0])
  # Threshold still applies to the raw score.
  np.testing.assert_array_equal(
      matching.MATCHERS['hungarian'](score, allowed=ALL, threshold=0.82), [-1, 0])


def test_unknown_matcher_is_config_error():
  with pytest.raises(errors.ConfigError, match='greedy'):
    matching.get_matcher('dual_softmax_typo')


def test_fusion_initialised_to_plain_sum():
  params = fusion.init_fusion_params()
  np.testing.assert_array_equal(np.asarray(params['conv']['kernel']).ravel(), [1.0, 1.0])
  np.testing.assert_array_equal(np.asarray(params['conv']['bias']), [0.0])
  rng = np.random.default_rng(0)
  inst, pix = rng.random((2, 3, 4)).astype(np.float32)
  np.testing.assert_allclose(np.asarray(fusion.fuse(params, inst, pix)), inst + pix, rtol=1e-6)


def test_fit_fusion_learns_to_trust_the_informative_cue():
  # Pixel matrix points at the true column; the instance matrix at a wrong one.
  b, m = 4, 3
  target = np.tile(np.arange(m), (b, 1)).astype(np.int32)
  pix = np.tile(np.eye(m, dtype=np.float32) * 0.8, (b, 1, 1))
  inst = np.tile(np.roll(np.eye(m, dtype=np.float32), 1, axis=1) * 0.6, (b, 1, 1))
  allowed = np.ones((b, m, m), bool)
  loss0 = float(fusion_losses.fusion_row_loss(fusion.init_fusion_params(), inst=inst, pix=pix,
                                              target=target, allowed=allowed))
  params, losses = fusion_fit.fit_fusion(inst, pix, target, allowed)
  assert fusion_fit.held_out_loss(fusion.init_fusion_params(), inst, pix, target,
                                 allowed) == pytest.approx(loss0, rel=1e-5)
  assert losses[-1] < 0.5 * loss0
  w = np.asarray(params['conv']['kernel']).ravel()
  assert w[1] > w[0]
