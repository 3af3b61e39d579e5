r"""Shared machinery of the paper-table scripts: one network pass per clip, many trackers.

Every experiment is a list of tracker `Setting`s (variant, mutual check, temporal memory, θ,
RAFT iterations). The expensive part — the segmenter and RAFT — runs once per clip; only the
cheap online tracker is re-run per setting. Predictions of the labelled frames are scored in
memory with `hybrid_jax.evaluation.evaluate_arrays` (the same VPQ as the official evaluator).

The core, `sweep`, takes precomputed `Clip`s (any per-frame segmenter output and flow), so it
runs on ground-truth instances in the tests; `run_cli` wires it to a trained run directory:

  python experiments/<name>.py --config configs/synthetic.py --workdir DIR \
      [--config.x=y ...] [--max-clips N] [--out FILE.md] [--stq]

The workdir is an ordinary run directory: stages missing there are trained (as mode=all
would), finished ones are reused. The table goes to <workdir>/experiments/<name>.md.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # `python experiments/x.py` puts only experiments/ on the path
  sys.path.insert(0, ROOT)

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from hybrid_jax import errors  # noqa: E402
from hybrid_jax import inference  # noqa: E402
from hybrid_jax.tracking import tracker as tracker_lib  # noqa: E402

KS = ('0', '5', '10', '15')

@dataclasses.dataclass(frozen=True)
class Setting:
  """One tracker configuration (one row, or one cell, of a paper table).

  Attributes:
    name: label in the table.
    variant: 'instance' | 'pixel' | 'hybrid'.
    temporal: temporal-consistency memory on.
    mutual_check: 1-to-1 mutual check on.
    temporal_threshold: θ; None = config.track.temporal_threshold.
    flow_iters: RAFT iterations for this setting's flow; None = the clip's precomputed flow
      (or, with `flow_checkpoint`, config.flow.iters).
    flow_checkpoint: a converted RAFT checkpoint for this setting's flow (paper Table III);
      None = the run's RAFT.
    temporal_backward: §III.E's backward check on memory matches; None = the config's.
    plain_sum: 'hybrid' with the paper's untrained fusion (instance + pixel) instead of the
      fitted conv.
    temporal_similarity: 'direct' | 'chained' (eq. 8); None = the config's.
    temporal_backward_flow: the backward check's reverse pixel cue from backward flow (RAFT
      from frame t to the stored frame); None = the config's.
    labelled_only: track only the scored (labelled) frames, each paired with the labelled
      frame before it (on the synthetic data and Cityscapes-VPS 5 raw frames apart), with
      RAFT run between those frames; the scores are over the same frames as the other rows.
  """
  name: str
  variant: str
  temporal: bool = False
  mutual_check: bool = True
  temporal_threshold: float | None = None
  flow_iters: int | None = None
  flow_checkpoint: str | None = None
  temporal_backward: bool | None = None
  plain_sum: bool = False
  temporal_similarity: str | None = None
  temporal_backward_flow: bool | None = None
  labelled_only: bool = False

  @property
  def needs_flow(self) -> bool:
    return self.variant in ('pixel', 'hybrid')

  @property
  def own_flow(self) -> tuple | None:
    """What this setting's flow depends on beyond the clip, or None (the clip's flow)."""
    if self.flow_iters is None and self.flow_checkpoint is None and not self.labelled_only:
      return None
    return (self.flow_checkpoint, self.flow_iters, self.labelled_only)


@dataclasses.dataclass
class Clip:
  """One val clip with its network outputs.

  Attributes:
    video_id: name of the clip.
    frames: uint8 [T, H, W, 3].
    panoptic: int32 [T, H, W] ground truth (category*1000 + track id, -1 void).
    labelled: bool [T] frames that are scored.
    preds: inference.ClipPredictions (seg dict with numpy [T, ...] arrays: panoptic, masks,
      classes, scores, boxes, valid, kernels; flow [T-1, H, W, 2]; timings in seconds).
  """
  video_id: str
  frames: np.ndarray
  panoptic: np.ndarray
  labelled: np.ndarray
  preds: inference.ClipPredictions


FlowFor = Callable[[Clip, Setting], tuple[np.ndarray, float]]
TrackerFor = Callable[[Setting], tracker_lib.VideoTracker]


def tracker_for_run(config, models, table, fusion_for: Callable[[Setting], Any] | None = None
                    ) -> TrackerFor:
  """The trackers of a trained run: `inference.make_tracker` with each setting's overrides.

  `fusion_for(setting)` may give a setting its own fusion conv (None: the run's, or the plain
  sum with `Setting.plain_sum`).
  """
  from hybrid_jax.models import fusion

  def make(setting: Setting) -> tracker_lib.VideoTracker:
    backward_flow = (setting.temporal_backward_flow if setting.temporal_backward_flow is not None
                     else bool(config.track.get('temporal_backward_flow', False)))
    other_raft = setting.flow_checkpoint is not None or setting.flow_iters is not None
    if backward_flow and other_raft and setting.temporal and setting.needs_flow:
      raise errors.ConfigError(
          f'Setting {setting.name!r} sweeps the flow (its own RAFT checkpoint or iterations), '
          'so backward flow from the run\'s RAFT would not match its forward flow; set '
          '--config.track.temporal_backward_flow=False for this experiment.')
    return inference.make_tracker(
        config.track, head=models.head, max_instances=config.data.max_instances,
        categories=table, flow_model=models.flow, flow_batch=models.frames_per_call,
        variant=setting.variant, temporal=setting.temporal,
        mutual_check=setting.mutual_check, temporal_threshold=setting.temporal_threshold,
        temporal_backward=setting.temporal_backward,
        temporal_similarity=setting.temporal_similarity,
        temporal_backward_flow=setting.temporal_backward_flow,
        fusion_params=(fusion.init_fusion_params() if setting.plain_sum
                       else fusion_for(setting) if fusion_for else None))
  return make


def _progress(iterable, **kwargs):
  from tqdm import tqdm
  return tqdm(iterable, disable=not sys.stderr.isatty(), **kwargs)


def sweep(clips: Iterable[Clip], settings: Sequence[Setting], *,
          tracker_for: TrackerFor, categories: Any, dataset: str = 'cityscapes_vps',
          metrics: Sequence[str] = ('vpq',), flow_for: FlowFor | None = None,
          num_clips: int | None = None) -> list[dict]:
  """Tracks every clip with every setting and scores each setting over all clips.

  Clips are consumed one at a time (a generator may compute them lazily); only the labelled
  frames' predictions are kept, so memory holds settings × labelled frames, not network
  outputs of the whole split.

  Args:
    clips: the val clips with their precomputed network outputs.
    settings: tracker configurations; names must be distinct.
    tracker_for: the VideoTracker of a setting (`tracker_for_run` for a trained run).
    categories: category table or its name, for the evaluator.
    dataset: VPQ protocol ('cityscapes_vps' | 'viper'; config.eval.dataset).
    metrics: 'vpq' and optionally 'stq'.
    flow_for: ``flow_for(clip, setting) -> (flow [T-1, H, W, 2], seconds)``; needed by
      settings with `flow_iters` or `flow_checkpoint` (computed once per clip and
      (checkpoint, iterations)).
    num_clips: length of `clips` for the progress bar, when it is a generator.

  Returns:
    One dict per setting, in order: {'name', 'setting', 'results' (evaluate_arrays output),
    'fps' (frames / (segmenter + flow when used + tracker) seconds; the first clip is left
    out when there are several, since it pays for compilation), 'frames'}.
  """
  from hybrid_jax.evaluation import evaluate_arrays
  names = [s.name for s in settings]
  if len(set(names)) != len(names):
    raise errors.ConfigError(f'Setting names must be distinct, got {names}.')
  if any(s.own_flow for s in settings) and flow_for is None:
    raise errors.ConfigError('Settings with flow_iters or flow_checkpoint need a '
                             'flow_for(clip, setting) function.')
  trackers = [tracker_for(s) for s in settings]
  gt_videos, video_ids = [], []
  preds = [[] for _ in settings]
  # [all clips, clips after the first] seconds and tracked frames per setting.
  seconds = np.zeros((2, len(settings)))
  frames_count = np.zeros((2, len(settings)))
  n_clips = 0
  for clip in _progress(clips, total=num_clips, desc='clips'):
    lab = np.flatnonzero(np.asarray(clip.labelled, bool))
    gt_videos.append(np.asarray(clip.panoptic)[lab])
    video_ids.append(str(clip.video_id))
    flows: dict[tuple, tuple[np.ndarray, float]] = {}
    clip_seconds, clip_frames = np.zeros(len(settings)), np.zeros(len(settings))
    cut = None  # the clip cut to its labelled frames, once for every labelled_only setting
    for k, (setting, tracker) in enumerate(zip(settings, trackers)):
      if setting.labelled_only and cut is None:
        cut = labelled_frames(clip)
      tracked = cut if setting.labelled_only else clip
      p = tracked.preds
      flow_seconds = p.flow_seconds
      if setting.own_flow:
        if setting.own_flow not in flows:
          flows[setting.own_flow] = flow_for(tracked, setting)
        flow, flow_seconds = flows[setting.own_flow]
        p = dataclasses.replace(p, flow=np.asarray(flow, np.float32), flow_seconds=flow_seconds)
      pan, track_seconds = inference.track_clip(tracker, tracked.frames, p)
      preds[k].append(pan[np.flatnonzero(np.asarray(tracked.labelled, bool))])
      clip_seconds[k] = p.seg_seconds + track_seconds + (flow_seconds if setting.needs_flow
                                                          else 0.0)
      clip_frames[k] = len(tracked.frames)
    seconds[0] += clip_seconds
    frames_count[0] += clip_frames
    if n_clips > 0:
      seconds[1] += clip_seconds
      frames_count[1] += clip_frames
    n_clips += 1
  if n_clips == 0:
    raise errors.DatasetError('No clips to evaluate (is the val split empty, or --max-clips 0?).')
  use = 1 if n_clips > 1 else 0
  rows = []
  for k, setting in enumerate(_progress(settings, desc='evaluating')):
    res = evaluate_arrays(gt_videos, preds[k], categories, dataset=dataset,
                          metrics=tuple(metrics), video_ids=video_ids)
    sec = seconds[use, k]
    rows.append({'name': setting.name, 'setting': setting, 'results': res,
                 'fps': float(frames_count[use, k] / sec) if sec > 0 else None,
                 'frames': int(frames_count[use, k])})
  return rows


def labelled_frames(clip: Clip) -> Clip:
  """The clip cut to its labelled frames (`Setting.labelled_only`): their segmenter outputs
  and their share of its time; the flow is left empty (a setting computes its own)."""
  lab = np.flatnonzero(np.asarray(clip.labelled, bool))
  p = clip.preds
  h, w = np.asarray(clip.frames).shape[1:3]
  seg = {k: np.asarray(v)[lab] for k, v in p.seg.items()}
  preds = inference.ClipPredictions(seg, np.zeros((max(len(lab) - 1, 0), h, w, 2), np.float32),
                                    p.seg_seconds * len(lab) / max(len(clip.frames), 1), 0.0)
  return Clip(clip.video_id, np.asarray(clip.frames)[lab], np.asarray(clip.panoptic)[lab],
              np.ones(len(lab), bool), preds)


# ---- markdown ------------------------------------------------------------------------------

def vpq_cell(group: Mapping[str, Mapping[str, float]], digits: int = 1) -> str:
  """'VPQ / VPQ_Th / VPQ_St' of one window (or of 'final'); '—' for a window no clip has."""
  if group.get('windows', 1) == 0:
    return '—'
  return ' / '.join(f'{group[g]["pq"]:.{digits}f}' for g in ('all', 'things', 'stuff'))


def fps_cell(fps: float | None) -> str:
  return f'{fps:.1f}' if fps else '—'


def pq_table(rows: list[dict], first_column: str, label: Callable[[dict], str]) -> list[str]:
  """Tables III / IV's layout: `first_column` (label(row)), PQ, PQ_Th, PQ_St (the mean VPQ over
  k, two decimals) and FPS."""
  lines = [f'| {first_column} | PQ | PQ_Th | PQ_St | FPS |', '|---|---|---|---|---|']
  for r in rows:
    final = r['results']['vpq']['final']
    cells = [f'{final[g]["pq"]:.2f}' for g in ('all', 'things', 'stuff')]
    lines.append(f'| {label(r)} | ' + ' | '.join(cells) + f' | {fps_cell(r["fps"])} |')
  return lines


def header(title: str, config, num_clips: int) -> list[str]:
  return [f'# {title}', '',
          f'{config.data.name} val, {num_clips} clip(s); VPQ protocol {config.eval.dataset}; '
          f'flow source {config.flow.source}. Scores in %, computed in memory on the labelled '
          'frames with hybrid_jax.evaluation.evaluate_arrays (the official VPQ).', '']


# ---- seeds ---------------------------------------------------------------------------------

def seed_config(config, seed: int):
  """`config` with the training seed and, on the synthetic data, the data's seed set to `seed`."""
  c = config.copy_and_resolve_references()
  c.seed = int(seed)
  if 'generator_seed' in c.data:
    c.data.generator_seed = int(seed)
  return c


