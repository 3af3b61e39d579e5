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
        'PyTorch weights first, e.g. `python -m hybrid_jax.convert raft raft-sintel.pth OUT`.')
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
          f'{" or ".join(map(repr, allowed))}.')
  try:
    with ocp.StandardCheckpointer() as ckptr:
      tree = ckptr.restore(os.path.join(path, VARIABLES_DIR))
  except Exception as exc:
    raise errors.CheckpointError(f'Cannot read the weights in {path}: {exc}') from exc
  return _to_numpy(tree), meta


def _to_numpy(tree):
  if isinstance(tree, dict):
    return {k: _to_numpy(v) for k, v in tree.items()}
  return np.asarray(tree)
