"""Building PanopticFCN from a config: the module with its static spec, initial variables, weights.

  model = build_segmenter(cfg.seg, categories)          # a PanopticFCN flax module
  model, table = segmenter_from_config(config)          # the same from a whole run config
  variables = init_segmenter(model, rng, (H, W))        # {'params', 'batch_stats'}

The module carries its class layout, input normalisation and loss / inference settings in a
frozen `SegmenterSpec` attribute (``model.spec``). Training: `hybrid_jax.losses.panoptic.
segmenter_loss_fn`; inference: `segment.make_segment_fn`.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from hybrid_jax import errors
from hybrid_jax.data import categories as cat_lib
from hybrid_jax.models import resnet
from hybrid_jax.models.panoptic_fcn import inputs
from hybrid_jax.models.panoptic_fcn import model as panoptic_fcn
from hybrid_jax.models.panoptic_fcn import postprocess as inference_lib
from hybrid_jax.models.panoptic_fcn import targets as targets_lib

INPUT_SPECS = inputs.INPUT_SPECS
MASK_RESOLUTIONS = targets_lib.MASK_RESOLUTIONS
InputSpec = inputs.InputSpec


@dataclasses.dataclass(frozen=True)
class SegmenterSpec:
  """Everything static about a segmenter besides its network shape."""
  layout: targets_lib.ClassLayout
  input: InputSpec
  targets: targets_lib.TargetSpec
  inference: inference_lib.InferenceConfig
  pos_num: int = 7
  pos_weight: float = 1.0
  seg_weight: float = 4.0
  # Test-time input scales (HybridTracker §IV: VPSNet-Track's 0.5 ... 1.0); (1.0,) = one pass.
  test_scales: tuple[float, ...] = (1.0,)
  # 'quarter' (official) | 'full': where masks are compared in training, and whether inference
  # upsamples mask logits rather than probabilities (losses/panoptic.py explains why).
  mask_resolution: str = 'quarter'
  mask_pairs: int = 32   # 'full': (instance, level) assignments per training image


# Widths per backbone name (overridable by cfg.seg fields of the same name).
_SIZES = {
    'resnet50': dict(fpn_dim=256, head_dim=256, embed_dim=64),
    'resnet_small': dict(fpn_dim=64, head_dim=64, embed_dim=32),
    'resnet_tiny': dict(fpn_dim=16, head_dim=16, embed_dim=8),
}

class Segmenter(panoptic_fcn.PanopticFCN):
  """PanopticFCN carrying its (frozen, hashable) `SegmenterSpec`; the network ignores it."""
  spec: Any = None


def spec_of(model: panoptic_fcn.PanopticFCN) -> SegmenterSpec:
  spec = getattr(model, 'spec', None)
  if not isinstance(spec, SegmenterSpec):
    raise errors.ConfigError('This model was not made by build_segmenter; pass its spec.')
  return spec


def _get(cfg, name: str, default):
  if cfg is None:
    return default
  try:
    value = cfg.get(name, default) if hasattr(cfg, 'get') else getattr(cfg, name, default)
  except Exception:  # noqa: BLE001 - locked ConfigDicts raise on unknown keys in some versions
    value = default
  return default if value is None else value


def build_segmenter(seg_cfg, categories: Sequence[cat_lib.Category], *,
                    pretrained_meta: dict | None = None) -> Segmenter:
  """PanopticFCN for the category table `categories`, configured by `seg_cfg` (cfg.seg).

  Fields read (all optional; defaults in brackets): backbone ['resnet50'],
  stride_in_1x1 [True for resnet50, else False (unused by basic blocks)], backbone_norm [''],
  fpn_dim / head_dim / embed_dim [per backbone: 256/256/64, 64/64/32, 16/16/8],
  (stride_in_1x1 default: True for resnet50, i.e. Detectron2 / PanopticFCN weights),
  position_deform ['v2'], num_head_convs [3], input_spec ['panoptic_fcn' for resnet50, else 'torchvision'],
  stuff_with_thing [True], max_instances [32], instance_scales [COCO ranges; halved for
  resnet_small / resnet_tiny], pos_num [7], pos_weight [1.0], seg_weight [4.0], test_scales
  [(1.0,)], mask_resolution ['quarter', PanopticFCN's], mask_pairs [max_instances], and an
  optional
  ``inference`` sub-config (dict or ConfigDict) with the fields of `InferenceConfig` [official
  values; for resnet_small / resnet_tiny stuff_area_limit 64, smooth_sizes (1, 1, 1, 3, 3) and
  max_instances = max_instances, because their frames are small].

  pretrained_meta: metadata of the converted checkpoint that will be loaded
  (`hybrid_jax.training.pretrained.load_metadata`); unless the config sets them, its
  stride_in_1x1 and input normalisation are used, so the model matches the weights.
  """
  backbone = _get(seg_cfg, 'backbone', 'resnet50')
  resnet.get_spec(backbone)  # raises ConfigError for unknown names
  if not categories:
    raise errors.ConfigError('The category table is empty.')
  layout = targets_lib.ClassLayout.from_categories(
      categories, with_thing=bool(_get(seg_cfg, 'stuff_with_thing', True)))
  if layout.num_thing == 0 or layout.num_stuff == 0:
    raise errors.ConfigError(
        f'PanopticFCN needs at least one thing and one stuff channel; the table has '
        f'{layout.num_thing} thing and {len(layout.stuff_ids)} stuff classes.')
  sizes = dict(_SIZES[backbone])
  for key in sizes:
    sizes[key] = int(_get(seg_cfg, key, sizes[key]))
  deform = _get(seg_cfg, 'position_deform', 'v2')
  if deform not in panoptic_fcn.DEFORM_KINDS:
    raise errors.ConfigError(f'seg.position_deform={deform!r}; use one of '
                             f'{panoptic_fcn.DEFORM_KINDS}.')
  default_spec = 'panoptic_fcn' if backbone == 'resnet50' else 'torchvision'
  default_stride = backbone == 'resnet50'
  meta_spec = None
  if pretrained_meta and 'input_format' in pretrained_meta:
    meta_spec = inputs.input_spec_from_metadata(pretrained_meta)
    default_spec = next((k for k, v in INPUT_SPECS.items() if v == meta_spec), '')
    default_stride = bool(pretrained_meta.get('stride_in_1x1', default_stride))
  spec_name = _get(seg_cfg, 'input_spec', default_spec)
  if spec_name and spec_name not in INPUT_SPECS:
    raise errors.ConfigError(f'seg.input_spec={spec_name!r}; use one of {sorted(INPUT_SPECS)}.')
  input_spec = INPUT_SPECS[spec_name] if spec_name else meta_spec
  small = backbone != 'resnet50'  # CPU models on small frames (e.g. 128x256 synthetic)
  default_scales = (targets_lib.scaled_instance_scales(0.5) if small
                    else targets_lib.COCO_SCALES)
  scales = tuple(tuple(float(v) for v in r) for r in
                 _get(seg_cfg, 'instance_scales', default_scales))
  max_instances = int(_get(seg_cfg, 'max_instances', 32))
  mask_resolution = _get(seg_cfg, 'mask_resolution', 'quarter')
  if mask_resolution not in MASK_RESOLUTIONS:
    raise errors.ConfigError(f'seg.mask_resolution={mask_resolution!r}; use one of '
                             f'{MASK_RESOLUTIONS} (quarter: PanopticFCN\'s; full: masks '
                             'compared at input resolution, for frames with thin things).')
  mask_pairs = _get(seg_cfg, 'mask_pairs', max_instances)
  if isinstance(mask_pairs, bool) or not isinstance(mask_pairs, int) or mask_pairs < 1:
    raise errors.ConfigError(f'seg.mask_pairs={mask_pairs!r}; give an integer >= 1.')
  tspec = targets_lib.TargetSpec(layout, max_instances=max_instances, instance_scales=scales,
                                 full_masks=mask_resolution == 'full')
  inf_cfg = _get(seg_cfg, 'inference', None)
  inf_fields = {f.name: f.default for f in dataclasses.fields(inference_lib.InferenceConfig)}
  if small:
    # Small frames (e.g. 128x256 synthetic): objects cover ~8x fewer level cells than on
    # Cityscapes, a 2-5 cell object gets a radius-0 (one-cell) centre target, and the official
    # 3x3 box smoothing before peak picking divides such a peak by ~9, below the 0.2 combine
    # threshold. P3-P5 are therefore not smoothed (on 8 synthetic train clips after the demo's
    # training: things PQ 17.7 instead of 0.0).
    inf_fields.update(stuff_area_limit=64, max_instances=max_instances,
                      smooth_sizes=(1, 1, 1, 3, 3))
  inf_kwargs = {k: _get(inf_cfg, k, v) for k, v in inf_fields.items()}
  inf_kwargs['smooth_sizes'] = tuple(inf_kwargs['smooth_sizes'])
  inf_kwargs['upsample_logits'] = mask_resolution == 'full'  # inference follows training
  spec = SegmenterSpec(
      layout=layout, input=input_spec, targets=tspec,
      inference=inference_lib.InferenceConfig(**inf_kwargs),
      pos_num=int(_get(seg_cfg, 'pos_num', 7)),
      pos_weight=float(_get(seg_cfg, 'pos_weight', 1.0)),
      seg_weight=float(_get(seg_cfg, 'seg_weight', 4.0)),
      test_scales=check_test_scales(_get(seg_cfg, 'test_scales', (1.0,))),
      mask_resolution=mask_resolution, mask_pairs=int(mask_pairs))
  return Segmenter(
      backbone=backbone,
      stride_in_1x1=bool(_get(seg_cfg, 'stride_in_1x1', default_stride)),
      backbone_norm=_get(seg_cfg, 'backbone_norm', ''), position_deform=deform,
      num_head_convs=int(_get(seg_cfg, 'num_head_convs', 3)),
      num_thing=layout.num_thing, num_stuff=layout.num_stuff, spec=spec, **sizes)


def check_test_scales(scales) -> tuple[float, ...]:
  """Validated test scales: a non-empty sequence of distinct factors in (0, 4]."""
  try:
    out = tuple(float(v) for v in scales)
  except (TypeError, ValueError) as exc:
    raise errors.ConfigError(f'seg.test_scales={scales!r}: give a tuple of numbers, e.g. '
                             '(0.5, 0.75, 1.0).') from exc
  if not out or any(not 0 < v <= 4 for v in out) or len(set(out)) != len(out):
    raise errors.ConfigError(f'seg.test_scales={out}: give distinct factors in (0, 4], e.g. '
                             '(1.0,) for single-scale or (0.5, 0.75, 1.0).')
  return out


def init_segmenter(model: panoptic_fcn.PanopticFCN, rng: jax.Array, image_shape) -> dict:
  """Random variables {'params', 'batch_stats'} for frames of size image_shape = (H, W[, 3])."""
  h, w = int(image_shape[0]), int(image_shape[1])
  ph, pw = inputs.padded_size(h), inputs.padded_size(w)
  variables = jax.jit(model.init)(_init_key(rng), jnp.zeros((1, ph, pw, 3), jnp.float32))
  return {'params': variables['params'], 'batch_stats': variables.get('batch_stats', {})}


def _init_key(rng: jax.Array) -> jax.Array:
  """An 'rbg' key derived deterministically from `rng` (typed or raw uint32 key).

  XLA on CPU compiles the threefry generator of ~150 parameter initialisers about 5x slower
  than the RngBitGenerator-based 'rbg' one (63 s vs 12 s for resnet_tiny on the shared 2-core
  machine), and initialisation needs no cross-platform reproducibility.
  """
  if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
    if str(jax.random.key_impl(rng)) == 'rbg':
      return rng
    rng = jax.random.key_data(rng)
  data = jnp.resize(jnp.ravel(rng).astype(jnp.uint32), (4,))
  return jax.random.wrap_key_data(data, impl='rbg')


def trainable_mask(params: dict, *, freeze_at: int = 0) -> dict:
  """Boolean pytree for optax.masked / multi_transform: False for frozen parameters.

  freeze_at=2 freezes the stem and res2 (Detectron2 FREEZE_AT=2, used with pretrained
  weights); 1 freezes only the stem; 0 trains everything.
  """
  frozen = set()
  if freeze_at >= 1:
    frozen.add('stem_conv1')
  if freeze_at >= 2:
    frozen.update(k for k in params.get('bottom_up', {}) if k.startswith('res2_'))

  def mark(path, _):
    keys = [getattr(p, 'key', None) for p in path]
    return not (len(keys) > 1 and keys[0] == 'bottom_up' and keys[1] in frozen)
  return jax.tree_util.tree_map_with_path(mark, params)


def load_pretrained_into(variables: dict, pretrained: dict, meta: dict, *,
                         model: panoptic_fcn.PanopticFCN | None = None) -> tuple[dict, str]:
  """Merges converted weights (from `hybrid_jax.training.pretrained.load_pretrained`).

  'resnet50' checkpoints replace the backbone ('bottom_up'); 'panoptic_fcn_r50' checkpoints
  replace every variable they hold. Shapes must match; with `model`, its stride placement
  and input normalisation must match the metadata (set cfg.seg.stride_in_1x1 and
  cfg.seg.input_spec accordingly). Returns (variables, report line).
  """
  arch = meta.get('architecture')
  if model is not None and 'stride_in_1x1' in meta:
    if bool(meta['stride_in_1x1']) != bool(model.stride_in_1x1):
      raise errors.CheckpointError(
          f'The {arch} checkpoint was trained with stride_in_1x1={meta["stride_in_1x1"]}, the '
          f'model has {model.stride_in_1x1}; set seg.stride_in_1x1 to match.')
    spec = getattr(model, 'spec', None)
    if isinstance(spec, SegmenterSpec) and 'input_format' in meta:
      want = inputs.input_spec_from_metadata(meta)
      if want != spec.input:
        raise errors.CheckpointError(
            f'The {arch} checkpoint expects input {want}, the model normalises as {spec.input}; '
            f'set seg.input_spec to one of {sorted(INPUT_SPECS)} that matches.')
  if arch == 'resnet50':
    sub = {c: {'bottom_up': pretrained.get(c, {})} for c in ('params', 'batch_stats')}
  elif arch == 'panoptic_fcn_r50':
    sub = pretrained
  else:
    raise errors.CheckpointError(f'Cannot load a {arch!r} checkpoint into PanopticFCN; '
                                 "convert a 'resnet50' or 'panoptic_fcn_r50' checkpoint.")
  from hybrid_jax.training import pretrained as pretrained_lib  # pylint: disable=g-import-not-at-top
  merged, report = pretrained_lib.merge_pretrained(variables, sub, allow_missing=True)
  total = len(report['loaded']) + len(report['missing'])
  return merged, f'loaded {len(report["loaded"])} of {total} arrays ({arch}).'


def segmenter_from_config(config):
  """The PanopticFCN module of a run config and its category table.

  Converted weights (config.seg.checkpoint) decide the stride placement and the input
  normalisation, so the module matches them.
  """
  from hybrid_jax.training import pretrained  # pylint: disable=g-import-not-at-top
  table = cat_lib.get_categories(config.data.categories)
  seg_cfg = config.seg.to_dict()
  seg_cfg.setdefault('max_instances', config.data.max_instances)
  meta = pretrained.load_metadata(config.seg.checkpoint) if config.seg.checkpoint else None
  return build_segmenter(seg_cfg, table, pretrained_meta=meta), table


def initial_variables(config, model) -> tuple[dict, tuple[str, ...]]:
  """Random init, with converted weights merged in when config.seg.checkpoint is set.

  Returns (variables, frozen parameter patterns): with ImageNet/COCO weights the stem and
  res2 stay frozen, as Detectron2's FREEZE_AT=2.
  """
  from hybrid_jax.training import pretrained  # pylint: disable=g-import-not-at-top
  variables = init_segmenter(model, jax.random.key(config.seed),
                             (config.data.crop_height, config.data.crop_width))
  if not config.seg.checkpoint:
    return variables, ()
  weights, meta = pretrained.load_pretrained(config.seg.checkpoint,
                                             expect_architecture=('resnet50', 'panoptic_fcn_r50'))
  variables, report = load_pretrained_into(variables, weights, meta, model=model)
  logging.info('[seg] %s', report)
  return variables, (r'bottom_up/(stem_conv1|res2_[^/]*)/.*',)

