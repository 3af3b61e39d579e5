"""seg.mask_resolution='full': input-resolution Dice targets, the loss and logit upsampling."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from hybrid_jax import errors
from hybrid_jax.data import categories as cat_lib
from hybrid_jax.losses import panoptic as losses
from hybrid_jax.models.panoptic_fcn import build as pfcn_build
from hybrid_jax.models.panoptic_fcn import postprocess as inf
from hybrid_jax.models.panoptic_fcn import targets as tg

LAYOUT = tg.ClassLayout.from_categories(cat_lib.SYNTHETIC)  # things car=6, person=7


def _frame(h=64, w=64):
  pan = np.full((h, w), 1000, np.int32)           # road
  pan[8:40, 4:10] = 7003                          # a thin person: 32x6 -> P3
  pan[20:60, 20:60] = 6001                        # a 40x40 car -> P4 and P5 (halved ranges)
  pan[:, w - 4:] = -1                             # void
  return pan


def _spec(**kw):
  return tg.TargetSpec(LAYOUT, max_instances=4, full_masks=True,
                       instance_scales=tg.scaled_instance_scales(0.5), **kw)


def test_full_targets_are_the_exact_masks():
  pan = _frame()
  t = jax.jit(lambda p: tg.build_targets(p, spec=_spec()))(jnp.asarray(pan))
  full = np.asarray(t['inst_masks_full'])
  # unique ids in ascending order: car 6001 first, person 7003 second; empty slots are zero.
  np.testing.assert_array_equal(full[0], pan == 6001)
  np.testing.assert_array_equal(full[1], pan == 7003)
  assert full[2:].sum() == 0
  stuff = np.asarray(t['stuff_masks_full'])
  assert stuff.shape == (64, 64, LAYOUT.num_stuff)
  np.testing.assert_array_equal(stuff[..., 0], (pan == 6001) | (pan == 7003))  # things channel
  np.testing.assert_array_equal(stuff[..., 2], pan == 1000)                    # road
  assert stuff[:, -4:].sum() == 0                                              # void
  assert 'inst_masks_full' not in jax.eval_shape(
      lambda p: tg.build_targets(p, spec=tg.TargetSpec(LAYOUT, max_instances=4)),
      jnp.asarray(pan))


def _random_outputs(rng, b=2, hq=16, wq=16, e=3):
  sizes = [(hq // 2, wq // 2), (hq // 4, wq // 4), (hq // 8, wq // 8), (1, 1), (1, 1)]
  r = lambda *s: jnp.asarray(rng.normal(size=s).astype(np.float32))
  return {'encode_feat': jnp.abs(r(b, hq, wq, e)),
          'inst_logits': tuple(r(b, h, w, LAYOUT.num_thing) for h, w in sizes),
          'stuff_logits': tuple(r(b, h, w, LAYOUT.num_stuff) for h, w in sizes),
          'thing_kernels': tuple(r(b, h, w, e) for h, w in sizes),
          'stuff_kernels': tuple(r(b, h, w, e) for h, w in sizes),
          'stuff_bias': r(e)}


def _dice(p, y):
  return 1 - 2 * (p * y).sum() / max((p * p).sum() + (y * y).sum(), 1e-8)


def _bilinear_matrix(n):
  """[4n, n]: torch's align_corners=False x4 bilinear weights, written out by hand."""
  r = np.zeros((4 * n, n))
  for o in range(4 * n):
    src = min(max((o + 0.5) / 4 - 0.5, 0.0), n - 1.0)
    i0 = int(np.floor(src))
    i1 = min(i0 + 1, n - 1)
    r[o, i0] += 1 - (src - i0)
    r[o, i1] += src - i0
  return r


def _bilinear4(x):
  """Reference x4 upsampling of [h, w] (numpy, independent of targets.upsample4)."""
  return _bilinear_matrix(x.shape[0]) @ x @ _bilinear_matrix(x.shape[1]).T


