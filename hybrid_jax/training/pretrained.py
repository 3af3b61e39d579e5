"""Pretrained-weight checkpoints: what the converters write and what configs load.

A pretrained checkpoint is a directory holding an Orbax PyTree checkpoint of the model
variables (``{'params': ..., 'batch_stats': ...}``, plain numpy/jax arrays) and a
``metadata.json`` that says which architecture the weights are for (e.g. ``raft_standard``,
``raft_small``, ``resnet50``, ``panoptic_fcn_r50``) and where they came from. Loading checks the
architecture so that a checkpoint of another model fails with a clear message.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from hybrid_jax import errors

METADATA_FILE = 'metadata.json'
VARIABLES_DIR = 'variables'


def save_pretrained(path: str, variables: dict, metadata: dict[str, Any]) -> str:
  """Writes `variables` (nested dict of arrays) and `metadata` (must name 'architecture')."""
  import orbax.checkpoint as ocp  # imported lazily: converters run without jax being warm
  if 'architecture' not in metadata:
    raise ValueError("metadata must contain 'architecture'.")
  path = os.path.abspath(path)
  if os.path.exists(os.path.join(path, VARIABLES_DIR)):
    raise errors.CheckpointError(f'{path} already holds a checkpoint; remove it or choose another OUT.')
  os.makedirs(path, exist_ok=True)
  tree = _to_numpy(variables)
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(os.path.join(path, VARIABLES_DIR), tree)
  with open(os.path.join(path, METADATA_FILE), 'w') as f:
    json.dump(metadata, f, indent=2, sort_keys=True)
  return path


def load_metadata(path: str) -> dict[str, Any]:
  meta_path = os.path.join(path, METADATA_FILE)
  if not os.path.exists(meta_path):
    raise errors.CheckpointError(
        f'{path} is not a hybrid_jax pretrained checkpoint (no {METADATA_FILE}). Convert '
        'PyTorch weights first, e.g. `python -m hybrid_jax.cli.convert raft raft-sintel.pth OUT`.')
  with open(meta_path) as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as exc:
      raise errors.CheckpointError(f'{meta_path} is not valid JSON: {exc}') from exc


def load_pretrained(path: str, *, expect_architecture: str | tuple[str, ...] | None = None
                    ) -> tuple[dict, dict[str, Any]]:
  """Returns (variables as numpy nested dicts, metadata); checks the architecture if asked."""
  import orbax.checkpoint as ocp
  path = os.path.abspath(path)
  meta = load_metadata(path)
  if expect_architecture is not None:
    allowed = (expect_architecture,) if isinstance(expect_architecture, str) else expect_architecture
    if meta.get('architecture') not in allowed:
      raise errors.CheckpointError(
          f'{path} holds weights for {meta.get("architecture")!r}, but the config asks for '
          f'{" or ".join(map(repr, allowed))}. Pass the config these weights belong to, point '
          'the config at other weights, or (for a stage of this run) use a new --workdir or '
          f'delete {os.path.dirname(path)!r} to retrain it.')
  try:
    with ocp.StandardCheckpointer() as ckptr:
      tree = ckptr.restore(os.path.join(path, VARIABLES_DIR))
  except Exception as exc:  # pylint: disable=broad-except  # orbax / tensorstore read errors
    reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    stage_dir = os.path.dirname(path)
    if os.path.isdir(os.path.join(stage_dir, 'checkpoints')):
      fix = (f'Delete {path!r} and rerun the same command: the stage exports it again from its '
             f'last checkpoint in {os.path.join(stage_dir, "checkpoints")!r}.')
    else:
      fix = 'Recreate it (convert the source weights again, or retrain the stage).'
    raise errors.CheckpointError(f'Cannot read the weights in {path} ({reason}). {fix}'
                                 ) from None
  return _to_numpy(tree), meta


def _to_numpy(tree):
  if isinstance(tree, dict):
    return {k: _to_numpy(v) for k, v in tree.items()}
  return np.asarray(tree)


def _flatten(tree, prefix=()) -> dict[tuple[str, ...], Any]:
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      out.update(_flatten(v, prefix + (str(k),)))
    return out
  return {prefix: tree}


def _unflatten(flat: dict[tuple[str, ...], Any]) -> dict:
  out: dict = {}
  for path, value in flat.items():
    node = out
    for k in path[:-1]:
      node = node.setdefault(k, {})
    node[path[-1]] = value
  return out


def merge_pretrained(target: dict, pretrained: dict, *, into: str = '',
                     allow_missing: bool = True, allow_unexpected: bool = False
                     ) -> tuple[dict, dict[str, list[str]]]:
  """Copies pretrained arrays into a fresh variable tree, checking keys and shapes by path.

  Args:
    target: the fresh tree (e.g. the model's `params` or `{'params', 'batch_stats'}`),
      nested dicts of arrays.
    pretrained: the loaded tree (e.g. `load_pretrained(path)[0]['params']`).
    into: '/'-joined path of the subtree of `target` that `pretrained` describes, e.g.
      'backbone' to load ResNet weights into a segmenter ('' = the whole tree).
    allow_missing: target leaves without a pretrained value keep their fresh value (new
      heads); if False, any such leaf is an error.
    allow_unexpected: pretrained leaves with no place in the target are ignored; if False
      (default) they are an error, since they usually mean a naming mismatch.
  Returns:
    (merged tree with target's dtypes, report) where report has the '/'-joined paths under
    'loaded', 'missing' (in target only), 'unexpected' (in pretrained only), 'mismatched'
    ('path: pretrained shape vs target shape').
  Raises:
    CheckpointError: shapes differ, or missing/unexpected leaves where not allowed; the
      message lists the paths.
  """
  flat_target = _flatten(target)
  base = tuple(p for p in into.split('/') if p)
  flat_pre = {base + k: v for k, v in _flatten(pretrained).items()}
  scope = [k for k in flat_target if k[:len(base)] == base]
  if base and not scope:
    raise errors.CheckpointError(f'The model has no subtree {into!r} to load pretrained '
                                 f'weights into.')
  report: dict[str, list[str]] = {'loaded': [], 'missing': [], 'unexpected': [],
                                  'mismatched': []}
  merged = dict(flat_target)
  for key, value in flat_pre.items():
    name = '/'.join(key)
    if key not in flat_target:
      report['unexpected'].append(name)
      continue
    fresh = flat_target[key]
    if tuple(np.shape(value)) != tuple(np.shape(fresh)):
      report['mismatched'].append(f'{name}: pretrained {tuple(np.shape(value))} vs model '
                                  f'{tuple(np.shape(fresh))}')
      continue
    merged[key] = np.asarray(value).astype(np.asarray(fresh).dtype)
    report['loaded'].append(name)
  report['missing'] = ['/'.join(k) for k in scope if k not in flat_pre]
  problems = list(report['mismatched'])
  if not allow_unexpected:
    problems += [f'{p}: in the pretrained weights, not in the model' for p in report['unexpected']]
  if not allow_missing:
    problems += [f'{p}: in the model, not in the pretrained weights' for p in report['missing']]
  if problems:
    shown = problems[:10] + ([f'... and {len(problems) - 10} more'] if len(problems) > 10 else [])
    raise errors.CheckpointError(
        'The pretrained weights do not fit the model' + (f" subtree {into!r}" if into else '')
        + ':\n  ' + '\n  '.join(shown) + '\nCheck that the checkpoint was converted for this '
        'architecture and config.')
  return _unflatten(merged), report
