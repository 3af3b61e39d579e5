r"""The hybrid's premise, tested: the same frames tracked 1 and 5 raw frames apart.

  python experiments/frame_gap.py --config configs/synthetic.py --workdir /tmp/demo
  python experiments/frame_gap.py --config configs/synthetic.py --workdir /tmp/seeds \
      --seeds 0,1,2 --config.data.num_val_clips=40

The paper motivates the hybrid by the pixel tracker's failures: a mask warped by optical flow
lands on its object while the motion is small and the flow right, and misses it when objects
move far or the flow is wrong, where an appearance embedding does not depend on the
displacement. Tracked frame by frame, the demo's data rarely breaks the pixel tracker
(`instance_cue_ceiling.py`: even a perfect instance cue adds < 0.5 VPQ_Th). This experiment
scores the same labelled frames twice: tracked on every frame (as the demo), and tracked on
the labelled frames only, each against the labelled frame before it (5 raw frames apart on
the synthetic data and on Cityscapes-VPS), with RAFT run between those frames
(`common.Setting.labelled_only`). The segmenter's outputs and the scored frames are the same;
only the displacement each association has to bridge grows.

At the larger gap the hybrid runs with the run's fusion (fitted on consecutive frames), with
the fusion fitted again on pairs at that gap (`train_tracker.fusion_pairs` on consecutive
labelled frames of the same held-out train clips, the run's objective and rule), and with
the plain sum. The fusion fitted 5 frames apart also tracks every frame: Cityscapes-VPS's
train/test gap in small (there the fusion can only be fitted on labelled pairs, and the
tracker runs on every frame; docs/faq.md). Nothing else is retrained: the embedding head learnt on pairs up to
data.max_delta frames apart, RAFT on consecutive frames. The memory keeps
track.memory_frames *tracked* frames, so at the larger gap it spans 5x more raw frames.
Writes <workdir>/experiments/frame_gap.md (with --seeds, the paired differences in
frame_gap_seeds.md).
"""

from __future__ import annotations

import functools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import common  # noqa: E402

NAME = 'frame_gap'
EVERY = ', every frame'
LABELLED = ', labelled frames only'
REFIT = ', fusion fitted on labelled-frame pairs'


def settings(mutual_check: bool = True) -> list[common.Setting]:
  s = common.Setting
  rows = []
  for suffix, only in ((EVERY, False), (LABELLED, True)):
    rows += [
        s('Instance Tracker' + suffix, 'instance', mutual_check=False, labelled_only=only),
        s('Pixel Tracker' + suffix, 'pixel', mutual_check=mutual_check, labelled_only=only),
        s('HybridTracker' + suffix, 'hybrid', mutual_check=mutual_check, labelled_only=only),
        s('Pixel Tracker + w/ Temporal' + suffix, 'pixel', temporal=True,
          mutual_check=mutual_check, labelled_only=only),
        s('HybridTracker + w/ Temporal' + suffix, 'hybrid', temporal=True,
          mutual_check=mutual_check, labelled_only=only),
    ]
  rows += [
      # Cityscapes-VPS's train/test gap in small: fitted 5 frames apart, tracking every frame.
      s('HybridTracker' + EVERY + REFIT, 'hybrid', mutual_check=mutual_check),
      s('HybridTracker' + LABELLED + REFIT, 'hybrid', mutual_check=mutual_check,
        labelled_only=True),
      s('HybridTracker + w/ Temporal' + LABELLED + REFIT, 'hybrid', temporal=True,
        mutual_check=mutual_check, labelled_only=True),
      s('HybridTracker (plain sum)' + LABELLED, 'hybrid', mutual_check=mutual_check,
        labelled_only=True, plain_sum=True),
  ]
  return rows


# (a, b): "a's VPQ_Th is above b's".
COMPARISONS = (
    ('HybridTracker' + EVERY, 'Pixel Tracker' + EVERY),
    ('HybridTracker' + LABELLED, 'Pixel Tracker' + LABELLED),
    ('HybridTracker' + LABELLED + REFIT, 'Pixel Tracker' + LABELLED),
    ('HybridTracker' + LABELLED + REFIT, 'Instance Tracker' + LABELLED),
    ('HybridTracker' + LABELLED + REFIT, 'HybridTracker' + LABELLED),
    ('HybridTracker' + LABELLED + REFIT, 'HybridTracker (plain sum)' + LABELLED),
    ('HybridTracker' + EVERY + REFIT, 'HybridTracker' + EVERY),
    ('HybridTracker + w/ Temporal' + LABELLED + REFIT, 'Pixel Tracker + w/ Temporal' + LABELLED),
    ('Pixel Tracker' + EVERY, 'Pixel Tracker' + LABELLED),
)


# Held-out rows decided by the tracker's rule with one cue alone or the plain sum
# (w_inst, w_pix, bias), beside the run's fusion and the refit.
CUES = (('pixel cue alone', (0.0, 1.0, 0.0)), ('instance cue alone', (1.0, 0.0, 0.0)),
        ('plain sum', (1.0, 1.0, 0.0)))
