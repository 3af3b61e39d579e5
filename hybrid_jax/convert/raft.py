"""RAFT weights: official princeton-vl `.pth` files and torchvision state dicts -> Flax variables.

    python -m hybrid_jax.cli.convert raft raft-sintel.pth /ckpt/raft_sintel [--variant standard]

Two source formats are auto-detected:
  * official (princeton-vl/RAFT: raft-things/-sintel/-kitti/-chairs.pth standard,
    raft-small.pth): keys ``module.fnet.conv1.weight`` ... (reference raft.md Appendix A);
    BN of the standard cnet saved twice (``normX`` and ``downsample.1``): both copies checked.
  * torchvision (``raft_large`` / ``raft_small`` state dicts): ``feature_encoder.convnormrelu.0
    .weight`` ... . Its numerics equal the official ones (same blocks, lookup order, padding,
    0.25 mask scale, align_corners upsampling); it expects inputs already mapped to [-1, 1],
    which our module does itself from 0..255, so no flags are needed.

Conv OIHW -> HWIO (transpose 2,3,1,0); BN weight/bias -> params scale/bias, running_mean/var ->
batch_stats mean/var; num_batches_tracked dropped. torch is imported only to read files.
"""

from __future__ import annotations

import functools
import os
import shlex
import re
from typing import Any, Mapping

import numpy as np

from hybrid_jax import errors
from hybrid_jax.convert import torch_files

FORMATS = ('official', 'torchvision')
_LEAF_OFFICIAL = {'kernel': 'weight', 'bias': 'bias', 'scale': 'weight', 'mean': 'running_mean',
                  'var': 'running_var'}


@functools.lru_cache(maxsize=2)
def _template(variant: str) -> dict[tuple[str, ...], tuple[int, ...]]:
  """{(collection, *module path, leaf): shape} of our RAFT variables, from shapes only."""
  import jax
  from hybrid_jax.models.raft import model as raft
  img = jax.ShapeDtypeStruct((1, 64, 64, 3), jax.numpy.float32)
  shapes = jax.eval_shape(lambda a, b: raft.RAFT(variant=variant).init(
      jax.random.PRNGKey(0), a, b, iters=1), img, img)
  flat = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(shapes)[0]:
    flat[tuple(p.key for p in path)] = tuple(leaf.shape)
  return flat


def _official_modules(mod: tuple[str, ...]) -> list[str]:
  """Our module path -> official dotted module name(s) (without 'module.')."""
  parts = []
  for p in mod:
    m = re.fullmatch(r'(layer\d)_(\d)', p)
    if m:
      parts += [m.group(1), m.group(2)]
    elif p == 'downsample_0':
      parts += ['downsample', '0']
    elif p in ('conv_0', 'conv_2'):
      parts.append(p[-1])
    elif p == 'mask':
      parts += ['update_block', 'mask']
    else:
      parts.append(p)
  name = '.'.join(parts)
  if mod[0] == 'cnet' and mod[-1] == 'norm3' and len(mod) == 3:
    # ResidualBlock: norm3 is also registered as downsample.1 and saved twice.
    return [name, name[:-len('norm3')] + 'downsample.1']
  return [name]


_TV_MOTION = {'convc1': 'convcorr1.0', 'convc2': 'convcorr2.0', 'convf1': 'convflow1.0',
              'convf2': 'convflow2.0', 'conv': 'conv.0'}


def _torchvision_module(mod: tuple[str, ...]) -> str:
  """Our module path -> torchvision dotted module name."""
  if mod[0] in ('fnet', 'cnet'):
    enc = 'feature_encoder' if mod[0] == 'fnet' else 'context_encoder'
    if len(mod) == 2:
      return enc + '.' + {'conv1': 'convnormrelu.0', 'norm1': 'convnormrelu.1',
                          'conv2': 'conv'}[mod[1]]
    m = re.fullmatch(r'(layer\d)_(\d)', mod[1])
    block, leaf = f'{m.group(1)}.{m.group(2)}', mod[2]
    if leaf == 'downsample_0':
      sub = 'downsample.0'
    elif leaf.startswith('conv'):
      sub = f'convnormrelu{leaf[-1]}.0'
    elif (leaf == 'norm3' and mod[0] == 'cnet') or leaf == 'norm4':
      sub = 'downsample.1'  # the shortcut's norm (only the standard cnet has parameters)
    else:
      sub = f'convnormrelu{leaf[-1]}.1'
    return f'{enc}.{block}.{sub}'
  if mod[0] == 'mask':
    return {'conv_0': 'mask_predictor.convrelu.0', 'conv_2': 'mask_predictor.conv'}[mod[1]]
  # update_block
  if mod[1] == 'encoder':
    return 'update_block.motion_encoder.' + _TV_MOTION[mod[2]]
  if mod[1] == 'gru':
    gate, idx = mod[2][:5], mod[2][5:] or '1'
    return f'update_block.recurrent_block.convgru{idx}.{gate}'
  return 'update_block.' + '.'.join(mod[1:])