def parse_seeds(text: str | None) -> list[int]:
  """'0,1,2' -> [0, 1, 2]; '' / None -> []."""
  if not text:
    return []
  try:
    seeds = [int(s) for s in text.split(',') if s.strip()]
  except ValueError:
    raise errors.ConfigError(f'--seeds {text!r}: give integers separated by commas, e.g. '
                             '--seeds 0,1,2.') from None
  if len(set(seeds)) != len(seeds):
    raise errors.ConfigError(f'--seeds {text!r} repeats a seed.')
  return seeds


def _final(row: Mapping, group: str) -> float:
  return float(row['results']['vpq']['final'][group]['pq'])


def seed_summary(rows_by_seed: Mapping[int, list[dict]]) -> list[dict]:
  """Per setting, the mean VPQ (all, things, stuff) of each seed, their mean and standard
  deviation.

  Returns [{'name', 'n', 'values': {group: [per seed]}, 'mean': {group: float},
  'std': {group: float}}] in the settings' order (population standard deviation, ddof=0).
  """
  seeds = list(rows_by_seed)
  names = [r['name'] for r in rows_by_seed[seeds[0]]]
  out = []
  for k, name in enumerate(names):
    vals = {g: np.array([_final(rows_by_seed[s][k], g) for s in seeds])
            for g in ('all', 'things', 'stuff')}
    out.append({'name': name, 'n': len(seeds), 'values': {g: v.tolist() for g, v in vals.items()},
                'mean': {g: float(v.mean()) for g, v in vals.items()},
                'std': {g: float(v.std()) for g, v in vals.items()}})
  return out


