"""Every program the product jits lowers for CPU, TPU and CUDA, each on its platform's branch.

`jax.export` lowers a jitted function for another platform without its hardware (nothing is
compiled), so a CPU-only machine can keep the accelerator paths honest: an op, a dtype or a
sharding that a backend cannot lower fails here, naming the program and the platform. The
backend choices (`hybrid_jax.backend_choices`: bit-packed vs matmul dice, Winograd in RAFT)
are taken for the platform being exported, so the accelerator branches are the ones lowered.
Shapes are tiny; the programs are the ones the product runs.
"""

import dataclasses

import jax
from jax import export
import jax.numpy as jnp
import numpy as np
import pytest

from configs import synthetic
from hybrid_jax import backend_choices
from hybrid_jax.models import embedding_head as head_lib
from hybrid_jax.models import fusion
from hybrid_jax.models.panoptic_fcn import build as pfcn_build
from hybrid_jax.models.panoptic_fcn import segment as pfcn_segment
from hybrid_jax.models.raft import model as raft
from hybrid_jax.tracking import instance as instance_assoc
from hybrid_jax.tracking import matching
from hybrid_jax.tracking import pixel
from hybrid_jax.training.stages import example_steps
from hybrid_jax.training.stages import train_tracker

PLATFORMS = ('cpu', 'tpu', 'cuda')
N, H, W = 4, 32, 64  # instances, frame size


def _config():
  return synthetic.get_config('tiny')


def _seg_model():
  c = _config()
  model, _ = pfcn_build.segmenter_from_config(c)
  variables, frozen = pfcn_build.initial_variables(c, model)
  return c, model, variables, frozen


# ---- the programs: name -> build(platform) -> (jitted fn, args) ------------------------------

def _train_step(stage):
  def build(platform):
    c = _config()
    batch_size = c[stage].train.batch_size
    step, state, batch = example_steps.STAGE_STEPS[stage](c, batch_size=batch_size, hw=(H, W))
    return step, (state, batch)
  return build


def _segment(scales):
  def build(platform):
    _, model, variables, _ = _seg_model()
    spec = dataclasses.replace(pfcn_build.spec_of(model), test_scales=scales)
    return (pfcn_segment.make_segment_fn(model, spec=spec),
            (variables, np.zeros((2, H, W, 3), np.uint8)))
  return build


def _raft(variant, corr):
  def build(platform):
    variables = raft.init_raft(0, variant=variant, height=64, width=64)
    model = raft.RAFT(variant=variant, corr=corr,
                      winograd=backend_choices.raft_winograd(platform))
    fn = jax.jit(lambda v, a, b: model.apply(v, a, b, iters=2))
    img = np.zeros((1, 64, 64, 3), np.float32)
    return fn, (variables, img, img)
  return build


def _embedding_head(platform):
  c = _config()
  model = train_tracker.build_head(c)
  params = head_lib.init_head(model, jax.random.key(0), image_hw=(H, W), max_instances=N)
  fn = jax.jit(lambda p, img, m, b, v: model.apply({'params': p}, img, m, b, v))
  return fn, (params, np.zeros((H, W, 3), np.uint8), np.zeros((N, H, W), bool),
              np.zeros((N, 4), np.float32), np.ones((N,), bool))


def _warp(platform):
  return jax.jit(pixel.warp_masks), (np.zeros((N, H, W), bool), np.zeros((H, W, 2), np.float32))


def _dice(platform):
  method = backend_choices.dice_method(platform)
  fn = jax.jit(lambda a, b, va, vb: pixel.dice_matrix(a, b, va, vb, method=method))
  m = np.zeros((N, H, W), bool)
  return fn, (m, m, np.ones((N,), bool), np.ones((N,), bool))


def _instance_similarity(platform):
  e = np.zeros((N, 8), np.float32)
  return (jax.jit(instance_assoc.instance_similarity),
          (e, e, np.ones((N,), bool), np.ones((N,), bool), jnp.float32(0.0)))


def _fusion(platform):
  m = np.zeros((N, N), np.float32)
  return jax.jit(fusion.fuse), (fusion.init_fusion_params(), m, m)


def _greedy(platform):
  return matching._greedy, (np.zeros((N, N), np.float32), np.ones((N, N), bool),
                            jnp.float32(1e-5), jnp.asarray(True))


def _sinkhorn(platform):
  return (matching.sinkhorn_plan, (np.zeros((N, N), np.float32), np.ones((N, N), bool),
                                   jnp.float32(0.1), 5))


PROGRAMS = {
    'seg train step': _train_step('seg'),
    'flow train step': _train_step('flow'),
    'track train step': _train_step('track'),
    'segmenter (one scale)': _segment((1.0,)),
    'segmenter (two scales)': _segment((0.5, 1.0)),
    'RAFT small all_pairs': _raft('small', 'all_pairs'),
    'RAFT small on_demand': _raft('small', 'on_demand'),
    'RAFT standard all_pairs': _raft('standard', 'all_pairs'),
    'RAFT standard on_demand': _raft('standard', 'on_demand'),
    'embedding head': _embedding_head,
    'mask warping': _warp,
    'dice matrix': _dice,
    'instance similarity': _instance_similarity,
    'fusion conv': _fusion,
    'greedy matching': _greedy,
    'sinkhorn plan': _sinkhorn,
}


@pytest.mark.parametrize('platform', PLATFORMS)
@pytest.mark.parametrize('name', list(PROGRAMS))
def test_program_lowers(name, platform):
  fn, args = PROGRAMS[name](platform)
  if name == 'sinkhorn plan':  # iterations is a static argument of the jitted plan
    fn = jax.jit(lambda s, a, t, fn=fn, it=args[-1]: fn(s, a, t, it))
    args = args[:-1]
  try:
    exported = export.export(fn, platforms=[platform])(*args)
  except Exception as exc:  # noqa: BLE001 - the message must name program and platform
    pytest.fail(f'{name} does not lower for {platform}: {type(exc).__name__}: {exc}'[:2000])
  assert exported.platforms == (platform,)
  assert len(exported.mlir_module_serialized) > 0


def test_backend_choices_per_platform():
  assert [backend_choices.dice_method(p) for p in ('cpu', 'tpu', 'cuda', 'gpu')] == [
      'packed', 'matmul', 'matmul', 'matmul']
  assert [backend_choices.raft_winograd(p) for p in ('cpu', 'tpu', 'cuda')] == [
      True, False, False]
  assert backend_choices.platform_of('gpu') == 'cuda'
  assert backend_choices.platform_of() == jax.default_backend()  # this machine: cpu


def test_the_dice_branches_differ_in_the_lowered_program():
  """The accelerator export really takes the matmul branch (a dot), the CPU one the packed
  popcount; both give the same numbers where they run."""
  cpu_fn, args = _dice('cpu')
  tpu_fn, _ = _dice('tpu')
  cpu_text = export.export(cpu_fn, platforms=['cpu'])(*args).mlir_module()
  tpu_text = export.export(tpu_fn, platforms=['tpu'])(*args).mlir_module()
  assert 'popcnt' in cpu_text and 'popcnt' not in tpu_text
  assert 'dot_general' in tpu_text
  rng = np.random.default_rng(0)
  a, b = rng.random((2, N, H, W)) > 0.5
  v = np.ones((N,), bool)
  np.testing.assert_array_equal(np.asarray(cpu_fn(a, b, v, v)), np.asarray(tpu_fn(a, b, v, v)))