def expected_keys(variant: str, fmt: str) -> dict[str, tuple[tuple[str, ...], tuple[int, ...]]]:
  """{torch key (no 'module.'): (our variable path, torch shape)} for `variant`, `fmt`.

  num_batches_tracked keys map to path () (they are read and dropped).
  """
  out = {}
  bn_modules = set()
  for path, shape in _template(variant).items():
    coll, mod, leaf = path[0], path[1:-1], path[-1]
    names = _official_modules(mod) if fmt == 'official' else [_torchvision_module(mod)]
    is_bn = coll == 'batch_stats' or leaf == 'scale'
    tshape = (shape[3], shape[2], shape[0], shape[1]) if leaf == 'kernel' else shape
    for name in names:
      out[f'{name}.{_LEAF_OFFICIAL[leaf]}'] = (path, tshape)
      if is_bn:
        bn_modules.add(name)
  for name in bn_modules:
    out[f'{name}.num_batches_tracked'] = ((), ())
  return out


def _to_numpy(v) -> np.ndarray:
  if hasattr(v, 'detach'):  # torch tensor
    v = v.detach().cpu().numpy()
  return np.asarray(v)


def detect(state_dict: Mapping[str, Any]) -> tuple[str, str]:
  """(format, variant) of a RAFT state dict with the 'module.' prefix already stripped."""
  for fmt, key in (('official', 'fnet.conv1.weight'),
                   ('torchvision', 'feature_encoder.convnormrelu.0.weight')):
    if key in state_dict:
      stem = tuple(np.shape(_to_numpy(state_dict[key])))
      variant = {64: 'standard', 32: 'small'}.get(stem[0] if stem else -1)
      if variant is None or len(stem) != 4:
        raise errors.CheckpointError(f'{key} has shape {stem}; expected [64,3,7,7] (standard) '
                                     'or [32,3,7,7] (small). Not a RAFT checkpoint?')
      return fmt, variant
  sample = ', '.join(list(state_dict)[:5])
  raise errors.CheckpointError(
      'Not a RAFT checkpoint: found neither the official key fnet.conv1.weight nor torchvision\'s '
      f'feature_encoder.convnormrelu.0.weight (first keys: {sample or "none"}).')


def _names(keys, limit=12) -> str:
  keys = sorted(keys)
  more = f' ... (+{len(keys) - limit} more)' if len(keys) > limit else ''
  return ', '.join(keys[:limit]) + more


