r"""How much can an instance cue add to the pixel tracker here? The hybrid with a perfect one.

  python experiments/instance_cue_ceiling.py --config configs/synthetic.py --workdir /tmp/demo
  python experiments/instance_cue_ceiling.py --config configs/synthetic.py --workdir /tmp/seeds \
      --seeds 0,1,2 --config.data.num_val_clips=40

The paper's claim is that the instance tracker fixes what the pixel tracker gets wrong. This
bounds the gain on a run's own predicted segments: beside the pixel tracker and the run's
hybrid (its trained embedding head and fitted fusion), the same trackers run with an *oracle*
instance cue, embeddings that are one-hot vectors of the ground-truth object each predicted
segment belongs to (`prediction_targets.assign_by_ownership`: the segment owning more than half
of its pixels; an unowned prediction gets a zero embedding, a uniform p(j|i)), fused with the
paper's plain sum (the fitted conv was fitted to the trained head's cue). The oracle rows
see the segmenter's errors exactly as the real ones do; only the appearance cue is perfect.
So "oracle hybrid - pixel" is the headroom any instance tracker has on this segmenter and
flow, and "hybrid - pixel" how much of it the trained head takes.

More val clips make the comparison less noisy without retraining anything
(`--config.data.num_val_clips`: the synthetic train clips do not depend on it). Writes
<workdir>/experiments/instance_cue_ceiling.md (and, with --seeds, the paired differences).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
from typing import Any, Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import common  # noqa: E402

NAME = 'instance_cue_ceiling'
ORACLE = ', oracle instance cue'
SCALE = 10.0  # one-hot embeddings times this: p(j|i) of the owner's column ~ 1


def settings() -> list[common.Setting]:
  s = common.Setting
  return [
      s('Pixel Tracker', 'pixel'),
      s('HybridTracker', 'hybrid'),
      s('Instance Tracker' + ORACLE, 'instance', mutual_check=False),
      s('HybridTracker' + ORACLE, 'hybrid', plain_sum=True),
      s('Pixel Tracker + w/ Temporal', 'pixel', temporal=True),
      s('HybridTracker + w/ Temporal', 'hybrid', temporal=True),
      s('HybridTracker + w/ Temporal' + ORACLE, 'hybrid', temporal=True, plain_sum=True),
  ]


COMPARISONS = (
    ('HybridTracker', 'Pixel Tracker'),
    ('HybridTracker' + ORACLE, 'Pixel Tracker'),
    ('HybridTracker + w/ Temporal', 'Pixel Tracker + w/ Temporal'),
    ('HybridTracker + w/ Temporal' + ORACLE, 'Pixel Tracker + w/ Temporal'),
)


class OracleCue:
  """``embed(image, instances) -> [N, D]``: one-hot of the ground-truth owner of each slot.

  `set_clip(clip)` hands over the clip about to be tracked; a frame is recognised by its bytes
  (the tracker passes the image, not its index).
  """

  def __init__(self, table, max_instances: int, dim: int = 256):
    self.table, self.max_instances, self.dim = table, int(max_instances), int(dim)
    self._gt: dict[str, np.ndarray] = {}
    self._column: dict[int, int] = {}

  @staticmethod
  def _key(image) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()

  def set_clip(self, clip: common.Clip) -> None:
    self._gt = {self._key(f): p for f, p in zip(clip.frames, clip.panoptic)}
    self._column = {}

  def __call__(self, image, instances) -> np.ndarray:
    from hybrid_jax.tracking import frame_instances as instances_lib
    from hybrid_jax.training import prediction_targets
    key = self._key(image)
    if key not in self._gt:
      raise KeyError('OracleCue: a frame of another clip; call set_clip(clip) first.')
    gt, gt_ids = instances_lib.instances_from_panoptic(self._gt[key], self.table,
                                                       self.max_instances)
    owners = prediction_targets.assign_by_ownership(instances, gt, gt_ids)
    out = np.zeros((instances.max_instances, self.dim), np.float32)
    for slot, owner in enumerate(owners.tolist()):
      if owner >= 0:
        col = self._column.setdefault(owner, len(self._column) % self.dim)
        out[slot, col] = SCALE
    return out


@dataclasses.dataclass
class _OracleHead:
  """What `inference.make_tracker` reads from a head: the cue, no dustbin, the plain sum."""
  embed_fn: Callable
  fusion_params: Any = None
  dustbin_logit: float | None = None


def make_trackers(oracle: OracleCue):
  """`common.run_experiment`'s `trackers`: the run's trackers, the oracle rows with `oracle`."""
  from hybrid_jax import inference
  from hybrid_jax.models import fusion

  def trackers(config, models, table, workdir=None):
    del workdir  # the oracle needs no more than the run's models
    run = common.tracker_for_run(config, models, table)
    head = _OracleHead(oracle, fusion.init_fusion_params())

    def make(setting):
      if not setting.name.endswith(ORACLE):
        return run(setting)
      return inference.make_tracker(
          config.track, head=head, max_instances=config.data.max_instances, categories=table,
          variant=setting.variant, temporal=setting.temporal, mutual_check=setting.mutual_check)
    return make
  return trackers


def markdown(rows: list[dict], config, num_clips: int) -> str:
  from experiments import tracker_ablation
  lines = common.header('The instance cue\'s headroom: the hybrid with an oracle instance cue',
                        config, num_clips)
  lines += ['Rows marked "oracle instance cue" embed each predicted segment as a one-hot of the '
            'ground-truth object owning most of its pixels, fused by the plain sum; the others '
            'are the run\'s trackers. Each cell: VPQ / VPQ_Th / VPQ_St.', '']
  return '\n'.join(lines + tracker_ablation.table(rows)) + '\n'


class _Lazy:
  """The oracle needs the config's category table, known only once the flags are parsed."""

  def __init__(self):
    self.oracle = None

  def trackers(self, config, models, table, workdir=None):
    self.oracle = OracleCue(table, config.data.max_instances)
    return make_trackers(self.oracle)(config, models, table, workdir)

  def on_clip(self, clip):
    self.oracle.set_clip(clip)


if __name__ == '__main__':
  lazy = _Lazy()
  common.run_cli(NAME, lambda config: settings(), markdown, comparisons=COMPARISONS,
                 trackers=lazy.trackers, on_clip=lazy.on_clip)
