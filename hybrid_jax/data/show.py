"""`mode=show`: a GIF and a PNG strip of one clip with its ground truth and flow."""

from __future__ import annotations

import os

from hybrid_jax import errors
from hybrid_jax import visualize
from hybrid_jax.data import categories as categories_lib
from hybrid_jax.data import datasets


def show_clip(config, workdir: str, data_dir: str) -> dict[str, str]:
  """Writes <workdir>/show/<split>_<index>.gif and .png; returns their paths."""
  split, index = config.show.split, config.show.index
  source = datasets.get_source(config, split, data_dir)
  if not 0 <= index < len(source):
    raise errors.ConfigError(
        f'config.show.index={index} is out of range: the {split} split has {len(source)} clips.')
  clip = source[index]
  table = categories_lib.get_categories(config.data.categories)
  rows = visualize.render_clip_preview(clip, table)
  out_dir = os.path.join(workdir, 'show')
  os.makedirs(out_dir, exist_ok=True)
  stem = os.path.join(out_dir, f'{split}_{index:03d}')
  visualize.write_gif(stem + '.gif', rows, fps=6)
  visualize.write_strip(stem + '.png', rows)
  print(f'Wrote {stem}.gif and {stem}.png')
  return {'gif': stem + '.gif', 'png': stem + '.png'}
