"""Colours, overlays, the flow wheel and the GIF/MP4/PNG writers."""

import imageio.v2 as imageio_v2
import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from hybrid_jax import visualize as vis
from hybrid_jax.data import categories as categories_lib

CATS = categories_lib.SYNTHETIC


def test_color_wheel_segments():
  wheel = vis.make_color_wheel()
  assert wheel.shape == (55, 3)
  # Segment starts: red, yellow, green, cyan, blue, magenta (15, 6, 4, 11, 13, 6 long).
  for idx, rgb in [(0, (255, 0, 0)), (15, (255, 255, 0)), (21, (0, 255, 0)),
                   (25, (0, 255, 255)), (36, (0, 0, 255)), (49, (255, 0, 255))]:
    np.testing.assert_array_equal(wheel[idx], rgb)
  np.testing.assert_array_equal(wheel[1], (255, 17, 0))  # floor(255 / 15)


def test_flow_colours_at_known_angles():
  flow = np.array([[[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [0.5, 0.0],
                    [2.0, 0.0], [0.0, 0.0]]])
  rgb = vis.flow_to_rgb(flow, max_norm=1.0)
  assert rgb.dtype == np.uint8 and rgb.shape == (1, 7, 3)
  np.testing.assert_array_equal(rgb[0, 0], (255, 0, 0))      # +x: wheel[0]
  np.testing.assert_array_equal(rgb[0, 1], (0, 209, 255))    # -x: wheel[27] = CB step 2
  # +y: fk = 13.5 between (255, 221, 0) and (255, 238, 0)
  np.testing.assert_array_equal(rgb[0, 2], (255, 229, 0))
  # -y: fk = 40.5 between BM steps 4 and 5: R = (78 + 98) / 2
  np.testing.assert_array_equal(rgb[0, 3], (88, 0, 255))
  np.testing.assert_array_equal(rgb[0, 4], (255, 127, 127))  # half length: halfway to white
  np.testing.assert_array_equal(rgb[0, 5], (191, 0, 0))      # beyond max_norm: x0.75
  np.testing.assert_array_equal(rgb[0, 6], (255, 255, 255))  # zero flow is white
  # Without max_norm the largest vector sets the scale.
  np.testing.assert_array_equal(vis.flow_to_rgb(flow * 3)[0, :5],
                                vis.flow_to_rgb(flow, max_norm=2.0)[0, :5])
  assert (vis.flow_to_rgb(np.array([[[np.nan, 1.0]]]), max_norm=1.0) == 0).all()


def test_panoptic_colours_stable_across_frames():
  pan = np.full((2, 4, 5), 1000, np.int32)
  pan[0, 0, 0] = -1
  pan[0, 1:3, 0:2] = 6003
  pan[1, 2:4, 3:5] = 6003          # the same car, moved
  pan[1, 0, 0:2] = 6004            # a new car
  pan[1, 0, 4] = 7003              # a person with the same track number
  rgb = vis.colorize_panoptic(pan, CATS)
  assert rgb.shape == (2, 4, 5, 3) and rgb.dtype == np.uint8
  np.testing.assert_array_equal(rgb[0, 0, 0], (0, 0, 0))
  np.testing.assert_array_equal(rgb[0, 3, 4], (128, 64, 128))   # road's colour
  car = rgb[0, 1, 0]
  np.testing.assert_array_equal(rgb[1, 3, 4], car)
  np.testing.assert_array_equal(car, vis.track_color(6, 3))
  assert not np.array_equal(rgb[1, 0, 0], car)
  assert not np.array_equal(rgb[1, 0, 4], car)
  # Colour depends only on the label: colouring frame 1 alone gives the same car colour.
  np.testing.assert_array_equal(vis.colorize_panoptic(pan[1], CATS)[3, 4], car)


def test_overlay_blend_void_and_boundaries():
  frames = np.full((3, 4, 3), 100, np.uint8)
  pan = np.zeros((3, 4), np.int32)
  pan[:, 2:] = 1000
  pan[0, 0] = -1
  colors = vis.colorize_panoptic(pan, CATS)
  out = vis.overlay(frames, colors, alpha=0.5, panoptic=pan)
  np.testing.assert_array_equal(out[0, 0], (100, 100, 100))     # void: the frame
  np.testing.assert_array_equal(out[2, 0], (85, 115, 140))      # (100 + (70,130,180)) / 2
  np.testing.assert_array_equal(out[2, 1], (255, 255, 255))     # boundary column
  np.testing.assert_array_equal(out[2, 3], (114, 82, 114))      # (100 + (128,64,128)) / 2
  plain = vis.overlay(frames, colors, alpha=1.0)
  np.testing.assert_array_equal(plain[2, 3], (128, 64, 128))


def test_gif_mp4_and_strip_writers(tmp_path):
  frames = np.zeros((3, 9, 11, 3), np.uint8)
  for t in range(3):
    frames[t, :, :, t] = 200
  vis.write_gif(str(tmp_path / 'a.gif'), frames, fps=4)
  back = iio.imread(tmp_path / 'a.gif')
  assert back.shape[:3] == (3, 9, 11)
  np.testing.assert_array_equal(back[1, 4, 4, :3], (0, 200, 0))
  vis.write_mp4(str(tmp_path / 'a.mp4'), frames, fps=4)
  with imageio_v2.get_reader(str(tmp_path / 'a.mp4')) as reader:
    video = [f for f in reader]
  assert len(video) == 3 and video[0].shape == (10, 12, 3)   # padded to even sizes
  assert abs(int(video[2][4, 4, 2]) - 200) < 20               # lossy, but the blue frame
  img = vis.write_strip(str(tmp_path / 's.png'), [[frames[0], frames[1][:5]], [frames[2]]], gap=2)
  assert img.shape == (9 + 2 + 9, 11 + 2 + 11, 3)
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / 's.png')), img)
  np.testing.assert_array_equal(img[:9, 13:], np.pad(frames[1][:5], ((0, 4), (0, 0), (0, 0))))
  np.testing.assert_array_equal(img[11:, :11], frames[2])
  assert (img[9:11] == 0).all()


