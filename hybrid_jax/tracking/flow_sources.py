"""Flow sources for the pixel tracker: anything that gives forward flow between two frames.

`VideoTracker` asks its `FlowSource` for the flow from the previous frame to the current one
(or is handed it per frame). Sources here: precomputed arrays (ground truth, RAFT run
beforehand), a callable (a jitted RAFT apply), and Middlebury .flo files. Flow over a gap of
several frames is composed from consecutive flows (`compose_flows`).
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from hybrid_jax import errors
from hybrid_jax.data import flo_files
from hybrid_jax.models import layers

@jax.jit
def compose_flows(flow_ab, flow_bc):
  """Flow a->c from a->b and b->c: f_ac(p) = f_ab(p) + f_bc(p + f_ab(p)) (bilinear).

  The tracker itself warps masks step by step (its memory re-warps stored masks with every
  new flow), so this is for flow sources that are asked for δ > 1 directly.
  """
  h, w, _ = flow_ab.shape
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                        indexing='ij')
  return flow_ab + layers.bilinear_sample(flow_bc, xs + flow_ab[..., 0], ys + flow_ab[..., 1])


@runtime_checkable
class FlowSource(Protocol):
  """Anything that gives forward flow between two frames of the current clip."""

  def flow(self, index_prev: int, index_cur: int, image_prev, image_cur) -> np.ndarray:
    """Forward flow float32 [H, W, 2] (x first) from frame `index_prev` to `index_cur`."""


class ArrayFlowSource:
  """Precomputed consecutive flows [T-1, H, W, 2] (ground truth, or RAFT run beforehand)."""

  def __init__(self, flows):
    self.flows = np.asarray(flows, np.float32)
    if self.flows.ndim != 4 or self.flows.shape[-1] != 2:
      raise errors.FormatError(
          f'Precomputed flows must be [T-1, H, W, 2], got shape {self.flows.shape}.')

  def flow(self, index_prev, index_cur, image_prev=None, image_cur=None):
    if not 0 <= index_prev < index_cur <= self.flows.shape[0]:
      raise errors.FormatError(
          f'No flow from frame {index_prev} to {index_cur}: {self.flows.shape[0]} consecutive '
          f'flows are stored (frames 0..{self.flows.shape[0]}).')
    out = jnp.asarray(self.flows[index_prev])
    for k in range(index_prev + 1, index_cur):
      out = compose_flows(out, jnp.asarray(self.flows[k]))
    return np.asarray(out)


class CallableFlowSource:
  """Wraps ``fn(image_prev, image_cur) -> flow [H, W, 2]`` (e.g. a jitted RAFT apply)."""

  def __init__(self, fn: Callable):
    self.fn = fn

  def flow(self, index_prev, index_cur, image_prev, image_cur):
    return np.asarray(self.fn(image_prev, image_cur), np.float32)

  def between(self, image_from, image_to) -> np.ndarray:
    """Flow from any frame to any other (a flow model runs on any pair, backward too)."""
    return np.asarray(self.fn(image_from, image_to), np.float32)


class FloFileSource:
  """Consecutive flows from files: ``paths[k]`` holds the flow from frame k to k+1."""

  def __init__(self, paths: Sequence[str],
               reader: Callable[[str], np.ndarray] = flo_files.read_flo):
    self.paths = list(paths)
    self.reader = reader

  def flow(self, index_prev, index_cur, image_prev=None, image_cur=None):
    if not 0 <= index_prev < index_cur <= len(self.paths):
      raise errors.FormatError(
          f'No .flo file for frames {index_prev}->{index_cur}; {len(self.paths)} given.')
    out = jnp.asarray(self.reader(self.paths[index_prev]))
    for k in range(index_prev + 1, index_cur):
      out = compose_flows(out, jnp.asarray(self.reader(self.paths[k])))
    return np.asarray(out)


def pair_flow_fn(source) -> Callable | None:
  """``fn(image_from, image_to) -> flow [H, W, 2]`` for any pair of frames, backward included,
  when `source` can give it (a flow model: `CallableFlowSource`, or any object with a
  ``between`` method); None for forward-only sources (precomputed consecutive flows, .flo
  files, ground truth)."""
  return getattr(source, 'between', None)


def as_flow_source(source) -> FlowSource | None:
  """None, a FlowSource, an array [T-1, H, W, 2] or a callable(image_prev, image_cur)."""
  if source is None or isinstance(source, FlowSource):
    return source
  if isinstance(source, (np.ndarray, jax.Array)):
    return ArrayFlowSource(source)
  if callable(source):
    return CallableFlowSource(source)
  raise errors.ConfigError(
      f'flow_source must be None, an object with .flow(i_prev, i_cur, img_prev, img_cur), an '
      f'array [T-1, H, W, 2] or a callable(img_prev, img_cur); got {type(source).__name__}.')