def _loop_loss(outputs, targets, pos_num):
  """Per assignment and per stuff channel, with numpy: the 'full' Dice sums."""
  sig = lambda v: 1 / (1 + np.exp(-v))
  enc = np.asarray(outputs['encode_feat'])
  levels = np.asarray(targets['inst_levels'])
  seg_th, seg_st = 0.0, 0.0
  for l in range(5):
    kern, w = losses.select_thing_kernels(
        center_logits=outputs['inst_logits'][l], kernel_map=outputs['thing_kernels'][l],
        classes=targets['inst_classes'], candidates=targets['inst_candidates'][l], k=pos_num)
    skern = losses.stuff_kernels_from_masks(kernel_map=outputs['stuff_kernels'][l],
                                            bias=outputs['stuff_bias'],
                                            masks=targets['stuff_maps'][l] > 0)
    for b in range(enc.shape[0]):
      for m in range(levels.shape[1]):
        if not levels[b, m, l]:
          continue
        y = np.asarray(targets['inst_masks_full'][b, m])
        for j in range(kern.shape[2]):
          p = sig(_bilinear4(enc[b] @ np.asarray(kern[b, m, j])))
          seg_th += float(w[b, m, j]) * _dice(p, y)
      for s in range(LAYOUT.num_stuff):
        if not targets['stuff_present'][b, l, s]:
          continue
        p = sig(_bilinear4(enc[b] @ np.asarray(skern[b, s])))
        seg_st += _dice(p, np.asarray(targets['stuff_masks_full'][b, ..., s]))
  return seg_th, seg_st


def _loss(outputs, targets, **kw):
  return jax.jit(lambda o, t: losses.panoptic_fcn_loss(o, t, **kw))(outputs, targets)


def test_full_loss_equals_a_loop_over_assignments():
  rng = np.random.default_rng(0)
  pans = np.stack([_frame(), _frame()[:, ::-1]])
  targets = tg.build_batch_targets(jnp.asarray(pans), spec=_spec())
  outputs = _random_outputs(rng)
  _, m = _loss(outputs, targets, pos_num=3, mask_resolution='full', mask_pairs=8)
  want_th, want_st = _loop_loss(outputs, targets, 3)
  n_th = float(m['num_things'])
  assert n_th == 6  # per frame: person on P3, car on P4 and P5
  np.testing.assert_allclose(float(m['loss_seg_th']), 4.0 * want_th / n_th, rtol=1e-4)
  np.testing.assert_allclose(float(m['loss_seg_st']), 4.0 * want_st / float(m['num_stuff']),
                             rtol=1e-4)
  assert float(m['mask_pairs_dropped']) == 0
  # The quarter-grid loss of the same outputs is another number.
  _, q = _loss(outputs, targets, pos_num=3)
  assert abs(float(q['loss_seg_th']) - float(m['loss_seg_th'])) > 1e-3


def test_full_loss_counts_the_assignments_it_has_no_room_for():
  rng = np.random.default_rng(1)
  targets = tg.build_batch_targets(jnp.asarray(_frame()[None]), spec=_spec())
  outputs = _random_outputs(rng, b=1)
  _, m = _loss(outputs, targets, pos_num=3, mask_resolution='full', mask_pairs=1)
  assert float(m['mask_pairs_dropped']) == 2
  # The one kept is the first in (instance, level) order: the car (slot 0) on P4.
  only = {k: v for k, v in targets.items()}
  levels = np.zeros_like(np.asarray(targets['inst_levels']))
  levels[0, 0, 1] = True
  only['inst_levels'] = jnp.asarray(levels)
  _, one = _loss(outputs, only, pos_num=3, mask_resolution='full', mask_pairs=8)
  # Same summed Dice; the normaliser N_th differs (3 assignments against 1).
  np.testing.assert_allclose(float(m['loss_seg_th']) * 3, float(one['loss_seg_th']), rtol=1e-5)


