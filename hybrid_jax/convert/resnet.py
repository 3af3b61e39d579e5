"""ResNet-50 ImageNet weights -> hybrid_jax ``resnet50`` backbone variables.

Sources (``--source auto`` picks by file content):

- ``torchvision``: a torchvision ``resnet50`` state dict (``.pth``, read with
  ``torch.load(weights_only=True)``). Stride in the 3x3 conv (stride_in_1x1=False); input RGB,
  mean [0.485, 0.456, 0.406] * 255, std [0.229, 0.224, 0.225] * 255.
- ``detectron2``: Detectron2's MSRA ``R-50.pkl`` (Caffe2 blob names, unfused BN; the older
  fused ``_bn_s`` / ``_bn_b`` Detectron1 file works too, with mean 0 / var 1). Stride in the 1x1
  conv; input BGR, mean [103.53, 116.28, 123.675], std 1. The pickle is read with a restricted
  unpickler that only reconstructs numpy arrays, dtypes and plain containers; any other class
  (e.g. ``os.system``) is refused with a CheckpointError.

Both are first renamed to Detectron2 names (``stem.conv1.weight``, ``res3.0.conv1.norm.bias``,
...) and then mapped to flax paths (``params/res3_0/conv1/conv/kernel``,
``batch_stats/res3_0/conv1/norm/bias``). Every key is checked against the model's expected
shapes; missing keys or shape mismatches raise CheckpointError, unused keys are reported.

  python -m hybrid_jax.cli.convert resnet50 resnet50-0676ba61.pth OUT_DIR
"""

from __future__ import annotations

import importlib
import functools
import os
import pickle
import re
from typing import Any, Callable

import numpy as np

from hybrid_jax import errors
from hybrid_jax.convert import torch_files

NORM_SUFFIX = {'weight': 'scale', 'bias': 'bias', 'running_mean': 'mean', 'running_var': 'var'}
TORCHVISION_SPEC = {'input_format': 'RGB', 'pixel_mean': [123.675, 116.28, 103.53],
                    'pixel_std': [58.395, 57.12, 57.375]}
DETECTRON2_SPEC = {'input_format': 'BGR', 'pixel_mean': [103.53, 116.28, 123.675],
                   'pixel_std': [1.0, 1.0, 1.0]}


# ---- loading -------------------------------------------------------------------------------

class _NumpyOnlyUnpickler(pickle.Unpickler):
  """Unpickler that can only build numpy arrays / dtypes / scalars and plain containers."""
  _ALLOWED = {
      ('numpy.core.multiarray', '_reconstruct'), ('numpy._core.multiarray', '_reconstruct'),
      ('numpy.core.multiarray', 'scalar'), ('numpy._core.multiarray', 'scalar'),
      ('numpy', 'ndarray'), ('numpy', 'dtype'), ('collections', 'OrderedDict'),
      ('_codecs', 'encode'),  # protocol-2 pickles written by Python 3 store bytes this way
  }

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) not in self._ALLOWED:
      raise errors.CheckpointError(
          f'Refusing to unpickle {module}.{name}: only numpy arrays are allowed in a weight '
          'pickle. Is this really a Detectron2 R-50.pkl?')
    if module.startswith('numpy.core'):
      module = 'numpy._core' + module[len('numpy.core'):]
    return getattr(importlib.import_module(module), name)


def load_numpy_pickle(path: str) -> dict:
  """Reads a (Python 2 era) pickle of numpy arrays safely; returns the top-level dict."""
  try:
    with open(path, 'rb') as f:
      data = _NumpyOnlyUnpickler(f, encoding='latin1').load()
  except errors.CheckpointError:
    raise
  except Exception as exc:  # corrupt / truncated file
    raise errors.CheckpointError(f'Cannot read {path} as a pickle of numpy arrays: {exc}') from exc
  if not isinstance(data, dict):
    raise errors.CheckpointError(f'{path} holds a {type(data).__name__}, expected a dict.')
  return data


