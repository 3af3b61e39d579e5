"""Published rows shown beside ours in ``report.md``: the paper's (Ye et al., arXiv
2203.01217) and other methods' on the benchmarks the paper does not cover.

A paper table maps a method to its VPQ / VPQ_Th / VPQ_St (in %) at k = 0, 5, 10, 15, their mean
('vpq') and the frames per second the paper measured. A benchmark table (KITTI-STEP, VIPSeg)
maps a method to the metrics its source publishes ('vpq' as (all, things, stuff) or a single
number, 'stq' in %) and that source ('source'). A config names one with
``eval.reference_table``; `get_table` looks it up (the tables live in the package, so an
installed wheel shows them too).
"""

from __future__ import annotations

from hybrid_jax import errors


def _row(k0, k5, k10, k15, vpq, fps):
  return {'k0': k0, 'k5': k5, 'k10': k10, 'k15': k15, 'vpq': vpq, 'fps': fps}


# Table I (Cityscapes-VPS val).
PAPER_TABLE_I_VAL = {
    'VPSNet-FuseTrack': _row((64.5, 58.1, 69.1), (57.4, 45.2, 66.4), (54.1, 39.5, 64.7),
                             (52.2, 36.0, 64.0), (57.2, 44.7, 66.6), 1.3),
    'Instance Tracker': _row((65.6, 60.0, 69.7), (55.1, 39.3, 66.6), (51.4, 32.5, 65.1),
                             (49.3, 28.6, 64.3), (55.3, 40.1, 66.4), 5.1),
    'Pixel Tracker': _row((65.6, 60.0, 69.7), (58.8, 48.0, 66.6), (55.4, 42.1, 65.1),
                          (53.2, 38.0, 64.3), (58.2, 47.0, 66.4), 3.8),
    'HybridTracker': _row((65.6, 60.0, 69.7), (58.9, 48.3, 66.6), (55.6, 42.5, 65.1),
                          (53.4, 38.5, 64.3), (58.4, 47.3, 66.4), 3.6),
    'HybridTracker + w/ Temporal': _row((65.6, 60.0, 69.7), (59.0, 48.5, 66.6),
                                        (55.7, 42.8, 65.1), (53.6, 38.9, 64.3),
                                        (58.5, 47.5, 66.4), 3.3),
}
# Table I (Cityscapes-VPS test).
PAPER_TABLE_I_TEST = {
    'VPSNet-FuseTrack': _row((64.2, 59.0, 67.7), (57.9, 46.5, 65.1), (54.8, 41.1, 63.4),
                             (52.6, 36.5, 62.9), (57.4, 45.8, 64.8), 1.3),
    'Instance Tracker': _row((61.7, 56.2, 65.2), (55.0, 43.0, 62.6), (52.2, 38.1, 61.2),
                             (50.3, 34.4, 60.5), (54.8, 42.9, 62.4), 5.1),
    'Pixel Tracker': _row((64.2, 58.9, 67.7), (58.4, 48.0, 65.1), (55.6, 43.3, 63.4),
                          (53.8, 39.7, 62.9), (58.0, 47.5, 64.8), 3.8),
    'HybridTracker': _row((64.3, 58.9, 67.7), (58.6, 48.5, 65.1), (55.8, 43.9, 63.4),
                          (54.1, 40.2, 62.9), (58.2, 47.9, 64.8), 3.6),
    'HybridTracker + w/ Temporal': _row((64.3, 59.0, 67.7), (59.0, 49.2, 65.1),
                                        (56.3, 45.0, 63.4), (54.5, 41.4, 62.9),
                                        (58.5, 48.7, 64.8), 3.3),
}
# Table II (VIPER).
PAPER_TABLE_II = {
    'VPSNet-FuseTrack': _row((49.8, 40.3, 57.7), (51.6, 49.0, 53.8), (47.2, 40.4, 52.8),
                             (45.1, 36.5, 52.3), (48.4, 41.6, 53.2), 1.6),
    'Instance Tracker': _row((55.1, 51.2, 58.0), (45.7, 30.4, 57.5), (43.8, 26.2, 57.3),
                             (41.5, 21.5, 57.0), (46.5, 32.3, 57.5), 5.7),
    'Pixel Tracker': _row((55.1, 51.2, 58.0), (52.2, 45.4, 57.5), (50.9, 42.4, 57.3),
                          (49.5, 39.9, 57.0), (51.9, 44.7, 57.5), 3.8),
    'HybridTracker': _row((55.0, 51.2, 58.0), (52.4, 45.7, 57.5), (51.0, 42.8, 57.3),
                          (49.8, 40.4, 57.0), (52.1, 45.1, 57.5), 3.6),
    'HybridTracker + w/ Temporal': _row((55.0, 51.2, 58.0), (52.6, 46.2, 57.5),
                                        (51.5, 43.9, 57.3), (50.4, 42.0, 57.0),
                                        (52.4, 45.8, 57.5), 3.5),
}

