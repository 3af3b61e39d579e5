"""KITTI-STEP: layout check, TFDS builder ``kitti_step``, clip source and a layout writer.

The layout deeplab2 documents (``g3doc/setup/kitti_step.md``, ``data/build_step_data.py``)::

  ROOT/images/<split>/<sequence:04d>/<frame:06d>.png          frames (about 375x1242)
  ROOT/panoptic_maps/<split>/<sequence:04d>/<frame:06d>.png   GT, RGB-encoded:
      R = semantic id (Cityscapes train id 0..18, 255 = void)
      G = instance id // 256,  B = instance id % 256

Splits: ``train`` (12 sequences, 5027 frames) and ``val`` (9 sequences 0002, 0006, 0007,
0008, 0010, 0013, 0014, 0016, 0018; 2981 frames); KITTI's ``testing`` sequences (``test``,
no labels) are not read. Every frame of train and val is labelled.

Labels become ``semantic * 1000 + instance`` (deeplab2's panoptic id with label divisor 1000),
-1 for void. Only person (11) and car (13) carry instance ids (track ids, consistent over the
sequence); a person or car pixel with instance 0 is a crowd region (deeplab2: "thing class
with iscrowd"), kept as ``class * 1000`` so that STQ ignores it as deeplab2 does. Other classes
keep instance 0 (an instance id on them is dropped: they are stuff in STEP).

Clips: a val clip is a whole sequence, because STQ is computed per sequence; train sequences
are cut into consecutive windows of ``data.clip_length`` frames (window k of sequence S is
video ``S-k``; 0 keeps whole sequences), so that the tracker's held-out fusion clips and the
pair sampler see many clips.
"""

from __future__ import annotations

import functools
import os
import re
from typing import Sequence

import numpy as np
from PIL import Image

from hybrid_jax import errors
from hybrid_jax.data import categories as categories_lib
from hybrid_jax.data import raw_layout
from hybrid_jax.data import real

NAME = 'kitti_step'
SPLITS = ('train', 'val')
NATIVE_HW = (375, 1242)
VOID_SEMANTIC = 255
ENCODED_DIVISOR = 256  # G * 256 + B
_SEQUENCE = re.compile(r'^\d{4}$')
_FRAME = re.compile(r'^(?P<frame>\d{6})\.png$')

LAYOUT_TREE = """\
  ROOT/                                        (config.data.root)
    images/
      train/<sequence:04d>/<frame:06d>.png     (KITTI tracking image_02, 12 sequences)
      val/<sequence:04d>/<frame:06d>.png       (sequences 0002 0006 0007 0008 0010 0013
                                                0014 0016 0018)
    panoptic_maps/
      train/<sequence>/<frame>.png             (R = semantic id, 255 void;
      val/<sequence>/<frame>.png                G * 256 + B = instance id)"""

HOW_TO_OBTAIN = """\
  Frames: the KITTI tracking benchmark's left colour images (image_02) from
  cvlibs.net/datasets/kitti; move the nine val sequences into images/val and the others into
  images/train. Labels: storage.googleapis.com/gresearch/tf-deeplab/data/kitti-step.tar.gz,
  whose panoptic_maps folder goes to ROOT/panoptic_maps (deeplab2 g3doc/setup/kitti_step.md)."""


def _tree(root: str) -> str:
  return raw_layout.layout_tree(LAYOUT_TREE, root)


def missing_root_message(root: str) -> str:
  return raw_layout.missing_root_message('KITTI-STEP', root, tree=LAYOUT_TREE,
                                         how_to_obtain=HOW_TO_OBTAIN, example_root='/path/to/kitti_step',
                                         export_layout='kitti_step')


def split_paths(root: str, split: str) -> list[str]:
  return [root, os.path.join(root, 'images', split), os.path.join(root, 'panoptic_maps', split)]


def _hint(root: str) -> str:
  base = os.path.basename(os.path.normpath(root))
  if base in ('images', 'panoptic_maps'):
    return f' ROOT looks like its {base}/ folder; set config.data.root to its parent.'
  if os.path.isdir(os.path.join(root, 'kitti_step')):
    return f' Found {os.path.join(root, "kitti_step")}: set config.data.root to that folder.'
  return ''


