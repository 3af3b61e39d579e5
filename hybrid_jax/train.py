"""HybridTracker end to end: ``train_and_evaluate(config, workdir)`` and the mode registry.

``train_and_evaluate`` runs: prepare data -> train the segmenter -> train RAFT (when the data
has ground-truth flow; else converted weights) -> train the embedding head and fit the fusion
-> track the val clips with the paper's Table I tracker variants -> VPQ / STQ with the
official-format evaluator -> ``<workdir>/report.md``. Every stage resumes or is skipped when
done, so rerunning the command continues where it stopped.

``run(config, workdir)`` is what ``python -m hybrid_jax.main`` calls: it checks the config and
the workdir, then runs ``MODES[config.mode]``. A notebook calls the same functions::

  from configs import synthetic
  from hybrid_jax import train
  train.run(synthetic.get_config('tiny'), '/tmp/tiny')
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Callable

from hybrid_jax import config_checks
from hybrid_jax import console
from hybrid_jax import errors
from hybrid_jax import run_records
from hybrid_jax import trained_models
from hybrid_jax import val_tracking
from hybrid_jax import workdirs
from hybrid_jax.data import datasets
from hybrid_jax.data import export as export_lib
from hybrid_jax.evaluation import evaluate_official
from hybrid_jax.evaluation import outputs as eval_outputs
from hybrid_jax.evaluation import report as report_lib

TABLE_I_ROWS = val_tracking.TABLE_I_ROWS
GT_SUFFIX = val_tracking.GT_SUFFIX


# ---------------------------------------------------------------------------------------------
# Training stages.

def _stage_summary(workdir: str, stage: str) -> str:
  """The stage's key number for its console line (from its eval.json / metadata)."""
  if stage == 'seg':
    ev = run_records.read(os.path.join(workdir, 'seg', 'eval.json'))
    return ev and (f'val PQ {ev["ours"]["all"]:.1f} (things {ev["ours"]["things"]:.1f}, '
                   f'stuff {ev["ours"]["stuff"]:.1f})')
  if stage == 'flow':
    ev = run_records.read(os.path.join(workdir, 'flow', 'eval.json'))
    return ev and f'val EPE {ev["epe"]:.3f} px (zero flow {ev["epe_zero_flow"]:.3f} px)'
  meta = run_records.read(os.path.join(workdir, 'track', trained_models.FUSION_DIR,
                                       'metadata.json'))
  if not meta or 'weights' not in meta:
    return None
  w = meta['weights']
  line = f'fusion {w["instance"]:.2f} x instance + {w["pixel"]:.2f} x pixel {w["bias"]:+.2f}'
  if meta.get('held_out_row_accuracy') is None:
    return line + ' (no held-out pair to measure it on)'
  return (line + f'; held-out rows right {100 * meta["held_out_row_accuracy"]:.1f}% '
          f'(plain sum {100 * meta["held_out_row_accuracy_plain_sum"]:.1f}%)')


def train_seg(config, workdir: str) -> dict:
  """The segmenter of this run (trained, or loaded when its stage is done)."""
  from hybrid_jax.training.stages import train_segmenter  # pylint: disable=g-import-not-at-top
  with console.stage('seg', 'the PanopticFCN segmenter') as line:
    out = train_segmenter.train_segmenter(config, workdir, workdirs.data_dir(config, workdir))
    line['summary'] = _stage_summary(workdir, 'seg')
  return out


def train_flow(config, workdir: str) -> trained_models.FlowModel | None:
  """RAFT of this run: trained here on ground-truth flow (synthetic), else converted weights.

  None when the tracker uses no RAFT (config.flow.source='gt').
  """
  if config.flow.source == 'flo':
    raise errors.ConfigError(
        "flow.source='flo' reads .flo files, which only the external-prediction command takes: "
        'python -m hybrid_jax.cli.track_predictions --pred-dir ... --flow-dir DIR. Use raft or '
        'gt here.')
  if config.flow.source != 'raft':
    return None
  source = datasets.get_source(config, 'val', workdirs.data_dir(config, workdir))
  if 'flow' in source[0]:
    from hybrid_jax.training.stages import train_flow as flow_stage  # lazy: loads RAFT
    with console.stage('flow', 'RAFT on the ground-truth flow') as line:
      flow_stage.train_flow(config, workdir, workdirs.data_dir(config, workdir))
      line['summary'] = _stage_summary(workdir, 'flow')
  elif not config.flow.checkpoint:
    raise errors.ConfigError(
        f'{config.data.name} has no ground-truth flow to train RAFT on, so the pixel tracker '
        'needs converted weights: python -m hybrid_jax.cli.convert raft raft-sintel.pth '
        'weights/raft_sintel, then --config.flow.checkpoint=weights/raft_sintel.')
  return trained_models.load_flow(config, workdir)


