"""Device mesh, shardings and multi-host setup for data-parallel training (jit, not pmap).

One mesh axis, 'data'. The train state is replicated on every device; batches are split
along their leading axis. Each process loads only its own slice of the global batch
(`local_batch_size`, `process_shard`) and `shard_batch` assembles the global array with
`jax.make_array_from_process_local_data`, so the same code runs on 1 device, 8 devices or
several hosts. Inside the jitted step, `jnp.mean` over the batch is the global mean: no
`pmean`, no `axis_name`.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Mapping

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from hybrid_jax import errors

DATA_AXIS = 'data'


def initialize_distributed(dist_cfg=None) -> bool:
  """Joins a multi-process JAX job; call before any other JAX work. Returns True if joined.

  Sources, in order: `dist_cfg` (config.distributed: coordinator_address, num_processes,
  process_id) when coordinator_address is set and num_processes > 1; otherwise the
  environment variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID.
  With neither, this is a single-process run and nothing happens. On CPU, the cross-process
  collectives use gloo.
  """
  address = (dist_cfg.coordinator_address if dist_cfg is not None else '') or ''
  num = int(dist_cfg.num_processes) if dist_cfg is not None else 1
  pid = int(dist_cfg.process_id) if dist_cfg is not None else 0
  if not address or num <= 1:
    address = os.environ.get('JAX_COORDINATOR_ADDRESS', '')
    num = int(os.environ.get('JAX_NUM_PROCESSES', '1'))
    pid = int(os.environ.get('JAX_PROCESS_ID', '0'))
  if not address or num <= 1:
    return False
  if not 0 <= pid < num:
    raise errors.ConfigError(f'distributed.process_id={pid} must be in [0, {num}).')
  # gloo gives CPU processes cross-process collectives; accelerators ignore this setting.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  logging.info('Joining JAX job at %s as process %d of %d.', address, pid, num)
  jax.distributed.initialize(coordinator_address=address, num_processes=num, process_id=pid)
  return True


def make_mesh(num_devices: int | None = None) -> jax.sharding.Mesh:
  """A 1-D ('data',) mesh over all devices (or the first `num_devices`, single process)."""
  devices = jax.devices()
  if num_devices is not None:
    if jax.process_count() > 1 and num_devices != len(devices):
      raise errors.ConfigError('num_devices must be all devices in a multi-process run.')
    devices = devices[:num_devices]
  # Auto axis types: model code written for one device (reshapes, einsums over the batch)
  # needs no sharding annotations; plain data parallelism gains nothing from Explicit.
  return jax.make_mesh((len(devices),), (DATA_AXIS,),
                       axis_types=(jax.sharding.AxisType.Auto,), devices=devices)


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def local_batch_size(global_batch_size: int, mesh=None) -> int:
  """This process's share of the global batch; checks divisibility by the device count."""
  n_dev = mesh.size if mesh is not None else jax.device_count()
  if global_batch_size % n_dev:
    raise errors.ConfigError(
        f'batch_size={global_batch_size} is not divisible by the {n_dev} devices of the '
        'mesh; choose a multiple of the device count.')
  return global_batch_size // jax.process_count()


def process_shard() -> tuple[int, int]:
  """(process_index, process_count): which slice of the data this process reads."""
  return jax.process_index(), jax.process_count()


def replicate(tree: Any, mesh) -> Any:
  """Places every leaf of `tree` on every device of `mesh` (works across processes).

  Every process must pass the same values (same seed / same restored checkpoint).
  """
  sharding = replicated(mesh)

  def place(x):
    if isinstance(x, jax.Array) and x.sharding == sharding:
      return x   # already replicated on this mesh (possibly across processes)
    return jax.make_array_from_process_local_data(sharding, np.asarray(x))
  return jax.tree.map(place, tree)


def shard_batch(host_batch: Mapping[str, Any], mesh) -> dict[str, jax.Array]:
  """Turns this process's host batch (numpy, leading axis = local examples) into global arrays.

  String/object leaves (video ids, frame names) stay on the host and are dropped here;
  0-d leaves are replicated. The local leading dimension must divide evenly over the local
  devices.
  """
  out = {}
  n_local = mesh.local_mesh.size if hasattr(mesh, 'local_mesh') else len(mesh.local_devices)
  for key, value in host_batch.items():
    if isinstance(value, Mapping):
      out[key] = shard_batch(value, mesh)
      continue
    arr = np.asarray(value)
    if arr.dtype.kind in 'OUSV':
      continue
    if arr.ndim == 0:
      out[key] = jax.make_array_from_process_local_data(replicated(mesh), arr)
      continue
    if arr.shape[0] % n_local:
      raise errors.ConfigError(
          f'Batch entry {key!r} has {arr.shape[0]} examples on this process, not divisible by '
          f'its {n_local} devices; choose batch_size as a multiple of the device count.')
    out[key] = jax.make_array_from_process_local_data(batch_sharding(mesh), arr)
  return out
