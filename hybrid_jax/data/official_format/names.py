"""Names in the official layouts: image ids, video ids, file names, JSON paths, video grouping.

Cityscapes-VPS (reference §1.3): a labelled frame is ``VVVV_NNNN_<city>_<seq>_<frame>`` +
``_newImg8bit.png`` (GT ``..._final_mask.png``), every frame ``<city>_<seq>_<frame>`` +
``_leftImg8bit.png``. VIPER-VPS (reference §2): ``<video>_<frame>.jpg`` (GT ``.png``), video
names are numbers ("001"). The image id is the file name without its suffix.

The video of an image id is its first ``_``-separated token: ``0005`` of
``0005_0025_frankfurt_000000_001736`` (the official tools take the first 4 characters, which
is the same token on Cityscapes-VPS), ``001`` of VIPER's ``001_00042``. One rule for both
namings; the first-4-characters reading would merge VIPER videos ``001`` .. ``009`` with the
``_`` and break on video names of another length.
"""

from __future__ import annotations

import os
import re
from typing import Sequence

from hybrid_jax import errors

IMG_ALL_SUFFIX = '_leftImg8bit.png'
NEW_IMG_SUFFIX = '_newImg8bit.png'
CITY_NAME = re.compile(r'^[A-Za-z]+_\d{6}_\d{6}$')
VIDEO_ID = re.compile(r'^\d{4}$')

LAYOUT_HELP = (
    'Expected layout: ROOT/panoptic_gt_SPLIT_city_vps.json, ROOT/SPLIT/img/ (labelled frames '
    'VVVV_NNNN_<city>_<seq>_<frame>_newImg8bit.png), ROOT/SPLIT/panoptic_video/ (RGB-id PNGs '
    '..._final_mask.png) and optionally ROOT/SPLIT/img_all/ (all frames '
    '<city>_<seq>_<frame>_leftImg8bit.png). Write it with hybrid_jax.data.official_format.'
    'write_split or follow reference §1.2.')


def image_id_from_file_name(file_name: str) -> str:
  """'0001_0001_synth_000000_000004_newImg8bit.png' -> '0001_0001_synth_000000_000004'.

  The reference describes the id as the name without its last two ``_`` tokens; that holds for
  GT names (``..._final_mask.png``, ``..._gtFine_color.png``) but an image name has a one-token
  suffix (``..._newImg8bit.png``). We drop the extension and then the trailing non-numeric
  tokens (at most two), which gives the same id for an image and its GT PNG.
  """
  base = os.path.basename(file_name)
  stem = base[:-4] if base.lower().endswith('.png') else base
  parts = stem.split('_')
  for _ in range(2):
    if len(parts) > 1 and not parts[-1].isdigit():
      parts = parts[:-1]
  if len(parts) < 3 or parts == stem.split('_'):
    raise errors.FormatError(f'Cannot derive an image id from file name {file_name!r}: expected '
                             '<...>_<city>_<seq:6>_<frame:6>_<suffix>.png.')
  return '_'.join(parts)


def video_id_of(image_id: str) -> str | None:
  """The video of an image id: its first ``_``-separated token (module docstring); None
  when the id has no ``_``."""
  head, sep, _ = str(image_id).partition('_')
  return head if sep else None


def gt_file_name(image_file_name: str) -> str:
  """Image file name -> GT PNG name, exactly as the evaluators map them.

  Cityscapes-VPS: ``_newImg8bit.png`` -> ``_final_mask.png``, ``_leftImg8bit.png`` ->
  ``_gtFine_color.png``; VIPER: ``.jpg`` -> ``.png``. Folders are dropped.
  """
  name = os.path.basename(image_file_name)
  name = name.replace(NEW_IMG_SUFFIX, '_final_mask.png').replace(IMG_ALL_SUFFIX,
                                                                   '_gtFine_color.png')
  return os.path.splitext(name)[0] + '.png'


def frame_name_of(file_name: str) -> str:
  """'..._<city>_<seq>_<frame>_<suffix>.png' -> '<city>_<seq>_<frame>' (the last 3 id tokens)."""
  return '_'.join(image_id_from_file_name(file_name).split('_')[-3:])

