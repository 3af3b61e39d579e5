"""Cityscapes-VPS: layout check, TFDS builder ``cityscapes_vps`` and clip source.

Reads the layout of VPSNet's ``data/cityscapes_vps/`` (reference §1.2–1.4) from
``config.data.root`` (the "manual directory") through `official_format.open_split`, maps the
GT JSON's categories onto our CITYSCAPES_VPS table by name, and stores clips as described in
`real`.

Splits (the VPS paper's; the test split has no public labels and is not offered):

- ``val``: 50 videos. A clip is one video: ``val/img_all`` sorted by name and cut into chunks
  of ``data.clip_length`` (30) frames, which is the official inference protocol; its 6
  labelled frames sit at indices 4, 9, 14, 19, 24, 29 (``data.label_every`` = 5).
- ``train``: 400 videos. The release copies only the 6 labelled frames of a train video into
  ``train/img`` (no ``train/img_all``), so a train clip is those 6 frames, all labelled, in
  time order; consecutive clip frames are 5 raw frames apart (frame_ids carry the real frame
  numbers). This matches VPSNet, which pairs a labelled frame with the previous/next labelled
  one. If a ``train/img_all`` folder is present (all frames fetched), train clips are built
  like val clips instead.

Frames are stored at ``data.height`` x ``data.width``: the original PNG bytes when that is the
native 1024x2048, else resized (bilinear frames, nearest labels) PNGs.
"""

from __future__ import annotations

import functools
import os
import re

import numpy as np

from hybrid_jax import errors
from hybrid_jax.data import categories as categories_lib
from hybrid_jax.data import official_format
from hybrid_jax.data import panoptic_png
from hybrid_jax.data import raw_layout
from hybrid_jax.data import real

NAME = 'cityscapes_vps'
SPLITS = ('train', 'val')
NATIVE_HW = (1024, 2048)
_IMG_ALL_NAME = re.compile(r'^[A-Za-z]+_\d{6}_\d{6}_leftImg8bit\.png$')

LAYOUT_TREE = """\
  ROOT/                                  (config.data.root)
    val/
      img/           VVVV_NNNN_<city>_<seq>_<frame>_{newImg8bit,leftImg8bit}.png  (6 per video)
      img_all/       <city>_<seq>_<frame>_leftImg8bit.png  (all 30 frames per video)
      panoptic_video/  VVVV_NNNN_..._{final_mask,gtFine_color}.png  (RGB-id GT)
    panoptic_gt_val_city_vps.json
    train/           (optional; for training)
      img/  panoptic_video/
    panoptic_gt_train_city_vps.json"""

HOW_TO_OBTAIN = """\
  1. Labels: download the Cityscapes-VPS release linked from the VPS README
     (github.com/mcahny/vps, docs/DATASET.md) and unzip it into ROOT.
  2. Images: from cityscapes-dataset.com download leftImg8bit_sequence (about 325 GB zipped;
     only its val/ part is needed, for every split) and copy the frames with the VPS script
     prepare_data/fetch_city_images.py (fills train/img, val/img and val/img_all).
  3. Generate the panoptic GT: prepare_data/merge_datasets.sh, then
     prepare_data/create_panoptic_labels.sh ROOT, which writes train|val/panoptic_video/ and
     panoptic_gt_train|val_city_vps.json (the val JSON is not in the zip; it is generated)."""


def _tree(root: str) -> str:
  return raw_layout.layout_tree(LAYOUT_TREE, root)


def missing_root_message(root: str) -> str:
  return raw_layout.missing_root_message('Cityscapes-VPS', root, tree=LAYOUT_TREE,
                                         how_to_obtain=HOW_TO_OBTAIN, example_root='/path/to/cityscapes_vps',
                                         export_layout=None)


def split_paths(root: str, split: str) -> list[str]:
  """The paths a split needs, in the order `check_layout` checks them."""
  d = os.path.join(root, split)
  paths = [root, d, os.path.join(d, 'img')]
  if split == 'val':
    paths.append(os.path.join(d, 'img_all'))
  paths += [os.path.join(d, 'panoptic_video'),
            official_format.json_paths(root, split)['gt']]
  return paths


def _hint(root: str) -> str:
  """Says when ROOT looks one level off (an unexpected path where the layout starts)."""
  if os.path.isdir(os.path.join(root, 'cityscapes_vps')):
    return (f' Found unexpected {os.path.join(root, "cityscapes_vps")}: set '
            'config.data.root to that folder.')
  for sub in ('img', 'img_all', 'panoptic_video'):
    if os.path.isdir(os.path.join(root, sub)):
      return (f' Found unexpected {os.path.join(root, sub)}: ROOT looks like a split folder; '
              'set config.data.root to its parent.')
  return ''