def seed_markdown(summary: list[dict], seeds: Sequence[int],
                  comparisons: Sequence[tuple[str, str]] = ()) -> list[str]:
  """The mean ± std table and, for each (a, b) in `comparisons`, a line on a - b in VPQ_Th.

  Two rows of one seed share its data, segmenter and flow, so the seeds' spread of a row
  (mostly the segmenter's) says little about a difference between rows. The comparison is
  therefore paired: the mean and standard deviation of the per-seed differences, how many
  seeds have a above b, and whether the mean difference is smaller than the spread of the
  differences (then the two rows are not told apart by these seeds).
  """
  lines = [f'Over seeds {", ".join(map(str, seeds))} (data and training), mean ± std of the '
           'mean VPQ over k:', '',
           '| Method | VPQ | VPQ_Th | VPQ_St |', '|---|---|---|---|']
  for r in summary:
    cells = [f'{r["mean"][g]:.2f} ± {r["std"][g]:.2f}' for g in ('all', 'things', 'stuff')]
    lines.append('| ' + ' | '.join([r['name']] + cells) + ' |')
  by_name = {r['name']: r for r in summary}
  notes = []
  for a, b in comparisons:
    if a not in by_name or b not in by_name:
      continue
    diff = np.array(by_name[a]['values']['things']) - np.array(by_name[b]['values']['things'])
    mean, spread = float(diff.mean()), float(diff.std())
    above = int((diff > 0).sum())
    verdict = 'above' if mean > 0 else 'not above'
    told = ('less than the spread of the differences: not told apart by these seeds'
            if abs(mean) <= spread else 'more than the spread of the differences')
    notes.append(f'- {a} VPQ_Th is {verdict} {b}: {mean:+.2f} ± {spread:.2f} (paired, above on '
                 f'{above} of {len(diff)} seeds; {told}).')
  if notes:
    lines += ['', *notes]
  return lines


