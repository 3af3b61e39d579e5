"""`mode=export`: write a split of the configured dataset in the official Cityscapes-VPS layout."""

from __future__ import annotations

import os

from hybrid_jax.data import categories as categories_lib
from hybrid_jax.data import datasets
from hybrid_jax.data import official_format


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
