"""The official on-disk formats (Cityscapes-VPS and VIPER-VPS), one implementation for data,
tracking and evaluation.

- `names`: image ids, video ids (`video_id_of`), file names, JSON paths, video grouping.
- `segment_ids`: RGB segment ids of the PNGs <-> the data contract's category*1000 + track.
- `gt_split`: the Cityscapes-VPS ground-truth layout (write a split, read it back lazily).
- `predictions`: ``pred.json`` + ``pan_pred/`` (write, read, index another model's output).
- `evaluator_input`: GT frames paired with predictions, cut into videos (what VPQ reads).
- `json_files`: the JSON readers and writer.

The names below are the public API; callers write ``official_format.write_predictions(...)``.
"""

from hybrid_jax.data.official_format.evaluator_input import FrameFiles
from hybrid_jax.data.official_format.evaluator_input import Layout
from hybrid_jax.data.official_format.evaluator_input import load_layout
from hybrid_jax.data.official_format.gt_split import SplitSource
from hybrid_jax.data.official_format.gt_split import layout_video_ids
from hybrid_jax.data.official_format.gt_split import open_split
from hybrid_jax.data.official_format.gt_split import read_split
from hybrid_jax.data.official_format.gt_split import write_split
from hybrid_jax.data.official_format.json_files import read_json
from hybrid_jax.data.official_format.json_files import write_json
from hybrid_jax.data.official_format.names import IMAGE_EXTENSIONS
from hybrid_jax.data.official_format.names import IMG_ALL_SUFFIX
from hybrid_jax.data.official_format.names import LAYOUT_HELP
from hybrid_jax.data.official_format.names import NEW_IMG_SUFFIX
from hybrid_jax.data.official_format.names import find_image
from hybrid_jax.data.official_format.names import frame_name_of
from hybrid_jax.data.official_format.names import group_by_video
from hybrid_jax.data.official_format.names import gt_file_name
from hybrid_jax.data.official_format.names import image_id_from_file_name
from hybrid_jax.data.official_format.names import json_paths
from hybrid_jax.data.official_format.names import video_id_of
from hybrid_jax.data.official_format.predictions import PredictionIndex
from hybrid_jax.data.official_format.predictions import index_predictions
from hybrid_jax.data.official_format.predictions import iter_frames
from hybrid_jax.data.official_format.predictions import read_predictions
from hybrid_jax.data.official_format.predictions import write_predictions
from hybrid_jax.data.official_format.segment_ids import SegmentIdAllocator
from hybrid_jax.data.official_format.segment_ids import canonicalize_tracks
from hybrid_jax.data.official_format.segment_ids import category_json
from hybrid_jax.data.official_format.segment_ids import panoptic_to_segments
from hybrid_jax.data.official_format.segment_ids import segments_to_panoptic