def check_layout(root: str, split: str) -> None:
  """Raises DatasetError naming the first missing or unexpected path of `split`."""
  if split not in SPLITS:
    raise errors.ConfigError(f'KITTI-STEP has splits {SPLITS}; got {split!r}.')
  if not root or not os.path.isdir(root):
    raise errors.DatasetError(missing_root_message(root))
  for p in split_paths(root, split):
    if not os.path.isdir(p):
      raise errors.DatasetError(f'KITTI-STEP layout under {root}: missing {p}.{_hint(root)}\n'
                                f'Expected layout:\n{_tree(root)}\nHow to obtain it:\n'
                                f'{HOW_TO_OBTAIN}')
  img_dir, pan_dir = split_paths(root, split)[1:]
  sequences = sorted(os.listdir(img_dir))
  if not sequences:
    raise errors.DatasetError(f'{img_dir} holds no sequence folder.\nExpected layout:\n'
                              f'{_tree(root)}')
  for seq in sequences:
    if not _SEQUENCE.match(seq) or not os.path.isdir(os.path.join(img_dir, seq)):
      raise errors.DatasetError(f'Unexpected {os.path.join(img_dir, seq)}: images/{split} holds '
                                'only sequence folders named with 4 digits (0000, 0001, ...).')
    if not os.path.isdir(os.path.join(pan_dir, seq)):
      raise errors.DatasetError(f'Missing {os.path.join(pan_dir, seq)}: sequence {seq} has frames '
                                'but no panoptic maps.')
    for n in os.listdir(os.path.join(img_dir, seq)):
      if not _FRAME.match(n):
        raise errors.DatasetError(f'Unexpected {os.path.join(img_dir, seq, n)}: frames are '
                                  'named <frame:06d>.png.')


def split_present(root: str, split: str) -> bool:
  return bool(root) and os.path.isdir(os.path.join(root, 'images', split))


# ---------------------------------------------------------------------------------------------
# Raw clips and their labels.

def decode_panoptic_map(rgb: np.ndarray, table, *, where: str) -> np.ndarray:
  """A KITTI-STEP GT PNG as uint8 [H, W, 3] -> int32 [H, W] labels of the data contract.

  semantic 255 -> -1 (void); classes without instances (stuff in `table`) keep instance 0;
  a thing pixel with instance 0 stays ``class * 1000`` (crowd). FormatError for a semantic id
  outside `table` or an instance id >= 1000 (deeplab2's label divisor).
  """
  rgb = np.asarray(rgb)
  if rgb.ndim != 3 or rgb.shape[-1] < 3:
    raise errors.FormatError(f'{where}: expected an RGB panoptic map, got shape {rgb.shape}.')
  sem = rgb[..., 0].astype(np.int64)
  inst = rgb[..., 1].astype(np.int64) * ENCODED_DIVISOR + rgb[..., 2].astype(np.int64)
  void = sem == VOID_SEMANTIC
  known = np.zeros(max(c.id for c in table) + 1, bool)
  things = np.zeros_like(known)
  for c in table:
    known[c.id] = True
    things[c.id] = c.isthing
  bad = np.unique(sem[~void & ((sem >= known.size) | ~known[np.minimum(sem, known.size - 1)])])
  if bad.size:
    raise errors.FormatError(f'{where}: semantic id {int(bad[0])} is not a KITTI-STEP class '
                             f'(0..{known.size - 1}, {VOID_SEMANTIC} = void).')
  safe = np.where(void, 0, sem)
  inst = np.where(things[safe], inst, 0)
  if inst.max(initial=0) >= categories_lib.LABEL_DIVISOR:
    raise errors.FormatError(f'{where}: instance id {int(inst.max())} >= '
                             f'{categories_lib.LABEL_DIVISOR}, the label divisor.')
  return np.where(void, categories_lib.VOID, safe * categories_lib.LABEL_DIVISOR + inst
                  ).astype(np.int32)


def _read_rgb(path: str) -> np.ndarray:
  with Image.open(path) as im:
    return np.asarray(im.convert('RGB'))


