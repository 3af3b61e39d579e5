"""The generic, stage-agnostic training loop that the segmenter, flow and tracker reuse.

A stage builds its fresh `TrainState`, its `train_step` (`step.make_train_step`) and a data
iterator factory, then calls `train_loop`. The loop owns everything else: workdir checks,
resume from the newest readable checkpoint (data order continues: the iterator factory gets
the start step), checkpoint cadence, logging (TensorBoard, metrics.jsonl, steps/s, ETA,
tqdm), the NaN guard stop, SIGTERM / SIGINT (checkpoint, then exit 143 / 130), profiling and placing host batches on the mesh.

Files, under `<workdir>/<stage_name>/`: checkpoints/<step>/, events/, metrics.jsonl,
config.json, platform.json, profile/ (if asked) and done.json once all steps are trained.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from typing import Any, Callable, Iterator, Mapping, Sequence

import jax
import numpy as np

from hybrid_jax import errors
from hybrid_jax import workdirs
from hybrid_jax.training import checkpoints as ckpt_lib
from hybrid_jax.training import mesh as mesh_lib
from hybrid_jax.training import state as state_lib
from hybrid_jax.training import step as step_lib
from hybrid_jax.training import writers
from hybrid_jax.training.state import TrainState

DONE_FILE = 'done.json'
PROFILE_SUBDIR = 'profile'

Hook = Callable[[int, TrainState, Mapping[str, jax.Array]], None]
EvalFn = Callable[[TrainState], Mapping[str, float]]


class Preempted(SystemExit):
  """Raised after SIGTERM or SIGINT once the checkpoint is written.

  A SystemExit with the conventional status 128 + signal number (SIGTERM 143, SIGINT 130), so
  schedulers and ``&&`` chains see that the run did not finish; rerunning the same command
  resumes from the saved step.
  """

  def __init__(self, step: int, stage_dir: str, signum: int = signal.SIGTERM):
    super().__init__(128 + int(signum))
    self.step = step
    self.stage_dir = stage_dir
    self.signal_name = signal.Signals(signum).name

  def __str__(self) -> str:
    # The one line a person sees (main prints it; a notebook shows it as the exception).
    return (f'stopped by {self.signal_name} at step {self.step}: the checkpoint is in '
            f'{self.stage_dir}; rerun the same command to resume.')


def _get(cfg, name, default):
  try:
    value = cfg[name]
  except (KeyError, AttributeError, TypeError):
    return default
  return default if value is None else value


def prepare_stage_dir(workdir: str, stage_name: str) -> str:
  """Creates `<workdir>/<stage_name>` and checks it is writable; returns its absolute path.

  Raises:
    WorkdirError: the directory cannot be created or written (before any compute).
  """
  if not workdir:
    raise errors.WorkdirError('No --workdir given; pass a directory for checkpoints and logs.')
  stage_dir = workdirs.ensure_writable_dir(os.path.join(workdir, stage_name))
  return stage_dir


def parse_profile_steps(spec: str) -> tuple[int, int] | None:
  """'a,b' -> (a, b) inclusive step range; '' -> None."""
  if not spec:
    return None
  try:
    parts = [int(p) for p in str(spec).split(',')]
  except ValueError:
    parts = []
  if len(parts) == 1:
    parts = parts * 2
  if len(parts) != 2 or parts[0] < 0 or parts[1] < parts[0]:
    raise errors.ConfigError(f"train.profile_steps={spec!r}; use 'a,b' with 0 <= a <= b.")
  return parts[0], parts[1]


def stage_done(workdir: str, stage_name: str, num_steps: int) -> bool:
  """Whether `<workdir>/<stage_name>` finished training at least `num_steps` steps."""
  path = os.path.join(workdir, stage_name, DONE_FILE)
  try:
    with open(path) as f:
      return int(json.load(f)['steps']) >= num_steps
  except (OSError, ValueError, KeyError, TypeError):
    return False


class _StopSignals:
  """Records SIGTERM and SIGINT (Ctrl-C) instead of dying, so the loop can checkpoint first.

  A second SIGINT while the checkpoint is written interrupts at once (the default handler is
  back after the first).
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.received: int | None = None
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in self.SIGNALS:
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    logging.warning('%s received: saving a checkpoint after the current step.',
                    signal.Signals(signum).name)
    self.received = signum
    if signum == signal.SIGINT and signal.SIGINT in self._previous:
      signal.signal(signal.SIGINT, self._previous[signal.SIGINT])

  def __exit__(self, *exc):
    for sig, previous in self._previous.items():
      signal.signal(sig, previous)

  def any_process(self) -> int | None:
    """The signal received by this process or any other of the job, or None."""
    if jax.process_count() == 1:
      return self.received
    # A preemption notice may reach only some processes; all must stop at the same step.
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    flags = multihost_utils.process_allgather(np.array(self.received or 0, np.int32))
    got = [int(f) for f in np.ravel(flags) if int(f)]
    return got[0] if got else None


