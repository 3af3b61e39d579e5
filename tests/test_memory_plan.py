"""The memory plan: XLA's analysis of the compiled programs, the device presets built on it,
the warning before a stage that does not fit, and the knobs that trade memory (remat, frames
per tracking call, the flow training step's correlation)."""

import json
import logging
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import cityscapes_vps
from configs import synthetic
from hybrid_jax import config_checks
from hybrid_jax import config_lib
from hybrid_jax import errors
from hybrid_jax import inference
from hybrid_jax.models import resnet
from hybrid_jax.training import memory_plan
from hybrid_jax.training.stages import common
from hybrid_jax.training.stages import train_flow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_estimate_counts_arguments_outputs_and_donation():
  x = jax.ShapeDtypeStruct((1000, 250), jnp.float32)   # 1,000,000 bytes
  est = memory_plan.of_program(jax.jit(lambda a, b: (a * 2, a + b)), x, x)
  # (a tuple output adds its table of pointers: a few bytes)
  assert est.argument_bytes == 2_000_000 and 2_000_000 <= est.output_bytes < 2_000_064
  assert est.peak_bytes == est.argument_bytes + est.output_bytes + est.temp_bytes
  donated = memory_plan.of_program(jax.jit(lambda a: a * 2, donate_argnums=0), x)
  assert donated.alias_bytes == 1_000_000      # the output reuses the donated input
  assert donated.peak_bytes == 1_000_000 + donated.temp_bytes


def test_stage_step_grows_with_the_per_device_batch():
  c = synthetic.get_config('tiny')
  small = memory_plan.stage_step(c, 'track')
  c.track.train.batch_size *= 4
  large = memory_plan.stage_step(c, 'track')
  # The batch (images, masks, boxes) is an argument of the step: 4x the pairs, 4x its bytes.
  assert large.argument_bytes > small.argument_bytes
  assert large.peak_bytes > small.peak_bytes
  assert memory_plan.per_device_batch(c, 'track', devices=8) == max(1, c.track.train.batch_size // 8)


def test_warning_names_stage_estimate_and_device(caplog):
  c = synthetic.get_config('tiny')
  assert memory_plan.warn_if_too_large(c, 'track') is None   # no device named: no compile
  c.train.device_memory_gib = 1e-6
  with caplog.at_level(logging.WARNING):
    est = memory_plan.warn_if_too_large(c, 'track')
  assert est.peak_bytes > 1e-6 * memory_plan.GIB
  msg = ' '.join(r.getMessage() for r in caplog.records)
  assert 'Stage track' in msg and f'{est.peak_gib:.1f} GiB' in msg and '0.0 GiB' in msg
  caplog.clear()
  c.train.device_memory_gib = 1000.0
  with caplog.at_level(logging.WARNING):
    memory_plan.warn_if_too_large(c, 'track')
  assert not caplog.records


def test_train_stage_checks_before_the_first_step(monkeypatch, tmp_path, caplog):
  c = synthetic.get_config('tiny')
  c.train.device_memory_gib = 1.0
  order = []
  monkeypatch.setattr(memory_plan, 'stage_step', lambda config, stage, **kw: (
      order.append(('estimate', stage)) or memory_plan.MemoryEstimate(3 * memory_plan.GIB, 0, 0, 0)))

  class Stop(Exception):
    pass

  def fake_loop(**kwargs):
    order.append(('train', kwargs['stage_name']))
    raise Stop

  monkeypatch.setattr(common.loop_lib, 'train_loop', fake_loop)
  with caplog.at_level(logging.WARNING), pytest.raises(Stop):
    common.train_stage(config=c, workdir=str(tmp_path), stage_name='track', stage_cfg=c.track,
                       architecture='x', variables={'params': {'w': np.zeros(2, np.float32)}},
                       loss_fn=lambda *a: None, make_data_iterator=lambda s: iter(()))
  assert order == [('estimate', 'track'), ('train', 'track')]
  assert 'Stage track' in caplog.text and '3.0 GiB' in caplog.text


def test_device_presets_keep_the_recipe_and_check():
  paper = cityscapes_vps.get_config('')
  assert paper.train.device_memory_gib == 0.0
  for name, spec in config_lib.DEVICE_PRESETS.items():
    c = cityscapes_vps.get_config(name)
    s = c.seg.train
    # Linear lr scaling, same number of images seen, full resolution and the paper's test.
    assert s.batch_size == spec['seg_batch']
    assert s.lr / s.batch_size == pytest.approx(paper.seg.train.lr / paper.seg.train.batch_size)
    assert s.steps * s.batch_size == paper.seg.train.steps * paper.seg.train.batch_size
    assert (c.data.height, c.data.width) == (1024, 2048)
    assert tuple(c.seg.test_scales) == tuple(paper.seg.test_scales)
    assert c.train.device_memory_gib == spec['device_memory_gib']
    assert c.track.frames_per_call == spec['frames_per_call']
    for stage in ('seg', 'track'):
      assert c[stage].train.batch_size % spec['devices'] == 0
  with pytest.raises(ValueError, match='gpu16'):
    cityscapes_vps.get_config('gpu12')


def test_bad_memory_settings_are_config_errors():
  c = synthetic.get_config('tiny')
  c.train.device_memory_gib = -1.0
  with pytest.raises(errors.ConfigError, match='device_memory_gib'):
    config_checks.check_config(c)
  c = synthetic.get_config('tiny')
  c.track.frames_per_call = 0
  with pytest.raises(errors.ConfigError, match='frames_per_call'):
    config_checks.check_config(c)
  c = synthetic.get_config('tiny')
  c.flow.train_corr = 'sparse'
  with pytest.raises(errors.ConfigError, match='train_corr'):
    config_checks.check_config(c)


def test_flow_training_uses_its_own_correlation():
  c = synthetic.get_config('tiny')
  c.flow.corr = 'on_demand'
  assert train_flow._model(c, train=True).corr == 'all_pairs'
  assert train_flow._model(c, train=False).corr == 'on_demand'
  c.flow.train_corr = 'on_demand'
  assert train_flow._model(c, train=True).corr == 'on_demand'


def test_resnet_remat_same_numbers_and_really_rematerialised():
  x = jax.random.normal(jax.random.key(0), (1, 64, 64, 3))
  plain = resnet.ResNet('resnet_tiny')
  remat = resnet.ResNet('resnet_tiny', remat=True)
  variables = plain.init(jax.random.key(1), x)
  assert (jax.tree.structure(remat.init(jax.random.key(1), x))
          == jax.tree.structure(variables))          # checkpoints load either way

  def loss(model):
    return lambda v: sum(jnp.sum(o**2) for o in model.apply(v, x).values())

  grad_plain, grad_remat = jax.jit(jax.grad(loss(plain))), jax.jit(jax.grad(loss(remat)))
  for a, b in zip(jax.tree.leaves(grad_plain(variables)), jax.tree.leaves(grad_remat(variables))):
    # the recomputed forward may fuse differently: float32 rounding, not another function
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5 * float(np.abs(b).max()))
  assert 'optimization_barrier' in grad_remat.lower(variables).as_text()  # recomputed
  assert 'optimization_barrier' not in grad_plain.lower(variables).as_text()


