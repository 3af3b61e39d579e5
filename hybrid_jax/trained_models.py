"""The one loader of trained networks: segmenter, RAFT, embedding head, fusion conv, dustbin rule.

Every entry point that tracks (``mode=all``'s val split, ``mode=track --config.input=...``,
``python -m hybrid_jax.cli.track_predictions``, the experiments, the notebook) gets its networks
here, so they cannot disagree about which weights or which rules they use:

- `load_models(config, workdir)`: the run's stage exports (``<workdir>/seg/final``,
  ``flow/final``, ``track/final``, ``track/fusion``) or converted checkpoints
  (``config.seg.checkpoint`` / ``config.flow.checkpoint``). Nothing is trained here; the
  training stages (`hybrid_jax.train`) write what this reads.
- `load_head(path)`: an embedding-head export with the hyper-parameters it was trained with,
  its "no counterpart" rule (`dustbin_logit_of`) and the fusion conv fitted beside it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import shlex
from typing import Any, Callable, Mapping, Sequence
import warnings

import numpy as np

from hybrid_jax import errors
from hybrid_jax.training import pretrained

SEG_STAGE, FLOW_STAGE, TRACK_STAGE = 'seg', 'flow', 'track'
FUSION_DIR = 'fusion'
HEAD_ARCHITECTURE = 'embedding_head'
FUSION_ARCHITECTURE = 'fusion_conv'
SEG_ARCHITECTURE = 'panoptic_fcn'
NEEDS_FLOW = ('pixel', 'hybrid')
NEEDS_HEAD = ('instance', 'hybrid')

_FIX = ("Train this run first: python -m hybrid_jax.main --config <the run's config> --workdir "
        '{wd} --config.mode=all (or the single stage: --config.mode={mode}), or')


def final_path(workdir: str, stage: str) -> str:
  """Where a finished training stage exports its weights."""
  return os.path.join(workdir, stage, 'final')


def has_export(path: str) -> bool:
  return os.path.exists(os.path.join(path, pretrained.METADATA_FILE))


# ---------------------------------------------------------------------------------------------
# What a tracker needs.

@dataclasses.dataclass(frozen=True)
class FlowModel:
  """RAFT weights and how to run them; calling it gives forward flow.

  ``flow_model(frames_prev, frames_cur)``: uint8/float RGB [B, H, W, 3] -> float32 [B, H, W, 2].
  """
  variables: Mapping
  variant: str
  iters: int
  corr: str = 'all_pairs'
  _checked: set = dataclasses.field(default_factory=set, compare=False, repr=False)

  def __call__(self, frames_prev, frames_cur):
    from hybrid_jax.models.raft import memory  # pylint: disable=g-import-not-at-top
    from hybrid_jax.models.raft import model as raft  # pylint: disable=g-import-not-at-top
    shape = tuple(frames_prev.shape)
    if shape not in self._checked:  # once per frame size: a message instead of an OOM kill
      batch = shape[0] if len(shape) == 4 else 1
      memory.check_fits(shape[-3], shape[-2], batch=batch, corr=self.corr,
                        corr_option='--config.flow.corr=on_demand')
      self._checked.add(shape)
    return raft.estimate_flow(self.variables, frames_prev, frames_cur, variant=self.variant,
                              iters=self.iters, corr=self.corr)

  def with_iters(self, iters: int) -> 'FlowModel':
    return dataclasses.replace(self, iters=int(iters))


@dataclasses.dataclass
class Head:
  """A loaded embedding head and what goes with it into the VideoTracker.

  Attributes:
    model: EmbeddingHead with the hyper-parameters it was trained with.
    params: its parameters.
    hparams: {'canvas', 'pool', 'hidden_dim', 'embed_dim', 'use_image', 'roi_input',
      'feature_dim'}.
    hparams_from: 'metadata', the path of the config.json they came from, or 'shapes'.
    dustbin_logit: the "no counterpart" logit the tracker adds, or None (`dustbin_logit_of`).
    fusion_params: the fitted FusionConv params, or None (the tracker then uses the plain sum).
    fusion_from: path of the fusion export, or ''.
    feature_fn: ``feature_fn(image) -> the segmenter's map`` of a frame, for a head whose
      roi_input is 'features' or 'both' (`load_models` sets it from the run's segmenter).
  """
  model: Any
  params: Any
  hparams: dict
  hparams_from: str
  dustbin_logit: float | None
  fusion_params: Any
  fusion_from: str
  feature_fn: Callable | None = None

  @functools.cached_property
  def embed_fn(self) -> Callable:
    """``embed(image, FrameInstances) -> [N, D]``, jitted once per head."""
    from hybrid_jax.models import embedding_head  # pylint: disable=g-import-not-at-top
    return embedding_head.make_embed_fn(self.model, self.params, self.feature_fn)


@dataclasses.dataclass
class TrainedModels:
  """The networks of a run; a field is None when no requested tracker variant needs it."""
  seg_model: Any
  seg_variables: Mapping | None
  flow: FlowModel | None
  head: Head | None
  # Frames (and frame pairs) per segmenter / RAFT call while tracking (config.track.
  # frames_per_call): the tracking programs' device memory grows with it (docs/configs.md).
  frames_per_call: int = 4

  @functools.cached_property
  def segment_fn(self) -> Callable:
    """The jitted segmenter ``(variables, uint8 [B, H, W, 3]) -> outputs``, compiled once."""
    from hybrid_jax.models.panoptic_fcn import segment  # pylint: disable=g-import-not-at-top
    return segment.make_segment_fn(self.seg_model)

  @property
  def fusion_params(self):
    return None if self.head is None else self.head.fusion_params


# ---------------------------------------------------------------------------------------------
# The run's networks.

def load_models(config, workdir: str, *, variants: Sequence[str] | None = None) -> TrainedModels:
  """The trained networks of the run in `workdir`, for the tracker `variants`.

  Args:
    config: the run's config (it names the architectures and the converted checkpoints).
    workdir: the run directory.
    variants: tracker variants that will run (default: config.track.variant). RAFT is loaded
      when one needs flow and config.flow.source is 'raft'; the embedding head (and, for
      'hybrid', its fusion conv) when one needs instance embeddings.
  Raises:
    CheckpointError listing every missing piece with the command that makes it, or naming a
    finished stage trained with other hyper-parameters than `config`.
  """
  variants = tuple(variants or (config.track.variant,))
  missing: list[str] = []
  seg_model, seg_vars = load_segmenter(config, workdir, missing)
  flow = None
  if any(v in NEEDS_FLOW for v in variants) and config.flow.source == 'raft':
    flow = load_flow(config, workdir)
    if flow is None:
      missing.append(
          f'RAFT (pixel / hybrid trackers): no {final_path(workdir, FLOW_STAGE)}. '
          + _FIX.format(wd=shlex.quote(workdir), mode='train_flow')
          + ' convert the official weights: python -m hybrid_jax.cli.convert raft '
          'raft-sintel.pth OUT [--variant standard], then --config.flow.checkpoint=OUT.')
  head = None
  if any(v in NEEDS_HEAD for v in variants):
    path = final_path(workdir, TRACK_STAGE)
    if not has_export(path):
      missing.append(
          f'Embedding head (instance / hybrid trackers): no {path}. '
          + _FIX.format(wd=shlex.quote(workdir), mode='train_track')
          + ' track without it: --config.track.variant=pixel.')
    else:
      t = config.track
      head = load_head(path, expect={'canvas': tuple(t.canvas), 'pool': int(t.pool),
                                     'hidden_dim': int(t.hidden_dim),
                                     'embed_dim': int(t.embed_dim),
                                     'roi_input': t.get('roi_input', 'image')},
                       preset=config.get('preset'))
      if head.model.roi_input != 'image' and seg_model is not None:
        from hybrid_jax.models.panoptic_fcn import segment  # pylint: disable=g-import-not-at-top
        head.feature_fn = segment.make_feature_fn(seg_model, seg_vars)
      if 'hybrid' in variants and head.fusion_params is None:
        missing.append(
            f'Fusion conv (hybrid tracker): no {os.path.join(workdir, TRACK_STAGE, FUSION_DIR)}. '
            + _FIX.format(wd=shlex.quote(workdir), mode='train_track')
            + ' use --config.track.variant=instance or pixel.')
  if missing:
    raise errors.CheckpointError('Cannot track: weights are missing.\n  - '
                                 + '\n  - '.join(missing))
  return TrainedModels(seg_model=seg_model, seg_variables=seg_vars, flow=flow, head=head,
                       frames_per_call=int(config.track.get('frames_per_call', 4)))


def load_segmenter(config, workdir: str, missing: list[str] | None = None):
  """(model, variables): ``<workdir>/seg/final``, else a converted whole PanopticFCN.

  A missing segmenter is appended to `missing` (variables None), or raised without it.
  """
  from hybrid_jax.models.panoptic_fcn import build  # pylint: disable=g-import-not-at-top
  model, _ = build.segmenter_from_config(config)
  path = final_path(workdir, SEG_STAGE)
  if has_export(path):
    variables, meta = pretrained.load_pretrained(path, expect_architecture=SEG_ARCHITECTURE)
    # Exports written before seg.mask_resolution existed were trained on the 1/4 grid.
    check_hparams({'mask_resolution': 'quarter', **meta},
                  {'backbone': config.seg.backbone, 'categories': config.data.categories,
                   'mask_resolution': config.seg.get('mask_resolution', 'quarter')},
                  where=path, preset=config.get('preset'))
    return model, variables
  if config.seg.checkpoint:
    meta = pretrained.load_metadata(config.seg.checkpoint)
    if meta.get('architecture') != 'panoptic_fcn_r50':
      raise errors.CheckpointError(
          f'{config.seg.checkpoint} holds {meta.get("architecture")!r} weights, not a whole '
          'segmenter; its heads would be untrained. Train the segmenter on them '
          '(--config.mode=train_seg) or convert a PanopticFCN checkpoint: python -m '
          'hybrid_jax.cli.convert panoptic_fcn model_final.pth OUT.')
    return model, build.initial_variables(config, model)[0]
  message = (f'Segmenter: no {path}. ' + _FIX.format(wd=shlex.quote(workdir), mode='train_seg')
             + ' convert PanopticFCN weights: python -m hybrid_jax.cli.convert panoptic_fcn '
             'model_final.pth OUT --categories NAME, then --config.seg.checkpoint=OUT.')
  if missing is None:
    raise errors.CheckpointError(message)
  missing.append(message)
  return model, None


def load_flow(config, workdir: str) -> FlowModel | None:
  """RAFT of the run: ``<workdir>/flow/final`` (trained here), else config.flow.checkpoint
  (converted weights), else None."""
  from hybrid_jax.models.raft import model as raft  # pylint: disable=g-import-not-at-top
  f = config.flow
  path = final_path(workdir, FLOW_STAGE)
  if has_export(path):
    variables, _ = pretrained.load_pretrained(
        path, expect_architecture=raft.ARCHITECTURES[f.variant])
  elif f.checkpoint:
    variables, _ = raft.load_raft(f.checkpoint, variant=f.variant)
  else:
    return None
  return FlowModel(variables=variables, variant=f.variant, iters=int(f.iters), corr=f.corr)


def check_hparams(meta: Mapping, expected: Mapping, *, where: str, preset: str | None = None
                  ) -> None:
  """CheckpointError when a finished stage was trained with other values than the config's."""
  for key, want in expected.items():
    have = meta.get(key)
    if have is None:
      continue
    if isinstance(want, tuple):
      have = tuple(have)
    if have != want:
      raise errors.CheckpointError(
          f'{where} was trained with {key}={have!r} but this config has {want!r}. Pass the '
          f'config (and preset) the run was trained with (preset here: {preset!r}), train '
          f'again in a new --workdir, or delete {os.path.dirname(os.path.abspath(where))!r} '
          'to retrain that stage here.')


# ---------------------------------------------------------------------------------------------
# The embedding head.

def dustbin_logit_of(params: Mapping, no_match: str | None) -> float | None:
  """The "no counterpart" logit the instance tracker adds to its softmax, or None.

  A head trained with ``no_match='dustbin'`` learned the logit and the tracker uses it; one
  trained with ``'mask'`` never updated it (Eq. 4 has no such column), so the tracker uses
  none. Exports that do not record the rule (older ones): the logit when it moved from its
  initial 0, else none.
  """
  logit = params.get('dustbin_logit')
  if logit is None or no_match == 'mask':
    return None
  value = float(np.asarray(logit))
  if no_match == 'dustbin':
    return value
  return value if value != 0.0 else None


def _track_config(head_dir: str) -> tuple[dict, str]:
  """The ``track`` block of ``<stage dir>/config.json`` next to ``<stage dir>/final``."""
  path = os.path.join(os.path.dirname(os.path.abspath(head_dir)), 'config.json')
  if not os.path.isfile(path):
    return {}, ''
  try:
    with open(path) as f:
      cfg = json.load(f)
  except (OSError, json.JSONDecodeError):
    return {}, ''
  track = cfg.get('track') if isinstance(cfg, dict) else None
  return (track, path) if isinstance(track, dict) else ({}, '')


def head_hparams(params: Mapping, metadata: Mapping, track_cfg: Mapping, where: str = '',
                 caller_cfg: Mapping | None = None) -> tuple[dict, str]:
  """Recovers the EmbeddingHead hyper-parameters of a checkpoint.

  hidden_dim and embed_dim always come from the FC kernel shapes. canvas and pool are read
  from the checkpoint metadata, else from the training config (`track_cfg`), else from the
  caller's config (`caller_cfg`), and checked against fc1's input size (canvas/pool *
  canvas/pool * channels). With none, they cannot be told apart from the shapes alone (only
  canvas/pool is fixed), so the paper's 1:2 canvas is assumed at pool 1: a warning says the
  embeddings then only approximate the trained ones.

  Returns:
    (hparams dict, source): source 'metadata', 'config', 'caller' or 'shapes'.
  """
  try:
    d_in, hidden = (int(v) for v in np.shape(params['fc1']['kernel']))
    hidden2, embed = (int(v) for v in np.shape(params['fc2']['kernel']))
  except (KeyError, TypeError, ValueError) as exc:
    raise errors.CheckpointError(f'{where}: not an embedding head (no fc1/fc2 kernels).') from exc
  if hidden2 != hidden:
    raise errors.CheckpointError(f'{where}: fc1 has {hidden} outputs but fc2 {hidden2} inputs.')
  from hybrid_jax.models.embedding_head import canvas_channels  # pylint: disable=g-import-not-at-top
  out = {'hidden_dim': hidden, 'embed_dim': embed}
  # The RoI input: from the checkpoint's projection layer (its kernel is [E, feature_dim]) and
  # the metadata ('image' heads, older exports included, have no such layer).
  proj = params.get('feature_proj', {}).get('kernel') if isinstance(params, Mapping) else None
  feature_dim = int(np.shape(proj)[1]) if proj is not None else 0
  roi_input = metadata.get('roi_input') or ('both' if feature_dim else 'image')
  if (roi_input == 'image') != (feature_dim == 0):
    raise errors.CheckpointError(f'{where}: metadata says roi_input={roi_input!r} but the '
                                 'parameters do not match it (feature_proj layer).')
  out.update(roi_input=roi_input, feature_dim=feature_dim or 16)
  for source, src in (('metadata', metadata), ('config', track_cfg), ('caller', caller_cfg or {})):
    if src.get('canvas') is None or src.get('pool') is None:
      continue
    canvas = tuple(int(v) for v in src['canvas'])
    pool = int(src['pool'])
    cells = (canvas[0] // pool) * (canvas[1] // pool)
    allowed = {True: canvas_channels(roi_input, use_image=True, feature_dim=feature_dim),
               False: canvas_channels(roi_input, use_image=False, feature_dim=feature_dim)}
    if cells <= 0 or d_in % cells or d_in // cells not in allowed.values():
      raise errors.CheckpointError(
          f'{where}: canvas {canvas} with pool {pool} (from the {source}) gives {cells} cells, '
          f'which does not fit fc1\'s {d_in} inputs (cells x {allowed[True]} channels, or x '
          f'{allowed[False]} without the image; roi_input {roi_input!r}).')
    use_image = src.get('use_image')
    use_image = (d_in // cells == allowed[True]) if use_image is None else bool(use_image)
    return {**out, 'canvas': canvas, 'pool': pool, 'use_image': use_image}, source
  if roi_input != 'image':
    raise errors.CheckpointError(f'{where}: a head with roi_input={roi_input!r} must record its '
                                 'canvas and pool (metadata.json or config.json).')
  for channels in (4, 1):
    if d_in % (2 * channels):
      continue
    hp = math.isqrt(d_in // (2 * channels))
    if 2 * channels * hp * hp == d_in:
      warnings.warn(
          f'{where}: the checkpoint records neither canvas nor pool; assumed canvas '
          f'{(hp, 2 * hp)} at pool 1 from fc1\'s {d_in} inputs. If it was trained with pool > 1 '
          'the embeddings only approximate the trained ones: put config.json (the train_track '
          'config) next to the checkpoint folder, or "canvas"/"pool" in its metadata.json.',
          stacklevel=3)
      return {**out, 'canvas': (hp, 2 * hp), 'pool': 1, 'use_image': channels == 4}, 'shapes'
  raise errors.CheckpointError(
      f'{where}: cannot infer the canvas from fc1\'s {d_in} inputs; add "canvas" and "pool" to '
      f'its metadata.json (the train_track config\'s track.canvas / track.pool).')


def load_head(path: str, *, expect: Mapping[str, Any] | None = None,
              preset: str | None = None) -> Head:
  """Loads a ``train_track`` export (``<workdir>/track/final``) and the fusion conv beside it.

  Args:
    path: the export folder.
    expect: hyper-parameters the caller's config has ({'canvas', 'pool', 'hidden_dim',
      'embed_dim'}); a difference is a CheckpointError naming the key, not a shape error.
    preset: the caller's preset, named in that error.
  """
  from hybrid_jax.models import embedding_head  # pylint: disable=g-import-not-at-top
  if not os.path.isdir(path):
    raise errors.CheckpointError(f'Embedding-head checkpoint {path} does not exist; pass the '
                                 'train_track export, e.g. --head WORKDIR/track/final.')
  variables, meta = pretrained.load_pretrained(path, expect_architecture=HEAD_ARCHITECTURE)
  params = variables.get('params', variables)
  track_cfg, cfg_path = _track_config(path)
  hp, source = head_hparams(params, meta, track_cfg, where=path, caller_cfg=expect)
  if expect:
    check_hparams(hp, expect, where=path, preset=preset)
  model = embedding_head.EmbeddingHead(canvas=hp['canvas'], pool=hp['pool'],
                                       hidden_dim=hp['hidden_dim'], embed_dim=hp['embed_dim'],
                                       use_image=hp['use_image'], roi_input=hp['roi_input'],
                                       feature_dim=hp['feature_dim'])
  dustbin = dustbin_logit_of(params, meta.get('no_match', track_cfg.get('no_match')))
  fusion_dir = os.path.join(os.path.dirname(os.path.abspath(path)), FUSION_DIR)
  fusion_params, fusion_from = None, ''
  if has_export(fusion_dir):
    fusion_params = pretrained.load_pretrained(
        fusion_dir, expect_architecture=FUSION_ARCHITECTURE)[0]['params']
    fusion_from = fusion_dir
  return Head(model, params, hp, cfg_path if source == 'config' else source, dustbin,
              fusion_params, fusion_from)
