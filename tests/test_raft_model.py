"""RAFT model pieces: parameter counts, padding, correlation lookup, upsampling, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from hybrid_jax import errors
from hybrid_jax.models.raft import model as raft
from hybrid_jax.models.raft import corr as raft_corr
from hybrid_jax.models.raft import blocks as raft_layers


@pytest.mark.parametrize('variant,expected', [('standard', 5_257_536), ('small', 990_162)])
def test_parameter_counts(variant, expected):
  variables = raft.init_raft(0, variant=variant)
  assert raft.count_params(variables['params']) == expected
  # Kaiming-normal fan_out for encoder kernels (official init): std sqrt(2 / (7*7*64)).
  if variant == 'standard':
    np.testing.assert_allclose(variables['params']['fnet']['conv1']['kernel'].std(),
                               np.sqrt(2 / (49 * 64)), rtol=0.05)
  # Only the standard context encoder has BatchNorm statistics (15 real BN layers).
  stats = variables.get('batch_stats', {})
  assert len(jax.tree_util.tree_leaves(stats)) == (30 if variant == 'standard' else 0)


@pytest.mark.parametrize('h,w,mode,pads', [
    (436, 1024, 'sintel', (2, 2, 0, 0)),   # reference §2.8 examples
    (375, 1242, 'kitti', (0, 1, 3, 3)),
    (37, 45, 'sintel', (1, 2, 1, 2)),
    (64, 64, 'sintel', (0, 0, 0, 0)),
])
def test_padding_matches_input_padder(h, w, mode, pads):
  assert raft.padding_for(h, w, mode=mode) == pads
  x = jnp.asarray(np.random.default_rng(0).uniform(0, 255, (1, h, w, 3)), jnp.float32)
  padded = raft.pad_images(x, pads)
  assert padded.shape[1] % 8 == 0 and padded.shape[2] % 8 == 0
  np.testing.assert_array_equal(raft.unpad(padded, pads), x)
  # Edge replication, not zeros.
  if pads[0]:
    np.testing.assert_array_equal(padded[:, 0, pads[2]:pads[2] + w], x[:, 0])


def _lookup(f1, f2, coords, *, mode, levels, radius):
  """corr_init + corr_lookup under one jit (eager dispatch of the many small ops is slow)."""
  fn = jax.jit(lambda a, b, c: raft_corr.corr_lookup(
      raft_corr.corr_init(a, b, mode=mode, num_levels=levels, radius=radius), c, radius=radius))
  return np.asarray(fn(jnp.asarray(f1), jnp.asarray(f2), jnp.asarray(coords)))


def _naive_lookup(vol, coords, r):
  """Per-pixel bilinear sampling with zero padding via scipy (order=1), x-major channels."""
  b, h, w, hi, wi = vol.shape
  out = np.zeros((b, h, w, (2 * r + 1)**2), np.float64)
  offs = np.arange(-r, r + 1)
  for bb in range(b):
    for i in range(h):
      for j in range(w):
        x, y = coords[bb, i, j]
        xs, ys = np.meshgrid(x + offs, y + offs, indexing='ij')  # first index moves x
        # pad by one zero ring so that order=1 interpolation sees zeros outside the grid
        img = np.pad(vol[bb, i, j].astype(np.float64), 1)
        out[bb, i, j] = ndimage.map_coordinates(img, [ys.ravel() + 1, xs.ravel() + 1], order=1,
                                                mode='constant', cval=0.0)
  return out


def test_lookup_matches_naive_bilinear_and_on_demand_equals_all_pairs():
  rng = np.random.default_rng(1)
  b, h, w, d, r = 2, 5, 7, 16, 2
  f1 = rng.normal(size=(b, h, w, d)).astype(np.float32)
  f2 = rng.normal(size=(b, h, w, d)).astype(np.float32)
  # Positions inside, near the border and far outside the grid (zero padding).
  coords = np.stack(np.meshgrid(np.arange(w), np.arange(h), indexing='xy'), -1)[None]
  coords = coords + rng.uniform(-3.5, 3.5, (b, h, w, 2))
  coords[0, 0, 0] = (-40.3, 2.2)
  coords[1, 4, 6] = (6.7, 30.1)
  coords = coords.astype(np.float32)
  got = _lookup(f1, f2, coords, mode='all_pairs', levels=2, radius=r)
  vol0 = np.einsum('bijd,bkld->bijkl', f1, f2) / np.sqrt(d)
  vol1 = vol0[..., :4, :6].reshape(b, h, w, 2, 2, 3, 2).mean(axis=(4, 6))  # floor 2x2 pooling
  want = np.concatenate([_naive_lookup(vol0, coords, r), _naive_lookup(vol1, coords / 2, r)], -1)
  np.testing.assert_allclose(got, want, atol=2e-5)
  assert got.shape == (b, h, w, 2 * 25)
  got_od = _lookup(f1, f2, coords, mode='on_demand', levels=2, radius=r)
  assert np.abs(got_od - got).max() < 1e-5


def test_on_demand_equals_all_pairs_with_chunking(monkeypatch):
  # A tiny chunk budget forces several lax.map chunks plus a padded last chunk.
  monkeypatch.setattr(raft_corr, '_ON_DEMAND_CHUNK_BYTES', 3 * 49 * 8 * 4)
  rng = np.random.default_rng(2)
  f1 = rng.normal(size=(1, 8, 10, 8)).astype(np.float32)
  f2 = rng.normal(size=(1, 8, 10, 8)).astype(np.float32)
  coords = np.asarray(raft.coords_grid(1, 8, 10)) + rng.uniform(-6, 6, (1, 8, 10, 2))
  a = _lookup(f1, f2, coords.astype(np.float32), mode='all_pairs', levels=4, radius=3)
  o = _lookup(f1, f2, coords.astype(np.float32), mode='on_demand', levels=4, radius=3)
  assert a.shape == (1, 8, 10, 196)
  assert np.abs(a - o).max() < 1e-5
  assert np.abs(a[..., 147:]).max() > 0  # level 3 (1x1) contributes


def test_convex_upsample_constant_flow_and_border():
  flow = jnp.ones((1, 3, 4, 2), jnp.float32) * jnp.array([1.5, -2.0])
  mask = jnp.zeros((1, 3, 4, 576), jnp.float32)  # uniform weights over 9 neighbours
  up = np.asarray(jax.jit(raft.convex_upsample)(flow, mask))
  assert up.shape == (1, 24, 32, 2)
  np.testing.assert_allclose(up[0, 8:16, 8:16], np.broadcast_to([12.0, -16.0], (8, 8, 2)),
                             rtol=1e-6)
  # Corner cell: 4 of its 9 neighbours are inside, the rest are zero padding.
  np.testing.assert_allclose(up[0, 0, 0], np.array([12.0, -16.0]) * 4 / 9, rtol=1e-6)


def test_bilinear_upsample_align_corners():
  flow = jnp.asarray(np.arange(6, dtype=np.float32).reshape(1, 2, 3, 1).repeat(2, -1))
  up = np.asarray(raft.bilinear_upsample8(flow))
  assert up.shape == (1, 16, 24, 2)
  np.testing.assert_allclose(up[0, 0, 0], 0.0)
  np.testing.assert_allclose(up[0, -1, -1], 8 * 5.0, rtol=1e-6)  # corners map exactly
  # Row 0, column 23/23*2 = 2 source; column 1 -> 2/23 in source units.
  np.testing.assert_allclose(up[0, 0, 1, 0], 8 * (2 / 23), rtol=1e-5)


def test_bad_inputs_raise_named_errors():
  fake = raft.init_raft(0, variant='small')
  img = np.zeros((40, 48, 3), np.uint8)
  with pytest.raises(errors.FormatError, match='differ in size'):
    raft.estimate_flow(fake, img, np.zeros((40, 56, 3), np.uint8), variant='small')
  with pytest.raises(errors.FormatError, match='channels'):
    raft.estimate_flow(fake, img[..., :1], img[..., :1], variant='small')
  with pytest.raises(errors.FormatError, match='empty'):
    raft.estimate_flow(fake, img[:0], img[:0], variant='small')
  with pytest.raises(errors.CheckpointError, match="'small'.*'standard'"):
    raft.estimate_flow(fake, img, img, variant='standard')
  with pytest.raises(errors.ConfigError):
    raft.estimate_flow(fake, img, img, variant='small', corr='dense')


def test_gru_context_split_equals_one_conv_per_gate():
  # gru_prepare moves the context's share of each gate out of the loop; the result must be
  # the official gate: sigmoid/tanh of one conv over concat([h, inp, motion]).
  rng = np.random.default_rng(3)
  hid, ctx, mot = 4, 3, 5

  def arr(*s):
    return jnp.asarray(rng.normal(size=s) * 0.5, jnp.float32)
  p = {f'conv{g}{s}': (arr(*ks, hid + ctx + mot, hid), arr(hid))
       for s, ks in (('1', (1, 5)), ('2', (5, 1))) for g in 'zrq'}
  h, inp, motion = arr(1, 6, 7, hid), arr(1, 6, 7, ctx), arr(1, 6, 7, mot)
  want = h
  for s in '12':
    x = jnp.concatenate([inp, motion], -1)
    hx = jnp.concatenate([want, x], -1)
    z = jax.nn.sigmoid(raft_layers.conv2d(hx, *p['convz' + s]))
    r = jax.nn.sigmoid(raft_layers.conv2d(hx, *p['convr' + s]))
    q = jnp.tanh(raft_layers.conv2d(jnp.concatenate([r * want, x], -1), *p['convq' + s]))
    want = (1 - z) * want + z * q
  got = raft_layers.gru_step(raft_layers.gru_prepare(p, inp, small=False), h, motion)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('variant', ['small', 'standard'])
def test_winograd_loop_equals_direct_convs(variant):
  rng = np.random.default_rng(4)
  img1 = rng.uniform(0, 255, (1, 48, 64, 3)).astype(np.float32)
  img2 = np.roll(img1, (1, 2), axis=(1, 2))
  variables = raft.init_raft(0, variant=variant)
  flows = [np.asarray(jax.jit(lambda v, a, b, wg=wg: raft.RAFT(variant=variant, winograd=wg)
                              .apply(v, a, b, iters=3)[1])(variables, img1, img2))
           for wg in (True, False)]
  assert np.abs(flows[1]).max() > 0.01
  np.testing.assert_allclose(flows[0], flows[1], atol=1e-4)


def test_cpu_compiler_option_unknown_to_xla_falls_back(monkeypatch, caplog):
  monkeypatch.setattr(raft, 'CPU_COMPILER_OPTIONS', {'xla_cpu_option_that_does_not_exist': ''})
  raft._cpu_options_supported.cache_clear()
  try:
    with caplog.at_level('WARNING'):
      assert raft.cpu_compiler_options() is None
    assert 'xla_cpu_option_that_does_not_exist' in caplog.text
    variables = raft.init_raft(0, variant='small')
    img = np.random.default_rng(0).uniform(0, 255, (32, 40, 3)).astype(np.float32)
    flow = raft.estimate_flow(variables, img, img, variant='small', iters=2)  # default kernels
    assert flow.shape == (32, 40, 2) and np.isfinite(np.asarray(flow)).all()
  finally:
    raft._cpu_options_supported.cache_clear()
  monkeypatch.undo()
  assert raft.cpu_compiler_options() == {'xla_cpu_experimental_ynn_fusion_type': ''}
