"""A tiny conv model and training driver shared by the test_training* tests (no tests here).

Also a command-line entry so that the multi-device, multi-process and SIGTERM tests can run
the very same training in subprocesses:
  python tests/test_training_support.py --workdir W --num-steps N --out params.npz
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

TOTAL_STEPS = 6        # the schedule's length (config.<stage>.train.steps)
GLOBAL_BATCH = 8
HW = 8


def train_config(**overrides):
  import ml_collections  # pylint: disable=g-import-not-at-top
  cfg = ml_collections.ConfigDict(dict(
      steps=TOTAL_STEPS, batch_size=GLOBAL_BATCH, optimizer='adamw', lr=3e-2, momentum=0.9,
      weight_decay=1e-4, schedule='cosine', warmup_steps=2, grad_clip=1.0))
  cfg.update(overrides)
  return cfg


def shared_config(**overrides):
  import ml_collections  # pylint: disable=g-import-not-at-top
  cfg = ml_collections.ConfigDict(dict(
      checkpoint_every_steps=2, keep_checkpoints=2, log_every_steps=1, max_bad_steps=3,
      profile_steps=''))
  cfg.update(overrides)
  return cfg


def make_model(width: int = 4):
  import flax.linen as nn  # pylint: disable=g-import-not-at-top

  class TinyNet(nn.Module):
    """Conv -> BN -> relu -> conv -> global mean -> dense(2). Input [B, 8, 8, 3]."""
    width: int = 4

    @nn.compact
    def __call__(self, x, *, train: bool):
      # No bias before BN: its gradient is pure rounding noise, which Adam would amplify.
      x = nn.Conv(self.width, (3, 3), use_bias=False, name='conv1')(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name='bn1')(x)
      x = nn.relu(x)
      x = nn.Conv(self.width, (3, 3), name='conv2')(x)
      x = x.mean(axis=(1, 2))
      return nn.Dense(2, name='head')(x)

  return TinyNet(width)


def host_batch(step: int, *, nan_steps=()):
  """The process-local slice of the deterministic global batch of `step`."""
  import jax  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(1000 + step)
  images = rng.normal(size=(GLOBAL_BATCH, HW, HW, 3)).astype(np.float32)
  targets = rng.normal(size=(GLOBAL_BATCH, 2)).astype(np.float32)
  if step in nan_steps:
    images[:] = np.nan
  n = GLOBAL_BATCH // jax.process_count()
  lo = jax.process_index() * n
  return {'image': images[lo:lo + n], 'target': targets[lo:lo + n],
          'name': np.array([f'ex{i}' for i in range(lo, lo + n)])}


def data_factory(nan_steps=(), sleep=0.0):
  def make(start_step):
    step = start_step
    while True:
      if sleep:
        time.sleep(sleep)
      yield host_batch(step, nan_steps=nan_steps)
      step += 1
  return make


def numpy_init(model, seed: int = 0):
  """Deterministic variables without compiling Flax's initialisers (seconds each on CPU)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, HW, HW, 3)),
                                             train=False))
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = str(path[-1].key)
    if name in ('scale', 'var'):
      return np.ones(leaf.shape, np.float32)
    if name in ('bias', 'mean'):
      return np.zeros(leaf.shape, np.float32)
    return (rng.normal(size=leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))).astype(np.float32)
  return jax.tree_util.tree_map_with_path(fill, shapes)


_SETUP_CACHE = {}


def cached_setup(*, mesh, key='default', **kw):
  """`setup` once per (device count, key): reusing train_step skips recompiling it."""
  cache_key = (mesh.size, key)
  if cache_key not in _SETUP_CACHE:
    _SETUP_CACHE[cache_key] = setup(mesh=mesh, **kw)
  return _SETUP_CACHE[cache_key]