class _Recorder:
  """Stands in for TrainedModels: records the batch each network call gets."""

  def __init__(self, per_call):
    self.frames_per_call, self.seg_calls, self.flow_calls = per_call, [], []
    self.seg_variables = None

  def segment_fn(self, variables, frames):
    self.seg_calls.append(len(frames))
    return {'valid': np.ones((len(frames), 1), bool)}

  def flow(self, a, b):
    self.flow_calls.append(len(a))
    return np.zeros(a.shape[:3] + (2,), np.float32)


@pytest.mark.parametrize('per_call', [1, 3])
def test_frames_per_call_sets_the_network_batches(per_call):
  frames = np.zeros((7, 8, 8, 3), np.uint8)
  models = _Recorder(per_call)
  pred = inference.predict_clip(models, frames)
  assert set(models.seg_calls) == {per_call} and set(models.flow_calls) == {per_call}
  assert len(pred.seg['valid']) == 7 and len(pred.flow) == 6
  models = _Recorder(per_call)
  starts = [s for s, _, _ in inference.iter_chunks(models, frames, with_flow=True)]
  assert starts == list(range(0, 7, per_call))
  assert set(models.seg_calls) == {per_call}


def test_benchmark_script_prints_the_table(tmp_path):
  out = tmp_path / 'plan.json'
  proc = subprocess.run(
      [sys.executable, 'benchmarks/memory_plan.py', '--configs', 'configs/synthetic.py:tiny',
       '--quick', '--stages', 'track', '--out', str(out)],
      cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert '| track train step | float32 | no |' in proc.stdout
  rows = json.loads(out.read_text())['results']['configs/synthetic.py:tiny']
  names = [r['program'] for r in rows]
  assert names == ['track train step', 'tracking: segmenter', 'tracking: RAFT',
                   'tracking: embedding head', 'tracking: mask warping', 'tracking: dice matrix']
  assert all(r['peak_gib'] >= 0 for r in rows)
