"""VIPSeg: layout check, TFDS builder ``vipseg``, clip source and a layout writer.

The layout of the VIPSeg release (github.com/VIPSeg-Dataset/VIPSeg-Dataset, README and its
``change2_720p.py`` / ``create_panoptic_video_labels.py``)::

  ROOT/train.txt, val.txt, test.txt          video names, one per line (2806 / 343 / 387)
  ROOT/imgs/<video>/<frame>.jpg              frames ("images/" in the VIPSeg_720P conversion)
  ROOT/panomasks/<video>/<frame>.png         GT, one integer per pixel:
      0 = void; v in 1..124 = category v - 1 without instance ("stuff");
      v >= 125: category v // 100 - 1, instance v % 100 (e.g. person, id 60: 6100, 6101, ...)

Category ids are those of ``panoVIPSeg_categories.json`` (0..123; the masks store id + 1), the
table ``categories.VIPSEG``. The official COCO conversion gives every distinct mask value of a
video its own segment; so here an instance keeps its number per video (track id = v % 100 + 1,
since id 0 means stuff in the data contract), and a thing-class pixel stored without an
instance number (v < 125) is one more instance of that class (track id 101). Every frame in
``panomasks`` is labelled; the test split has no masks and is not read.

Clips: a val clip is a whole video (VIPSeg's VPQ and STQ are computed per video); with
``data.clip_length`` > 0 train videos are cut into windows of that many frames (video ``V-k``).
Frames are resized to data.height x data.width at prepare time (VIPSeg's videos differ in
size; the VIPSeg_720P conversion keeps each video's aspect ratio at height 720).
"""

from __future__ import annotations

import functools
import os
from typing import Sequence

import numpy as np
from PIL import Image

from hybrid_jax import errors
from hybrid_jax.data import categories as categories_lib
from hybrid_jax.data import raw_layout
from hybrid_jax.data import real

NAME = 'vipseg'
SPLITS = ('train', 'val')
MASK_DIVISOR = 100      # panomasks: (category + 1) * 100 + instance
FIRST_THING_VALUE = 125  # values below are "category + 1" without instance
UNNUMBERED_TRACK = MASK_DIVISOR + 1  # track id of a thing pixel stored without an instance
IMAGE_DIRS = ('imgs', 'images')  # the release, the VIPSeg_720P conversion
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')

LAYOUT_TREE = """\
  ROOT/                                  (config.data.root)
    train.txt  val.txt                   (video names, one per line)
    imgs/<video>/<frame>.jpg             (or images/, as VIPSeg_720P names it)
    panomasks/<video>/<frame>.png        (0 void; category + 1; (category + 1) * 100 + instance)"""

HOW_TO_OBTAIN = """\
  Download VIPSeg from the links in the README of github.com/VIPSeg-Dataset/VIPSeg-Dataset
  (Google Drive or Baidu; non-commercial research use) and unzip it: ROOT is the folder with
  train.txt, imgs/ and panomasks/ (the original release), or VIPSeg_720P/ after the README's
  change2_720p.py."""


def _tree(root: str) -> str:
  return raw_layout.layout_tree(LAYOUT_TREE, root)


def missing_root_message(root: str) -> str:
  return raw_layout.missing_root_message('VIPSeg', root, tree=LAYOUT_TREE,
                                         how_to_obtain=HOW_TO_OBTAIN, example_root='/path/to/VIPSeg',
                                         export_layout='vipseg')


def list_path(root: str, split: str) -> str:
  return os.path.join(root, f'{split}.txt')


def image_dir(root: str) -> str:
  """imgs/ (the release) or images/ (VIPSeg_720P), whichever exists (imgs/ when neither)."""
  for name in IMAGE_DIRS:
    if os.path.isdir(os.path.join(root, name)):
      return os.path.join(root, name)
  return os.path.join(root, IMAGE_DIRS[0])


