"""Training input pipelines on grain: fixed-shape numpy batches of clips or frame pairs.

The source is any random-access sequence of clips in the data contract (a list of dicts, a TFDS
``data_source``, `official_format.read_split`'s output). Batches are a pure function of
``(seed, step)``: element ``e`` of the run (the ``e``-th example of the *global* batch stream,
``e = step * global_batch + j``) takes its anchor from a per-epoch permutation of all anchors
(seeded by ``(seed, epoch)``) and its augmentation (delta, crop offset, flip) from
``numpy.random.default_rng((seed, 1, e))``. Hence

- resuming with ``start_step=s`` yields exactly batches s, s+1, ... of a fresh run, without
  any iterator state in the checkpoint;
- with P processes, process p yields rows ``[p*B/P, (p+1)*B/P)`` of every global batch, so the
  processes' slices concatenate to the 1-process batch whatever P is.

grain (``grain.MapDataset``) does the batching; with ``worker_count > 0`` whole batches are
computed in spawned worker processes (a bounded, ordered pool; see `_worker_batches`), so
the order stays deterministic.

Pair batches (``make_pair_iterator``), local batch size b, crop (h, w)::

  frames      uint8   [b, 2, h, w, 3]   frames (t - delta, t)
  panoptic    int32   [b, 2, h, w]      category*1000 + track, -1 void (and on unlabelled frames,
                                        unless ``labels_on_every_frame``)
  labelled    bool    [b, 2]            (all True with ``labels_on_every_frame``)
  delta       int32   [b]               raw frame distance of the pair
  frame_index int32   [b, 2]            source frame indices;  clip_index int32 [b]
  hflip       bool    [b]
  flow        float32 [b, h, w, 2]      only if the source has GT flow: the forward flow
  flow_valid  bool    [b, h, w]         t-1 -> t when delta == 1, else zeros / all False

Clip batches (``make_clip_iterator``) hold frames [b, L, h, w, 3], panoptic [b, L, h, w],
labelled [b, L], flow [b, L-1, h, w, 2] and flow_valid [b, L-1, h, w] (if present),
clip_index [b], start [b], hflip [b].

Crops larger than a frame pad it at the bottom/right (frames 0, labels -1, flow invalid).
A flip mirrors frames, labels, flow and flow_valid and negates the flow's x component.
"""

from __future__ import annotations

import collections
import dataclasses
import multiprocessing
from typing import Any, Iterator, Sequence

import grain
import numpy as np

from hybrid_jax import errors
from hybrid_jax.data import categories as categories_lib

VOID = categories_lib.VOID
_FOREVER_STEPS = 1 << 31  # "infinite" runs; grain datasets need a length.


# ---------------------------------------------------------------------------------------------
# Augmentation shared by pairs and clips.

def crop_and_flip(arrays: dict[str, np.ndarray], *, y0: int, x0: int, crop_hw: tuple[int, int],
                  flip: bool) -> dict[str, np.ndarray]:
  """Crops (padding where needed) and optionally mirrors time-stacked arrays consistently.

  Args:
    arrays: any of frames [N, H, W, 3], panoptic [N, H, W], flow [M, H, W, 2],
      flow_valid [M, H, W] (same H, W).
    y0, x0: top-left corner of the crop in the source frame.
    crop_hw: output (h, w).
    flip: mirror horizontally after cropping; flow x is negated.
  """
  h, w = crop_hw
  fills = {'frames': 0, 'panoptic': VOID, 'flow': 0, 'flow_valid': False}
  out = {}
  for key, arr in arrays.items():
    src = arr[:, y0:y0 + h, x0:x0 + w]
    if src.shape[1:3] != (h, w):
      padded = np.full(src.shape[:1] + (h, w) + src.shape[3:], fills[key], arr.dtype)
      padded[:, :src.shape[1], :src.shape[2]] = src
      src = padded
    if flip:
      src = src[:, :, ::-1]
      if key == 'flow':
        src = src * np.asarray([-1.0, 1.0], src.dtype)
    out[key] = np.ascontiguousarray(src)
  return out


def _crop_offsets(rng: np.random.Generator, hw, crop_hw) -> tuple[int, int]:
  return (int(rng.integers(0, max(hw[0] - crop_hw[0], 0) + 1)),
          int(rng.integers(0, max(hw[1] - crop_hw[1], 0) + 1)))


# ---------------------------------------------------------------------------------------------
# Samplers: element index -> example (pure functions of (seed, element)).

