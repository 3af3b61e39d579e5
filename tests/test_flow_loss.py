"""RAFT sequence loss, EPE metrics, one-cycle schedule and a few training steps."""

import jax
import jax.numpy as jnp
import numpy as np
import ml_collections
import optax
import pytest

from hybrid_jax.losses import flow as flow_losses
from hybrid_jax.training import optim
from hybrid_jax.models.raft import model as raft


def test_sequence_loss_hand_case():
  # B=1, H=1, W=3. Pixel 1 has |gt| >= 400 (excluded), pixel 2 is marked invalid.
  gt = jnp.array([[[[1.0, 0.0], [500.0, 0.0], [0.0, 0.0]]]])
  valid = jnp.array([[[1.0, 1.0, 0.0]]])
  preds = jnp.stack([
      jnp.array([[[[0.0, 0.0], [0.0, 0.0], [10.0, 10.0]]]]),   # |err| at pixel 0: (1, 0)
      jnp.array([[[[1.0, 2.0], [0.0, 0.0], [10.0, 10.0]]]]),   # |err| at pixel 0: (0, 2)
  ])
  loss, metrics = flow_losses.sequence_loss(preds, gt, valid, gamma=0.8)
  # mean over all 3 px x 2 channels: iteration 0 -> 1/6 (weight 0.8), iteration 1 -> 2/6 (1).
  np.testing.assert_allclose(float(loss), 0.8 / 6 + 2 / 6, rtol=1e-6)
  np.testing.assert_allclose(float(metrics['epe']), 2.0, rtol=1e-6)  # only pixel 0 counts
  assert float(metrics['1px']) == 0.0
  assert float(metrics['3px']) == 1.0 and float(metrics['5px']) == 1.0
  loss_g, _ = flow_losses.sequence_loss(preds, gt, valid, gamma=0.5)
  np.testing.assert_allclose(float(loss_g), 0.5 / 6 + 2 / 6, rtol=1e-6)


@pytest.mark.slow  # ~13 s compile + 6 steps of CPU; still run by default
def test_training_steps_reduce_loss():
  rng = np.random.default_rng(0)
  tex = rng.uniform(0, 255, (1, 40, 56, 3)).astype(np.float32)
  img1, img2 = tex[:, 4:36, 4:52], tex[:, 3:35, 6:54]  # content moves by (-2, +1)
  gt = jnp.broadcast_to(jnp.array([-2.0, 1.0]), (1, 32, 48, 2))
  model = raft.RAFT(variant='small')
  params = raft.init_raft(0, variant='small')['params']
  # The flow stage's optimiser: clip at 1, AdamW, one-cycle learning rate (warm-up of 1 step).
  cfg = ml_collections.ConfigDict(dict(
      steps=20, optimizer='adamw', lr=2e-4, weight_decay=1e-4, schedule='onecycle',
      warmup_steps=1, grad_clip=1.0))
  tx = optax.chain(optim.make_optimizer(cfg), optax.scale_by_schedule(optim.make_schedule(cfg)))
  opt_state = tx.init(params)

  def loss_fn(p):
    preds = model.apply({'params': p}, img1, img2, iters=2, train=True)
    assert preds.shape == (2, 1, 32, 48, 2)
    return flow_losses.sequence_loss(preds, gt)[0]

  def step(p, s):
    loss, grads = jax.value_and_grad(loss_fn)(p)
    updates, s = tx.update(grads, s, p)
    return optax.apply_updates(p, updates), s, loss

  # Backend optimisation level 0: the encoders' conv gradients otherwise take ~40 s of CPU to
  # compile; the arithmetic is the same.
  step = jax.jit(step).lower(params, opt_state).compile(
      compiler_options={'xla_backend_optimization_level': 0})
  losses = []
  for _ in range(6):
    params, opt_state, loss = step(params, opt_state)
    losses.append(float(loss))
  assert np.all(np.isfinite(losses))
  assert np.mean(losses[-2:]) < 0.75 * losses[0], losses


def test_val_epe_pads_a_short_last_batch_without_changing_the_numbers():
  """evaluate_epe on 4 pairs in batches of 3 (the last one padded) equals one pair per call,
  pair by pair summed by hand; a wrong slice of the padded batch would count a repeat."""
  from hybrid_jax.training.stages import train_flow  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 255, (11, 32, 64, 3), dtype=np.uint8)
  flow = rng.normal(0, 2, (11, 32, 64, 2)).astype(np.float32)
  valid = rng.random((11, 32, 64)) > 0.2
  source = [{'frames': frames, 'flow': flow, 'flow_valid': valid}]
  variables = raft.init_raft(0, variant='small', height=32, width=64)
  kw = dict(variant='small', iters=2, stride=3)
  padded = train_flow.evaluate_epe(variables, source, batch=3, **kw)
  single = train_flow.evaluate_epe(variables, source, batch=1, **kw)
  assert padded['pairs'] == single['pairs'] == 4
  err, n = 0.0, 0
  for t in (0, 3, 6, 9):
    pred = np.asarray(raft.estimate_flow(variables, frames[t], frames[t + 1], variant='small',
                                         iters=2))
    err += float(np.linalg.norm(pred - flow[t], axis=-1)[valid[t]].sum())
    n += int(valid[t].sum())
  for result in (padded, single):
    np.testing.assert_allclose(result['epe'], err / n, rtol=1e-5)
