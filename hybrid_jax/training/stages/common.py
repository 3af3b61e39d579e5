"""What every stage shares: build the state, run the generic loop, export the final weights.

A stage provides its initial variables, a pure loss function and a data-iterator factory;
`train_stage` does the rest through `hybrid_jax.training` and, when the stage has finished,
writes the trained variables as a pretrained checkpoint at `<workdir>/<stage>/final`, which
later stages (and `mode=track`) load. Rerunning a finished stage only reloads that export.
"""

from __future__ import annotations

import logging
import os
import zlib
from typing import Any, Callable, Iterator, Mapping, Sequence

import jax

from hybrid_jax import errors
from hybrid_jax import run_records
from hybrid_jax import trained_models
from hybrid_jax.data import datasets
from hybrid_jax.data import pipeline
from hybrid_jax.training import loop as loop_lib
from hybrid_jax.training import memory_plan
from hybrid_jax.training import mesh as mesh_lib
from hybrid_jax.training import optim
from hybrid_jax.training import pretrained
from hybrid_jax.training import state as state_lib
from hybrid_jax.training import step as step_lib

def load_final(workdir: str, stage_name: str, architecture: str | None = None):
  """(variables, metadata) of a finished stage, or None when it has not finished."""
  path = trained_models.final_path(workdir, stage_name)
  if not trained_models.has_export(path):
    return None
  return pretrained.load_pretrained(path, expect_architecture=architecture)


def make_stage_step(*, config, stage_name: str, stage_cfg, variables: Mapping[str, Any],
                    loss_fn: step_lib.LossFn, frozen: Sequence[str] = (),
                    no_weight_decay: Sequence[str] = (),
                    compiler_options: Mapping[str, Any] | None = None):
  """(mesh, initial TrainState, jitted train step) of a stage: what `train_stage` runs, and
  what `example_steps` builds for lowering and device timing."""
  train_cfg = stage_cfg.train
  mesh = mesh_lib.make_mesh()
  params = variables['params']
  tx = optim.make_optimizer(train_cfg, frozen=frozen, no_weight_decay=no_weight_decay,
                            params=params)
  state = state_lib.create_train_state(params, tx, batch_stats=variables.get('batch_stats'))
  train_step = step_lib.make_train_step(
      loss_fn, tx, mesh=mesh,
      rng=jax.random.key(config.seed + zlib.crc32(stage_name.encode()) % 1000),
      schedule=optim.make_schedule(train_cfg),
      compiler_options=dict(compiler_options) if compiler_options else None)
  return mesh, state, train_step


def train_stage(*, config, workdir: str, stage_name: str, stage_cfg, architecture: str,
                variables: Mapping[str, Any],
                loss_fn: step_lib.LossFn,
                make_data_iterator: Callable[[int], Iterator[Mapping[str, Any]]],
                frozen: Sequence[str] = (), no_weight_decay: Sequence[str] = (),
                eval_fn=None, eval_every_steps: int = 0,
                metadata: Mapping[str, Any] | None = None,
                compiler_options: Mapping[str, Any] | None = None,
                record: bool = True) -> dict:
  """Trains `variables['params']` (and batch_stats) for `stage_cfg.train.steps` steps.

  `compiler_options` go to the jitted train step only (see `training.step.make_train_step`).
  `record`: write the stage's `run_records` record when it finishes (a stage with more to do
  afterwards, like the tracker's fusion fit, records itself).

  Returns the trained variables ({'params', 'batch_stats'?}) as host numpy trees.
  """
  done = load_final(workdir, stage_name, architecture)
  if done is not None and loop_lib.stage_done(workdir, stage_name, stage_cfg.train.steps):
    path = trained_models.final_path(workdir, stage_name)
    bad = loop_lib.nonfinite_arrays(done[0])
    if bad:
      raise errors.TrainingDivergedError(
          f'[{stage_name}] the finished stage in {os.path.dirname(path)} holds non-finite '
          f'weights ({len(bad)} arrays, e.g. {bad[0]}), so it cannot be used. Delete '
          f'{os.path.dirname(path)} and rerun to train it again.')
    trained_models.check_hparams(done[1], metadata or {}, where=path,
                                 preset=config.get('preset'))
    logging.info('[%s] already trained; loading %s', stage_name, path)
    return done[0]
  loop_lib.prepare_stage_dir(workdir, stage_name)  # a bad workdir fails before compute
  # A preset sized for a device (train.device_memory_gib > 0) is checked against the compiled
  # step's memory analysis before the first step: a warning instead of a late OOM.
  memory_plan.warn_if_too_large(config, stage_name)
  train_cfg = stage_cfg.train
  mesh, state, train_step = make_stage_step(
      config=config, stage_name=stage_name, stage_cfg=stage_cfg, variables=variables,
      loss_fn=loss_fn, frozen=frozen, no_weight_decay=no_weight_decay,
      compiler_options=compiler_options)
  state = loop_lib.train_loop(
      workdir=workdir, state=state, train_step=train_step,
      make_data_iterator=make_data_iterator, num_steps=train_cfg.steps, mesh=mesh,
      train_cfg=config.train, stage_name=stage_name, eval_fn=eval_fn,
      eval_every_steps=eval_every_steps, config_to_save=config)
  out = {'params': step_lib.to_host(state.params)}
  if state.batch_stats is not None and jax.tree.leaves(state.batch_stats):
    out['batch_stats'] = step_lib.to_host(state.batch_stats)
  if jax.process_index() == 0:
    path = trained_models.final_path(workdir, stage_name)
    if os.path.exists(path):
      import shutil
      shutil.rmtree(path)
    pretrained.save_pretrained(path, out, {'architecture': architecture, 'stage': stage_name,
                                           'steps': int(train_cfg.steps), **(metadata or {})})
    if record:
      run_records.record_stage(config, workdir, stage_name)
  return out