# ---- command line ---------------------------------------------------------------------------

def raft_flow_for(models, config=None) -> FlowFor:
  """flow_for(clip, setting): the run's RAFT, or the setting's converted checkpoint (its
  variant read from the checkpoint), with the setting's iterations (else config.flow's)."""
  if models.flow is None and config is None:
    raise errors.ConfigError('This experiment runs RAFT: use --config.flow.source=raft (with '
                             'trained or converted weights), not gt.')
  loaded: dict[str, Any] = {}

  def model_for(checkpoint):
    if checkpoint is None:
      if models.flow is None:
        raise errors.ConfigError('This experiment runs the run\'s RAFT: use '
                                 '--config.flow.source=raft, not gt.')
      return models.flow
    if checkpoint not in loaded:
      from hybrid_jax import trained_models
      from hybrid_jax.models.raft import model as raft
      from hybrid_jax.training import pretrained
      arch = pretrained.load_metadata(checkpoint).get('architecture')
      variants = {a: v for v, a in raft.ARCHITECTURES.items()}
      if arch not in variants:
        raise errors.CheckpointError(
            f'{checkpoint} holds {arch!r} weights, not RAFT; convert one with python -m '
            'hybrid_jax.cli.convert raft raft-sintel.pth OUT.')
      variables, _ = raft.load_raft(checkpoint, variant=variants[arch])
      loaded[checkpoint] = trained_models.FlowModel(
          variables=variables, variant=variants[arch], iters=int(config.flow.iters),
          corr=config.flow.corr)
    return loaded[checkpoint]

  def flow_for(clip: Clip, setting: Setting):
    model = model_for(setting.flow_checkpoint)
    if setting.flow_iters is not None:
      model = model.with_iters(setting.flow_iters)
    return inference.clip_flows(model, clip.frames)

  return flow_for