def group_by_video(image_ids: Sequence[str], *, frames_per_video: int | None = None,
                   check_prefix: bool = True, where: str = 'image ids'
                   ) -> list[tuple[str, list[str]]]:
  """Splits sorted image ids into videos: [(video id, [image ids])].

  Args:
    image_ids: ids in the (sorted) order the evaluator uses.
    frames_per_video: None groups runs of equal `video_id_of` (each video's frames must be
      contiguous); an integer cuts the list into consecutive chunks of that many (what the
      official Cityscapes-VPS evaluator does, with 6).
    check_prefix: with chunks, each must hold exactly one video id, different from its
      neighbours'. Without it (or for ids without ``_``) chunks are named ``video_0000``, ...
    where: names the input in error messages.
  Raises:
    FormatError: the ids cannot be grouped as asked (the message names the flag to pass).
  """
  ids = [str(i) for i in image_ids]
  prefixes = [video_id_of(i) for i in ids]
  if frames_per_video is None:
    if any(p is None for p in prefixes):
      bad = ids[prefixes.index(None)]
      raise errors.FormatError(
          f'{where}: image id {bad!r} has no "<video>_" prefix, so frames cannot be grouped '
          'into videos; pass --frames-per-video N.')
    videos: list[tuple[str, list[str]]] = []
    for i, p in zip(ids, prefixes):
      if not videos or videos[-1][0] != p:
        videos.append((p, []))
      videos[-1][1].append(i)
    if len({v for v, _ in videos}) != len(videos):
      raise errors.FormatError(f'{where}: frames of one video are not contiguous in the sorted '
                               'order; pass --frames-per-video N.')
    return videos
  n = len(ids)
  if frames_per_video <= 0 or n % frames_per_video:
    raise errors.FormatError(
        f'{where}: {n} frames cannot be cut into videos of {frames_per_video} frames; pass the '
        'right --frames-per-video.')
  videos = []
  for v in range(n // frames_per_video):
    chunk_ids = ids[v * frames_per_video:(v + 1) * frames_per_video]
    chunk = {video_id_of(i) for i in chunk_ids}
    if check_prefix and None not in chunk:
      if len(chunk) != 1 or (videos and videos[-1][0] in chunk):
        raise errors.FormatError(
            f'{where}: frames {chunk_ids[0]} .. {chunk_ids[-1]} do not form one video of '
            f'{frames_per_video} frames (video ids {sorted(chunk)}). Pass the right '
            '--frames-per-video, or disable the prefix check.')
      videos.append((chunk.pop(), chunk_ids))
    else:
      videos.append((f'video_{v:04d}', chunk_ids))
  return videos


def json_paths(root: str, split: str) -> dict[str, str]:
  return {
      'gt': os.path.join(root, f'panoptic_gt_{split}_city_vps.json'),
      'im': os.path.join(root, f'panoptic_im_{split}_city_vps.json'),
      'all': os.path.join(root, f'im_all_info_{split}_city_vps.json'),
  }


IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg')


def find_image(images_dir: str, image_id: str) -> str:
  """Path of a frame's image: ``<image id>.{png,jpg,jpeg}`` first, then Cityscapes-VPS names.

  Tried in order: ``<id>.png|.jpg|.jpeg``, ``<id>_newImg8bit.png``, ``<id>_leftImg8bit.png``
  (``<split>/img``), ``<city>_<seq>_<frame>_leftImg8bit.png`` (``<split>/img_all``).
  """
  names = [image_id + e for e in IMAGE_EXTENSIONS]
  names += [image_id + NEW_IMG_SUFFIX, image_id + IMG_ALL_SUFFIX]
  parts = image_id.split('_')
  if len(parts) >= 3:
    names.append('_'.join(parts[-3:]) + IMG_ALL_SUFFIX)
  for n in names:
    p = os.path.join(images_dir, n)
    if os.path.isfile(p):
      return p
  raise errors.DatasetError(
      f'No image for frame {image_id} in {images_dir}: tried {", ".join(names)}. Put the frames '
      f'there as <image id>.png (or .jpg) or pass the Cityscapes-VPS img/ folder.')
