"""What the compiled programs of a run need in device memory, known before they run.

XLA assigns every buffer of a compiled program ahead of time, and
``jax.jit(f).lower(*args).compile().memory_analysis()`` reports it: the arguments
(parameters, optimiser state, the batch), the outputs, the temporaries (activations kept for
the backward pass, workspace) and the bytes where an output reuses a donated argument. The
per-device peak of one call is estimated as ``arguments + outputs + temporaries - aliases``.

Caveats, stated wherever the numbers are shown: the analysis is of the program as compiled
for *this* machine's backend. A GPU or TPU compiler fuses, schedules and pads differently
(TPU tiles pad small minor dimensions; XLA:CPU may keep bfloat16 convolutions in float32), so
the figure is an estimate of the order of magnitude, not a guarantee; allocator
fragmentation and the framework's own reservations come on top.

Used by `benchmarks/memory_plan.py` (the table in docs/configs.md) and, before a stage trains
on a preset that names its device (``config.train.device_memory_gib``), by `warn_if_too_large`.
"""

from __future__ import annotations

import dataclasses
import logging

import jax
import numpy as np

from hybrid_jax import config_lib

GIB = 1024**3


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
  """Bytes of one compiled program, from XLA's buffer assignment."""
  argument_bytes: int
  output_bytes: int
  temp_bytes: int
  alias_bytes: int

  @property
  def peak_bytes(self) -> int:
    return self.argument_bytes + self.output_bytes + self.temp_bytes - self.alias_bytes

  @property
  def peak_gib(self) -> float:
    return self.peak_bytes / GIB


def of_compiled(compiled) -> MemoryEstimate:
  """The estimate of a `jax.stages.Compiled` (raises when the backend gives no analysis)."""
  analysis = compiled.memory_analysis()
  if analysis is None:
    raise RuntimeError(f'The {jax.default_backend()} backend gives no memory analysis.')
  return MemoryEstimate(argument_bytes=int(analysis.argument_size_in_bytes),
                        output_bytes=int(analysis.output_size_in_bytes),
                        temp_bytes=int(analysis.temp_size_in_bytes),
                        alias_bytes=int(analysis.alias_size_in_bytes))


def of_program(fn, *args) -> MemoryEstimate:
  """Lowers and compiles jitted `fn` for `args` (arrays or `jax.ShapeDtypeStruct`s; nothing
  runs) and returns its estimate."""
  return of_compiled(fn.lower(*args).compile())


def shapes_of(tree):
  """`tree` with every array replaced by its `jax.ShapeDtypeStruct` (no memory allocated)."""
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), tree)


# ---- the training steps ----------------------------------------------------------------------

def per_device_batch(config, stage: str, devices: int | None = None) -> int:
  """The stage's batch on one device: the global `<stage>.train.batch_size` over `devices`
  (default: this runtime's device count)."""
  return max(1, int(config[stage].train.batch_size) // (devices or jax.device_count()))


def stage_crop(config, stage: str) -> tuple[int, int]:
  """(h, w) of the stage's training input (`seg.train_crop`, `flow.train_crop`)."""
  if stage in ('seg', 'flow'):
    return config_lib.stage_train_crop(config, stage)
  return int(config.data.crop_height), int(config.data.crop_width)


def stage_step(config, stage: str, *, devices: int | None = None) -> MemoryEstimate:
  """The per-device estimate of `stage`'s ('seg' | 'flow' | 'track') jitted training step at
  the config's per-device batch (the global batch over `devices`, default this runtime's),
  crop, instance count, `train.compute_dtype` and `train.remat`, built as the stage builds it
  (`training.stages.example_steps`)."""
  from hybrid_jax.training.stages import example_steps  # pylint: disable=g-import-not-at-top
  kwargs = {'max_instances': int(config.data.max_instances)} if stage == 'track' else {}
  step, state, batch = example_steps.STAGE_STEPS[stage](
      config, batch_size=per_device_batch(config, stage, devices), hw=stage_crop(config, stage),
      **kwargs)
  return of_program(step, state, shapes_of(batch))


def warn_if_too_large(config, stage: str) -> MemoryEstimate | None:
  """When the config names its device's memory (`train.device_memory_gib` > 0), compiles the
  stage's step once more for its analysis and logs a warning if the estimate exceeds it.

  Costs one extra compilation, so it runs only for presets sized for a device. Returns the
  estimate (None when no device memory is named)."""
  limit = float(config.train.get('device_memory_gib', 0.0) or 0.0)
  if limit <= 0:
    return None
  estimate = stage_step(config, stage)
  if estimate.peak_gib > limit:
    logging.warning(
        'Stage %s: its compiled training step needs about %.1f GiB per device (XLA memory '
        'analysis on %s), more than the %.1f GiB of the device preset %r is sized for '
        '(train.device_memory_gib): it may run out of device memory. Lower %s.train.batch_size '
        'or the crop, or set train.remat=True / train.compute_dtype=bfloat16.',
        stage, estimate.peak_gib, jax.default_backend(), limit, config.get('preset', ''), stage)
  return estimate
