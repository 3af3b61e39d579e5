"""Orbax checkpoints of a `TrainState`: save every N steps, keep the last K, resume safely.

Layout: `<stage_dir>/checkpoints/<step>/{state,meta}`. `state` is the TrainState (Orbax
`StandardSave`); `meta` is JSON with the step, the stage name and the shape of every leaf,
so that a checkpoint written by another config is recognised *before* Orbax tries to restore
it (and a clear `CheckpointError` says how to start fresh instead of an Orbax shape error).

Resuming walks the steps from newest to oldest: a checkpoint that cannot be read (partial
write, truncated or deleted files) is reported with a warning naming its step and the next
older one is used.
"""

from __future__ import annotations

import logging
import os
import shutil

import jax
import orbax.checkpoint as ocp

from hybrid_jax import errors
from hybrid_jax.training import state as state_lib
from hybrid_jax.training.state import TrainState

CHECKPOINT_SUBDIR = 'checkpoints'


def open_manager(ckpt_dir: str, *, keep: int = 2, read_only: bool = False) -> ocp.CheckpointManager:
  """A CheckpointManager on `ckpt_dir` keeping the `keep` newest steps; saves are async."""
  options = ocp.CheckpointManagerOptions(
      preservation_policy=ocp.checkpoint_managers.LatestN(max(int(keep), 1)),
      create=not read_only, read_only=read_only)
  return ocp.CheckpointManager(os.path.abspath(ckpt_dir), options=options)


def save(mngr: ocp.CheckpointManager, state: TrainState, *, step: int | None = None,
         stage: str = '') -> bool:
  """Starts an (async) save of `state` at `step` (default: its own step); True if started.

  Every process must call this (Orbax coordinates the write); call
  `mngr.wait_until_finished()` before reading the checkpoint or exiting.
  """
  if step is None:
    step = int(jax.device_get(state.step.addressable_data(0)))
  meta = {'step': step, 'stage': stage, 'shapes': state_lib.tree_shapes(state)}
  return mngr.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)


def _describe_mismatch(saved: dict, current: dict, limit: int = 8) -> list[str]:
  lines = []
  # Parameters first: they say what changed; optimizer-state paths only repeat it.
  order = {'params': 0, 'batch_stats': 1}
  paths = sorted(set(saved) | set(current), key=lambda p: (order.get(p.split('/')[0], 2), p))
  for path in paths:
    if path not in current:
      lines.append(f'{path}: in the checkpoint, not in the model')
    elif path not in saved:
      lines.append(f'{path}: in the model, not in the checkpoint')
    elif list(saved[path]) != list(current[path]):
      lines.append(f'{path}: checkpoint {tuple(saved[path])} vs model {tuple(current[path])}')
  if len(lines) > limit:
    lines = lines[:limit] + [f'... and {len(lines) - limit} more']
  return lines


def restore_latest(mngr: ocp.CheckpointManager, target: TrainState
                   ) -> TrainState | None:
  """Restores the newest readable checkpoint onto `target`'s shapes and shardings.

  Args:
    mngr: from `open_manager`.
    target: a state with the right structure, shapes and (concrete) shardings, e.g. the
      freshly initialised, replicated state.
  Returns:
    The restored state, or None when the directory holds no checkpoint.
  Raises:
    CheckpointError: the newest checkpoint belongs to another config/architecture
      (different tree or shapes), or no checkpoint in the directory is readable.
  """
  ckpt_dir = str(mngr.directory)
  steps = sorted(mngr.all_steps(), reverse=True)
  _warn_unfinished(ckpt_dir, steps[0] if steps else -1)
  if not steps:
    return None
  current = state_lib.tree_shapes(target)
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
  corrupt = []
  for step in steps:
    try:
      meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']
      saved = meta['shapes']
    except Exception as exc:  # Orbax raises many types for partial/corrupt files.
      logging.warning('Checkpoint at step %d in %s is unreadable (%s: %.300s); trying the '
                      'previous one.', step, ckpt_dir, type(exc).__name__, exc)
      corrupt.append(step)
      continue
    diffs = _describe_mismatch(saved, current)
    if diffs:
      raise errors.CheckpointError(
          f'The checkpoint at step {step} in {ckpt_dir} was written by a different '
          'config/model (parameter tree or shapes differ):\n  ' + '\n  '.join(diffs) +
          f'\nTo start fresh, use another --workdir or delete {ckpt_dir}.')
    try:
      restored = mngr.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract)))['state']
    except Exception as exc:
      logging.warning('Checkpoint at step %d in %s is partial or corrupt (%s: %.300s); trying '
                      'the previous one.', step, ckpt_dir, type(exc).__name__, exc)
      corrupt.append(step)
      continue
    logging.info('Restored step %d from %s.', step, ckpt_dir)
    _set_aside(mngr, corrupt)
    return restored
  raise errors.CheckpointError(
      f'No readable checkpoint in {ckpt_dir} (steps {sorted(steps)} are all partial or '
      f'corrupt). Delete {ckpt_dir} to start fresh, or use another --workdir.')


