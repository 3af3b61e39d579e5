"""PanopticFCN: losses, targets, kernel fusion, inference merge, shapes and a training smoke test."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from hybrid_jax import errors
from hybrid_jax.data import categories as cat_lib
from hybrid_jax.losses import panoptic as losses
from hybrid_jax.models.panoptic_fcn import postprocess as inf
from hybrid_jax.models.panoptic_fcn import targets as tg
from hybrid_jax.models import resnet
from hybrid_jax.models.panoptic_fcn import build as pfcn_build
from hybrid_jax.models.panoptic_fcn import inputs as pfcn_inputs
from hybrid_jax.losses import panoptic as panoptic_losses

LAYOUT = tg.ClassLayout.from_categories(cat_lib.SYNTHETIC)  # things car=6, person=7


def test_focal_loss_hand_values():
  out = losses.sigmoid_focal_loss(logits=jnp.array([0.0, 0.0, 2.0]),
                                  targets=jnp.array([1.0, 0.0, 0.5]))
  # x=0,t=1: 0.25 * 0.5^2 * ln2; x=0,t=0: 0.75 * 0.5^2 * ln2;
  # x=2,t=.5: ce = 2 - 1 + ln(1 + e^-2), p_t = .5, alpha_t = .5.
  ce2 = 1.0 + np.log1p(np.exp(-2.0))
  np.testing.assert_allclose(out, [0.25 * 0.25 * np.log(2), 0.75 * 0.25 * np.log(2),
                                   0.5 * 0.25 * ce2], rtol=1e-5)


def test_dice_loss_hand_values():
  d = losses.dice_loss(logits=jnp.array([[50.0, -50.0], [0.0, 0.0], [-50.0, -50.0]]),
                       targets=jnp.array([[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]]))
  # [1,0] vs [1,1]: 1 - 2*1/(1+2); [.5,.5] vs [1,0]: 1 - 2*.5/(.5+1); empty: 1 - 0.
  np.testing.assert_allclose(d, [1 / 3, 1 / 3, 1.0], atol=1e-6)


def test_weighted_kernel_selection():
  logit = lambda p: np.log(p / (1 - p))
  centre = np.full((1, 2, 2, 2), -20.0, np.float32)
  centre[0, 0, 0, 1] = logit(0.8)
  centre[0, 0, 1, 1] = logit(0.2)
  centre[0, 1, 1, 1] = logit(0.9)           # outside the candidate region: ignored
  centre[0, 1, 0, 0] = 5.0                  # other class: ignored
  kmap = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2)
  cand = np.array([[[[1, 1], [1, 0]]]], bool)
  kern, w = losses.select_thing_kernels(center_logits=centre, kernel_map=kmap,
                                        classes=jnp.array([[1]]), candidates=cand, k=3)
  np.testing.assert_allclose(w[0, 0], [0.8, 0.2, 0.0], atol=1e-6)
  np.testing.assert_allclose(kern[0, 0, :2], [[0, 1], [2, 3]])


def test_gaussian_radius_hand_value():
  # 10x10 box, overlap 0.7: third root (-28 + sqrt(28^2 + 4*2.8*30)) / 2 is the smallest.
  r = tg.gaussian_radius(jnp.float32(10), jnp.float32(10), 0.7)
  np.testing.assert_allclose(r, (-28 + np.sqrt(784 + 336)) / 2, rtol=1e-5)


def test_targets_constructed_frame():
  pan = np.full((128, 128), 1000, np.int32)                      # road (stuff id 1)
  pan[40:80, 24:64] = 7003                                       # a 40x40 person
  pan[:, 120:] = -1                                              # void
  spec = tg.TargetSpec(LAYOUT, max_instances=4)
  t = jax.jit(lambda p: tg.build_targets(p, spec=spec))(jnp.asarray(pan))
  assert t['inst_valid'].tolist() == [True, False, False, False]
  assert int(t['inst_classes'][0]) == 1                         # person = thing channel 1
  # size 40 -> P3 (1-64) and P4 (32-128) only.
  assert t['inst_levels'][0].tolist() == [True, True, False, False, False]
  # 1/4 mask rows 10..19, cols 6..15 -> mass centre (14.5, 10.5) -> P3 (7, 5), P4 (3, 2).
  assert t['inst_centers'][0, 0].tolist() == [7, 5]
  h3 = np.asarray(t['thing_heatmaps'][0][..., 1])
  assert np.unravel_index(h3.argmax(), h3.shape) == (7, 5) and h3[7, 5] == 1.0
  # P3 box 5x5 -> radius 1, sigma 1: neighbours exp(-1/2), diagonal exp(-1), beyond 0.
  np.testing.assert_allclose([h3[7, 6], h3[8, 6], h3[7, 7]], [np.exp(-0.5), np.exp(-1), 0],
                             atol=1e-6)
  h4 = np.asarray(t['thing_heatmaps'][1][..., 1])              # radius 0: a single 1
  assert h4[3, 2] == 1.0 and h4.sum() == 1.0
  assert float(np.asarray(t['thing_heatmaps'][2]).sum()) == 0.0
  assert float(np.asarray(t['thing_heatmaps'][0][..., 0]).sum()) == 0.0  # no car
  # Stuff: channel 0 = things, 2 = road (stuff ids 0..5 -> channels 1..6); void all zero.
  sm = np.asarray(t['stuff_masks'])
  assert sm[15, 10, 0] == 1.0 and sm[0, 0, 2] == 1.0 and sm[0, 31].sum() == 0.0
  assert t['stuff_present'][0].tolist() == [True, False, True, False, False, False, False]
  np.testing.assert_allclose(np.asarray(t['inst_masks'][0]).sum(), 100.0)  # 10x10 at 1/4


def test_kernel_fusion_merges_duplicates_keeps_distinct():
  k = jnp.array([[1.0, 0, 0], [0.95, 0.05, 0], [0, 1.0, 0], [1.0, 0.01, 0], [1.0, 0, 0]])
  classes = jnp.array([0, 0, 0, 1, 0])
  valid = jnp.array([True, True, True, True, False])
  fused, keep = inf.fuse_kernels(k, classes, valid)
  assert keep.tolist() == [True, False, True, True, False]
  np.testing.assert_allclose(fused[0], [0.975, 0.025, 0], atol=1e-6)
  np.testing.assert_allclose(fused[2], [0, 1, 0])
  np.testing.assert_allclose(fused[3], [1, 0.01, 0])


def _constructed_outputs():
  """Two things (car A, person B, overlapping 2x2 at 1/4) on road; 64x64 input."""
  enc = np.zeros((16, 16, 3), np.float32)
  enc[0:8, 0:8, 0] = 1
  enc[6:14, 6:14, 1] = 1
  enc[..., 2] = 1
  ka, kb = [20.0, 0, -10], [0, 20.0, -10]
  sizes = [8, 4, 2, 1, 1]
  inst = [np.full((s, s, 2), -10.0, np.float32) for s in sizes]
  inst[0][1:4, 1:4, 0] = 5.0          # car peak at P3 (2, 2)
  inst[0][4:7, 4:7, 1] = 3.0          # person peak at P3 (5, 5), lower score
  tk = [np.tile(np.float32(ka), (s, s, 1)) for s in sizes]
  tk[0][4:, 4:] = kb
  stuff = [np.full((s, s, 7), -5.0, np.float32) for s in sizes]
  for s in stuff:
    s[..., 2] = 5.0                   # road everywhere
  sk = [np.tile(np.float32([0, 0, 10]), (s, s, 1)) for s in sizes]
  b = lambda xs: tuple(jnp.asarray(x)[None] for x in xs)
  return {'encode_feat': jnp.asarray(enc)[None], 'inst_logits': b(inst),
          'thing_kernels': b(tk), 'stuff_logits': b(stuff), 'stuff_kernels': b(sk),
          'stuff_bias': jnp.zeros(3)}


@pytest.mark.parametrize('area_limit', [100, 3000])
def test_panoptic_merge_constructed(area_limit):
  cfg = inf.InferenceConfig(max_instances=4, stuff_area_limit=area_limit)
  out = jax.jit(lambda o: inf.postprocess(o, image_hw=(64, 64), layout=LAYOUT, cfg=cfg))(
      _constructed_outputs())
  pan = np.asarray(out['panoptic'][0])
  expect = np.full((64, 64), 1000 if area_limit == 100 else -1, np.int32)
  expect[24:56, 24:56] = 7002        # person, painted second, only on free pixels
  expect[0:32, 0:32] = 6001          # car first (higher score)
  # x4 bilinear upsampling of the 1/4 probabilities: a block's outer corner pixel gets
  # 0.625^2 ~ 0.39 < 0.4, so it is not part of the mask.
  expect[31, 31] = 7002
  for y, x in ((24, 55), (55, 24), (55, 55)):
    expect[y, x] = 1000 if area_limit == 100 else -1
  np.testing.assert_array_equal(pan, expect)
  assert out['valid'][0].tolist() == [True, True, False, False]
  assert out['classes'][0].tolist() == [6, 7, -1, -1]
  assert out['instance_ids'][0].tolist() == [6001, 7002, -1, -1]
  np.testing.assert_array_equal(out['boxes'][0, :2], [[0, 0, 32, 32], [24, 24, 56, 56]])
  assert out['masks'][0, 0].sum() == 32 * 32 - 1  # only the inner corner (31, 31) is lost
  np.testing.assert_array_equal(out['masks'][0, 1], expect == 7002)
  np.testing.assert_allclose(out['kernels'][0, 0], [20, 0, -10])
  assert out['scores'][0, 0] > out['scores'][0, 1] > 0.9


def test_shapes_and_parameter_counts():
  r50 = jax.eval_shape(resnet.ResNet('resnet50').init, jax.random.key(0),
                       jnp.zeros((1, 64, 64, 3)))
  assert resnet.count_parameters(r50) == 23_508_032  # torchvision resnet50 without fc
  coco = ml_collections.ConfigDict({'backbone': 'resnet50'})
  model = pfcn_build.build_segmenter(coco, cat_lib.CITYSCAPES_VPS)
  assert (model.num_thing, model.num_stuff) == (8, 12)
  v = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 96, 3)))
  out = jax.eval_shape(model.apply, v, jnp.zeros((1, 64, 96, 3)))
  assert out['encode_feat'].shape == (1, 16, 24, 64)
  assert [x.shape for x in out['inst_logits']] == [(1, 8, 12, 8), (1, 4, 6, 8), (1, 2, 3, 8),
                                                   (1, 1, 2, 8), (1, 1, 1, 8)]
  assert out['stuff_logits'][0].shape == (1, 8, 12, 12)
  assert out['thing_kernels'][0].shape == (1, 8, 12, 64)


def test_bad_inputs_raise_clear_errors():
  with pytest.raises(errors.ConfigError, match='Unknown backbone'):
    pfcn_build.build_segmenter(ml_collections.ConfigDict({'backbone': 'resnet9'}),
                              cat_lib.SYNTHETIC)
  only_stuff = tuple(c for c in cat_lib.SYNTHETIC if not c.isthing)
  with pytest.raises(errors.ConfigError, match='at least one thing'):
    pfcn_build.build_segmenter(None, only_stuff)
  spec = pfcn_build.INPUT_SPECS['torchvision']
  with pytest.raises(errors.FormatError, match='uint8'):
    pfcn_inputs.preprocess_images(jnp.zeros((1, 32, 32, 3), jnp.float32), spec)
  with pytest.raises(errors.FormatError, match=r'\[B,H,W,3\]'):
    pfcn_inputs.preprocess_images(jnp.zeros((32, 32, 3), jnp.uint8), spec)
  with pytest.raises(errors.CheckpointError, match='raft'):
    pfcn_build.load_pretrained_into({}, {}, {'architecture': 'raft_small'})
  # Stride placement / normalisation follow the weights' metadata unless the config says so.
  tv_meta = {'architecture': 'resnet50', 'stride_in_1x1': False, 'input_format': 'RGB',
             'pixel_mean': [123.675, 116.28, 103.53], 'pixel_std': [58.395, 57.12, 57.375]}
  r50 = ml_collections.ConfigDict({'backbone': 'resnet50'})
  model = pfcn_build.build_segmenter(r50, cat_lib.SYNTHETIC, pretrained_meta=tv_meta)
  assert model.stride_in_1x1 is False and model.spec.input == spec
  model = pfcn_build.build_segmenter(r50, cat_lib.SYNTHETIC)   # PanopticFCN default
  with pytest.raises(errors.CheckpointError, match='stride_in_1x1'):
    pfcn_build.load_pretrained_into({}, {}, tv_meta, model=model)


@pytest.mark.slow
def test_training_steps_reduce_loss():
  cfg = ml_collections.ConfigDict({
      # Deformable convs are checked against torchvision in test_resnet_parity.py; plain
      # convs here keep the compile time of the training step down.
      'backbone': 'resnet_tiny', 'max_instances': 4, 'position_deform': 'none',
      'num_head_convs': 1,
      'instance_scales': ((1, 16), (8, 32), (16, 64), (32, 128), (64, 4096))})
  model = pfcn_build.build_segmenter(cfg, cat_lib.SYNTHETIC)
  variables = pfcn_build.init_segmenter(model, jax.random.key(0), (64, 64))
  pan = np.full((2, 64, 64), 1000, np.int32)
  pan[:, :20] = 0
  pan[0, 30:50, 10:30] = 6001
  pan[0, 35:55, 40:60] = 7001
  pan[1, 10:40, 20:44] = 6002
  img = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3)).astype(np.uint8)
  for v, c in ((6001, 200), (7001, 20), (6002, 200)):
    img[pan == v] = (c, 220 - c, 30)
  batch = {'image': jnp.asarray(img), 'panoptic': jnp.asarray(pan)}
  opt = optax.adam(3e-3)

  @jax.jit
  def step(params, state):
    (_, m), g = jax.value_and_grad(panoptic_losses.segmenter_loss_fn, has_aux=True)(
        params, variables['batch_stats'], batch, None, model=model)
    u, state = opt.update(g, state, params)
    return optax.apply_updates(params, u), state, m

  params, state = variables['params'], opt.init(variables['params'])
  losses_seen = []
  for _ in range(6):
    params, state, m = step(params, state)
    losses_seen.append(float(m['loss']))
  assert np.isfinite(losses_seen).all()
  assert m['num_things'] == 6.0           # 3 instances x 2 levels each at these scales
  assert losses_seen[-1] < 0.9 * losses_seen[0], losses_seen


def test_upsample4_matches_bilinear_resize():
  x = np.random.default_rng(0).standard_normal((2, 5, 7)).astype(np.float32)
  ours = inf.upsample4(inf.upsample4(jnp.asarray(x), -2), -1)
  ref = jax.image.resize(x, (2, 20, 28), 'linear', antialias=False)  # = torch, see module doc
  np.testing.assert_allclose(ours, ref, atol=1e-6)
  np.testing.assert_allclose(tg.upsample4_2d(jnp.asarray(x)), ref, atol=1e-6)


@pytest.mark.parametrize('n', [1, 5, 8, 12, 64])
def test_upsample4_last_is_the_elementwise_filter_and_its_gradient(n):
  """The banded-matmul form equals `upsample4` on the last axis, values and gradients, for
  lengths that fill whole 8-sample blocks, part blocks (gcd) and a single sample."""
  rng = np.random.default_rng(n)
  x = jnp.asarray(rng.standard_normal((3, 4, n)).astype(np.float32))
  w = jnp.asarray(rng.standard_normal((3, 4, 4 * n)).astype(np.float32))
  np.testing.assert_allclose(tg.upsample4_last(x), tg.upsample4(x, -1), atol=1e-6)
  grad = lambda f: jax.grad(lambda v: jnp.sum(w * f(v)))(x)  # noqa: E731
  np.testing.assert_allclose(grad(tg.upsample4_last), grad(lambda v: tg.upsample4(v, -1)),
                             atol=1e-5)


def test_segment_fn_is_one_jit_per_model_and_settings():
  """Two builds of one config share one jitted segmenter (the stages then share its compiled
  programs); other settings get their own; it is a jax.jit object (lowers, exports)."""
  from configs import synthetic  # pylint: disable=g-import-not-at-top
  from hybrid_jax.models.panoptic_fcn import segment  # pylint: disable=g-import-not-at-top
  config = synthetic.get_config('tiny')
  first, _ = pfcn_build.segmenter_from_config(config)
  second, _ = pfcn_build.segmenter_from_config(config)
  assert first is not second
  fn = segment.make_segment_fn(first)
  assert segment.make_segment_fn(second) is fn
  assert segment.make_segment_fn(second, output_hw=(16, 32)) is not fn
  images = jnp.zeros((1, 32, 64, 3), jnp.uint8)
  variables, _ = pfcn_build.initial_variables(config, first)
  assert 'panoptic' in fn.lower(variables, images).out_info