def train_track(config, workdir: str, *, flow: trained_models.FlowModel | None = None,
                flow_trained: bool = False) -> None:
  """The embedding head and the fusion conv (fitted on pixel matrices from the run's flow)."""
  from hybrid_jax.training.stages import train_tracker  # pylint: disable=g-import-not-at-top
  segment = train_tracker.segment_fn_for(config, workdir)  # a missing one fails first
  features = train_tracker.feature_fn_for(config, workdir)
  if not flow_trained:
    flow = train_flow(config, workdir)
  with console.stage('track', 'the instance embedding head and the fusion conv') as line:
    train_tracker.train_tracker(config, workdir, workdirs.data_dir(config, workdir),
                                flow_fn=flow, segment=segment, features=features)
    line['summary'] = _stage_summary(workdir, 'track')


def train_stages(config, workdir: str) -> trained_models.TrainedModels:
  """Trains every stage that is not done, then loads the run's networks (`trained_models`)."""
  train_seg(config, workdir)
  flow = train_flow(config, workdir)
  train_track(config, workdir, flow=flow, flow_trained=True)
  return trained_models.load_models(config, workdir,
                                    variants=[row.variant for row in TABLE_I_ROWS])


# ---------------------------------------------------------------------------------------------
# Evaluation and the report.

def evaluate(config, workdir: str, *, tracked: dict | None = None) -> list[dict]:
  """VPQ / STQ of every row's predictions (the official-file path); writes report.md."""
  if tracked is None:
    tracked = val_tracking.load_tracked(workdir)
  gt_dir, gt_json = val_tracking.gt_layout(config, workdir)
  metrics = tuple(m.strip() for m in config.eval.metrics.split(',') if m.strip())
  net = tracked['_networks']
  rows = []
  names = [(row.name, row.variant) for row in TABLE_I_ROWS]
  names += [(row.name + GT_SUFFIX, row.variant) for row in TABLE_I_ROWS
            if row.name + GT_SUFFIX in tracked]
  record = run_records.relevant(config, 'evaluation')
  for name, variant in console.progress(names, desc='evaluate', unit='row'):
    pred_dir = tracked[name]['pred_dir']
    eval_path = os.path.join(pred_dir, 'eval.json')
    if (run_records.same(run_records.read(os.path.join(pred_dir, run_records.RECORD_FILE)),
                         record) and os.path.exists(eval_path)):
      res = run_records.read(eval_path)  # evaluated before an interruption
    else:
      res = evaluate_official(gt_dir, gt_json, pred_dir, dataset=config.eval.dataset,
                              metrics=metrics,
                              frames_per_video=None)  # videos by image-id prefix (VVVV_...)
      eval_outputs.write_json(res, eval_path)
      run_records.write(os.path.join(pred_dir, run_records.RECORD_FILE), record)
    seconds = tracked[name]['seconds_tracking'] + (0 if name.endswith(GT_SUFFIX) else net['seg'])
    if variant in trained_models.NEEDS_FLOW:
      seconds += net['flow']
    fps = net['frames'] / seconds if seconds > 0 and net['frames'] else None
    rows.append({'name': name, 'results': res, 'fps': fps})
  report = report_lib.write_report(
      workdir, rows, title=f'HybridTracker on {config.data.name} (val split)',
      notes=_notes(workdir), reference_table=config.eval.reference_table,
      gif=tracked.get('_gif'))
  eval_outputs.write_json({'record': record, 'report': os.path.basename(report), 'rows': rows},
                          os.path.join(workdir, run_records.REPORT_RECORD))
  logging.info('Wrote %s', report)
  _print_rows(report, rows)
  return rows


def headline(results: dict) -> str:
  """'VPQ 64.8' (the mean VPQ), or 'STQ 57.7' for a run evaluated with STQ only."""
  if 'vpq' in results:
    return f'VPQ {results["vpq"]["final"]["all"]["pq"]:.1f}'
  return f'STQ {100 * results["stq"]["stq"]:.1f}'


def _print_rows(report: str, rows) -> None:
  print(f'Wrote {report}')
  for row in rows:
    print(f'{row["name"]:30s} {headline(row["results"])}')


def finished_report(config, workdir: str) -> list[dict] | None:
  """The rows of the report this config already produced in `workdir`, or None."""
  done = run_records.read(os.path.join(workdir, run_records.REPORT_RECORD))
  if (done is None or done.get('record') != run_records.relevant(config, 'evaluation')
      or not os.path.exists(os.path.join(workdir, 'report.md'))):
    return None
  return done['rows']