@dataclasses.dataclass
class _Anchors:
  """A list of (clip, position) anchors with one seeded permutation per epoch."""
  anchors: np.ndarray  # int64 [N, 2]
  seed: int

  def __post_init__(self):
    self._cache: dict[int, np.ndarray] = {}

  def __getstate__(self):  # the cache is not worth pickling into workers
    state = dict(self.__dict__)
    state['_cache'] = {}
    return state

  def get(self, e: int) -> tuple[int, int]:
    epoch, pos = divmod(e, len(self.anchors))
    perm = self._cache.get(epoch)
    if perm is None:
      perm = np.random.default_rng((self.seed, 0, epoch)).permutation(len(self.anchors))
      self._cache = {epoch: perm}
    i, k = self.anchors[perm[pos]]
    return int(i), int(k)


class _PairSampler:
  """Element e -> one pair example (see module docstring)."""

  def __init__(self, source, eligible, *, max_delta, crop_hw, hflip, seed, has_flow,
               labels_on_every_frame=False):
    self.source, self.eligible = source, eligible
    self.max_delta, self.crop_hw, self.hflip, self.seed = max_delta, crop_hw, hflip, seed
    self.has_flow, self.labels_on_every_frame = has_flow, labels_on_every_frame
    anchors = [(i, k) for i, pos in enumerate(eligible) for k in range(max_delta, len(pos))]
    self.anchors = _Anchors(np.asarray(anchors, np.int64).reshape(-1, 2), seed)

  def __call__(self, e: int) -> dict[str, np.ndarray]:
    i, k = self.anchors.get(e)
    rng = np.random.default_rng((self.seed, 1, e))
    step = int(rng.integers(1, self.max_delta + 1))
    t0, t1 = int(self.eligible[i][k - step]), int(self.eligible[i][k])
    clip = self.source[i]
    frames = np.asarray(clip['frames'])
    labelled = np.asarray(clip['labelled'], bool)[[t0, t1]] | self.labels_on_every_frame
    pan = np.asarray(clip['panoptic'], np.int32)[[t0, t1]]
    pan = np.where(labelled[:, None, None], pan, VOID).astype(np.int32)
    arrays = {'frames': frames[[t0, t1]], 'panoptic': pan}
    hw = frames.shape[1:3]
    if self.has_flow:
      if t1 - t0 == 1:
        flow = np.asarray(clip['flow'], np.float32)[t0:t1]
        valid = np.asarray(clip.get('flow_valid', np.ones(flow.shape[:-1], bool)), bool)[t0:t1]
      else:
        flow = np.zeros((1,) + hw + (2,), np.float32)
        valid = np.zeros((1,) + hw, bool)
      arrays.update(flow=flow, flow_valid=valid)
    y0, x0 = _crop_offsets(rng, hw, self.crop_hw)
    flip = bool(self.hflip and rng.random() < 0.5)
    out = crop_and_flip(arrays, y0=y0, x0=x0, crop_hw=self.crop_hw, flip=flip)
    if self.has_flow:
      out['flow'], out['flow_valid'] = out['flow'][0], out['flow_valid'][0]
    out.update(labelled=labelled, delta=np.int32(t1 - t0),
               frame_index=np.asarray([t0, t1], np.int32), clip_index=np.int32(i),
               hflip=np.bool_(flip))
    return out


class _ClipSampler:
  """Element e -> one clip window of `length` frames."""

  def __init__(self, source, lengths, *, length, crop_hw, hflip, seed, has_flow,
               labels_on_every_frame=False):
    self.source, self.length, self.crop_hw, self.hflip, self.seed = (
        source, length, crop_hw, hflip, seed)
    self.has_flow, self.labels_on_every_frame = has_flow, labels_on_every_frame
    anchors = [(i, s) for i, n in enumerate(lengths) for s in range(n - length + 1)]
    self.anchors = _Anchors(np.asarray(anchors, np.int64).reshape(-1, 2), seed)

  def __call__(self, e: int) -> dict[str, np.ndarray]:
    i, s = self.anchors.get(e)
    rng = np.random.default_rng((self.seed, 1, e))
    clip = self.source[i]
    sl = slice(s, s + self.length)
    frames = np.asarray(clip['frames'])[sl]
    labelled = np.asarray(clip['labelled'], bool)[sl] | self.labels_on_every_frame
    pan = np.where(labelled[:, None, None], np.asarray(clip['panoptic'], np.int32)[sl], VOID)
    arrays = {'frames': frames, 'panoptic': pan.astype(np.int32)}
    if self.has_flow:
      fsl = slice(s, s + self.length - 1)
      flow = np.asarray(clip['flow'], np.float32)[fsl]
      arrays['flow'] = flow
      arrays['flow_valid'] = np.asarray(
          clip.get('flow_valid', np.ones(flow.shape[:-1], bool)), bool)[fsl]
    y0, x0 = _crop_offsets(rng, frames.shape[1:3], self.crop_hw)
    flip = bool(self.hflip and rng.random() < 0.5)
    out = crop_and_flip(arrays, y0=y0, x0=x0, crop_hw=self.crop_hw, flip=flip)
    out.update(labelled=labelled, clip_index=np.int32(i), start=np.int32(s),
               hflip=np.bool_(flip))
    return out