def load_torch_state_dict(path: str) -> dict[str, np.ndarray]:
  """torch.load(weights_only=True); unwraps {'model': ...} / {'state_dict': ...}; numpy out."""
  obj = torch_files.load(path)
  for key in ('model', 'state_dict'):
    if isinstance(obj, dict) and isinstance(obj.get(key), dict):
      obj = obj[key]
  if not isinstance(obj, dict):
    raise errors.CheckpointError(f'{path} does not hold a state dict.')
  out = {}
  for k, v in obj.items():
    if hasattr(v, 'detach'):
      k = k[len('module.'):] if k.startswith('module.') else k
      out[k] = v.detach().cpu().numpy()
  return out


# ---- renaming ------------------------------------------------------------------------------

def torchvision_to_d2_names(state: dict[str, np.ndarray]) -> tuple[dict, list[str]]:
  """torchvision resnet keys -> Detectron2 bottom_up keys; returns (renamed, dropped keys)."""
  out, dropped = {}, []
  for k, v in state.items():
    if k.startswith('fc.') or k.endswith('num_batches_tracked'):
      dropped.append(k)
      continue
    if k.startswith('layer'):
      n = k.replace('downsample.0', 'shortcut').replace('downsample.1', 'shortcut.norm')
      n = re.sub(r'^layer(\d)', lambda m: f'res{int(m.group(1)) + 1}', n)
      n = re.sub(r'\.bn(\d)\.', r'.conv\1.norm.', n)
    elif k.startswith(('conv1.', 'bn1.')):
      n = 'stem.' + k.replace('bn1.', 'conv1.norm.')
    else:
      n = k  # not a torchvision ResNet key: reported as unexpected
    out[n] = np.asarray(v)
  return out, dropped


def caffe2_to_d2_name(name: str) -> str:
  """Caffe2 blob name -> Detectron2 name (``convert_basic_c2_names`` rules, in order)."""
  name = {'pred_b': 'linear_b', 'pred_w': 'linear_w'}.get(name, name)
  n = name.replace('_', '.')
  n = re.sub(r'\.b$', '.bias', n)
  n = re.sub(r'\.w$', '.weight', n)
  for a, b in (('bn.s', 'norm.weight'), ('bn.bias', 'norm.bias'), ('bn.rm', 'norm.running_mean'),
               ('bn.running.mean', 'norm.running_mean'), ('bn.riv', 'norm.running_var'),
               ('bn.running.var', 'norm.running_var'), ('bn.gamma', 'norm.weight'),
               ('bn.beta', 'norm.bias'), ('gn.s', 'norm.weight'), ('gn.bias', 'norm.bias')):
    n = n.replace(a, b)
  n = re.sub(r'^res\.conv1\.norm\.', 'conv1.norm.', n)
  n = re.sub(r'^conv1\.', 'stem.conv1.', n)
  for a, b in (('.branch1.', '.shortcut.'), ('.branch2a.', '.conv1.'), ('.branch2b.', '.conv2.'),
               ('.branch2c.', '.conv3.')):
    n = n.replace(a, b)
  return n


def detectron2_pkl_to_d2_names(data: dict) -> dict[str, np.ndarray]:
  """Any of the three R-50.pkl layouts -> Detectron2 names (reference checkpoints §4.1)."""
  if 'model' in data and '__author__' in data:
    blobs, caffe2 = data['model'], data.get('__author__') == 'Caffe2'
  else:
    blobs, caffe2 = data.get('blobs', data), True
  out = {}
  for k, v in blobs.items():
    if not isinstance(v, np.ndarray) or k.endswith('_momentum'):
      continue
    looks_c2 = caffe2 or bool(re.match(r'res\d_\d+_branch', k)) or k.startswith('res_conv1')
    out[caffe2_to_d2_name(k) if looks_c2 else k] = v
  return out


# ---- mapping to flax -----------------------------------------------------------------------

def conv_kernel(w: np.ndarray) -> np.ndarray:
  """OIHW -> HWIO."""
  return np.ascontiguousarray(np.asarray(w, np.float32).transpose(2, 3, 1, 0))