def _notes(workdir: str) -> list[str]:
  notes = []
  for stage, fmt in (('seg', 'Segmenter image PQ on val: {ours[all]:.1f} (things {ours[things]:.1f}, '
                             'stuff {ours[stuff]:.1f}); majority-stuff baseline {baseline[all]:.1f}.'),
                     ('flow', 'RAFT end-point error on val: {epe:.3f} px (zero-flow baseline '
                              '{epe_zero_flow:.3f} px) over {pairs} pairs.')):
    path = os.path.join(workdir, stage, 'eval.json')
    if os.path.exists(path):
      with open(path) as f:
        notes.append(fmt.format(**json.load(f)))
  notes.append('Rows marked "(GT segments)" run the same trackers on ground-truth per-frame '
               'segments with per-frame ids (an oracle segmenter; synthetic data only), so they '
               'measure the trackers alone; their FPS excludes the segmenter.')
  notes.append('FPS: frames per second of segmenter + flow (pixel/hybrid) + tracker on this '
               'machine, first clip excluded (compilation).')
  return notes


# ---------------------------------------------------------------------------------------------
# The modes.

def train_and_evaluate(config, workdir: str) -> list[dict]:
  """mode=all: the whole pipeline; resumes every stage, and does nothing when it is done."""
  t0 = time.time()
  rows = finished_report(config, workdir)
  if rows is not None:
    report = os.path.join(workdir, 'report.md')
    print(f'{workdir} already holds the finished run of this config; nothing to do. Change a '
          'setting, or use a new --workdir, to run again.')
    _print_rows(report, rows)
    return rows
  with console.stage('data', f'the {config.data.name} dataset') as line:
    datasets.prepare(config, workdirs.data_dir(config, workdir))
    line['summary'] = workdirs.data_dir(config, workdir)
  models = train_stages(config, workdir)
  with console.stage('track val', 'tracking the val clips with the Table I rows') as line:
    tracked = val_tracking.track_val(config, workdir, load_models=lambda: models)
    net = tracked['_networks']
    line['summary'] = f'{net["frames"]} timed frames'
  metrics = ' and '.join(m.strip().upper() for m in config.eval.metrics.split(',') if m.strip())
  with console.stage('eval', f'{metrics} of every row') as line:
    rows = evaluate(config, workdir, tracked=tracked)
    line['summary'] = ', '.join(f'{r["name"]} {headline(r["results"])}'
                                for r in rows if r['name'] == TABLE_I_ROWS[-1].name)
  logging.info('Pipeline finished in %.0f s.', time.time() - t0)
  return rows


def mode_data(config, workdir):
  return datasets.prepare(config, workdirs.data_dir(config, workdir))


def mode_show(config, workdir):
  from hybrid_jax.data import show  # pylint: disable=g-import-not-at-top
  return show.show_clip(config, workdir, workdirs.data_dir(config, workdir))


def mode_export(config, workdir):
  return export_lib.export(config, workdir, workdirs.data_dir(config, workdir))


def mode_track(config, workdir):
  """config.input set: track that video (`user_video`); else the val split."""
  if config.input:
    from hybrid_jax import user_video  # pylint: disable=g-import-not-at-top
    return user_video.track_video(config, workdir, config.input)
  return track_val(config, workdir)


def track_val(config, workdir: str) -> dict:
  """mode=track without an input: the val split, training the stages that are missing."""
  return val_tracking.track_val(config, workdir,
                                load_models=lambda: train_stages(config, workdir))


MODES: dict[str, Callable] = {
    'data': mode_data,
    'show': mode_show,
    'export': mode_export,
    'train_seg': train_seg,
    'train_flow': train_flow,
    'train_track': train_track,
    'track': mode_track,
    'eval': evaluate,
    'all': train_and_evaluate,
}
assert set(MODES) == set(config_checks.MODES)


def run(config, workdir: str):
  """Checks the config and the workdir, then runs the selected mode."""
  config_checks.check_config(config)
  workdir = workdirs.ensure_writable_dir(workdir)
  logging.info('mode=%s workdir=%s', config.mode, workdir)
  # Process 0 holds the lock for the whole job (the others share its workdir).
  with workdirs.locked(workdir, enabled=_process_index() == 0):
    if config.mode not in ('data', 'show', 'export'):
      run_records.check_stages(config, workdir)
    return MODES[config.mode](config, workdir)


def _process_index() -> int:
  import jax  # pylint: disable=g-import-not-at-top
  return jax.process_index()
