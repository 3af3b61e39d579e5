"""Official PanopticFCN R50 (Detectron2 ``model_final.pth``) -> hybrid_jax variables.

The file is a torch pickle ``{'model': state_dict, ...}`` read with
``torch.load(weights_only=True)``; only ``'model'`` is used (a bare state dict works too).
The 346 keys of the default R50 model (reference keys/panoptic_fcn_r50_default.txt) map to:

  backbone.bottom_up.*                       -> bottom_up/... (see convert/resnet.py)
  backbone.fpn_lateral{k} / fpn_output{k}    -> fpn/lateral{k}, fpn/output{k}
  backbone.top_block.p6 / p7                 -> fpn/p6, fpn/p7
  semantic_fpn.p{l}.{2j}[.norm]              -> semantic_fpn/p{l}_{j}/conv|norm
  position_head.position_head.position_head_head_{k}.offset_mask_conv -> position_head/tower_{k-1}/offset
  ...position_head_head_{k}.dcnv2[.norm]     -> position_head/tower_{k-1}/kernel | norm
  position_head.out_inst / out_sem           -> position_head/out_inst / out_stuff
  kernel_head.kernel_head.kernel_head_head_{k}[.norm] -> kernel_head/tower_{k-1}/conv|norm
  kernel_head.out_conv                       -> kernel_head/out_conv
  feature_encoder.encode_head.encode_head_head_{k} -> feature_encoder/conv_{k-1}/conv
  {thing,stuff}_generator.embed_extractor    -> {thing,stuff}_generator/{kernel,bias} (1x1 -> [C,E])

Class-dependent layers (``out_inst`` 80 COCO thing channels, ``out_sem`` 54 stuff channels)
are kept when ``--categories`` is not given; with a category table whose class counts differ
they are re-initialised (normal(0, 0.01), bias -2.19) and the report says so. The Star variant
(deformable feature encoder, 256-d kernels) is not supported and fails verification.

  python -m hybrid_jax.cli.convert panoptic_fcn model_final.pth OUT_DIR [--categories cityscapes_vps]
"""

from __future__ import annotations

import functools
import os
import re

import numpy as np

from hybrid_jax import errors
from hybrid_jax.convert import resnet as resnet_conv

PFCN_SPEC = {'input_format': 'BGR', 'pixel_mean': [123.675, 116.28, 103.53],
             'pixel_std': [1.0, 1.0, 1.0]}
_GN = {'weight': 'scale', 'bias': 'bias'}


def _conv_gn(block: tuple[str, ...], rest: str) -> tuple[str, tuple[str, ...]]:
  """A conv (no bias) + GroupNorm block: 'weight' | 'norm.weight' | 'norm.bias'."""
  if rest == 'weight':
    return 'params', block + ('conv', 'kernel')
  return 'params', block + ('norm', _GN[rest[len('norm.'):]])


def _entry(name: str) -> tuple[str, tuple[str, ...]] | None:
  """Detectron2 PanopticFCN key -> (collection, flax path), or None if unknown."""
  if name.startswith('backbone.bottom_up.'):
    e = resnet_conv.d2_backbone_entry(name[len('backbone.bottom_up.'):])
    return None if e is None else (e[0], ('bottom_up',) + e[1])
  wb = lambda s: 'kernel' if s == 'weight' else 'bias'
  m = re.fullmatch(r'backbone\.fpn_(lateral|output)(\d)\.(weight|bias)', name)
  if m:
    return 'params', ('fpn', f'{m.group(1)}{m.group(2)}', wb(m.group(3)))
  m = re.fullmatch(r'backbone\.top_block\.(p6|p7)\.(weight|bias)', name)
  if m:
    return 'params', ('fpn', m.group(1), wb(m.group(2)))
  m = re.fullmatch(r'semantic_fpn\.p(\d)\.(\d+)\.(weight|norm\.weight|norm\.bias)', name)
  if m:
    return _conv_gn(('semantic_fpn', f'p{m.group(1)}_{int(m.group(2)) // 2}'), m.group(3))
  m = re.fullmatch(r'position_head\.position_head\.position_head_head_(\d)\.(.+)', name)
  if m:
    tower, rest = ('position_head', f'tower_{int(m.group(1)) - 1}'), m.group(2)
    table = {'offset_mask_conv.weight': ('offset', 'kernel'),
             'offset_mask_conv.bias': ('offset', 'bias'),
             'dcnv2.weight': ('kernel',), 'dcnv2.norm.weight': ('norm', 'scale'),
             'dcnv2.norm.bias': ('norm', 'bias'),
             'weight': ('conv', 'kernel'), 'norm.weight': ('norm', 'scale'),
             'norm.bias': ('norm', 'bias')}
    return ('params', tower + table[rest]) if rest in table else None
  m = re.fullmatch(r'position_head\.(out_inst|out_sem)\.(weight|bias)', name)
  if m:
    out = 'out_inst' if m.group(1) == 'out_inst' else 'out_stuff'
    return 'params', ('position_head', out, wb(m.group(2)))
  m = re.fullmatch(r'kernel_head\.kernel_head\.kernel_head_head_(\d)\.(weight|norm\.weight|'
                   r'norm\.bias)', name)
  if m:
    return _conv_gn(('kernel_head', f'tower_{int(m.group(1)) - 1}'), m.group(2))
  m = re.fullmatch(r'kernel_head\.out_conv\.(weight|bias)', name)
  if m:
    return 'params', ('kernel_head', 'out_conv', wb(m.group(1)))
  m = re.fullmatch(r'feature_encoder\.encode_head\.encode_head_head_(\d)\.(weight|bias)', name)
  if m:
    return 'params', ('feature_encoder', f'conv_{int(m.group(1)) - 1}', 'conv', wb(m.group(2)))
  m = re.fullmatch(r'(thing|stuff)_generator\.embed_extractor\.(weight|bias)', name)
  if m:
    return 'params', (f'{m.group(1)}_generator', wb(m.group(2)))
  return None