class _LocalElements:
  """Random-access view: local element index -> this process's share of the global stream."""

  def __init__(self, sampler, *, global_batch: int, process_index: int, process_count: int,
               num_steps: int):
    self.sampler = sampler
    self.global_batch = global_batch
    self.local_batch = global_batch // process_count
    self.offset = process_index * self.local_batch
    self.num_steps = num_steps

  def __len__(self) -> int:
    return self.num_steps * self.local_batch

  def __getitem__(self, index: int):
    step, j = divmod(int(index), self.local_batch)
    return self.sampler(step * self.global_batch + self.offset + j)


# ---------------------------------------------------------------------------------------------
# Public constructors.

def make_pair_dataset(source: Sequence[dict], *, batch_size: int, crop_hw: tuple[int, int],
                      hflip: bool, max_delta: int, seed: int, process_index: int = 0,
                      process_count: int = 1, require_labels: bool = False,
                      require_flow: bool = False, num_steps: int | None = None,
                      clip_labelled: Sequence[np.ndarray] | None = None,
                      labels_on_every_frame: bool = False) -> grain.MapDataset:
  """A grain MapDataset whose item ``s`` is this process's slice of global pair batch ``s``.

  Args:
    source: random-access clips (data contract).
    batch_size: the global batch size (all processes together).
    crop_hw: (h, w) of the output.
    hflip: randomly mirror half of the examples.
    max_delta: delta ~ U{1..max_delta}, in frames, or with `require_labels` in steps of the
      clip's labelled frames (1 = the previous labelled frame, as VPSNet samples references;
      the returned ``delta`` is still the raw frame distance).
    seed: the run's data seed.
    process_index, process_count: this process's slice of every global batch.
    require_labels: only pairs whose frames are both labelled.
    require_flow: pairs for the flow trainer: needs GT flow in the source and max_delta == 1.
    num_steps: the dataset's length in batches (default: practically infinite).
    clip_labelled: the clips' ``labelled`` masks, to avoid reading every clip once here
      (taken from ``source.labelled_masks`` when the source has it).
    labels_on_every_frame: the source's panoptic maps are ground truth on every frame (the
      synthetic data: its ``labelled`` only marks the frames the evaluation uses, as in
      Cityscapes-VPS). No frame's labels are voided and ``labelled`` comes back all True;
      without it, unlabelled frames train on nothing but void.
  """
  _check_common(source, batch_size, crop_hw, process_index, process_count)
  if labels_on_every_frame and require_labels:
    raise errors.ConfigError('require_labels and labels_on_every_frame exclude each other.')
  if clip_labelled is None:
    clip_labelled = getattr(source, 'labelled_masks', None)  # e.g. official_format.SplitSource
  if clip_labelled is None:
    clip_labelled = [np.asarray(source[i]['labelled'], bool) for i in range(len(source))]
  has_flow = 'flow' in source[0]
  if require_flow:
    if not has_flow:
      raise errors.DatasetError('require_flow=True but the clips carry no GT "flow" (only the '
                                'synthetic dataset has it); train flow with a flow dataset.')
    if max_delta != 1:
      raise errors.ConfigError(f'require_flow=True needs max_delta == 1 (GT flow exists between '
                               f'consecutive frames only); got {max_delta}.')
  eligible = [np.nonzero(m)[0] if require_labels else np.arange(len(m)) for m in clip_labelled]
  longest = max(len(e) for e in eligible)
  what = 'labelled frames per clip' if require_labels else 'clip length'
  if not 1 <= max_delta <= longest - 1:
    raise errors.ConfigError(f'max_delta={max_delta} is outside 1..{longest - 1} (longest '
                             f'{what} {longest} minus 1); lower data.max_delta.')
  sampler = _PairSampler(source, eligible, max_delta=max_delta, crop_hw=tuple(crop_hw),
                         hflip=hflip, seed=seed, has_flow=has_flow,
                         labels_on_every_frame=labels_on_every_frame)
  return _batched(sampler, batch_size, process_index, process_count, num_steps)


