"""The embedding head's RoI input (track.roi_input): the masked image, the segmenter's features,
or both (models/embedding_head.py; the paper's Fig. 4 "RoI feats")."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import synthetic
from hybrid_jax import errors
from hybrid_jax import inference
from hybrid_jax import trained_models
from hybrid_jax.data import categories as categories_lib
from hybrid_jax.models import embedding_head as head_lib
from hybrid_jax.models.panoptic_fcn import build as pfcn_build
from hybrid_jax.models.panoptic_fcn import segment as pfcn_segment
from hybrid_jax.tracking import frame_instances as instances_lib

H, W, N, E, F = 32, 64, 3, 5, 4


def _inputs(seed=0):
  rng = np.random.default_rng(seed)
  image = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
  masks = np.zeros((N, H, W), bool)
  masks[0, 2:10, 3:20] = masks[1, 12:30, 30:40] = True   # slot 2 is padding
  boxes = np.array([[3, 2, 20, 10], [30, 12, 40, 30], [0, 0, 0, 0]], np.float32)
  valid = np.array([True, True, False])
  features = rng.normal(size=(H // 4, W // 4, E)).astype(np.float32)
  return image, masks, boxes, valid, features


@pytest.mark.parametrize('roi_input', ['image', 'features', 'both'])
def test_shapes_and_fc1_width(roi_input):
  head = head_lib.EmbeddingHead(canvas=(8, 16), pool=2, hidden_dim=12, embed_dim=6,
                                roi_input=roi_input, feature_dim=F)
  image, masks, boxes, valid, features = _inputs()
  params = head_lib.init_head(head, jax.random.key(0), image_hw=(H, W), max_instances=N,
                              feature_channels=E if roi_input != 'image' else 0)
  cells = (8 // 2) * (16 // 2)
  channels = {'image': 3 + 1, 'features': F + 1, 'both': 3 + F + 1}[roi_input]
  assert head_lib.canvas_channels(roi_input, feature_dim=F) == channels
  assert params['fc1']['kernel'].shape == (cells * channels, 12)
  assert ('feature_proj' in params) == (roi_input != 'image')
  if roi_input != 'image':
    assert params['feature_proj']['kernel'].shape == (E, F)
  emb = head.apply({'params': params}, image, masks, boxes, valid,
                   None if roi_input == 'image' else features)
  assert emb.shape == (N, 6) and emb.dtype == jnp.float32
  assert np.all(np.asarray(emb[2]) == 0)                  # padding slot
  assert np.abs(np.asarray(emb[:2])).sum() > 0


@pytest.mark.parametrize('roi_input', ['features', 'both'])
def test_gradients_stop_at_the_segmenters_features(roi_input):
  head = head_lib.EmbeddingHead(canvas=(8, 16), pool=2, hidden_dim=12, embed_dim=6,
                                roi_input=roi_input, feature_dim=F)
  image, masks, boxes, valid, features = _inputs()
  params = head_lib.init_head(head, jax.random.key(0), image_hw=(H, W), max_instances=N,
                              feature_channels=E)

  def loss(p, f):
    return jnp.sum(head.apply({'params': p}, image, masks, boxes, valid, f) ** 2)

  g_params, g_features = jax.grad(loss, argnums=(0, 1))(params, jnp.asarray(features))
  assert np.all(np.asarray(g_features) == 0)              # nothing reaches the segmenter
  assert np.abs(np.asarray(g_params['feature_proj']['kernel'])).sum() > 0
  assert np.abs(np.asarray(g_params['fc1']['kernel'])).sum() > 0
  # The features really enter the embedding (the gradient is stopped, the values are not).
  assert not np.allclose(loss(params, features), loss(params, features * 2.0))


def test_a_features_head_without_features_fails_clearly():
  head = head_lib.EmbeddingHead(canvas=(8, 16), pool=2, hidden_dim=12, embed_dim=6,
                                roi_input='features', feature_dim=F)
  with pytest.raises(ValueError, match='feature_channels'):
    head_lib.init_head(head, jax.random.key(0), image_hw=(H, W), max_instances=N)
  params = head_lib.init_head(head, jax.random.key(0), image_hw=(H, W), max_instances=N,
                              feature_channels=E)
  with pytest.raises(errors.ConfigError, match="roi_input='features'.*segmenter"):
    head_lib.make_embed_fn(head, params)
  with pytest.raises(ValueError, match='needs the segmenter'):
    head.apply({'params': params}, *_inputs()[:4])
  with pytest.raises(ValueError, match='roi_input'):
    head_lib.canvas_channels('rgb')


def test_segmenter_features_span_the_frame():
  c = synthetic.get_config('tiny')
  model, _ = pfcn_build.segmenter_from_config(c)
  variables = pfcn_build.init_segmenter(model, jax.random.key(0), (64, 96))
  frames = np.random.default_rng(0).integers(0, 255, (2, 40, 72, 3), dtype=np.uint8)
  feats = jax.jit(lambda v, x: pfcn_segment.features(v, x, model=model))(variables, frames)
  assert feats.shape == (2, 10, 18, model.embed_dim)       # ceil(H/4), ceil(W/4): no padding
  spec = pfcn_build.spec_of(model).input
  padded = jax.jit(lambda v, x: model.apply(v, pfcn_segment.inputs.preprocess_images(
      x, spec))['encode_feat'])(variables, frames)
  np.testing.assert_array_equal(np.asarray(feats), np.asarray(padded[:, :10, :18]))
  one = pfcn_segment.make_feature_fn(model, variables)(frames[1])
  np.testing.assert_allclose(np.asarray(one), np.asarray(feats[1]), rtol=1e-5, atol=1e-5)


def test_checkpoint_hyper_parameters_recovered():
  head = head_lib.EmbeddingHead(canvas=(8, 16), pool=2, hidden_dim=12, embed_dim=6,
                                roi_input='both', feature_dim=F)
  params = head_lib.init_head(head, jax.random.key(0), image_hw=(H, W), max_instances=N,
                              feature_channels=E)
  hp, source = trained_models.head_hparams(params, {'canvas': [8, 16], 'pool': 2,
                                                    'roi_input': 'both'}, {})
  assert source == 'metadata'
  assert (hp['roi_input'], hp['feature_dim'], hp['canvas'], hp['use_image']) == (
      'both', F, (8, 16), True)
  with pytest.raises(errors.CheckpointError, match='roi_input'):
    trained_models.head_hparams(params, {'canvas': [8, 16], 'pool': 2, 'roi_input': 'image'}, {})


@pytest.mark.parametrize('roi_input', ['features', 'both'])
def test_trained_and_tracked_with_the_segmenters_features(tiny_run, tmp_path, roi_input):
  """The track stage on the tiny run's segmenter features, then a val clip tracked with it."""
  from hybrid_jax import train
  from hybrid_jax import workdirs
  from hybrid_jax.data import datasets
  c = synthetic.get_config('tiny')
  c.data.dir = workdirs.data_dir(c, tiny_run)
  c.track.roi_input = roi_input
  workdir = str(tmp_path)
  for stage in ('seg', 'flow'):
    shutil.copytree(os.path.join(tiny_run, stage), os.path.join(workdir, stage))
  train.train_track(c, workdir, flow=trained_models.load_flow(c, workdir), flow_trained=True)
  models = trained_models.load_models(c, workdir, variants=['instance', 'hybrid'])
  head = models.head
  assert head.model.roi_input == roi_input and head.feature_fn is not None
  assert head.hparams['feature_dim'] == c.track.feature_dim
  clip = datasets.get_source(c, 'val', c.data.dir)[0]
  frames = np.asarray(clip['frames'])
  preds = inference.predict_clip(models, frames)
  inst = instances_lib.pad_to(inference.frame_instances(preds.seg, 0, c.data.max_instances),
                              c.data.max_instances)
  emb = np.asarray(head.embed_fn(frames[0], inst))
  assert emb.shape == (c.data.max_instances, c.track.embed_dim) and np.isfinite(emb).all()
  tracker = inference.make_tracker(c.track, head=head, max_instances=c.data.max_instances,
                                   categories=categories_lib.get_categories(c.data.categories))
  pan, _ = inference.track_clip(tracker, frames, preds)
  assert pan.shape == frames.shape[:3]