def test_mp4_without_ffmpeg_is_a_clear_error(tmp_path, monkeypatch):
  import imageio_ffmpeg

  def missing():
    raise RuntimeError('No ffmpeg exe could be found.')
  monkeypatch.setattr(imageio_ffmpeg, 'get_ffmpeg_exe', missing)
  with pytest.raises(vis.VideoWriterUnavailable, match='a.mp4.*write_gif'):
    vis.write_mp4(str(tmp_path / 'a.mp4'), np.zeros((1, 4, 4, 3), np.uint8))


def test_render_clip_preview():
  t, h, w = 3, 4, 6
  frames = np.random.default_rng(0).integers(0, 256, (t, h, w, 3), dtype=np.uint8)
  pan = np.full((t, h, w), 1000, np.int32)
  pan[1] = -1  # an unlabelled frame of a real dataset: no label anywhere
  flow = np.zeros((t - 1, h, w, 2), np.float32)
  flow[..., 0] = 2.0
  clip = {'frames': frames, 'panoptic': pan, 'labelled': np.array([True, False, True]),
          'flow': flow, 'flow_valid': np.ones((t - 1, h, w), bool)}
  out = vis.render_clip_preview(clip, CATS, gap=1)
  assert len(out) == t and out[0].shape == (h, 3 * w + 2, 3)
  np.testing.assert_array_equal(out[0][:, :w], frames[0])
  np.testing.assert_array_equal(out[1][:, w + 1:2 * w + 1], frames[1])    # unlabelled: bare frame
  np.testing.assert_array_equal(out[0][:, w + 1:2 * w + 1],
                                vis.overlay(frames[0], vis.colorize_panoptic(pan[0], CATS),
                                            0.5, panoptic=pan[0]))
  np.testing.assert_array_equal(out[0][0, 2 * w + 2], (255, 0, 0))     # +x at full scale
  assert (out[2][:, 2 * w + 2:] == 0).all()                            # no flow after the end


def test_strip_accepts_one_image_per_row():
  a = np.full((2, 3, 3), 9, np.uint8)
  b = np.full((2, 5, 3), 7, np.uint8)
  img = vis.compose_strip([a, b], gap=1)
  assert img.shape == (5, 5, 3)
  np.testing.assert_array_equal(img[:2, :3], a)
  assert (img[:2, 3:] == 0).all() and (img[2] == 0).all()
  np.testing.assert_array_equal(img[3:], b)