_WB = {'kernel': 'weight', 'bias': 'bias'}
_GN_NAME = {'kernel': 'weight', 'scale': 'norm.weight', 'bias': 'norm.bias'}
_POSITION_TOWER = {('offset', 'kernel'): 'offset_mask_conv.weight',
                   ('offset', 'bias'): 'offset_mask_conv.bias', ('kernel',): 'dcnv2.weight',
                   ('conv', 'kernel'): 'weight', ('norm', 'scale'): 'norm.weight',
                   ('norm', 'bias'): 'norm.bias'}


def source_name(path: tuple[str, ...]) -> str:
  """Inverse of `_entry`: (collection, *flax path) -> the Detectron2 key in the checkpoint."""
  coll, p = path[0], path[1:]
  fallback = '/'.join(path)
  if p[0] == 'bottom_up':
    return 'backbone.bottom_up.' + resnet_conv.d2_backbone_name(p[1:])
  if coll != 'params':
    return fallback
  if p[0] == 'fpn' and len(p) == 3:
    if p[1] in ('p6', 'p7'):
      return f'backbone.top_block.{p[1]}.{_WB[p[2]]}'
    m = re.fullmatch(r'(lateral|output)(\d)', p[1])
    return f'backbone.fpn_{m.group(1)}{m.group(2)}.{_WB[p[2]]}' if m else fallback
  m = re.fullmatch(r'p(\d)_(\d+)', p[1]) if p[0] == 'semantic_fpn' else None
  if m:
    return f'semantic_fpn.p{m.group(1)}.{2 * int(m.group(2))}.{_GN_NAME[p[-1]]}'
  m = re.fullmatch(r'tower_(\d+)', p[1]) if len(p) > 2 else None
  if m and p[0] == 'position_head' and p[2:] in _POSITION_TOWER:
    return (f'position_head.position_head.position_head_head_{int(m.group(1)) + 1}.'
            f'{_POSITION_TOWER[p[2:]]}')
  if m and p[0] == 'kernel_head':
    return f'kernel_head.kernel_head.kernel_head_head_{int(m.group(1)) + 1}.{_GN_NAME[p[-1]]}'
  if p[0] == 'position_head' and p[1] in ('out_inst', 'out_stuff'):
    return f'position_head.{"out_inst" if p[1] == "out_inst" else "out_sem"}.{_WB[p[2]]}'
  if p[:2] == ('kernel_head', 'out_conv'):
    return f'kernel_head.out_conv.{_WB[p[2]]}'
  m = re.fullmatch(r'conv_(\d+)', p[1]) if p[0] == 'feature_encoder' else None
  if m:
    return f'feature_encoder.encode_head.encode_head_head_{int(m.group(1)) + 1}.{_WB[p[-1]]}'
  if p[0] in ('thing_generator', 'stuff_generator'):
    return f'{p[0]}.embed_extractor.{_WB[p[-1]]}'
  return fallback


def _convert_array(path: tuple[str, ...], value: np.ndarray) -> np.ndarray:
  v = np.asarray(value, np.float32)
  if path[-1] == 'kernel' and v.ndim == 4:
    if path[0] in ('thing_generator', 'stuff_generator'):
      return np.ascontiguousarray(v[:, :, 0, 0].T)   # 1x1 conv -> [Cin, E]
    return resnet_conv.conv_kernel(v)
  return v


def state_dict_to_variables(state: dict[str, np.ndarray]) -> tuple[dict, list[str]]:
  """PanopticFCN state dict (numpy, Detectron2 names) -> ({'params','batch_stats'}, unused)."""
  variables: dict = {'params': {}, 'batch_stats': {}}
  unused = []
  for name, value in state.items():
    name = name[len('module.'):] if name.startswith('module.') else name
    e = _entry(name)
    if e is None:
      unused.append(name)
      continue
    resnet_conv.set_path(variables[e[0]], e[1], _convert_array(e[1], value))
  return variables, unused


