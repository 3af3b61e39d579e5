"""How much memory a RAFT forward needs, checked before it runs (a clear message, not an OOM).

The all-pairs correlation volume of one pair holds (H/8 · W/8)² float32 values; with its
pyramid and the lookup's margin layout XLA's peak was 2.33x that on this code (measured: a
4000x3000 pair asked for 327 GB, 2.33 x 140.6 GB). The on-demand lookup stores no volume.
"""

from __future__ import annotations

import math
import os

from hybrid_jax import errors

ALL_PAIRS_PEAK_FACTOR = 2.4   # peak bytes / (level-0 volume bytes), rounded up from 2.33
FEATURE_BYTES_PER_PIXEL = 1000  # the rest: measured 1.80 GiB for RAFT at 1024x2048, on demand


def estimate_bytes(height: int, width: int, *, batch: int = 1, corr: str = 'all_pairs') -> int:
  """Estimated peak bytes of one RAFT forward on `batch` pairs of `height` x `width` frames."""
  cells = math.ceil(height / 8) * math.ceil(width / 8)
  feature = FEATURE_BYTES_PER_PIXEL * height * width * batch
  if corr == 'on_demand':
    return int(feature)
  return int(ALL_PAIRS_PEAK_FACTOR * 4 * cells * cells * batch + feature)


def available_bytes() -> int | None:
  """Memory of the device RAFT runs on: an accelerator's limit, else the host's RAM."""
  import jax  # pylint: disable=g-import-not-at-top
  device = jax.devices()[0]
  if device.platform != 'cpu':
    stats = device.memory_stats() or {}
    if stats.get('bytes_limit'):
      return int(stats['bytes_limit'])
  try:
    return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
  except (ValueError, OSError, AttributeError):
    return None


def check_fits(height: int, width: int, *, batch: int = 1, corr: str = 'all_pairs',
               corr_option: str = '--corr on_demand') -> None:
  """ConfigError, before compute, when the forward would need more memory than there is."""
  need = estimate_bytes(height, width, batch=batch, corr=corr)
  have = available_bytes()
  if have is None or need <= 0.8 * have:
    return
  gib = lambda b: f'{b / 2**30:.1f} GiB'  # noqa: E731
  options = [f'resize the frames (e.g. to {width // 2}x{height // 2})']
  if corr != 'on_demand':
    on_demand = estimate_bytes(height, width, batch=batch, corr='on_demand')
    options.insert(0, f'{corr_option} (about {gib(on_demand)}: the same flow, no stored '
                      'correlation volume)')
  raise errors.ConfigError(
      f'RAFT on {batch} pair(s) of {width}x{height} frames with {corr} correlation needs about '
      f'{gib(need)}, more than the {gib(have)} available. Use ' + ' or '.join(options) + '.')
