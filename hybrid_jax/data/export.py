"""`mode=export`: write split(s) of the configured dataset in an on-disk layout.

``config.export.layout`` picks the layout (`LAYOUTS`): the Cityscapes-VPS one (what the
evaluator and the official VPS tools read; the val tracking exports its ground truth so), or a
benchmark's own, KITTI-STEP's or VIPSeg's, which `kitti_step` / `vipseg` read back. The last
two let the built-in synthetic data run through those builders, configs and evaluations
without downloads::

  python -m hybrid_jax.main --config configs/synthetic.py --config.mode=export \\
      --config.export.layout=kitti_step --config.export.splits=train,val --workdir W
  python -m hybrid_jax.main --config configs/kitti_step.py:small \\
      --config.data.root=W/export/kitti_step --workdir W2
"""

from __future__ import annotations

import os

from hybrid_jax import errors
from hybrid_jax.data import categories as categories_lib
from hybrid_jax.data import datasets
from hybrid_jax.data import kitti_step
from hybrid_jax.data import official_format
from hybrid_jax.data import vipseg

LAYOUTS = ('cityscapes_vps', 'kitti_step', 'vipseg')


def export_split(config, workdir: str, data_dir: str, *, split: str = 'val',
                 out_root: str | None = None) -> str:
  """Writes `split` under <workdir>/export/<split>/ (img_all, img, panoptic_video, jsons)."""
  source = datasets.get_source(config, split, data_dir)
  out_root = out_root or os.path.join(workdir, 'export')
  table = categories_lib.get_categories(config.data.categories)
  official_format.write_split((source[i] for i in range(len(source))), out_root, split, table)
  print(f'Wrote the {split} split ({len(source)} clips) in the Cityscapes-VPS layout under '
        f'{os.path.join(out_root, split)}')
  return out_root


def parse_splits(text: str) -> list[str]:
  splits = [s.strip() for s in str(text).split(',') if s.strip()]
  if not splits or any(s not in ('train', 'val') for s in splits) or len(set(splits)) != len(
      splits):
    raise errors.ConfigError(f"config.export.splits={text!r}: a comma-separated list of 'train' "
                             "and 'val', e.g. 'val' or 'train,val'.")
  return splits


def export(config, workdir: str, data_dir: str) -> str:
  """mode=export: every split of config.export.splits in config.export.layout; returns the
  root written (``<workdir>/export`` for Cityscapes-VPS, ``<workdir>/export/<layout>`` else)."""
  layout = config.export.layout
  if layout not in LAYOUTS:
    raise errors.ConfigError(f'config.export.layout={layout!r}: choose one of {list(LAYOUTS)}.')
  splits = parse_splits(config.export.splits)
  if layout == 'cityscapes_vps':
    for split in splits:
      root = export_split(config, workdir, data_dir, split=split)
    return root
  writer = {'kitti_step': kitti_step.write_layout, 'vipseg': vipseg.write_layout}[layout]
  root = os.path.join(workdir, 'export', layout)
  table = categories_lib.get_categories(config.data.categories)
  every_frame = datasets.labels_on_every_frame(config)
  for split in splits:
    source = datasets.get_source(config, split, data_dir)
    names = writer((source[i] for i in range(len(source))), root, split, table,
                   label_every_frame=every_frame)
    print(f'Wrote the {split} split ({len(names)} clips) in the {layout} layout under {root}')
  return root
