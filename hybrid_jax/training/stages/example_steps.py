"""Each stage's jitted train step with a batch of given shapes (zeros), built as the stage
builds it (`common.make_stage_step`, the stage's own variables and loss).

For what needs the programs without the data: lowering them for other platforms
(`tests/test_lowering.py`) and timing them on a device (`benchmarks/device_suite.py`). The
state is placed as the step returns it (replicated on the mesh), so the first call compiles
the program every later call runs.
"""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np

from hybrid_jax.models import embedding_head as head_lib
from hybrid_jax.models.panoptic_fcn import build as pfcn_build
from hybrid_jax.training import mesh as mesh_lib
from hybrid_jax.training import precision
from hybrid_jax.training.stages import common
from hybrid_jax.training.stages import train_flow
from hybrid_jax.training.stages import train_segmenter
from hybrid_jax.training.stages import train_tracker


def _placed(mesh, state):
  return jax.device_put(state, mesh_lib.replicated(mesh))


def seg_step(config, *, batch_size: int, hw: tuple[int, int]):
  """(train_step, state, batch) of the segmenter stage: frames [B, 2, h, w, 3], panoptic."""
  model, _ = pfcn_build.segmenter_from_config(config)
  variables, frozen = pfcn_build.initial_variables(config, model)
  mesh, state, step = common.make_stage_step(
      config=config, stage_name='seg', stage_cfg=config.seg, variables=variables,
      loss_fn=train_segmenter.make_loss_fn(model, precision.compute_dtype(config),
                                           remat=bool(config.train.remat)),
      frozen=frozen)
  h, w = hw
  batch = {'frames': np.zeros((batch_size, 2, h, w, 3), np.uint8),
           'panoptic': np.zeros((batch_size, 2, h, w), np.int32)}
  return step, _placed(mesh, state), batch


def flow_step(config, *, batch_size: int, hw: tuple[int, int]):
  """(train_step, state, batch) of the RAFT stage: frame pairs, flow, flow_valid."""
  mesh, state, step = common.make_stage_step(
      config=config, stage_name='flow', stage_cfg=config.flow,
      variables=train_flow.initial_variables(config), loss_fn=train_flow.make_loss_fn(config))
  h, w = hw
  batch = {'frames': np.zeros((batch_size, 2, h, w, 3), np.uint8),
           'flow': np.zeros((batch_size, h, w, 2), np.float32),
           'flow_valid': np.ones((batch_size, h, w), bool)}
  return step, _placed(mesh, state), batch


def track_step(config, *, batch_size: int, hw: tuple[int, int], max_instances: int = 4):
  """(train_step, state, batch) of the embedding head stage: B frame pairs, N instances."""
  model = train_tracker.build_head(config)
  feature_channels = train_tracker.feature_channels(config)
  params = head_lib.init_head(model, jax.random.key(0), image_hw=hw,
                              max_instances=max_instances, feature_channels=feature_channels)
  mesh, state, step = common.make_stage_step(
      config=config, stage_name='track', stage_cfg=config.track, variables={'params': params},
      loss_fn=train_tracker.make_loss_fn(config, model))
  h, w = hw
  b, n = batch_size, max_instances
  batch = {'image_prev': np.zeros((b, h, w, 3), np.uint8),
           'image_cur': np.zeros((b, h, w, 3), np.uint8),
           'masks_prev': np.zeros((b, n, h, w), bool), 'masks_cur': np.zeros((b, n, h, w), bool),
           'boxes_prev': np.zeros((b, n, 4), np.float32),
           'boxes_cur': np.zeros((b, n, 4), np.float32),
           'valid_prev': np.ones((b, n), bool), 'valid_cur': np.ones((b, n), bool),
           'target': np.zeros((b, n), np.int32)}
  if feature_channels:
    fh, fw = -(-h // 4), -(-w // 4)
    batch['features_prev'] = np.zeros((b, fh, fw, feature_channels), np.float32)
    batch['features_cur'] = np.zeros((b, fh, fw, feature_channels), np.float32)
  return step, _placed(mesh, state), batch


STAGE_STEPS: dict[str, Callable] = {'seg': seg_step, 'flow': flow_step, 'track': track_step}