def make_clip_dataset(source: Sequence[dict], *, batch_size: int, crop_hw: tuple[int, int],
                      hflip: bool, seed: int, clip_length: int | None = None,
                      process_index: int = 0, process_count: int = 1,
                      num_steps: int | None = None,
                      clip_lengths: Sequence[int] | None = None,
                      labels_on_every_frame: bool = False) -> grain.MapDataset:
  """Like `make_pair_dataset` for windows of `clip_length` frames (None: whole clips)."""
  _check_common(source, batch_size, crop_hw, process_index, process_count)
  if clip_lengths is None and getattr(source, 'labelled_masks', None) is not None:
    clip_lengths = [len(m) for m in source.labelled_masks]
  if clip_lengths is None:
    clip_lengths = [len(source[i]['labelled']) for i in range(len(source))]
  if clip_length is None:
    if len(set(clip_lengths)) != 1:
      raise errors.ConfigError(f'Clips have different lengths {sorted(set(clip_lengths))}; '
                               'pass clip_length to batch windows of a fixed length.')
    clip_length = clip_lengths[0]
  if not 1 <= clip_length <= max(clip_lengths):
    raise errors.ConfigError(f'clip_length={clip_length} is outside 1..{max(clip_lengths)} '
                             '(the longest clip).')
  sampler = _ClipSampler(source, clip_lengths, length=clip_length, crop_hw=tuple(crop_hw),
                         hflip=hflip, seed=seed, has_flow='flow' in source[0],
                         labels_on_every_frame=labels_on_every_frame)
  return _batched(sampler, batch_size, process_index, process_count, num_steps)


def make_pair_iterator(source: Sequence[dict], *, start_step: int = 0, worker_count: int = 0,
                       **kwargs: Any) -> Iterator[dict[str, np.ndarray]]:
  """Iterator over pair batches ``start_step, start_step+1, ...``; see `make_pair_dataset`."""
  return _iterate(make_pair_dataset(source, **kwargs), start_step, worker_count)


def make_clip_iterator(source: Sequence[dict], *, start_step: int = 0, worker_count: int = 0,
                       **kwargs: Any) -> Iterator[dict[str, np.ndarray]]:
  """Iterator over clip batches ``start_step, ...``; see `make_clip_dataset`."""
  return _iterate(make_clip_dataset(source, **kwargs), start_step, worker_count)


def _check_common(source, batch_size, crop_hw, process_index, process_count) -> None:
  if len(source) == 0:
    raise errors.DatasetError('The data source is empty; build or point to a dataset first.')
  if batch_size < 1 or process_count < 1 or batch_size % process_count:
    raise errors.ConfigError(f'The global batch size {batch_size} must be a positive multiple '
                             f'of the process count {process_count}.')
  if not 0 <= process_index < process_count:
    raise errors.ConfigError(f'process_index {process_index} is outside 0..{process_count - 1}.')
  if len(crop_hw) != 2 or min(crop_hw) < 1:
    raise errors.ConfigError(f'crop_hw must be two positive sizes, got {crop_hw}.')


def _batched(sampler, batch_size, process_index, process_count, num_steps) -> grain.MapDataset:
  elements = _LocalElements(sampler, global_batch=batch_size, process_index=process_index,
                            process_count=process_count,
                            num_steps=_FOREVER_STEPS if num_steps is None else num_steps)
  return grain.MapDataset.source(elements).batch(batch_size // process_count,
                                                 drop_remainder=True)


def _iterate(dataset: grain.MapDataset, start_step: int, worker_count: int):
  if start_step < 0 or worker_count < 0:
    raise errors.ConfigError(f'start_step ({start_step}) and worker_count ({worker_count}) must '
                             'be >= 0.')
  if worker_count > 0:
    return _worker_batches(dataset, start_step, worker_count)
  return iter(dataset[start_step:].to_iter_dataset())


# ---------------------------------------------------------------------------------------------
# Worker processes.
#
# grain's own `mp_prefetch` (0.2.18) can deadlock when its iterator is dropped while the
# workers still produce: closing joins a prefetch thread that waits for a worker result that
# never comes (seen at the end of every training stage on the Cityscapes-VPS config). Batch s
# is a pure function of s, so a plain process pool computing `dataset[s]` gives the same
# batches; it keeps a bounded window of batches in flight and is terminated, not joined,
# when the iterator is closed or collected.

_WORKER_DATASET = None


def _worker_init(dataset) -> None:
  global _WORKER_DATASET
  _WORKER_DATASET = dataset


def _worker_batch(step: int):
  return _WORKER_DATASET[step]


def _worker_batches(dataset: grain.MapDataset, start_step: int, worker_count: int,
                    in_flight_per_worker: int = 2) -> Iterator[dict[str, np.ndarray]]:
  """Batches start_step, start_step + 1, ... computed by `worker_count` spawned processes."""
  pool = multiprocessing.get_context('spawn').Pool(worker_count, initializer=_worker_init,
                                                   initargs=(dataset,))
  pending = collections.deque()
  steps = iter(range(start_step, len(dataset)))
  try:
    for step in steps:
      pending.append(pool.apply_async(_worker_batch, (step,)))
      if len(pending) >= worker_count * in_flight_per_worker:
        break
    while pending:
      batch = pending.popleft().get()
      step = next(steps, None)
      if step is not None:
        pending.append(pool.apply_async(_worker_batch, (step,)))
      yield batch
  finally:
    pool.terminate()