class CachedSource:
  """A random-access source that keeps decoded clips in memory (in-process pipelines).

  The pair sampler reads a whole clip to build one pair; decoding the same small synthetic
  clips again every step costs more than the training step on a CPU. Holds at most
  `max_items` clips (least recently used dropped first).
  """

  def __init__(self, source, max_items: int = 256):
    self._source = source
    self._max = max_items
    self._cache: dict[int, dict] = {}
    for attr in ('labelled_masks',):
      if hasattr(source, attr):
        setattr(self, attr, getattr(source, attr))

  def __len__(self):
    return len(self._source)

  def __getitem__(self, i):
    i = int(i) % len(self._source)
    clip = self._cache.pop(i, None)
    if clip is None:
      clip = self._source[i]
    self._cache[i] = clip
    if len(self._cache) > self._max:
      self._cache.pop(next(iter(self._cache)))
    return clip


class ClipSubset:
  """The clips `indices` of a random-access source (e.g. train clips held out for the fusion)."""

  def __init__(self, source, indices):
    self._source = source
    self._indices = [int(i) for i in indices]
    if hasattr(source, 'labelled_masks'):
      self.labelled_masks = [source.labelled_masks[i] for i in self._indices]

  def __len__(self):
    return len(self._indices)

  def __getitem__(self, i):
    return self._source[self._indices[int(i) % len(self._indices)]]


def process_slice():
  """(process_index, process_count) for per-process data sharding."""
  return jax.process_index(), jax.process_count()


def pair_iterator(config, source, *, batch_size: int, max_delta: int, seed: int,
                  start_step: int = 0, labels: bool = True, require_flow: bool = False,
                  crop_hw: tuple[int, int] | None = None):
  """The stages' frame-pair batches (`pipeline.make_pair_iterator`): crops (`crop_hw`, else
  config.data's) and flips from config.data, this process's slice of each global batch.

  With `labels`, pairs of labelled frames on real datasets and any frames (labels kept on
  every one) on the synthetic data; without, labels are not looked at (flow training).
  """
  pidx, pcount = process_slice()
  d = config.data
  every = labels and datasets.labels_on_every_frame(config)
  return pipeline.make_pair_iterator(
      source, batch_size=batch_size, crop_hw=tuple(crop_hw or (d.crop_height, d.crop_width)),
      hflip=d.hflip,
      max_delta=max_delta, seed=seed, start_step=start_step, process_index=pidx,
      process_count=pcount, require_labels=labels and not every, labels_on_every_frame=every,
      require_flow=require_flow, worker_count=d.worker_count)