def raw_clips(data_cfg, split: str) -> list[raw_layout.RawClip]:
  """Indexes `split` under data_cfg.root (listing only, no decoding); see module doc."""
  root = data_cfg.root
  check_layout(root, split)
  table = categories_lib.get_categories(data_cfg.categories)
  img_dir, pan_dir = split_paths(root, split)[1:]
  decode = functools.partial(decode_panoptic_map, table=table)
  load = functools.partial(raw_layout.load_label_files, read=_read_rgb, decode=decode)
  window = 0 if split == 'val' else int(data_cfg.clip_length)
  clips = []
  for seq in sorted(os.listdir(img_dir)):
    names = sorted(n for n in os.listdir(os.path.join(img_dir, seq)))
    if not names:
      raise errors.DatasetError(f'{os.path.join(img_dir, seq)} holds no frame.')
    clips += raw_layout.video_clips(
        seq, [os.path.join(img_dir, seq, n) for n in names],
        [os.path.join(pan_dir, seq, n) for n in names],
        [f'{seq}_{n[:-4]}' for n in names], window=window, load_labels=load)
  return clips


# ---------------------------------------------------------------------------------------------
# A writer for the layout (test fixtures, `mode=export --config.export.layout=kitti_step`).

def encode_panoptic_map(labels: np.ndarray, to_kitti: dict[int, int]) -> np.ndarray:
  """int [H, W] labels (our category ids) -> the RGB encoding (R semantic, G/B instance)."""
  lab = np.asarray(labels, np.int64)
  void = lab < 0
  cat = np.where(void, 0, lab // categories_lib.LABEL_DIVISOR)
  lut = np.full(max(to_kitti, default=0) + 1, -1, np.int64)
  for ours, theirs in to_kitti.items():
    lut[ours] = theirs
  sem = np.where(void, VOID_SEMANTIC, lut[np.minimum(cat, lut.size - 1)])
  if (sem < 0).any():
    raise errors.FormatError('Labels hold a category with no KITTI-STEP counterpart.')
  inst = np.where(void, 0, lab % categories_lib.LABEL_DIVISOR)
  return np.stack([sem, inst // ENCODED_DIVISOR, inst % ENCODED_DIVISOR], -1).astype(np.uint8)


def write_layout(clips: Sequence[dict], root: str, split: str, categories, *,
                 label_every_frame: bool = False) -> list[str]:
  """Writes clips (data contract) in the KITTI-STEP layout under `root`; returns the sequence
  names.

  Clip k becomes sequence ``k:04d`` (in the given order), frame t ``t:06d.png``; labelled
  frames (every frame with `label_every_frame`, for data such as the synthetic clips whose
  labels cover every frame) get a panoptic map. Category ids are mapped onto KITTI-STEP's by name (a category
  without a KITTI-STEP class of the same name and thing/stuff kind is a ConfigError).
  """
  table = categories_lib.as_table(categories)
  to_kitti = raw_layout.category_lut([c.to_json() for c in table], categories_lib.KITTI_STEP,
                               where='the KITTI-STEP export')
  names = []
  for k, clip in enumerate(clips):
    seq = f'{k:04d}'
    names.append(seq)
    for sub in ('images', 'panoptic_maps'):
      os.makedirs(os.path.join(root, sub, split, seq), exist_ok=True)
    for t, frame in enumerate(np.asarray(clip['frames'])):
      Image.fromarray(frame).save(os.path.join(root, 'images', split, seq, f'{t:06d}.png'))
      if label_every_frame or clip['labelled'][t]:
        rgb = encode_panoptic_map(clip['panoptic'][t], to_kitti)
        Image.fromarray(rgb).save(os.path.join(root, 'panoptic_maps', split, seq,
                                               f'{t:06d}.png'))
  return names


# ---------------------------------------------------------------------------------------------
# The dataset registry's entries (the TFDS builder and the reading are `real`'s).

DATASET = real.RealDataset(
    name=NAME, title='KITTI-STEP',
    description='KITTI-STEP sequences in the hybrid_jax data contract.',
    homepage='https://github.com/google-research/deeplab2/blob/main/g3doc/setup/kitti_step.md',
    splits=SPLITS, check_layout=check_layout, split_present=split_present,
    raw_clips=raw_clips, missing_root_message=missing_root_message)
prepare = DATASET.prepare
source = DATASET.source