def iter_clips(config, models, source, num: int, *, with_flow: bool = True) -> Iterable[Clip]:
  """Runs the networks over the first `num` clips of `source`, one clip at a time."""
  use_gt_flow = config.flow.source == 'gt'
  for i in range(num):
    ex = source[i]
    frames = np.asarray(ex['frames'])
    given = None
    if use_gt_flow:
      given = ex.get('flow')
      if given is None:
        raise errors.ConfigError(f'{config.data.name} has no ground-truth flow; use '
                                 '--config.flow.source=raft.')
    # Without with_flow the sweep computes its own flow; the config's RAFT pass is skipped.
    p = inference.predict_clip(models, frames, with_flow=with_flow, given_flow=given)
    yield Clip(str(ex['video_id']), frames, np.asarray(ex['panoptic']),
               np.asarray(ex['labelled'], bool), p)


def run_experiment(config, workdir: str, *, name: str,
                   build_settings: Callable[[Any], Sequence[Setting]],
                   to_markdown: Callable[[list, Any, int], str], max_clips: int | None = None,
                   out: str | None = None, stq: bool = False, sweeps_flow: bool = False,
                   trackers: Callable[[Any, Any, Any, str], TrackerFor] | None = None,
                   on_clip: Callable[[Clip], None] | None = None) -> tuple[str, list[dict]]:
  """Trains/loads the run's models, sweeps the settings, writes the markdown; returns it.

  `trackers(config, models, table, workdir)` gives the settings' trackers (default
  `tracker_for_run`);
  `on_clip(clip)` is called before each clip is tracked (e.g. to hand its ground truth to an
  oracle cue).
  """
  from hybrid_jax import config_checks
  from hybrid_jax import run_records
  from hybrid_jax import train
  from hybrid_jax import workdirs
  from hybrid_jax.data import categories as categories_lib
  from hybrid_jax.data import datasets
  config_checks.check_config(config)
  workdir = workdirs.ensure_writable_dir(workdir)
  data_dir = workdirs.data_dir(config, workdir)
  with workdirs.locked(workdir):
    # As `train.run`: a finished stage trained with other settings is an error naming them
    # (or is trained again with --config.force_stages), never silently reused.
    run_records.check_stages(config, workdir)
    datasets.prepare(config, data_dir)
    models = train.train_stages(config, workdir)
  table = categories_lib.get_categories(config.data.categories)
  source = datasets.get_source(config, 'val', data_dir)
  num = len(source) if max_clips is None else max(0, min(int(max_clips), len(source)))
  settings = build_settings(config)
  flow_for = (raft_flow_for(models, config) if sweeps_flow or any(s.own_flow for s in settings)
              else None)
  clips = iter_clips(config, models, source, num, with_flow=not sweeps_flow)
  if on_clip is not None:
    clips = _calling(on_clip, clips)
  tracker_for = (trackers(config, models, table, workdir) if trackers
                 else tracker_for_run(config, models, table))
  rows = sweep(clips, settings, tracker_for=tracker_for,
               categories=config.data.categories, dataset=config.eval.dataset,
               metrics=('vpq', 'stq') if stq else ('vpq',), flow_for=flow_for, num_clips=num)
  text = to_markdown(rows, config, num)
  path = out or os.path.join(workdir, 'experiments', f'{name}.md')
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'w') as f:
    f.write(text)
  print(text)
  print(f'Wrote {path}')
  return path, rows


def _calling(fn: Callable[[Clip], None], clips: Iterable[Clip]) -> Iterable[Clip]:
  for clip in clips:
    fn(clip)
    yield clip


