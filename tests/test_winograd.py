"""Winograd convs (F(2x2, 3x3) and F(4, 5) along one axis) against XLA's direct conv."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybrid_jax.models.raft import blocks as raft_layers
from hybrid_jax.models.raft import winograd


@pytest.mark.parametrize('m,r,points', [(2, 3, (0, 1, -1)), (4, 5, (0, 1, -1, 2, -2, 0.5, -0.5))])
def test_toom_cook_matrices_compute_a_correlation(m, r, points):
  at, g, bt = winograd.toom_cook(m, r, points)
  rng = np.random.default_rng(m)
  d, taps = rng.normal(size=m + r - 1), rng.normal(size=r)
  want = np.array([taps @ d[i:i + r] for i in range(m)])
  np.testing.assert_allclose(at @ ((g @ taps) * (bt @ d)), want, atol=1e-12)


@pytest.mark.parametrize('kh,kw', [(3, 3), (1, 5), (5, 1)])
@pytest.mark.parametrize('b,h,w,i,o', [(1, 6, 8, 5, 3), (2, 7, 5, 4, 6), (1, 1, 1, 3, 2)])
def test_conv_equals_direct_conv(kh, kw, b, h, w, i, o):
  rng = np.random.default_rng(h * w + kh)
  x = jnp.asarray(rng.normal(size=(b, h, w, i)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(kh, kw, i, o)), jnp.float32)
  bias = jnp.asarray(rng.normal(size=(o,)), jnp.float32)
  want = raft_layers.conv2d(x, k, bias)
  got = jax.jit(lambda x, k, bias: winograd.conv(x, winograd.transform(k), bias))(x, k, bias)
  assert got.shape == want.shape == (b, h, w, o)  # sizes off the tile grid are cropped
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('kh,kw', [(3, 3), (1, 5)])
def test_gradients_equal_direct_conv(kh, kw):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 5, 6, 4)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(kh, kw, 4, 3)), jnp.float32)
  target = jnp.asarray(rng.normal(size=(2, 5, 6, 3)), jnp.float32)

  def grads(fn):
    return jax.grad(lambda x, k: jnp.sum((fn(x, k) - target)**2), argnums=(0, 1))(x, k)
  gx, gk = grads(lambda x, k: winograd.conv(x, winograd.transform(k)))
  dx, dk = grads(lambda x, k: raft_layers.conv2d(x, k))
  np.testing.assert_allclose(gx, dx, rtol=1e-3, atol=1e-3)
  np.testing.assert_allclose(gk, dk, rtol=1e-3, atol=1e-3)


def test_other_kernel_sizes_are_refused_and_stay_direct():
  assert not winograd.supports((7, 7, 2, 4)) and winograd.supports((5, 1, 2, 4))
  with pytest.raises(ValueError, match='7x7'):
    winograd.transform(jnp.zeros((7, 7, 2, 2)))
  k = jnp.zeros((1, 1, 2, 2))
  assert raft_layers.prepare_kernel(k, use_winograd=True) is k
