"""Temporal-consistency memory (§III.E): earlier frames to re-identify instances after a gap.

When an instance of frame t has no match in the previous frame, the tracker compares it with
frames stored here (newest first) using the same tracker (instance, pixel or hybrid) and takes
the stored id when the fused similarity exceeds θ (0.01 by default). By default the older frame
is compared directly, as the paper's Fig. 7 describes: eq. 8 chains similarities through the
middle frame, and when the middle frame lost the instance that chain is broken. The chained
reading is an option (`VideoTracker(temporal_similarity='chained')`): each entry then keeps
its association with the next frame (`forward`) and the memory is compared through the
product of those matrices.

Each entry keeps its masks *warped forward to the newest frame*: `advance(flow)` moves every
stored mask by each new consecutive flow, so pixel similarity against the current frame never
needs flow over a gap (step-by-step warping instead of flow composition).
"""

from __future__ import annotations

import collections
from typing import Iterator, NamedTuple, Optional

import numpy as np

from hybrid_jax.tracking import pixel
from hybrid_jax.tracking.frame_instances import FrameInstances


class MemoryEntry(NamedTuple):
  """One stored frame.

  Attributes:
    frame_index: the frame's index in the clip.
    instances: its FrameInstances, masks warped to the newest frame seen.
    embeddings: float32 [N, D] or None (pixel-only tracker).
    ids: int32 [N] track ids (-1 for padding slots).
    forward: float [N, N] the association of this frame with the next one as a probability
      (`temporal_consistency.association_probability`), kept for Eq. 8's chained similarity; None when the
      tracker compares memory directly.
    image: the frame itself and `own_masks` bool [N, H, W] its masks where they were (not
      warped): kept only when the backward check warps frame t's masks back to this frame
      with backward flow (`VideoTracker(temporal_backward_flow=True)`); else None.
  """
  frame_index: int
  instances: FrameInstances
  embeddings: Optional[np.ndarray]
  ids: np.ndarray
  forward: Optional[np.ndarray] = None
  image: Optional[object] = None
  own_masks: Optional[np.ndarray] = None


class TrackMemory:
  """The last `max_frames` frames (a bounded FIFO); newest entry last."""

  def __init__(self, max_frames: int):
    self.max_frames = int(max_frames)
    self._entries: collections.deque[MemoryEntry] = collections.deque(
        maxlen=max(self.max_frames, 1))

  def reset(self) -> None:
    self._entries.clear()

  def __len__(self) -> int:
    return len(self._entries) if self.max_frames > 0 else 0

  def push(self, entry: MemoryEntry) -> None:
    if self.max_frames > 0:
      self._entries.append(entry)

  def advance(self, flow) -> None:
    """Warps every stored mask by one more consecutive flow [H, W, 2]."""
    for k, e in enumerate(self._entries):
      if not np.asarray(e.instances.valid).any():
        continue
      masks = np.asarray(pixel.warp_masks(e.instances.masks, flow))
      self._entries[k] = e._replace(instances=e.instances._replace(masks=masks))

  def newest_first(self) -> Iterator[MemoryEntry]:
    return reversed(self._entries)

  def active_ids(self) -> set[tuple[int, int]]:
    """(class, id) pairs present anywhere in memory."""
    out = set()
    for e in self._entries:
      for c, i, v in zip(np.asarray(e.instances.classes), e.ids, np.asarray(e.instances.valid)):
        if v:
          out.add((int(c), int(i)))
    return out