def d2_backbone_entry(name: str) -> tuple[str, tuple[str, ...]] | None:
  """Detectron2 bottom_up key -> (collection, flax path) or None if it is not a backbone key."""
  m = re.fullmatch(r'stem\.conv1\.(weight|norm\.(weight|bias|running_mean|running_var))', name)
  if m:
    block, rest = ('stem_conv1',), name[len('stem.conv1.'):]
  else:
    m = re.fullmatch(r'res(\d)\.(\d+)\.(conv\d|shortcut)\.(.+)', name)
    if not m:
      return None
    block, rest = (f'res{m.group(1)}_{m.group(2)}', m.group(3)), m.group(4)
  if rest == 'weight':
    return 'params', block + ('conv', 'kernel')
  if rest.startswith('norm.') and rest[5:] in NORM_SUFFIX:
    return 'batch_stats', block + ('norm', NORM_SUFFIX[rest[5:]])
  return None


_NORM_NAME = {v: k for k, v in NORM_SUFFIX.items()}


def d2_backbone_name(path: tuple[str, ...]) -> str:
  """Inverse of `d2_backbone_entry`: a flax backbone path -> its Detectron2 key."""
  if path[0] == 'stem_conv1':
    prefix, rest = 'stem.conv1', path[1:]
  else:
    m = re.fullmatch(r'res(\d)_(\d+)', path[0])
    if not m or len(path) < 3:
      return '/'.join(path)
    prefix, rest = f'res{m.group(1)}.{m.group(2)}.{path[1]}', path[2:]
  if rest == ('conv', 'kernel'):
    return prefix + '.weight'
  if len(rest) == 2 and rest[0] == 'norm' and rest[1] in _NORM_NAME:
    return prefix + '.norm.' + _NORM_NAME[rest[1]]
  return '/'.join(path)


def torchvision_name(d2_name: str) -> str:
  """Inverse of `torchvision_to_d2_names` for one key: Detectron2 name -> torchvision name."""
  if d2_name.startswith('stem.conv1.'):
    rest = d2_name[len('stem.conv1.'):]
    return 'conv1.weight' if rest == 'weight' else 'bn1.' + rest[len('norm.'):]
  m = re.fullmatch(r'res(\d)\.(.+)', d2_name)
  if not m:
    return d2_name
  n = f'layer{int(m.group(1)) - 1}.{m.group(2)}'
  n = n.replace('shortcut.norm', 'downsample.1').replace('shortcut', 'downsample.0')
  return re.sub(r'\.conv(\d)\.norm\.', r'.bn\1.', n)


def d2_backbone_to_variables(d2: dict[str, np.ndarray]) -> tuple[dict, list[str]]:
  """Detectron2 bottom_up names -> ({'params', 'batch_stats'}, unused keys)."""
  variables: dict = {'params': {}, 'batch_stats': {}}
  unused = []
  for name, value in d2.items():
    entry = d2_backbone_entry(name)
    if entry is None:
      unused.append(name)
      continue
    coll, path = entry
    arr = conv_kernel(value) if path[-1] == 'kernel' else np.asarray(value, np.float32)
    set_path(variables[coll], path, arr)
  return variables, unused


def set_path(tree: dict, path: tuple[str, ...], value) -> None:
  for k in path[:-1]:
    tree = tree.setdefault(k, {})
  tree[path[-1]] = value


def flatten(tree: dict, prefix=()) -> dict[tuple[str, ...], Any]:
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(flatten(v, prefix + (k,)))
    else:
      out[prefix + (k,)] = v
  return out


def verify(variables: dict, expected: dict, *, unused: list[str], what: str,
           allow_missing: tuple[tuple[str, ...], ...] = (),
           source_name: Callable[[tuple[str, ...]], str] | None = None) -> str:
  """Compares converted variables with expected shapes; raises on missing / mismatched.

  Args:
    variables, expected: nested dicts (expected leaves have ``.shape``).
    unused: source keys that were not mapped (reported as unexpected, not fatal).
    what: name of the architecture for messages.
    allow_missing: flax paths that may be missing (they keep their initialisation).
    source_name: flax path (collection first) -> the key as the checkpoint file spells it, so
      a missing entry is named the way the user can look it up.
  Returns:
    A multi-line report.
  """
  got = flatten(variables)
  want = flatten(expected)
  missing = [p for p in want if p not in got and p not in allow_missing]
  extra = [p for p in got if p not in want]
  bad = [(p, np.shape(got[p]), tuple(want[p].shape)) for p in want
         if p in got and tuple(np.shape(got[p])) != tuple(want[p].shape)]
  fmt = lambda p: '/'.join(p)
  lines = [f'{what}: {len(got)} arrays converted, {len(want)} expected; '
           f'{len(missing)} missing, {len(bad)} with wrong shape, '
           f'{len(unused) + len(extra)} unexpected (ignored).']
  named = (lambda p: f'{source_name(p)} (ours: {fmt(p)})') if source_name else fmt
  lines += [f'  missing: {named(p)}' for p in missing[:20]]
  lines += [f'  shape: {fmt(p)} {s} != expected {t}' for p, s, t in bad[:20]]
  lines += [f'  unexpected: {k}' for k in (unused + [fmt(p) for p in extra])[:20]]
  if missing or bad:
    raise errors.CheckpointError(
        '\n'.join(lines) + f'\nThe checkpoint does not fit {what}: is it a checkpoint of '
        'another architecture?')
  return '\n'.join(lines)