def setup(*, mesh, train_cfg=None, frozen=(), width=4):
  """Returns (fresh state, train_step, tx, schedule) for the tiny model."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from hybrid_jax.training import optim  # pylint: disable=g-import-not-at-top
  from hybrid_jax.training import state as state_lib
  from hybrid_jax.training import step as step_lib
  cfg = train_cfg or train_config()
  model = make_model(width)
  variables = numpy_init(model)

  def loss_fn(params, batch_stats, batch, rng):
    # A random (but step-deterministic) scale exercises the per-step rng.
    scale = 1.0 + 0.1 * jax.random.uniform(rng, ())
    out, updates = model.apply({'params': params, 'batch_stats': batch_stats},
                               batch['image'] * scale, train=True, mutable=['batch_stats'])
    mse = jnp.mean((out - batch['target']) ** 2)
    l1 = jnp.mean(jnp.abs(out - batch['target']))
    return mse + 0.1 * l1, ({'mse': mse, 'l1': l1}, updates['batch_stats'])

  tx = optim.make_optimizer(cfg, frozen=frozen, params=variables['params'])
  schedule = optim.make_schedule(cfg)
  state = state_lib.create_train_state(variables['params'], tx,
                                       batch_stats=variables['batch_stats'])
  train_step = step_lib.make_train_step(loss_fn, tx, mesh=mesh, rng=jax.random.key(1),
                                        schedule=schedule)
  return state, train_step, tx, schedule


def run(workdir, num_steps, *, mesh=None, shared=None, nan_steps=(), sleep=0.0, hooks=(),
        setup_out=None, stage_name='seg', **kw):
  """Trains the tiny model with train_loop; returns the final state."""
  from hybrid_jax.training import loop  # pylint: disable=g-import-not-at-top
  from hybrid_jax.training import mesh as mesh_lib
  mesh = mesh or mesh_lib.make_mesh()
  state, train_step, _, _ = setup_out or cached_setup(mesh=mesh)
  return loop.train_loop(
      workdir=workdir, state=state, train_step=train_step,
      make_data_iterator=data_factory(nan_steps, sleep), num_steps=num_steps, mesh=mesh,
      train_cfg=shared or shared_config(), stage_name=stage_name, hooks=hooks, **kw)


def flat_params(state) -> dict[str, np.ndarray]:
  from hybrid_jax.training import state as state_lib  # pylint: disable=g-import-not-at-top
  from hybrid_jax.training import step as step_lib
  tree = step_lib.to_host({'params': state.params, 'batch_stats': state.batch_stats})
  import jax  # pylint: disable=g-import-not-at-top
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {state_lib.tree_path_str(p): np.asarray(v) for p, v in leaves}


def main(argv=None):
  parser = argparse.ArgumentParser()
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--num-steps', type=int, default=TOTAL_STEPS)
  parser.add_argument('--out', default='')
  parser.add_argument('--process-id', type=int, default=-1)
  parser.add_argument('--num-processes', type=int, default=1)
  parser.add_argument('--port', type=int, default=0)
  parser.add_argument('--sleep', type=float, default=0.0)
  parser.add_argument('--marker', default='', help='file written once step 2 is done')
  args = parser.parse_args(argv)
  import logging  # pylint: disable=g-import-not-at-top
  logging.basicConfig(level=logging.INFO, format='%(relativeCreated)d %(name)s %(message)s')
  import ml_collections  # pylint: disable=g-import-not-at-top
  from hybrid_jax.training import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
  if args.process_id >= 0:
    mesh_lib.initialize_distributed(ml_collections.ConfigDict(dict(
        coordinator_address=f'127.0.0.1:{args.port}', num_processes=args.num_processes,
        process_id=args.process_id)))

  def marker_hook(step, state, metrics):
    del state, metrics
    if args.marker and step == 2:
      with open(args.marker, 'w') as f:
        f.write('2')

  state = run(args.workdir, args.num_steps, sleep=args.sleep, hooks=(marker_hook,))
  if args.out:
    np.savez(args.out, **flat_params(state))
  print('DEVICES', __import__('jax').device_count(), 'STEP', int(flat_step(state)))


def flat_step(state):
  from hybrid_jax.training import step as step_lib  # pylint: disable=g-import-not-at-top
  return step_lib.to_host(state.step)


_REFERENCE = {}


def reference_run():
  """The uninterrupted TOTAL_STEPS-step run on one device, once per test session.

  Returns {'workdir': its workdir (checkpoints at steps 4 and 6), 'params': flat params}.
  Tests may read the workdir but must copy it before writing into it.
  """
  if not _REFERENCE:
    import atexit  # pylint: disable=g-import-not-at-top
    import shutil  # pylint: disable=g-import-not-at-top
    import tempfile  # pylint: disable=g-import-not-at-top
    from hybrid_jax.training import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
    workdir = tempfile.mkdtemp(prefix='hybrid_jax_train_ref_')
    atexit.register(shutil.rmtree, workdir, True)
    state = run(workdir, TOTAL_STEPS, mesh=mesh_lib.make_mesh(1))
    _REFERENCE.update(workdir=workdir, params=flat_params(state))
  return _REFERENCE


def subprocess_env(**extra):
  env = dict(os.environ)
  env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
  env['JAX_PLATFORMS'] = 'cpu'
  env.pop('XLA_FLAGS', None)
  env.update(extra)
  return env


SCRIPT = os.path.abspath(__file__)
PYTHON = sys.executable  # the interpreter running the tests (CI's fresh venv)


if __name__ == '__main__':
  main()