def convert_state_dict(state_dict: Mapping[str, Any], *, variant: str | None = None,
                       strict: bool = True) -> tuple[dict, dict[str, Any]]:
  """Converts a RAFT state dict (numpy arrays or torch tensors) to Flax variables.

  Args:
    state_dict: official (with or without 'module.') or torchvision key names.
    variant: 'standard' | 'small' to insist on; None accepts what is detected.
    strict: unexpected keys are an error (else they are only listed in the info).
  Returns:
    (variables {'params', ['batch_stats']} of numpy float32 arrays, info dict with
    'format', 'variant', 'num_keys', 'unexpected').
  Raises:
    CheckpointError naming missing / unexpected / mis-shaped keys, or a variant mismatch.
  """
  if not isinstance(state_dict, Mapping) or not state_dict:
    raise errors.CheckpointError('Not a RAFT checkpoint: expected a non-empty dict of tensors.')
  sd = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state_dict.items()}
  fmt, found = detect(sd)
  if variant is not None and variant != found:
    raise errors.CheckpointError(
        f'This is a RAFT {found!r} checkpoint ({fmt} format) but variant {variant!r} was asked '
        f'for; use --variant {found} (config flow.variant={found!r}).')
  expect = expected_keys(found, fmt)
  missing = sorted(set(expect) - set(sd))
  unexpected = sorted(set(sd) - set(expect))
  bad_shape = [f'{k} {tuple(np.shape(_to_numpy(sd[k])))} (expected {expect[k][1]})'
               for k in expect if k in sd and tuple(np.shape(_to_numpy(sd[k]))) != expect[k][1]]
  problems = []
  if missing:
    problems.append(f'{len(missing)} missing key(s): {_names(missing)}')
  if unexpected and strict:
    problems.append(f'{len(unexpected)} unexpected key(s): {_names(unexpected)}')
  if bad_shape:
    problems.append(f'{len(bad_shape)} wrong shape(s): {_names(bad_shape)}')
  if problems:
    raise errors.CheckpointError(
        f'RAFT {found} checkpoint ({fmt} key names) does not match the architecture: '
        + '; '.join(problems) + '.')
  variables: dict = {}
  seen: dict[tuple[str, ...], tuple[str, np.ndarray]] = {}
  for key, (path, _) in expect.items():
    if not path:
      continue  # num_batches_tracked
    value = _to_numpy(sd[key]).astype(np.float32)
    if path[-1] == 'kernel':
      value = np.transpose(value, (2, 3, 1, 0))  # OIHW -> HWIO
    if path in seen:  # aliased BN (norm3 == downsample.1): must be the same tensor
      other_key, other = seen[path]
      if not np.array_equal(other, value):
        raise errors.CheckpointError(f'{other_key} and {key} should be the same BatchNorm '
                                     'tensor but differ; the file is inconsistent.')
      continue
    seen[path] = (key, value)
    node = variables
    for p in path[:-1]:
      node = node.setdefault(p, {})
    node[path[-1]] = value
  info = {'format': fmt, 'variant': found, 'num_keys': len(sd), 'unexpected': unexpected}
  return variables, info


def _load_torch(path: str) -> Mapping[str, Any]:
  obj = torch_files.load(path)
  if isinstance(obj, Mapping):
    for wrapper in ('state_dict', 'model'):
      if wrapper in obj and isinstance(obj[wrapper], Mapping) and len(obj) <= 3:
        obj = obj[wrapper]
  if not isinstance(obj, Mapping):
    raise errors.CheckpointError(f'{path} holds a {type(obj).__name__}, not a state dict; '
                                 'not a RAFT checkpoint.')
  return obj


def add_arguments(parser) -> None:
  parser.add_argument('--variant', choices=('standard', 'small'), default=None,
                      help='insist on this RAFT variant (default: detect)')
  parser.add_argument('--non-strict', dest='strict', action='store_false',
                      help='ignore unexpected keys instead of failing')


def convert_file(in_path: str, out_path: str, *, variant: str | None = None,
                 strict: bool = True, **_unused) -> str:
  """Converts one .pth file and writes a pretrained checkpoint directory; returns a report."""
  from hybrid_jax.models.raft import model as raft
  from hybrid_jax.training import pretrained
  variables, info = convert_state_dict(_load_torch(in_path), variant=variant, strict=strict)
  v = info['variant']
  n = raft.count_params(variables['params'])
  meta = {'architecture': raft.ARCHITECTURES[v], 'source': f"{info['format']}:"
          f'{os.path.basename(in_path)}', 'format': info['format'], 'variant': v,
          'num_params': n}
  pretrained.save_pretrained(out_path, variables, meta)
  lines = [f"RAFT {v} ({info['format']} key names) from {in_path}: {info['num_keys']} keys -> "
           f'{n:,} parameters' + (' + BN statistics' if 'batch_stats' in variables else ''),
           f'written to {out_path} (architecture {meta["architecture"]}); use '
           f'--config.flow.checkpoint={shlex.quote(out_path)} --config.flow.variant={v}']
  if info['unexpected']:
    lines.append(f"ignored unexpected keys: {_names(info['unexpected'])}")
  return '\n'.join(lines)