@functools.lru_cache(maxsize=8)
def expected_resnet50_shapes(stride_in_1x1: bool) -> dict:
  import jax
  import jax.numpy as jnp
  from hybrid_jax.models import resnet
  model = resnet.ResNet('resnet50', stride_in_1x1=stride_in_1x1)
  return jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))


def resnet50_variables_from_d2(d2: dict[str, np.ndarray], *, stride_in_1x1: bool,
                               source_name: Callable[[str], str] = lambda n: n
                               ) -> tuple[dict, str]:
  """Detectron2-named backbone arrays -> verified variables and a report.

  source_name maps a Detectron2 key to the key as the user's file spells it (for messages).
  """
  d2 = {k[len('backbone.bottom_up.'):] if k.startswith('backbone.bottom_up.') else k: v
        for k, v in d2.items()}
  variables, unused = d2_backbone_to_variables(d2)
  report = verify(variables, expected_resnet50_shapes(stride_in_1x1), unused=unused,
                  what='resnet50',
                  source_name=lambda p: source_name(d2_backbone_name(p[1:])))
  return variables, report


def torchvision_to_variables(state: dict[str, np.ndarray]) -> tuple[dict, str]:
  """torchvision resnet50 state dict (numpy) -> ({'params', 'batch_stats'}, report)."""
  d2, dropped = torchvision_to_d2_names(state)
  variables, report = resnet50_variables_from_d2(d2, stride_in_1x1=False,
                                                 source_name=torchvision_name)
  return variables, report + f'\n  dropped {len(dropped)} torchvision keys (fc, num_batches_tracked).'


def detectron2_to_variables(data: dict) -> tuple[dict, str]:
  """Detectron2 R-50.pkl content -> ({'params', 'batch_stats'}, report)."""
  d2 = detectron2_pkl_to_d2_names(data)
  variables, report = resnet50_variables_from_d2(d2, stride_in_1x1=True)
  # A fused (Detectron1) file has no running stats: keep mean 0 / var 1 (affine FrozenBN).
  return variables, report


# ---- CLI -----------------------------------------------------------------------------------

def add_arguments(parser) -> None:
  parser.add_argument('--source', choices=('auto', 'torchvision', 'detectron2'), default='auto',
                      help='weight source (auto: .pkl -> detectron2, else torchvision)')


def convert_file(in_path: str, out_path: str, *, source: str = 'auto', **_) -> str:
  """Converts `in_path` and writes a 'resnet50' pretrained checkpoint to `out_path`."""
  from hybrid_jax.training import pretrained
  if not os.path.isfile(in_path):
    raise errors.CheckpointError(f'{in_path} does not exist.')
  if source == 'auto':
    source = 'detectron2' if in_path.endswith('.pkl') else 'torchvision'
  if source == 'detectron2':
    variables, report = detectron2_to_variables(load_numpy_pickle(in_path))
    stride_in_1x1, spec = True, DETECTRON2_SPEC
  else:
    variables, report = torchvision_to_variables(load_torch_state_dict(in_path))
    stride_in_1x1, spec = False, TORCHVISION_SPEC
  variables = {k: v for k, v in variables.items() if v}
  pretrained.save_pretrained(out_path, variables, {
      'architecture': 'resnet50', 'stride_in_1x1': stride_in_1x1, 'source': source,
      'source_file': os.path.basename(in_path), **spec})
  return report + f'\nwrote {out_path} (stride_in_1x1={stride_in_1x1}, {spec["input_format"]}).'
