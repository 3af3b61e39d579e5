"""Category tables: the synthetic dataset's, Cityscapes-VPS's (19) and VIPER-VPS's (23).

A table is a tuple of `Category`; ids are the dataset's own category ids (for Cityscapes-VPS
they equal the train ids 0..18, for VIPER-VPS 0..22, see reference §1.6 and §2). Panoptic labels
in memory are ``category_id * 1000 + instance_id`` (instance 0 for stuff, -1 for void).
"""

from __future__ import annotations

import dataclasses

from hybrid_jax import errors

LABEL_DIVISOR = 1000
VOID = -1


@dataclasses.dataclass(frozen=True)
class Category:
  id: int
  name: str
  isthing: bool
  color: tuple[int, int, int]

  def to_json(self) -> dict:
    return {'id': self.id, 'name': self.name, 'isthing': int(self.isthing),
            'color': list(self.color), 'supercategory': 'thing' if self.isthing else 'stuff'}


def _table(rows) -> tuple[Category, ...]:
  return tuple(Category(i, name, bool(thing), tuple(color)) for i, (name, thing, color) in enumerate(rows))


# The built-in synthetic dataset: six stuff classes, two thing classes (Cityscapes colours).
SYNTHETIC = _table([
    ('sky', 0, (70, 130, 180)),
    ('road', 0, (128, 64, 128)),
    ('sidewalk', 0, (244, 35, 232)),
    ('building', 0, (70, 70, 70)),
    ('vegetation', 0, (107, 142, 35)),
    ('pole', 0, (153, 153, 153)),
    ('car', 1, (0, 0, 142)),
    ('person', 1, (220, 20, 60)),
])

# Cityscapes-VPS (prepare_data/city_default.py of the VPS code; reference §1.6).
CITYSCAPES_VPS = _table([
    ('road', 0, (128, 64, 128)),
    ('sidewalk', 0, (244, 35, 232)),
    ('building', 0, (70, 70, 70)),
    ('wall', 0, (102, 102, 156)),
    ('fence', 0, (190, 153, 153)),
    ('pole', 0, (153, 153, 153)),
    ('traffic light', 0, (250, 170, 30)),
    ('traffic sign', 0, (220, 220, 0)),
    ('vegetation', 0, (107, 142, 35)),
    ('terrain', 0, (152, 251, 152)),
    ('sky', 0, (70, 130, 180)),
    ('person', 1, (220, 20, 60)),
    ('rider', 1, (255, 0, 0)),
    ('car', 1, (0, 0, 142)),
    ('truck', 1, (0, 0, 70)),
    ('bus', 1, (0, 60, 100)),
    ('train', 1, (0, 80, 100)),
    ('motorcycle', 1, (0, 0, 230)),
    ('bicycle', 1, (119, 11, 32)),
])

# VIPER-VPS (reference §2; the id -> name mapping is inferred from the palette there).
VIPER = _table([
    ('sky', 0, (70, 130, 180)),
    ('road', 0, (128, 64, 128)),
    ('sidewalk', 0, (244, 35, 232)),
    ('terrain', 0, (152, 251, 152)),
    ('tree', 0, (87, 182, 35)),
    ('vegetation', 0, (35, 142, 35)),
    ('building', 0, (70, 70, 70)),
    ('infrastructure', 0, (153, 153, 153)),
    ('fence', 0, (190, 153, 153)),
    ('billboard', 0, (150, 20, 20)),
    ('trafficsign', 0, (220, 220, 0)),
    ('mobilebarrier', 0, (180, 180, 100)),
    ('trash', 0, (81, 0, 21)),
    ('trafficlight', 1, (250, 170, 30)),
    ('firehydrant', 1, (173, 153, 153)),
    ('chair', 1, (168, 153, 153)),
    ('trashcan', 1, (81, 0, 81)),
    ('person', 1, (220, 20, 60)),
    ('motorcycle', 1, (0, 0, 230)),
    ('car', 1, (0, 0, 142)),
    ('van', 1, (0, 80, 100)),
    ('bus', 1, (0, 60, 100)),
    ('truck', 1, (0, 0, 70)),
])

TABLES = {
    'synthetic': SYNTHETIC,
    'cityscapes_vps': CITYSCAPES_VPS,
    'viper': VIPER,
}


def get_categories(name: str) -> tuple[Category, ...]:
  """Returns the category table registered under `name`."""
  if name not in TABLES:
    raise errors.ConfigError(
        f'Unknown category table {name!r}; choose one of {sorted(TABLES)}.')
  return TABLES[name]


def thing_ids(table) -> list[int]:
  return [c.id for c in table if c.isthing]


def stuff_ids(table) -> list[int]:
  return [c.id for c in table if not c.isthing]


def from_json(entries) -> tuple[Category, ...]:
  """Builds a table from a COCO-style ``categories`` list (id, name, isthing, color)."""
  out = []
  for e in entries:
    try:
      out.append(Category(int(e['id']), str(e['name']), bool(e['isthing']),
                          tuple(int(v) for v in e.get('color', (0, 0, 0)))))
    except (KeyError, TypeError, ValueError) as exc:
      raise errors.FormatError(f'Malformed category entry {e!r}: {exc}') from exc
  return tuple(out)


def as_table(categories) -> tuple[Category, ...]:
  """A category table from a registered name, a COCO-style ``categories`` list, or a table."""
  if isinstance(categories, str):
    return get_categories(categories)
  cats = tuple(categories)
  if cats and isinstance(cats[0], dict):
    return from_json(cats)
  return cats