def test_full_loss_needs_full_targets():
  targets = tg.build_batch_targets(jnp.asarray(_frame()[None]),
                                   spec=tg.TargetSpec(LAYOUT, max_instances=4))
  with pytest.raises(errors.ConfigError, match='full_masks'):
    losses.panoptic_fcn_loss(_random_outputs(np.random.default_rng(0), b=1), targets,
                             mask_resolution='full')
  with pytest.raises(errors.ConfigError, match='mask_resolution'):
    losses.panoptic_fcn_loss(_random_outputs(np.random.default_rng(0), b=1), targets,
                             mask_resolution='half')


def _bar_outputs():
  """One person whose 1/4-grid mask logits are +1 on column 5 and -3 elsewhere; road."""
  enc = np.zeros((16, 16, 3), np.float32)
  enc[:, 5, 0] = 1
  enc[..., 1] = 1
  enc[..., 2] = 1
  sizes = [8, 4, 2, 1, 1]
  inst = [np.full((s, s, 2), -10.0, np.float32) for s in sizes]
  inst[0][2:5, 1:4, 1] = 5.0                                    # person peak at P3 (3, 2)
  tk = [np.tile(np.float32([4.0, -3.0, 0]), (s, s, 1)) for s in sizes]
  stuff = [np.full((s, s, 7), -5.0, np.float32) for s in sizes]
  for s in stuff:
    s[..., 2] = 5.0
  sk = [np.tile(np.float32([0, 0, 10]), (s, s, 1)) for s in sizes]
  b = lambda xs: tuple(jnp.asarray(x)[None] for x in xs)
  return {'encode_feat': jnp.asarray(enc)[None], 'inst_logits': b(inst),
          'thing_kernels': b(tk), 'stuff_logits': b(stuff), 'stuff_kernels': b(sk),
          'stuff_bias': jnp.zeros(3)}


@pytest.mark.parametrize('upsample_logits', [False, True])
def test_logit_upsampling_draws_a_thinner_bar(upsample_logits):
  cfg = inf.InferenceConfig(max_instances=2, stuff_area_limit=16,
                            upsample_logits=upsample_logits)
  out = jax.jit(lambda o: inf.postprocess(o, image_hw=(64, 64), layout=LAYOUT, cfg=cfg))(
      _bar_outputs())
  pan = np.asarray(out['panoptic'][0])
  person = pan == 7001
  cols = np.flatnonzero(person.any(axis=0))
  # By hand on a row: the centre cell (column 5 = pixels 20..23) has logit 1, its neighbours
  # -3; the threshold 0.4 is logit -0.405. Probabilities (0.731 / 0.047) interpolate to
  # 0.47 at the cell's outer pixels: all 4 pixels. Logits interpolate to -0.5 there and 0.5
  # at the inner two: 2 pixels.
  assert cols.tolist() == ([20, 21, 22, 23] if upsample_logits is False else [21, 22])
  assert person[:, cols].all()                                  # the whole column height
  assert ((pan == 1000) | person).all()                         # road elsewhere


def test_stuff_absent_channel_and_multiscale_in_logit_mode():
  cfg = inf.InferenceConfig(max_instances=2, stuff_area_limit=16, upsample_logits=True)
  o = _bar_outputs()
  frame = {k: (v if k == 'stuff_bias' else jax.tree.map(lambda a: a[0], v))
           for k, v in o.items()}
  s = inf.stuff_probabilities(frame, cfg=cfg)
  found = np.asarray(s).max(axis=(1, 2)) > inf.ABSENT_LOGIT / 2
  assert found.tolist() == [False, False, True, False, False, False, False]  # only road
  assert np.asarray(s)[0].max() == inf.ABSENT_LOGIT
  single = jax.jit(lambda o: inf.postprocess(o, image_hw=(64, 64), layout=LAYOUT, cfg=cfg))(o)
  multi = jax.jit(lambda o: inf.postprocess_multiscale(
      [o, o], scaled_hws=[(64, 64), (64, 64)], image_hw=(64, 64), layout=LAYOUT, cfg=cfg))(o)
  np.testing.assert_array_equal(multi['panoptic'], single['panoptic'])