def train_loop(*, workdir: str, state: TrainState, train_step: step_lib.TrainStep,
               make_data_iterator: Callable[[int], Iterator[Mapping[str, Any]]],
               num_steps: int, mesh, train_cfg: Any, stage_name: str = 'seg',
               eval_fn: EvalFn | None = None, eval_every_steps: int = 0,
               hooks: Sequence[Hook] = (), config_to_save: Any = None) -> TrainState:
  """Trains `state` to `num_steps` steps, resuming from `<workdir>/<stage_name>/checkpoints`.

  Args:
    workdir: the run directory; this stage writes under `<workdir>/<stage_name>/`.
    state: the fresh step-0 state (any placement; it is replicated onto `mesh`). When a
      checkpoint exists it only supplies the shapes/shardings to restore onto.
    train_step: `train_step(state, batch) -> (state, metrics)` from `make_train_step`.
    make_data_iterator: `f(start_step) -> iterator` of this process's host batches (dicts of
      numpy arrays, leading axis = local examples); batch i of the iterator must be the
      batch for step start_step + i, so a resumed run sees the same data order.
    num_steps: train until `state.step == num_steps`.
    mesh: the device mesh (`mesh.make_mesh()`).
    train_cfg: config.train (checkpoint_every_steps, keep_checkpoints, log_every_steps,
      max_bad_steps, profile_steps).
    stage_name: subdirectory name and TensorBoard/metric prefix owner ('seg', 'flow', ...).
    eval_fn: `eval_fn(state) -> {name: float}`, run every `eval_every_steps` and at the end;
      logged as 'eval/<name>'.
    hooks: `hook(step, state, metrics)` after every step (step = steps done; metrics on
      device). Do not keep `state`: the next step donates its buffers.
    config_to_save: the resolved config, written to `<stage dir>/config.json`.

  Returns:
    The final state (replicated on `mesh`).
  Raises:
    WorkdirError, CheckpointError (incompatible checkpoint), TrainingDivergedError
    (max_bad_steps consecutive non-finite steps), DatasetError (the iterator ran out),
    Preempted (SystemExit(143 or 130), after SIGTERM or SIGINT and a checkpoint).
  """
  stage_dir = prepare_stage_dir(workdir, stage_name)
  every_ckpt = int(_get(train_cfg, 'checkpoint_every_steps', 0))
  keep = int(_get(train_cfg, 'keep_checkpoints', 2))
  every_log = max(int(_get(train_cfg, 'log_every_steps', 1)), 1)
  max_bad = int(_get(train_cfg, 'max_bad_steps', 5))
  profile = parse_profile_steps(_get(train_cfg, 'profile_steps', ''))

  writers.log_platform(stage_dir)
  if config_to_save is not None:
    writers.save_config(stage_dir, config_to_save)

  state = mesh_lib.replicate(state, mesh)
  if jax.process_index() == 0:
    ckpt_lib.remove_unfinished(ckpt_lib.checkpoint_dir(stage_dir))
  mngr = ckpt_lib.open_manager(ckpt_lib.checkpoint_dir(stage_dir), keep=keep)
  writer = None
  progress = None
  try:
    restored = ckpt_lib.restore_latest(mngr, state)
    if restored is not None:
      state = restored
    start = int(step_lib.to_host(state.step))
    if start > 0:
      logging.info('[%s] resuming at step %d of %d.', stage_name, start, num_steps)
    writer = writers.MetricWriter(stage_dir, resume_step=start)
    progress = writers.Progress(start_step=start, num_steps=num_steps, desc=stage_name)
    state = _run(state=state, start=start, num_steps=num_steps, stage_name=stage_name,
                 stage_dir=stage_dir, mesh=mesh, train_step=train_step,
                 make_data_iterator=make_data_iterator, mngr=mngr, writer=writer,
                 progress=progress, every_ckpt=every_ckpt, every_log=every_log,
                 max_bad=max_bad, profile=profile, eval_fn=eval_fn,
                 eval_every=eval_every_steps, hooks=hooks)
    mngr.wait_until_finished()
    check_finite(state, stage_name=stage_name, stage_dir=stage_dir)
    if jax.process_index() == 0:
      with open(os.path.join(stage_dir, DONE_FILE), 'w') as f:
        json.dump({'steps': num_steps}, f)
    return state
  finally:
    mngr.wait_until_finished()  # async saves must land before the process can exit
    mngr.close()
    if writer is not None:
      writer.close()
    if progress is not None:
      progress.close()


