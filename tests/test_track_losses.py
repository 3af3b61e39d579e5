"""DML and comparison losses (hand computed), the embedding head, a few training steps."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hybrid_jax import errors
from hybrid_jax.data import categories
from hybrid_jax.losses import tracking as losses
from hybrid_jax.models import embedding_head

E_PREV = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
E_CUR = np.array([[2, 0], [0, 1], [9, 9]], np.float32)      # slot 2 is padding
V_PREV = np.array([1, 1, 1], bool)
V_CUR = np.array([1, 1, 0], bool)
TARGET = np.array([0, 1, -1], np.int32)                      # row 2: no counterpart


def _lse(*xs):
  return np.log(np.sum(np.exp(xs)))


def test_dml_mask_rows_without_counterpart():
  loss, m = losses.dml_loss(E_PREV, E_CUR, valid_prev=V_PREV, valid_cur=V_CUR, target=TARGET)
  # Row 0 logits (2, 0) target 0; row 1 logits (0, 1) target 1; row 2 left out.
  expect = ((_lse(2, 0) - 2) + (_lse(0, 1) - 1)) / 2
  assert float(loss) == pytest.approx(expect, rel=1e-6)
  assert int(m['count']) == 2 and float(m['accuracy']) == 1.0


def test_dml_dustbin_column():
  b = 0.5
  loss, m = losses.dml_loss(E_PREV, E_CUR, valid_prev=V_PREV, valid_cur=V_CUR, target=TARGET,
                            no_match='dustbin', dustbin_logit=b)
  expect = ((_lse(2, 0, b) - 2) + (_lse(0, 1, b) - 1) + (_lse(2, 1, b) - b)) / 3
  assert float(loss) == pytest.approx(expect, rel=1e-6)
  assert int(m['count']) == 3
  with pytest.raises(errors.ConfigError):
    losses.dml_loss(E_PREV, E_CUR, valid_prev=V_PREV, valid_cur=V_CUR, target=TARGET,
                    no_match='ignore')


def test_contrastive_and_triplet_by_hand():
  e_prev = np.array([[0.0, 0.0]], np.float32)
  e_cur = np.array([[0.5, 0.0], [0.0, 0.3]], np.float32)
  kw = dict(valid_prev=np.array([True]), valid_cur=np.array([True, True]),
            target=np.array([0], np.int32), margin=1.0)
  loss, _ = losses.LOSSES['contrastive'](e_prev, e_cur, **kw)
  assert float(loss) == pytest.approx((0.25 + 0.7 ** 2) / 2, rel=1e-5)
  loss, m = losses.LOSSES['triplet'](e_prev, e_cur, **kw)
  assert float(loss) == pytest.approx(0.5 - 0.3 + 1.0, rel=1e-5)
  assert float(m['accuracy']) == 0.0


def test_batched_loss_weights_by_rows():
  one, _ = losses.dml_loss(E_PREV, E_CUR, valid_prev=V_PREV, valid_cur=V_CUR, target=TARGET)
  empty_prev = np.zeros_like(V_PREV)
  loss, m = losses.batched_loss(
      'dml', np.stack([E_PREV, E_PREV]), np.stack([E_CUR, E_CUR]),
      valid_prev=np.stack([V_PREV, empty_prev]), valid_cur=np.stack([V_CUR, V_CUR]),
      target=np.stack([TARGET, TARGET]))
  assert float(loss) == pytest.approx(float(one), rel=1e-6)   # the empty pair counts zero
  assert int(m['count']) == 2


def test_pair_targets():
  np.testing.assert_array_equal(
      losses.pair_targets([6001, 6002, 7001, -1], [7001, 6001, -1]), [1, -1, 0, -1])


def _head(**kw):
  return embedding_head.EmbeddingHead(**{**dict(canvas=(4, 8), pool=1, hidden_dim=8,
                                                embed_dim=6), **kw})


def test_canvas_keeps_aspect_ratio_and_pads_with_zeros():
  h, w = 8, 20
  image = np.tile(np.arange(w, dtype=np.float32), (h, 1))[..., None]   # value = column
  masks = np.zeros((1, h, w), bool)
  masks[0, 2:4, 2:18] = True                                           # 2 x 16 box
  boxes = np.array([[2, 2, 18, 4]], np.float32)
  x = np.asarray(embedding_head.crop_to_canvas(image, masks, boxes, canvas_hw=(4, 8)))
  # Scale min(4/2, 8/16) = 0.5: the box fills the canvas width and 1 of its 4 rows.
  np.testing.assert_allclose(x[0, 0, :, 1], 1.0)
  np.testing.assert_array_equal(x[0, 1:], 0.0)
  # Canvas column v samples source x = 2 + (v + 0.5) / 0.5 - 0.5 = 2.5 + 2 v.
  np.testing.assert_allclose(x[0, 0, :, 0], 2.5 + 2 * np.arange(8), rtol=1e-6)
  # A tall 8 x 2 box: the same scale fills the height and one column.
  masks2 = np.zeros((1, h, w), bool)
  masks2[0, 0:8, 5:7] = True
  x2 = np.asarray(embedding_head.crop_to_canvas(
      image, masks2, np.array([[5, 0, 7, 8]], np.float32), canvas_hw=(4, 8)))
  np.testing.assert_allclose(x2[0, :, 0, 1], 1.0)
  np.testing.assert_array_equal(x2[0, :, 1:], 0.0)


def test_embedding_head_shapes_and_padding_rows():
  model = _head()
  params = embedding_head.init_head(model, jax.random.PRNGKey(0), image_hw=(8, 20),
                                    max_instances=3)
  assert params['fc1']['kernel'].shape == (4 * 8 * 4, 8)   # canvas 4x8, RGB*mask + mask
  masks = np.zeros((3, 8, 20), bool)
  masks[0, 1:5, 2:9] = True
  masks[1, 3:8, 10:12] = True
  boxes = np.array([[2, 1, 9, 5], [10, 3, 12, 8], [0, 0, 0, 0]], np.float32)
  image = np.random.default_rng(0).integers(0, 255, (8, 20, 3)).astype(np.uint8)
  emb = np.asarray(jax.jit(model.apply)({'params': params}, image, masks, boxes,
                                        np.array([1, 1, 0], bool)))
  assert emb.shape == (3, 6)
  assert np.all(emb[2] == 0) and np.abs(emb[:2]).sum() > 0
  pooled = _head(canvas=(8, 16), pool=4)
  p2 = jax.eval_shape(lambda: embedding_head.init_head(pooled, jax.random.PRNGKey(0),
                                                       image_hw=(8, 20)))
  assert p2['fc1']['kernel'].shape == (2 * 4 * 4, 8)   # 8x16 canvas pooled by 4 -> 2x4


def _clip():
  """Three 16x24 frames: two coloured squares moving right, a person appearing in frame 2."""
  t_, h, w = 3, 16, 24
  frames = np.zeros((t_, h, w, 3), np.uint8)
  pan = np.full((t_, h, w), 1000, np.int32)
  for t in range(t_):
    frames[t, 2:8, 2 + t:8 + t] = (255, 0, 0)
    pan[t, 2:8, 2 + t:8 + t] = 6001
    frames[t, 9:14, 12 + t:20 + t] = (0, 255, 0)
    pan[t, 9:14, 12 + t:20 + t] = 6002
  frames[2, 1:5, 18:22] = (0, 0, 255)
  pan[2, 1:5, 18:22] = 7001
  return frames, pan


def test_track_loss_fn_few_optax_steps_reduce_loss():
  frames, pan = _clip()
  batch = losses.make_pair_batch(frames, pan, [(0, 1), (1, 2), (0, 2)],
                                 categories=categories.SYNTHETIC, max_instances=4)
  np.testing.assert_array_equal(batch['target'][1], [0, 1, -1, -1])
  model = _head(canvas=(8, 16), pool=2, hidden_dim=32, embed_dim=16)
  params = embedding_head.init_head(model, jax.random.PRNGKey(1), image_hw=(16, 24),
                                    max_instances=4)
  opt = optax.adam(3e-2)
  state = opt.init(params)

  @jax.jit
  def step(params, state):
    (loss, metrics), g = jax.value_and_grad(losses.track_loss_fn, has_aux=True)(
        params, batch, None, model=model, loss_name='dml', no_match='dustbin')
    upd, state = opt.update(g, state, params)
    return optax.apply_updates(params, upd), state, loss, metrics, g

  params, state, first, _, g = step(params, state)
  assert float(jnp.abs(g['dustbin_logit'])) > 0   # the dustbin logit is trained
  for _ in range(8):
    # `loss` and `metrics` are evaluated at the parameters before this step's update.
    params, state, loss, metrics, _ = step(params, state)
  assert float(loss) < 0.5 * float(first)
  assert float(metrics['accuracy']) == 1.0
