"""The official VPQ protocols: Cityscapes-VPS (and the synthetic data, written in its layout),
VIPER and VIPSeg, plus KITTI-STEP, which is evaluated with STQ only. What differs between
them: window lengths, the small-object rule, excluded classes, where GT tube areas come from,
and how the sorted GT frames are cut into videos (see `vpq`).

VIPSeg (``ClipPanoFCN/eval_vpq_vspw.py`` of github.com/VIPSeg-Dataset/VIPSeg-Dataset): windows
of 1, 2, 4, 6 and 8 consecutive frames of a video (every frame of a VIPSeg video is labelled)
sliding by one frame, the per-class sums of all windows of all videos, the final VPQ the mean
over the five window lengths. The tool names a window of n frames k = 5 (n - 1), so the keys
here are '0', '5', '15', '25', '35'. No small-object rule, no excluded class, GT areas from the
json (the conversion script writes pixel counts there), no crowd segment.

KITTI-STEP (deeplab2): the benchmark's metric is STQ over whole sequences; there is no official
VPQ for it, so its protocol has no windows and asking for VPQ is a ConfigError.
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
    vpq_note: why VPQ is not defined (a protocol without windows: STQ only), else ''.
  """
  name: str
  window_frames: dict
  min_gt_area: int = 0
  excluded: frozenset = frozenset()
  use_gt_pixels: bool = False
  frames_per_video: int | None = 6
  vpq_note: str = ''

  @property
  def has_vpq(self) -> bool:
    return bool(self.window_frames)


_CITYSCAPES = Protocol('cityscapes_vps', {'0': 1, '5': 2, '10': 3, '15': 4})
PROTOCOLS = {
    'cityscapes_vps': _CITYSCAPES,
    # The built-in synthetic dataset is written in the Cityscapes-VPS layout and protocol.
    'synthetic': dataclasses.replace(_CITYSCAPES, name='synthetic'),
    'viper': Protocol('viper', {'0': 1, '5': 5, '10': 10, '15': 15}, min_gt_area=32 * 32,
                      excluded=frozenset({11}), use_gt_pixels=True, frames_per_video=None),
    'vipseg': Protocol('vipseg', {'0': 1, '5': 2, '15': 4, '25': 6, '35': 8},
                       frames_per_video=None),
    'kitti_step': Protocol(
        'kitti_step', {}, frames_per_video=None,
        vpq_note="KITTI-STEP is evaluated with STQ (deeplab2's benchmark metric); it has no "
                 "official VPQ protocol. Use --config.eval.metrics=stq, or name another VPQ "
                 "protocol with --config.eval.dataset (e.g. cityscapes_vps)."),
}


def get_protocol(dataset: str) -> Protocol:
  if dataset not in PROTOCOLS:
    raise errors.ConfigError(
        f'Unknown VPQ dataset protocol {dataset!r}; choose one of {sorted(PROTOCOLS)}.')
  return PROTOCOLS[dataset]