def test_build_reads_mask_resolution_and_rejects_bad_values():
  cfg = ml_collections.ConfigDict({'backbone': 'resnet_tiny', 'mask_resolution': 'full',
                                   'mask_pairs': 12})
  model = pfcn_build.build_segmenter(cfg, cat_lib.SYNTHETIC)
  assert model.spec.mask_resolution == 'full' and model.spec.mask_pairs == 12
  assert model.spec.targets.full_masks and model.spec.inference.upsample_logits
  default = pfcn_build.build_segmenter(ml_collections.ConfigDict({'backbone': 'resnet_tiny'}),
                                       cat_lib.SYNTHETIC)
  assert default.spec.mask_resolution == 'quarter'
  assert not default.spec.targets.full_masks and not default.spec.inference.upsample_logits
  for bad in ({'mask_resolution': 'half'}, {'mask_pairs': 0}, {'mask_pairs': True}):
    with pytest.raises(errors.ConfigError, match='seg.mask_'):
      pfcn_build.build_segmenter(ml_collections.ConfigDict({'backbone': 'resnet_tiny', **bad}),
                                 cat_lib.SYNTHETIC)


def test_a_finished_segmenter_names_its_mask_resolution(tiny_run, monkeypatch):
  """A config that disagrees with the export is an error; older exports count as 'quarter'."""
  from configs import synthetic  # pylint: disable=g-import-not-at-top
  from hybrid_jax import trained_models  # pylint: disable=g-import-not-at-top
  c = synthetic.get_config('tiny')
  assert c.seg.mask_resolution == 'full'
  model, _ = trained_models.load_segmenter(c, tiny_run)
  assert model.spec.inference.upsample_logits
  c.seg.mask_resolution = 'quarter'
  with pytest.raises(errors.CheckpointError, match="mask_resolution='full'"):
    trained_models.load_segmenter(c, tiny_run)
  load = trained_models.pretrained.load_pretrained

  def without_key(*args, **kwargs):
    variables, meta = load(*args, **kwargs)
    return variables, {k: v for k, v in meta.items() if k != 'mask_resolution'}
  monkeypatch.setattr(trained_models.pretrained, 'load_pretrained', without_key)
  trained_models.load_segmenter(c, tiny_run)            # 'quarter' config, older export: fine
  c.seg.mask_resolution = 'full'
  with pytest.raises(errors.CheckpointError, match="mask_resolution='quarter'"):
    trained_models.load_segmenter(c, tiny_run)


def test_an_older_segmenter_record_reads_as_quarter_masks_on_data_crops():
  """A seg record written before mask_resolution / train_crop means 'quarter' and (0, 0)."""
  from configs import synthetic  # pylint: disable=g-import-not-at-top
  from hybrid_jax import run_records  # pylint: disable=g-import-not-at-top
  c = synthetic.get_config('tiny')
  c.seg.mask_resolution = 'quarter'
  c.seg.mask_pairs = 32  # the slots of every run before the key existed
  rec = run_records.relevant(c, 'seg')
  older = {k: v for k, v in rec.items()
           if k not in ('seg.mask_resolution', 'seg.mask_pairs', 'seg.train_crop')}
  assert run_records.differences(older, rec) == []
  demo = run_records.relevant(synthetic.get_config(''), 'seg')
  changed = run_records.differences(older, demo)
  assert "seg.mask_resolution: 'quarter' -> 'full'" in changed
  assert 'seg.train_crop: [0, 0] -> [128, 256]' in changed
  assert 'seg.mask_pairs: 32 -> 20' in changed