def test_missing_segmenter_for_features_names_the_stage(tmp_path):
  from hybrid_jax.training.stages import train_tracker
  c = synthetic.get_config('tiny')
  c.track.roi_input = 'features'
  with pytest.raises(errors.CheckpointError, match='mode=train_seg') as e:
    train_tracker.feature_fn_for(c, str(tmp_path))
  assert '--config.track.roi_input=image' in str(e.value)
  c.track.roi_input = 'image'
  assert train_tracker.feature_fn_for(c, str(tmp_path)) is None


def test_bad_roi_input_is_a_config_error():
  from hybrid_jax import config_checks
  c = synthetic.get_config('tiny')
  c.track.roi_input = 'rgb'
  with pytest.raises(errors.ConfigError, match='roi_input'):
    config_checks.check_config(c)


def test_an_older_track_record_without_roi_input_still_fits():
  from hybrid_jax import run_records
  c = synthetic.get_config('tiny')
  c.track.fusion_segments = 'gt'  # the fusion alone would bring in the segmenter's record
  rec = run_records.relevant(c, 'track')
  assert 'track.feature_dim' not in rec                   # an image head has no projection
  assert not any(k.startswith('seg.') for k in rec)
  older = {k: v for k, v in rec.items() if k != 'track.roi_input'}
  assert run_records.differences(older, rec) == []        # made before the key: 'image'
  c.track.roi_input = 'features'
  new = run_records.relevant(c, 'track')
  assert "track.roi_input: 'image' -> 'features'" in run_records.differences(older, new)
  assert any(k.startswith('seg.') for k in new)           # learns on the segmenter's features
