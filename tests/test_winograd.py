"""Winograd F(2x2, 3x3) against XLA's direct conv: values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybrid_jax.models import raft_layers, winograd


@pytest.mark.parametrize('b,h,w,i,o', [(1, 6, 8, 5, 3), (2, 7, 5, 4, 6), (1, 1, 1, 3, 2)])
def test_conv3x3_equals_direct_conv(b, h, w, i, o):
  rng = np.random.default_rng(h * w)
  x = jnp.asarray(rng.normal(size=(b, h, w, i)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(3, 3, i, o)), jnp.float32)
  bias = jnp.asarray(rng.normal(size=(o,)), jnp.float32)
  want = raft_layers.conv2d(x, k, bias)
  got = jax.jit(lambda x, k, bias: winograd.conv3x3(x, winograd.transform_kernel(k), bias))(
      x, k, bias)
  assert got.shape == want.shape == (b, h, w, o)  # odd sizes: the extra tile row is cropped
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_gradients_equal_direct_conv():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 5, 6, 4)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(3, 3, 4, 3)), jnp.float32)
  target = jnp.asarray(rng.normal(size=(2, 5, 6, 3)), jnp.float32)

  def loss(fn):
    return jax.grad(lambda x, k: jnp.sum((fn(x, k) - target)**2), argnums=(0, 1))(x, k)
  gx, gk = loss(lambda x, k: winograd.conv3x3(x, winograd.transform_kernel(k)))
  dx, dk = loss(lambda x, k: raft_layers.conv2d(x, k))
  np.testing.assert_allclose(gx, dx, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(gk, dk, rtol=1e-4, atol=1e-4)


def test_rejects_other_kernel_sizes():
  with pytest.raises(ValueError, match='3x3'):
    winograd.transform_kernel(jnp.zeros((1, 5, 2, 2)))