@functools.lru_cache(maxsize=8)
def expected_shapes(num_thing: int, num_stuff: int, position_deform: str = 'v2') -> dict:
  import jax
  import jax.numpy as jnp
  from hybrid_jax.models.panoptic_fcn import model as panoptic_fcn
  model = panoptic_fcn.PanopticFCN(num_thing=num_thing, num_stuff=num_stuff,
                                   position_deform=position_deform)
  return jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))


def convert_state_dict(state: dict[str, np.ndarray], *, num_thing: int | None = None,
                       num_stuff: int | None = None, seed: int = 0) -> tuple[dict, str, dict]:
  """Converts and verifies; adapts the class-dependent output layers.

  Args:
    state: the checkpoint's ``model`` state dict as numpy arrays.
    num_thing, num_stuff: target channel counts (None: keep the checkpoint's).
    seed: for re-initialised output layers.
  Returns:
    (variables, report, info) with info = {'num_thing', 'num_stuff', 'position_deform',
    'reinitialised': [paths]}.
  """
  variables, unused = state_dict_to_variables(state)
  pos = variables['params'].get('position_head', {})
  src_thing = _out_channels(pos.get('out_inst'))
  src_stuff = _out_channels(pos.get('out_stuff'))
  if src_thing is None or src_stuff is None:
    raise errors.CheckpointError(
        'No position_head.out_inst / out_sem in the checkpoint: this is not a PanopticFCN '
        f'model ({len(state)} keys, {len(unused)} unknown, e.g. {unused[:3]}).')
  deform = 'v2' if 'offset' in pos.get('tower_0', {}) else 'none'
  num_thing = src_thing if num_thing is None else num_thing
  num_stuff = src_stuff if num_stuff is None else num_stuff
  rng = np.random.default_rng(seed)
  reinit = []
  for out, n, src in (('out_inst', num_thing, src_thing), ('out_stuff', num_stuff, src_stuff)):
    if n != src:
      k = pos[out]['kernel']
      pos[out] = {'kernel': (rng.standard_normal(k.shape[:3] + (n,)) * 0.01).astype(np.float32),
                  'bias': np.full((n,), -2.19, np.float32)}
      reinit.append(f'position_head/{out} ({src} -> {n} channels)')
  report = resnet_conv.verify(variables, expected_shapes(num_thing, num_stuff, deform),
                              unused=unused, what='panoptic_fcn_r50', source_name=source_name)
  if reinit:
    report += '\n  re-initialised (class count differs): ' + ', '.join(reinit)
  variables = {k: v for k, v in variables.items() if v}
  return variables, report, {'num_thing': num_thing, 'num_stuff': num_stuff,
                             'position_deform': deform, 'reinitialised': reinit}


def _out_channels(layer) -> int | None:
  if not layer or 'kernel' not in layer:
    return None
  return int(np.shape(layer['kernel'])[-1])


def add_arguments(parser) -> None:
  parser.add_argument('--categories', default='',
                      help="category table (synthetic | cityscapes_vps | viper) to adapt the "
                           "class-dependent layers to; '' keeps the checkpoint's (COCO) classes")
  parser.add_argument('--no-stuff-with-thing', dest='stuff_with_thing', action='store_false',
                      help='stuff head without the merged things channel')


def convert_file(in_path: str, out_path: str, *, categories: str = '',
                 stuff_with_thing: bool = True, **_) -> str:
  """Converts `in_path` and writes a 'panoptic_fcn_r50' pretrained checkpoint to `out_path`."""
  from hybrid_jax.data import categories as cat_lib
  from hybrid_jax.models.panoptic_fcn import targets as panoptic_fcn_targets
  from hybrid_jax.training import pretrained
  if not os.path.isfile(in_path):
    raise errors.CheckpointError(f'{in_path} does not exist.')
  state = resnet_conv.load_torch_state_dict(in_path)
  num_thing = num_stuff = None
  if categories:
    layout = panoptic_fcn_targets.ClassLayout.from_categories(
        cat_lib.get_categories(categories), with_thing=stuff_with_thing)
    num_thing, num_stuff = layout.num_thing, layout.num_stuff
  variables, report, info = convert_state_dict(state, num_thing=num_thing, num_stuff=num_stuff)
  pretrained.save_pretrained(out_path, variables, {
      'architecture': 'panoptic_fcn_r50', 'stride_in_1x1': True,
      'categories': categories or 'coco', 'stuff_with_thing': stuff_with_thing,
      'source_file': os.path.basename(in_path), **info, **PFCN_SPEC})
  return report + f'\nwrote {out_path}.'