def _warn_unfinished(ckpt_dir: str, latest: int) -> None:
  """Reports writes that never finished (Orbax's tmp directories) newer than `latest`."""
  if not os.path.isdir(ckpt_dir):
    return
  for name in sorted(os.listdir(ckpt_dir)):
    head, _, tail = name.partition('.')
    if head.isdigit() and 'tmp' in tail and int(head) > latest:
      logging.warning('Checkpoint at step %s in %s is partial (its write never finished); '
                      'using the previous one%s.', head, ckpt_dir,
                      f' (step {latest})' if latest >= 0 else ' (none: starting fresh)')


def remove_unfinished(ckpt_dir: str) -> None:
  """Deletes Orbax's tmp directories of writes that never finished (a killed run left them)."""
  if not os.path.isdir(ckpt_dir):
    return
  for name in sorted(os.listdir(ckpt_dir)):
    head, _, tail = name.partition('.')
    path = os.path.join(ckpt_dir, name)
    if head.isdigit() and 'orbax-checkpoint-tmp' in tail and os.path.isdir(path):
      logging.warning('Checkpoint at step %s in %s is partial (its write never finished); '
                      'removed it, the newest complete checkpoint is used.', head, ckpt_dir)
      shutil.rmtree(path, ignore_errors=True)


def _set_aside(mngr: ocp.CheckpointManager, steps: list[int]) -> None:
  """Renames unreadable step directories to `corrupt-<step>`, so training can save that step
  again; kept (not deleted) for inspection."""
  if not steps:
    return
  if jax.process_index() == 0:
    for step in steps:
      src = os.path.join(str(mngr.directory), str(step))
      dst = os.path.join(str(mngr.directory), f'corrupt-{step}')
      if os.path.exists(dst):
        dst += f'-{os.getpid()}'
      if os.path.isdir(src):
        os.rename(src, dst)
        logging.warning('Moved the unreadable checkpoint %s to %s.', src, dst)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices('hybrid_jax_set_aside_corrupt_checkpoints')
  mngr.reload()


def latest_step(ckpt_dir: str) -> int | None:
  """Newest checkpoint step in `ckpt_dir` without restoring anything (None if none)."""
  if not os.path.isdir(ckpt_dir):
    return None
  with open_manager(ckpt_dir, read_only=True) as mngr:
    return mngr.latest_step()


def restore_state(ckpt_dir: str, target: TrainState) -> TrainState:
  """The newest readable state in `ckpt_dir` (e.g. a finished stage's, for the next stage)."""
  if not os.path.isdir(ckpt_dir):
    raise errors.CheckpointError(f'{ckpt_dir} does not exist; train that stage first.')
  with open_manager(ckpt_dir, read_only=True) as mngr:
    state = restore_latest(mngr, target)
  if state is None:
    raise errors.CheckpointError(f'{ckpt_dir} holds no checkpoint; train that stage first.')
  return state


def checkpoint_dir(stage_dir: str) -> str:
  return os.path.join(stage_dir, CHECKPOINT_SUBDIR)