RUN_FUSION = "the run's fusion (fitted on consecutive pairs)"
REFIT_FUSION = 'the fusion fitted on labelled-frame pairs'


def decided_right(config, pairs, fusions) -> dict:
  """{name: fraction of `pairs`' rows the tracker's rule decides right} for `CUES` and the
  named fusion params in `fusions` (`fusion_fit.row_decision_accuracy`; None without rows)."""
  from hybrid_jax.models import fusion
  from hybrid_jax.training import fusion_fit
  rule = dict(threshold=float(config.track.threshold),
              mutual_check=bool(config.track.mutual_check), matcher=str(config.track.matcher))
  named = [(n, fusion.fusion_params(*v)) for n, v in CUES] + list(fusions.items())
  return {n: fusion_fit.row_decision_accuracy(p, pairs.inst, pairs.pix, pairs.target,
                                              pairs.allowed, **rule) for n, p in named}


def fusion_at_labelled_gap(config, workdir: str, models, table):
  """(params, report, decisions) of the fusion fitted on consecutive *labelled* frames of the
  run's held-out train clips, as the run's own fusion is fitted on consecutive frames;
  `decisions` are `decided_right` on the held-out pairs of each kind ('consecutive',
  'labelled')."""
  from hybrid_jax import errors
  from hybrid_jax import workdirs
  from hybrid_jax.data import datasets
  from hybrid_jax.training.stages import train_tracker
  if models.head is None or models.flow is None:
    raise errors.ConfigError('frame_gap compares the pixel and hybrid trackers: it needs the '
                             "run's embedding head and RAFT (flow.source=raft).")
  source = datasets.get_source(config, 'train', workdirs.data_dir(config, workdir))
  segment = train_tracker.segment_fn_for(config, workdir)
  if config.track.fusion_segments != 'predicted':
    segment = None
  pairs = functools.partial(train_tracker.fusion_pairs, config, source, table,
                            models.head.embed_fn, models.head.dustbin_logit,
                            flow_fn=models.flow, segment=segment)
  labelled = pairs(labels_on_every_frame=False)
  held = {'consecutive': pairs(labels_on_every_frame=True, splits=('held_out',))['held_out'],
          'labelled': labelled['held_out']}
  params, report = train_tracker.fit_fusion_on(config, labelled['fit'], held['labelled'],
                                               segments='gt' if segment is None else 'predicted')
  fusions = {RUN_FUSION: models.head.fusion_params, REFIT_FUSION: params}
  decisions = {kind: decided_right(config, pairs, fusions) for kind, pairs in held.items()}
  return params, report, decisions


class _Refit:
  """The trackers of a run, the REFIT rows with the fusion fitted at the labelled gap; keeps
  that fit's report for the table."""

  def __init__(self):
    self.report = self.decisions = None

  def trackers(self, config, models, table, workdir):
    params, self.report, self.decisions = fusion_at_labelled_gap(config, workdir, models, table)
    return common.tracker_for_run(config, models, table,
                                  fusion_for=lambda s: params if REFIT in s.name else None)

  def markdown(self, rows, config, num_clips: int) -> str:
    from experiments import tracker_ablation
    lines = common.header('The same frames tracked 1 and 5 raw frames apart', config, num_clips)
    lines += ['"every frame": tracked on all frames, the previous frame as reference (the '
              'demo). "labelled frames only": tracked on the scored frames alone, each against '
              'the scored frame before it, RAFT between them. Each cell: VPQ / VPQ_Th / '
              'VPQ_St; FPS per tracked frame.', '']
    lines += tracker_ablation.table(rows)
    r = self.report or {}
    if r:
      w = r['weights']
      lines += ['', f'Fusion fitted on labelled-frame pairs ({r["objective"]}, {r["segments"]} segments, '
                f'{r["fit_pairs"]} pairs): {w["instance"]:.3g} x instance + {w["pixel"]:.3g} x '
                f'pixel + {w["bias"]:.3g}; held-out rows decided right '
                f'{_percent(r["held_out_row_accuracy"])} (plain sum '
                f'{_percent(r["held_out_row_accuracy_plain_sum"])}, '
                f'{r["held_out_pairs"]} pairs).']
    if self.decisions:
      d = self.decisions
      lines += ['', 'Held-out train rows the tracker\'s rule (matcher, threshold, mutual check) '
                'decides right:', '', '| cue | consecutive pairs | labelled-frame pairs |',
                '|---|---|---|']
      lines += [f'| {n} | {_percent(d["consecutive"][n])} | {_percent(d["labelled"][n])} |'
                for n in d['labelled']]
    return '\n'.join(lines) + '\n'


def _percent(x) -> str:
  return '—' if x is None else f'{100 * x:.1f}%'


if __name__ == '__main__':
  refit = _Refit()
  common.run_cli(NAME, lambda config: settings(config.track.mutual_check), refit.markdown,
                 comparisons=COMPARISONS, trackers=refit.trackers)