def check_layout(root: str, split: str) -> None:
  """Raises DatasetError naming the first missing (or unexpected) path of `split`."""
  if split not in SPLITS:
    raise errors.ConfigError(f'Cityscapes-VPS has splits {SPLITS}; got {split!r}.')
  if not root or not os.path.isdir(root):
    raise errors.DatasetError(missing_root_message(root))
  for p in split_paths(root, split):
    if not os.path.exists(p):
      raise errors.DatasetError(
          f'Cityscapes-VPS layout under {root}: missing {p}.{_hint(root)}\n'
          f'Expected layout:\n{_tree(root)}\nHow to obtain it:\n{HOW_TO_OBTAIN}')
  all_dir = os.path.join(root, split, 'img_all')
  if os.path.isdir(all_dir):
    for n in sorted(os.listdir(all_dir)):
      if not _IMG_ALL_NAME.match(n):
        raise errors.DatasetError(f'Unexpected {os.path.join(all_dir, n)}: img_all holds only '
                                  '<city>_<seq:6>_<frame:6>_leftImg8bit.png frames.')


def split_present(root: str, split: str) -> bool:
  return bool(root) and (os.path.isdir(os.path.join(root, split)) or
                         os.path.exists(official_format.json_paths(root, split)['gt']))


# ---------------------------------------------------------------------------------------------
# Raw clips.

def raw_clips(data_cfg, split: str) -> list[raw_layout.RawClip]:
  """Indexes `split` of the layout under data_cfg.root (JSON + listings, no decoding)."""
  root = data_cfg.root
  check_layout(root, split)
  table = categories_lib.get_categories(data_cfg.categories)
  has_all = os.path.isdir(os.path.join(root, split, 'img_all'))
  src = official_format.open_split(
      root, split, frames_per_video=int(data_cfg.clip_length) if has_all else None)
  gt_json = official_format.json_paths(root, split)['gt']
  lut = raw_layout.category_lut([c.to_json() for c in src.categories], table, where=gt_json)
  # open_split indexes the split; its per-clip file lists are what we need without decoding.
  vids = [v for v, _, _ in src._videos]  # pylint: disable=protected-access
  if has_all and (len(set(vids)) != len(vids) or any(v.startswith('x') for v in vids)):
    raise errors.DatasetError(
        f'{os.path.join(root, split, "img_all")}: cutting the sorted frames into clips of '
        f'config.data.clip_length={data_cfg.clip_length} gives clips without labelled frames '
        'or videos split over several clips; set data.clip_length to the videos\' length '
        '(30 for Cityscapes-VPS).')
  clips = []
  for vid, paths, fids in src._videos:  # pylint: disable=protected-access
    image_ids = [src._label_of_frame.get(f, '') for f in fids]  # pylint: disable=protected-access
    clips.append(raw_layout.RawClip(
        video_id=vid, frame_paths=list(paths), frame_ids=list(fids),
        labelled=np.asarray([bool(i) for i in image_ids]), image_ids=image_ids,
        load_labels=functools.partial(_load_labels, src, image_ids, lut, gt_json)))
  return clips


def _load_labels(src, image_ids, lut, gt_json) -> np.ndarray:
  """int32 [L, H, W] labels of a clip's labelled frames, tracks numbered across the clip."""
  tracks: dict[int, int] = {}
  out = []
  for iid in image_ids:
    if not iid:
      continue
    ann = src._anns[iid]  # pylint: disable=protected-access
    png = os.path.join(src._gt_dir, str(ann.get('file_name')))  # pylint: disable=protected-access
    where = f'{png} ({gt_json})'
    lab = official_format.segments_to_panoptic(
        panoptic_png.read_id_png(png), ann.get('segments_info', []), src.categories,
        track_of_segment=tracks, where=where)
    out.append(raw_layout.remap_labels(lab, lut, where=where))
  return np.stack(out)


# ---------------------------------------------------------------------------------------------
# The dataset registry's entries (the TFDS builder and the reading are `real`'s).

DATASET = real.RealDataset(
    name=NAME, title='Cityscapes-VPS',
    description='Cityscapes-VPS clips (VPSNet layout) in the hybrid_jax data contract.',
    homepage='https://github.com/mcahny/vps', splits=SPLITS, check_layout=check_layout,
    split_present=split_present, raw_clips=raw_clips, missing_root_message=missing_root_message)
prepare = DATASET.prepare
source = DATASET.source