def _hint(root: str) -> str:
  for sub in ('VIPSeg', 'VIPSeg_720P'):
    if os.path.isdir(os.path.join(root, sub)):
      return f' Found {os.path.join(root, sub)}: set config.data.root to that folder.'
  if os.path.basename(os.path.normpath(root)) in IMAGE_DIRS + ('panomasks',):
    return ' ROOT looks like one of its sub-folders; set config.data.root to its parent.'
  return ''


def read_video_list(root: str, split: str) -> list[str]:
  with open(list_path(root, split)) as f:
    names = [line.strip() for line in f if line.strip()]
  if len(set(names)) != len(names):
    raise errors.DatasetError(f'{list_path(root, split)} names a video twice.')
  return names


def check_layout(root: str, split: str) -> None:
  """Raises DatasetError naming the first missing path of `split`."""
  if split not in SPLITS:
    raise errors.ConfigError(f'VIPSeg has splits {SPLITS}; got {split!r}.')
  if not root or not os.path.isdir(root):
    raise errors.DatasetError(missing_root_message(root))
  for p in (list_path(root, split), image_dir(root), os.path.join(root, 'panomasks')):
    if not os.path.exists(p):
      raise errors.DatasetError(f'VIPSeg layout under {root}: missing {p}.{_hint(root)}\n'
                                f'Expected layout:\n{_tree(root)}\nHow to obtain it:\n'
                                f'{HOW_TO_OBTAIN}')
  videos = read_video_list(root, split)
  if not videos:
    raise errors.DatasetError(f'{list_path(root, split)} lists no video.')
  for v in videos:
    for d in (os.path.join(image_dir(root), v), os.path.join(root, 'panomasks', v)):
      if not os.path.isdir(d):
        raise errors.DatasetError(f'Missing {d}: video {v} is listed in '
                                  f'{list_path(root, split)}.')


def split_present(root: str, split: str) -> bool:
  return bool(root) and os.path.exists(list_path(root, split))


# ---------------------------------------------------------------------------------------------
# Raw clips and their labels.