# KITTI-STEP val, STQ in % (the benchmark's metric; no VPQ is published for it as a protocol).
KITTI_STEP_VAL = {
    'Motion-DeepLab (ResNet-50)': {
        'stq': 57.7,
        'source': 'deeplab2, g3doc/projects/motion_deeplab.md (model zoo, trained on KITTI-STEP '
                  'train)'},
    'TubeFormer-DeepLab': {
        'stq': 70.0,
        'source': 'TubeFormer-DeepLab (CVPR 2022), as listed at '
                  'wizwand.com/paper/68fa6eb41e209131cea419e3'},
}
# VIPSeg val, VPQ (mean over its five windows) and VPQ_Th / VPQ_St where published, in %.
VIPSEG_VAL = {
    'DVIS online (Swin-L, 720p)': {
        'vpq': (54.7, 54.8, 54.6),
        'source': 'github.com/zhang-tao-whu/DVIS MODEL_ZOO.md (commit 3013549), VIPSeg table'},
    'DVIS offline (Swin-L, 720p)': {
        'vpq': (57.6, 59.9, 55.5),
        'source': 'github.com/zhang-tao-whu/DVIS MODEL_ZOO.md (commit 3013549), VIPSeg table'},
    'TubeFormer-DeepLab': {
        'vpq': 31.2,
        'source': 'TubeFormer-DeepLab (CVPR 2022), as listed at '
                  'wizwand.com/paper/68fa6eb41e209131cea419e3'},
    'ViP-DeepLab': {
        'vpq': 16.0,
        'source': 'ViP-DeepLab (CVPR 2021) on VIPSeg, as listed at '
                  'wizwand.com/paper/68fa68dd1e209131cea1ec5b'},
}

TABLES = {
    'PAPER_TABLE_I_VAL': ('Table I, Cityscapes-VPS val', PAPER_TABLE_I_VAL),
    'PAPER_TABLE_I_TEST': ('Table I, Cityscapes-VPS test', PAPER_TABLE_I_TEST),
    'PAPER_TABLE_II': ('Table II, VIPER', PAPER_TABLE_II),
    'KITTI_STEP_VAL': ('KITTI-STEP val, published', KITTI_STEP_VAL),
    'VIPSEG_VAL': ('VIPSeg val, published', VIPSEG_VAL),
}


def is_paper_table(rows) -> bool:
  """True for a table in the paper's layout (VPQ at each k), False for a benchmark table."""
  return all('k0' in r for r in rows.values())


def get_table(name: str) -> tuple[str, dict] | None:
  """(caption, rows) of the table `name` ('' = none); ConfigError for an unknown name."""
  if not name:
    return None
  if name not in TABLES:
    raise errors.ConfigError(f'config.eval.reference_table={name!r}: choose one of '
                             f"{sorted(TABLES)} or ''.")
  return TABLES[name]