def nonfinite_arrays(tree) -> list[str]:
  """'/'-joined paths of the arrays of `tree` holding a NaN or an infinity."""
  bad = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(step_lib.to_host(tree))[0]:
    arr = np.asarray(leaf)
    if arr.dtype.kind == 'f' and not np.isfinite(arr).all():
      bad.append(state_lib.tree_path_str(path))
  return bad


def _first_nonfinite_steps(stage_dir: str, limit: int = 3) -> list[int]:
  """The first logged steps whose loss is not finite (metrics.jsonl), for error messages."""
  steps = []
  try:
    with open(os.path.join(stage_dir, writers.METRICS_FILE)) as f:
      for line in f:
        rec = json.loads(line)
        loss = rec.get('train/loss')
        if loss is not None and not np.isfinite(float(loss)):
          steps.append(int(rec['step']))
          if len(steps) >= limit:
            break
  except (OSError, ValueError, KeyError, TypeError):
    pass
  return steps


def check_finite(state: TrainState, *, stage_name: str, stage_dir: str) -> None:
  """TrainingDivergedError unless every trained parameter is finite (nothing is marked done).

  The step skips updates whose loss or gradient is not finite, but a non-finite learning
  rate or update still poisons the parameters; such a stage must not count as trained.
  """
  bad = nonfinite_arrays({'params': state.params, 'batch_stats': state.batch_stats})
  if not bad:
    return
  steps = _first_nonfinite_steps(stage_dir)
  where = (f' The first logged steps with a non-finite loss: {steps}.' if steps else '')
  raise errors.TrainingDivergedError(
      f'[{stage_name}] the trained parameters are not finite ({len(bad)} arrays, e.g. '
      f'{bad[0]}), so the stage is not marked done.{where} Check {stage_name}.train.lr and the '
      f'schedule, then delete {stage_dir} and rerun.')