def run_seeds(config, workdir: str, seeds: Sequence[int], *, name: str, comparisons=(),
              **kwargs) -> tuple[str, dict]:
  """`run_experiment` once per seed in ``<workdir>/seed_<S>`` (stages trained there when
  missing), then the mean ± std table in ``<workdir>/experiments/<name>_seeds.md``."""
  rows_by_seed, texts = {}, []
  for seed in seeds:
    path, rows = run_experiment(seed_config(config, seed), os.path.join(workdir, f'seed_{seed}'),
                                name=name, **kwargs)
    rows_by_seed[seed] = rows
    texts.append(f'- seed {seed}: `{os.path.relpath(path, workdir)}`')
  lines = [f'# {name} over {len(seeds)} seeds', ''] + seed_markdown(
      seed_summary(rows_by_seed), seeds, comparisons) + ['', 'Per-seed tables:', *texts]
  out = os.path.join(workdir, 'experiments', f'{name}_seeds.md')
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with open(out, 'w') as f:
    f.write('\n'.join(lines) + '\n')
  print('\n'.join(lines))
  print(f'Wrote {out}')
  return out, rows_by_seed


def quiet_log(workdir: str | None) -> None:
  """The libraries' INFO log to <workdir>/logs/, as `hybrid_jax.main` does (the terminal keeps
  warnings, errors and the tables; --alsologtostderr shows everything)."""
  from hybrid_jax import console
  log_dir = console.log_to_workdir(workdir)
  if log_dir:
    console.say(f'log: {log_dir} (--alsologtostderr shows it here)')


def run_cli(name: str, build_settings, to_markdown, *, sweeps_flow: bool = False,
            comparisons: Sequence[tuple[str, str]] = (), **experiment_kwargs) -> None:
  """absl entry point shared by the scripts (flags parsed like hybrid_jax.main).

  The flags are defined here, not at import, so that tests can import the scripts next to
  hybrid_jax.main (which defines --config too) in one process. A script defines its own
  extra flags before calling this; `build_settings` reads them after parsing.
  """
  from absl import app
  config = config_flags.DEFINE_config_file(
      'config', None,
      'Config file, e.g. configs/synthetic.py or configs/cityscapes_vps.py:small.',
      lock_config=True)
  workdir = flags.DEFINE_string('workdir', None,
                                'Run directory (stages are trained there if missing).')
  max_clips = flags.DEFINE_integer('max_clips', None, 'Use only the first N val clips.')
  out = flags.DEFINE_string('out', None,
                            'Markdown output (default <workdir>/experiments/<name>.md).')
  stq = flags.DEFINE_bool('stq', False, 'Also compute STQ (slower).')
  seeds = flags.DEFINE_string(
      'seeds', None, 'Comma-separated seeds, e.g. 0,1,2: one run per seed (config.seed and, on '
      'synthetic data, data.generator_seed) in <workdir>/seed_<S>, then mean ± std per row.')
  for key in ('config', 'workdir', 'max_clips', 'out', 'stq', 'seeds'):  # listed by --help
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[key])

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
    quiet_log(workdir.value)
    try:
      kwargs = dict(build_settings=build_settings, to_markdown=to_markdown,
                    max_clips=max_clips.value, stq=stq.value, sweeps_flow=sweeps_flow,
                    **experiment_kwargs)
      seed_list = parse_seeds(seeds.value)
      if seed_list:
        if out.value:
          raise errors.ConfigError('--out names one table; with --seeds the tables go to '
                                   '<workdir>/seed_<S>/experiments/ and the summary to '
                                   '<workdir>/experiments/. Drop --out.')
        run_seeds(config.value, workdir.value, seed_list, name=name, comparisons=comparisons,
                  **kwargs)
      else:
        run_experiment(config.value, workdir.value, name=name, out=out.value, **kwargs)
    except errors.HybridJaxError as exc:
      print(f'error: {exc}', file=sys.stderr)
      sys.exit(2)

  flags.mark_flags_as_required(['config', 'workdir'])
  app.run(main, flags_parser=_parse_flags)


def _parse_flags(argv):
  """The shared config-flag parser; `--max-clips` is accepted for `--max_clips`."""
  from hybrid_jax.cli import flag_parsing
  return flag_parsing.parse_flags([argv[0]] + [_underscored(a) for a in argv[1:]])


def _underscored(arg: str) -> str:
  """'--max-clips=3' -> '--max_clips=3'; config overrides and values are left alone."""
  if not arg.startswith('--') or arg.startswith('--config'):
    return arg
  name, sep, value = arg[2:].partition('=')
  return '--' + name.replace('-', '_') + sep + value
