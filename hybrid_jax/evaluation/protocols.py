"""The official VPQ protocols: Cityscapes-VPS (and the synthetic data, written in its layout)
and VIPER. What differs between them: window lengths, the small-object rule, excluded classes,
where GT tube areas come from, and how the sorted GT frames are cut into videos (see `vpq`).
"""

from __future__ import annotations

import dataclasses

from hybrid_jax import errors


@dataclasses.dataclass(frozen=True)
class Protocol:
  """One official VPQ variant.

  Attributes:
    name: dataset name.
    window_frames: k -> number of consecutive (labelled) frames in a window.
    min_gt_area: GT tubes with fewer pixels are ignored (0 = never).
    excluded: category ids left out of the class means.
    use_gt_pixels: GT tube area from pixel counts (VIPER) or from the json (Cityscapes-VPS).
    frames_per_video: default grouping of the sorted GT frames into videos (None = by the
      image-id prefix before the first '_').
  """
  name: str
  window_frames: dict
  min_gt_area: int = 0
  excluded: frozenset = frozenset()
  use_gt_pixels: bool = False
  frames_per_video: int | None = 6


_CITYSCAPES = Protocol('cityscapes_vps', {'0': 1, '5': 2, '10': 3, '15': 4})
PROTOCOLS = {
    'cityscapes_vps': _CITYSCAPES,
    # The built-in synthetic dataset is written in the Cityscapes-VPS layout and protocol.
    'synthetic': dataclasses.replace(_CITYSCAPES, name='synthetic'),
    'viper': Protocol('viper', {'0': 1, '5': 5, '10': 10, '15': 15}, min_gt_area=32 * 32,
                      excluded=frozenset({11}), use_gt_pixels=True, frames_per_video=None),
}


def get_protocol(dataset: str) -> Protocol:
  if dataset not in PROTOCOLS:
    raise errors.ConfigError(
        f'Unknown VPQ dataset protocol {dataset!r}; choose one of {sorted(PROTOCOLS)}.')
  return PROTOCOLS[dataset]