def decode_mask(values: np.ndarray, table, *, where: str) -> np.ndarray:
  """A VIPSeg panomask (integers, module doc) -> int32 [H, W] labels of the data contract."""
  v = np.asarray(values, np.int64)
  if v.ndim != 2:
    raise errors.FormatError(f'{where}: expected a single-channel mask, got shape {v.shape}.')
  numbered = v >= FIRST_THING_VALUE
  cat = np.where(numbered, v // MASK_DIVISOR, v) - 1  # -1: void
  things = np.zeros(len(table), bool)
  for c in table:
    things[c.id] = c.isthing
  bad = np.unique(cat[(cat >= len(table)) | ((cat < 0) & (v != 0))])
  if bad.size:
    raise errors.FormatError(f'{where}: category {int(bad[0])} (mask value '
                             f'{int(v[cat == bad[0]][0])}) is not a VIPSeg class 0..'
                             f'{len(table) - 1}.')
  safe = np.clip(cat, 0, len(table) - 1)
  track = np.where(numbered, v % MASK_DIVISOR + 1, UNNUMBERED_TRACK)
  track = np.where(things[safe], track, 0)
  return np.where(cat < 0, categories_lib.VOID, safe * categories_lib.LABEL_DIVISOR + track
                  ).astype(np.int32)


def _read_values(path: str) -> np.ndarray:
  with Image.open(path) as im:
    return np.asarray(im)


def raw_clips(data_cfg, split: str) -> list[raw_layout.RawClip]:
  """Indexes `split` under data_cfg.root (listing only, no decoding); see module doc."""
  root = data_cfg.root
  check_layout(root, split)
  table = categories_lib.get_categories(data_cfg.categories)
  decode = functools.partial(decode_mask, table=table)
  load = functools.partial(raw_layout.load_label_files, read=_read_values, decode=decode)
  window = 0 if split == 'val' else int(data_cfg.clip_length)
  clips = []
  for video in sorted(read_video_list(root, split)):
    vdir = os.path.join(image_dir(root), video)
    frames = sorted(n for n in os.listdir(vdir) if n.lower().endswith(IMAGE_EXTENSIONS))
    if not frames:
      raise errors.DatasetError(f'{vdir} holds no frame (.jpg or .png).')
    stems = [os.path.splitext(n)[0] for n in frames]
    clips += raw_layout.video_clips(
        video, [os.path.join(vdir, n) for n in frames],
        [os.path.join(root, 'panomasks', video, s + '.png') for s in stems],
        [f'{video}/{s}' for s in stems], window=window, load_labels=load)
  return clips


# ---------------------------------------------------------------------------------------------
# A writer for the layout (test fixtures, `mode=export --config.export.layout=vipseg`).

# Names of the synthetic / Cityscapes classes that VIPSeg calls otherwise.
VIPSEG_NAMES = {'sidewalk': 'path', 'vegetation': 'tree'}


def encode_mask(labels: np.ndarray, to_vipseg: dict[int, int], tracks: dict) -> np.ndarray:
  """int [H, W] labels (our ids) -> uint16 panomask values; `tracks` numbers each
  (category, track id) of a video 0..99 in order of appearance (shared across its frames)."""
  lab = np.asarray(labels, np.int64)
  out = np.zeros(lab.shape, np.uint16)
  for value in np.unique(lab[lab >= 0]):
    cat, track = divmod(int(value), categories_lib.LABEL_DIVISOR)
    theirs = to_vipseg[cat]
    if track == 0:
      out[lab == value] = theirs + 1
      continue
    key = (theirs, track)
    if key not in tracks:
      tracks[key] = sum(1 for c, _ in tracks if c == theirs)
    if tracks[key] >= MASK_DIVISOR:
      raise errors.FormatError(f'Category {theirs}: more than {MASK_DIVISOR} instances in one '
                               'video do not fit the VIPSeg mask encoding.')
    out[lab == value] = (theirs + 1) * MASK_DIVISOR + tracks[key]
  return out


def write_layout(clips: Sequence[dict], root: str, split: str, categories, *,
                 label_every_frame: bool = False, quality: int = 95) -> list[str]:
  """Writes clips (data contract) in the VIPSeg layout under `root`; returns the video names.

  Clip k is video ``<split>_<k:04d>`` (listed in ``<split>.txt``), frame t ``<t:08d>.jpg``;
  labelled frames (every frame with `label_every_frame`) get a panomask (16-bit PNG). Category
  ids are mapped onto VIPSeg's by name (`VIPSEG_NAMES` for the names VIPSeg spells otherwise).
  """
  table = categories_lib.as_table(categories)
  renamed = [dict(c.to_json(), name=VIPSEG_NAMES.get(c.name, c.name)) for c in table]
  to_vipseg = raw_layout.category_lut(renamed, categories_lib.VIPSEG, where='the VIPSeg export')
  names = []
  for k, clip in enumerate(clips):
    video = f'{split}_{k:04d}'
    names.append(video)
    for sub in ('imgs', 'panomasks'):
      os.makedirs(os.path.join(root, sub, video), exist_ok=True)
    tracks: dict = {}
    for t, frame in enumerate(np.asarray(clip['frames'])):
      Image.fromarray(frame).save(os.path.join(root, 'imgs', video, f'{t:08d}.jpg'),
                                  quality=quality)
      if label_every_frame or clip['labelled'][t]:
        mask = encode_mask(clip['panoptic'][t], to_vipseg, tracks)
        Image.fromarray(mask).save(os.path.join(root, 'panomasks', video, f'{t:08d}.png'))
  with open(list_path(root, split), 'w') as f:
    f.write(''.join(n + '\n' for n in names))
  return names


# ---------------------------------------------------------------------------------------------
# The dataset registry's entries (the TFDS builder and the reading are `real`'s).

DATASET = real.RealDataset(
    name=NAME, title='VIPSeg',
    description='VIPSeg videos in the hybrid_jax data contract.',
    homepage='https://github.com/VIPSeg-Dataset/VIPSeg-Dataset', splits=SPLITS,
    check_layout=check_layout, split_present=split_present, raw_clips=raw_clips,
    missing_root_message=missing_root_message)
prepare = DATASET.prepare
source = DATASET.source