def _run(*, state, start, num_steps, stage_name, stage_dir, mesh, train_step,
         make_data_iterator, mngr, writer, progress, every_ckpt, every_log, max_bad,
         profile, eval_fn, eval_every, hooks) -> TrainState:
  """The step loop proper (see train_loop)."""
  if start >= num_steps:
    logging.info('[%s] already at step %d >= %d; nothing to train.', stage_name, start,
                 num_steps)
    return state
  data = iter(make_data_iterator(start))
  profiling = False
  first_bad = None   # first step of the current run of non-finite steps
  saved_step = start

  def guard(step, metrics):
    """Fetches `metrics` of `step`; counts/raises on non-finite steps. Returns host dict."""
    nonlocal first_bad
    host = step_lib.to_host(metrics)
    if bool(host['finite']):
      first_bad = None
      return host
    first_bad = step if first_bad is None else first_bad
    terms = {k: float(v) for k, v in host.items() if k not in ('finite', 'bad_steps')}
    logging.warning('[%s] step %d skipped: non-finite loss/gradient %s', stage_name, step,
                    terms)
    if int(host['bad_steps']) >= max_bad > 0:
      raise errors.TrainingDivergedError(
          f'[{stage_name}] training diverged: {int(host["bad_steps"])} consecutive steps '
          f'({first_bad}..{step}) had a non-finite loss or gradient; stopped at step {step}. '
          f'Loss terms at step {step}: {terms}. Lower train.lr, check the data of these '
          f'steps, or raise train.max_bad_steps. The last checkpoint in {stage_dir} holds '
          'the parameters from before these steps.')
    return host

  with _StopSignals() as stop:
    pending = None
    for step in range(start, num_steps):
      if profile is not None and not profiling and profile[0] <= step <= profile[1]:
        if jax.process_index() == 0:
          jax.profiler.start_trace(os.path.join(stage_dir, PROFILE_SUBDIR))
          profiling = True
      try:
        host_batch = next(data)
      except StopIteration:
        raise errors.DatasetError(
            f'[{stage_name}] the data iterator ended at step {step} before num_steps='
            f'{num_steps}; make the training iterator repeat.') from None
      batch = mesh_lib.shard_batch(host_batch, mesh)
      with jax.profiler.StepTraceAnnotation('train', step_num=step):
        state, metrics = train_step(state, batch)
      if profiling and step >= profile[1]:
        jax.block_until_ready(state)
        jax.profiler.stop_trace()
        profiling = False
      # The previous step's metrics are fetched only now, so the device runs one step
      # ahead of the host's NaN check instead of stalling every step.
      if pending is not None:
        guard(*pending)
      pending = (step, metrics)
      done = step + 1
      for hook in hooks:
        hook(done, state, metrics)
      preempt = stop.any_process()
      is_last = done == num_steps
      do_log = done % every_log == 0 or is_last
      do_ckpt = (every_ckpt > 0 and done % every_ckpt == 0) or is_last or preempt
      do_eval = eval_fn is not None and (is_last or (eval_every > 0 and done % eval_every == 0))
      progress.update(done)
      if not (do_log or do_ckpt or do_eval):
        continue
      host = guard(*pending)
      pending = None
      progress.update(done, {'loss': float(host['loss'])})
      if do_log:
        scalars = {f'train/{k}': v for k, v in host.items() if k not in ('finite',)}
        scalars.update(progress.rate(done))
        writer.write_scalars(done, scalars)
        logging.info('[%s] step %d/%d loss %.5g (%.2f steps/s, ETA %.0f s)', stage_name,
                     done, num_steps, float(host['loss']), scalars['steps_per_sec'],
                     scalars['eta_sec'])
      if do_ckpt and done != saved_step:
        ckpt_lib.save(mngr, state, step=done, stage=stage_name)
        saved_step = done
      if do_eval:
        results = eval_fn(state)
        writer.write_scalars(done, {f'eval/{k}': v for k, v in results.items()})
      if preempt:
        mngr.wait_until_finished()
        stop = Preempted(done, stage_dir, preempt)
        logging.info('[%s] %s', stage_name, stop)  # the log's copy; the caller says it once
        raise stop
    if profiling:
      jax.block_until_ready(state)
      jax.profiler.stop_trace()
  return state
