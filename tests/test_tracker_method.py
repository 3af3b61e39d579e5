"""The paper's tracker method (§III.B-E): targets on predicted instances, the fitted fusion, and
the backward direction of the temporal consistency constraint."""

import numpy as np
import pytest

from configs import synthetic
from hybrid_jax import errors
from hybrid_jax.data import categories as categories_lib
from hybrid_jax.losses import fusion as fusion_losses
from hybrid_jax.models import fusion
from hybrid_jax.tracking import frame_instances as instances_lib
from hybrid_jax.tracking import tracker as tracker_lib
from hybrid_jax.training import fusion_data
from hybrid_jax.training import fusion_fit
from hybrid_jax.training import prediction_targets
from hybrid_jax.training.stages import train_tracker

H, W = 12, 16


def _box(y0, x0, y1, x1):
  m = np.zeros((H, W), bool)
  m[y0:y1, x0:x1] = True
  return m


# ---------------------------------------------------------------------------------------------
# IoU > 0.5 targets on predicted instances.

def test_predictions_take_the_ground_truth_they_overlap_by_more_than_half():
  car, person = 13, 11  # the cityscapes_vps table's ids
  gt_masks = [_box(0, 0, 6, 6), _box(6, 8, 12, 16)]        # a car and a person
  gt_ids = np.array([car * 1000 + 3, person * 1000 + 7, -1, -1])
  gt = instances_lib.from_arrays(np.stack(gt_masks), np.array([car, person]), max_instances=4)
  pred_masks = [_box(0, 0, 6, 5),      # the car, IoU 30/36 = 0.83: matched
                _box(0, 10, 4, 16),    # a false positive, overlaps nothing
                _box(6, 8, 12, 11)]    # a sliver of the person, IoU 18/48 = 0.375: no match
  pred = instances_lib.from_arrays(np.stack(pred_masks), np.array([car, car, person]),
                                   max_instances=5)
  ids = prediction_targets.assign_ground_truth(pred, gt, gt_ids)
  assert ids.tolist() == [car * 1000 + 3, -1, -1, -1, -1]  # the person is missed
  # Same overlap, another category: no match.
  wrong = instances_lib.from_arrays(np.stack(pred_masks[:1]), np.array([person]), max_instances=2)
  assert prediction_targets.assign_ground_truth(wrong, gt, gt_ids).tolist() == [-1, -1]


def test_ownership_gives_fragments_their_object():
  car, person = 13, 11
  gt_masks = [_box(0, 0, 6, 6), _box(6, 8, 12, 16)]
  gt_ids = np.array([car * 1000 + 3, person * 1000 + 7])
  gt = instances_lib.from_arrays(np.stack(gt_masks), np.array([car, person]), max_instances=2)
  pred_masks = [_box(0, 0, 6, 5),      # most of the car: owned (30 of 30 pixels inside)
                _box(6, 8, 12, 11),    # a sliver of the person (IoU 0.375): owned all the same
                _box(4, 4, 8, 8),      # 4 of 16 pixels on the car: nobody's
                _box(0, 0, 3, 3)]      # inside the car but labelled person: nobody's
  pred = instances_lib.from_arrays(np.stack(pred_masks), np.array([car, person, car, person]),
                                   max_instances=5)
  owners = prediction_targets.assign_by_ownership(pred, gt, gt_ids)
  assert owners.tolist() == [car * 1000 + 3, person * 1000 + 7, -1, -1, -1]
  # IoU > 0.5 would have dropped the sliver.
  assert prediction_targets.assign_ground_truth(pred, gt, gt_ids).tolist()[1] == -1


def test_oracle_instance_cue_embeds_the_owner():
  from experiments import common
  from experiments import instance_cue_ceiling
  table = categories_lib.get_categories('cityscapes_vps')
  pan = np.full((2, H, W), 0, np.int32)           # road
  pan[:, 0:6, 0:6] = 13003                         # car 3 in both frames
  pan[0, 6:12, 8:16] = 11007                       # person 7 in frame 0 only
  frames = np.stack([np.full((H, W, 3), v, np.uint8) for v in (10, 20)])
  oracle = instance_cue_ceiling.OracleCue(table, max_instances=4, dim=8)
  oracle.set_clip(common.Clip('v', frames, pan, np.ones(2, bool), None))
  p0 = instances_lib.from_arrays(np.stack([_box(6, 8, 12, 11), _box(0, 0, 6, 5)]),
                                 np.array([11, 13]), max_instances=4)
  p1 = instances_lib.from_arrays(np.stack([_box(0, 0, 6, 6), _box(6, 8, 12, 16)]),
                                 np.array([13, 13]), max_instances=4)
  e0, e1 = oracle(frames[0], p0), oracle(frames[1], p1)
  assert e0.shape == (4, 8)
  assert np.array_equal(e0[1], e1[0]) and e0[1].max() == instance_cue_ceiling.SCALE  # the car
  assert e0[0].max() > 0 and not np.array_equal(e0[0], e0[1])  # the person: its own column
  assert not e1[1].any() and not e0[2:].any()  # owned by nobody / padding: zeros
  with pytest.raises(KeyError, match='set_clip'):
    oracle(np.zeros((H, W, 3), np.uint8), p0)

def test_mask_iou_by_hand():
  a = np.stack([_box(0, 0, 2, 2)])
  b = np.stack([_box(0, 1, 2, 3), _box(5, 5, 6, 6)])
  np.testing.assert_allclose(prediction_targets.mask_iou(a, b), [[2 / 6, 0.0]])


# ---------------------------------------------------------------------------------------------
# The fusion fit.

def _rule_data(w_inst, w_pix, bias, *, pairs=600, m=5, seed=0):
  """Rows whose target is drawn from the rule's softmax (columns + "no match" at logit 0)."""
  rng = np.random.default_rng(seed)
  inst = rng.random((pairs, m, m)).astype(np.float32)
  pix = rng.random((pairs, m, m)).astype(np.float32)
  f = w_inst * inst.astype(np.float64) + w_pix * pix + bias
  logits = np.concatenate([f, np.zeros((pairs, m, 1))], -1)
  p = np.exp(logits - logits.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  u = rng.random((pairs, m, 1))
  choice = (p.cumsum(-1) < u).sum(-1)
  target = np.where(choice < m, choice, -1).astype(np.int32)
  return inst, pix, target, np.ones((pairs, m, m), bool)


def test_fusion_fit_recovers_known_weights_deterministically():
  # The instance cue is five times as informative as the pixel cue.
  inst, pix, target, allowed = _rule_data(5.0, 1.0, -3.0)
  params, losses = fusion_fit.fit_fusion(inst, pix, target, allowed, l2=0.0)
  w = np.asarray(params['conv']['kernel']).ravel()
  b = float(np.asarray(params['conv']['bias'])[0])
  np.testing.assert_allclose([w[0], w[1], b], [5.0, 1.0, -3.0], atol=0.35)
  assert 3.5 < w[0] / w[1] < 7.0
  assert len(losses) < 15 and all(b <= a + 1e-12 for a, b in zip(losses, losses[1:]))
  again, _ = fusion_fit.fit_fusion(inst, pix, target, allowed, l2=0.0)
  np.testing.assert_array_equal(again['conv']['kernel'], params['conv']['kernel'])
  # The analytic Newton loss is the jnp loss the module documents.
  jnp_loss = float(fusion_losses.fusion_row_loss(params, inst=inst, pix=pix, target=target,
                                                 allowed=allowed))
  assert jnp_loss == pytest.approx(fusion_fit.held_out_loss(params, inst, pix, target, allowed),
                                   rel=1e-4)
  # Held out: the fit beats the plain sum on rows drawn from the same model.
  held = _rule_data(5.0, 1.0, -3.0, seed=1)
  assert (fusion_fit.held_out_loss(params, *held)
          < fusion_fit.held_out_loss(fusion.init_fusion_params(), *held))


def test_rows_without_a_counterpart_teach_the_bias_to_reject():
  # Row 0 has its true match at column 0 (both cues high); row 1 has no counterpart and its
  # best entry is middling. The plain sum matches row 1 anyway; the fitted fusion rejects it.
  pairs = 50
  inst = np.tile(np.array([[0.9, 0.1], [0.1, 0.45]], np.float32), (pairs, 1, 1))
  pix = np.tile(np.array([[0.8, 0.0], [0.0, 0.4]], np.float32), (pairs, 1, 1))
  allowed = np.ones((pairs, 2, 2), bool)
  target = np.tile(np.array([0, -1], np.int32), (pairs, 1))
  params, _ = fusion_fit.fit_fusion(inst, pix, target, allowed)
  plain = fusion.init_fusion_params()
  assert fusion_fit.row_decision_accuracy(plain, inst, pix, target, allowed) == 0.5
  assert fusion_fit.row_decision_accuracy(params, inst, pix, target, allowed) == 1.0


def test_decision_fit_finds_weights_that_decide_every_row_right():
  # Rows 0-1: a small object whose warped mask barely overlaps its next mask (dice 0.05, the
  # only overlap of the row) and a middling instance cue; row 2: gone, nothing overlaps it.
  # Row 3: a large object, dice 0.9. Many such pairs plus pairs where row 2 is there (dice 0.6).
  inst = np.array([[0.5, 0.1, 0.1, 0.1], [0.1, 0.5, 0.1, 0.1], [0.2, 0.2, 0.3, 0.2],
                   [0.1, 0.1, 0.1, 0.9]], np.float32)
  pix = np.array([[0.05, 0, 0, 0], [0, 0.05, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0.9]], np.float32)
  target = np.array([0, 1, -1, 3], np.int32)
  pix_b = pix.copy()
  pix_b[2, 2] = 0.6
  target_b = np.array([0, 1, 2, 3], np.int32)
  n = 20
  inst_all = np.stack([inst] * 2 * n)
  pix_all = np.stack([pix] * n + [pix_b] * n)
  target_all = np.stack([target] * n + [target_b] * n)
  allowed = np.ones(inst_all.shape, bool)
  params, acc = fusion_fit.fit_fusion_decisions(inst_all, pix_all, target_all, allowed)
  assert acc.shape == (len(fusion_fit.INSTANCE_WEIGHTS), len(fusion_fit.BIASES))
  assert acc.max() == 1.0
  assert fusion_fit.row_decision_accuracy(params, inst_all, pix_all, target_all, allowed) == 1.0
  w = np.asarray(params['conv']['kernel']).ravel()
  b = float(np.asarray(params['conv']['bias']).ravel()[0])
  assert w[1] == 1.0 and -0.05 < b + 0.3 * w[0] and b + 0.3 * w[0] < 0  # row 2 rejected
  # The plain sum (no bias) matches the gone row 2 anyway.
  plain = fusion.init_fusion_params()
  assert fusion_fit.row_decision_accuracy(plain, inst_all, pix_all, target_all, allowed) < 1.0
  again, _ = fusion_fit.fit_fusion_decisions(inst_all, pix_all, target_all, allowed)
  np.testing.assert_array_equal(again['conv']['kernel'], params['conv']['kernel'])


def test_ownership_targets_follow_fragments_and_leave_unknowns_out():
  gt = instances_lib.from_arrays(np.stack([_box(0, 0, 6, 6), _box(8, 8, 12, 12),
                                           _box(0, 10, 4, 14)]), np.array([13, 13, 13]),
                                 max_instances=4)
  gt_ids = np.array([13001, 13002, 13003, -1])
  # Frame t: object 1 split in a large and a small fragment; object 2 covered by a
  # prediction another object owns (a merge with object 4, not in frame t's ground truth
  # here); object 3 not predicted at all and overlapped by nothing.
  cur = instances_lib.from_arrays(np.stack([_box(0, 0, 2, 6), _box(2, 0, 6, 6),
                                            _box(7, 7, 12, 16)]), np.array([13, 13, 13]),
                                  max_instances=4)
  owner_cur = np.array([13001, 13001, 13009, -1])
  owner_prev = np.array([13001, 13002, 13003, 13004])  # object 4 is gone from frame t
  target, known = fusion_data.ownership_targets(owner_prev, owner_cur, cur, gt, gt_ids)
  assert target[0] == 1 and known[0]           # the fragment holding most of object 1
  assert not known[1]                          # object 2 is overlapped by someone else's
  assert known[2] and target[2] == -1          # object 3 missed: no counterpart
  assert known[3] and target[3] == -1          # object 4 gone: no counterpart


def test_no_instances_is_an_ordinary_pair_without_rows():
  table = categories_lib.get_categories('cityscapes_vps')
  car = 13
  pan = np.zeros((3, H, W), np.int32)               # road everywhere
  pan[:, 2:6, 2:8] = car * 1000 + 1                 # one car on every frame
  clip = {'frames': np.zeros((3, H, W, 3), np.uint8), 'panoptic': pan,
          'labelled': np.ones(3, bool), 'flow': np.zeros((2, H, W, 2), np.float32)}

  def segment_nothing(frames):
    n = len(frames)
    return {'masks': np.zeros((n, 4, H, W), bool), 'classes': np.full((n, 4), -1, np.int32),
            'scores': np.zeros((n, 4), np.float32), 'boxes': np.zeros((n, 4, 4), np.float32),
            'valid': np.zeros((n, 4), bool), 'kernels': np.zeros((n, 4, 1), np.float32)}

  def embed(image, inst):
    return np.zeros((inst.max_instances, 2), np.float32)

  kwargs = dict(embed=embed, dustbin_logit=None, table=table, max_instances=4,
                labels_on_every_frame=True)
  empty = fusion_data.pair_matrices([clip], segment=segment_nothing, **kwargs)
  assert empty.num_pairs == 2 and not empty.allowed.any() and (empty.target == -1).all()
  params, losses = fusion_fit.fit_fusion(empty.inst, empty.pix, empty.target, empty.allowed)
  np.testing.assert_array_equal(params['conv']['kernel'].ravel(), [1.0, 1.0])  # plain sum kept
  assert fusion_fit.row_decision_accuracy(params, empty.inst, empty.pix, empty.target,
                                          empty.allowed) is None
  gt = fusion_data.pair_matrices([clip], segment=None, **kwargs)  # ground-truth segments
  assert gt.allowed[:, 0, 0].all() and gt.target[:, 0].tolist() == [0, 0]


def test_fusion_split_holds_clips_out_of_the_head():
  c = synthetic.get_config()
  head, fit, held = train_tracker.fusion_split(c, 48)
  assert (list(head), list(fit), list(held)) == (list(range(42)), [42, 43, 44],
                                                 [45, 46, 47])
  c.track.fusion_holdout_clips = 48
  with pytest.raises(errors.ConfigError, match='fusion_holdout_clips=48'):
    train_tracker.fusion_split(c, 48)


def test_fusion_on_predictions_without_a_segmenter_names_the_stage(tmp_path):
  c = synthetic.get_config('tiny')
  c.track.fusion_segments = 'predicted'
  with pytest.raises(errors.CheckpointError, match='mode=train_seg') as e:
    train_tracker.segment_fn_for(c, str(tmp_path))
  assert 'fusion_segments=gt' in str(e.value)
  c.track.fusion_segments = 'gt'
  assert train_tracker.segment_fn_for(c, str(tmp_path)) is None


# ---------------------------------------------------------------------------------------------
# The backward direction of the temporal consistency constraint.

def _three_frames(memory_embeddings, current_embeddings, *, backward: bool):
  """Frame 0: instances A, B; frame 1: nothing; frame 2: instances C, D. Returns the ids."""
  cls = 13
  emb = {0: np.asarray(memory_embeddings, np.float32),
         2: np.asarray(current_embeddings, np.float32)}

  def embed_fn(image, inst):
    out = np.zeros((inst.max_instances, 2), np.float32)
    e = emb.get(int(image[0, 0, 0]))
    if e is not None:
      out[:len(e)] = e
    return out

  tracker = tracker_lib.VideoTracker('instance', temporal=True, temporal_backward=backward,
                                     max_instances=4, embed_fn=embed_fn, dustbin_logit=None)
  two = instances_lib.from_arrays(np.stack([_box(0, 0, 4, 4), _box(6, 6, 10, 10)]),
                                  np.array([cls, cls]), max_instances=4)
  ids = []
  for t, inst in enumerate([two, instances_lib.empty(4, H, W), two]):
    image = np.full((H, W, 3), t, np.uint8)
    ids.append(tracker.update(image, inst).ids[:2].tolist())
  return ids


def test_backward_check_rejects_a_match_the_reverse_association_does_not_confirm():
  # Dot products [[5, 4], [0, -5]] (rows A, B; columns C, D). Forward, p(.|B) picks C with
  # 0.99 and the mutual check keeps B -> C; backward, p(.|C) over {A, B} picks A: not confirmed.
  mem = [[5.0, 4.0], [0.0, -5.0]]
  cur = [[1.0, 0.0], [0.0, 1.0]]
  forward_only = _three_frames(mem, cur, backward=False)
  assert forward_only[0] == [1, 2] and forward_only[2][0] == 2     # C took B's id
  both = _three_frames(mem, cur, backward=True)
  assert both[2][0] not in (1, 2)                                   # C starts a new track


def test_backward_check_accepts_a_consistent_match():
  mem = [[5.0, 0.0], [0.0, 5.0]]
  cur = [[1.0, 0.0], [0.0, 1.0]]
  assert _three_frames(mem, cur, backward=True)[2] == [1, 2]
  assert _three_frames(mem, cur, backward=False)[2] == [1, 2]


def test_backward_confirms_by_hand():
  match = np.array([1, 0, -1])
  reverse = np.array([[0.9, 0.2, 0.0], [0.3, 0.1, 0.0]])   # rows: current j; columns: stored i
  allowed = np.ones((2, 3), bool)
  # Stored 0 -> current 1: current 1's reverse arg-max is stored 0: kept. Stored 1 -> current
  # 0: current 0's reverse arg-max is stored 0, not 1: rejected.
  assert tracker_lib.backward_confirms(match, reverse, allowed, 0.01).tolist() == [1, -1, -1]
  reverse2 = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.0]])
  assert tracker_lib.backward_confirms(match, reverse2, allowed, 0.01).tolist() == [1, 0, -1]
  assert tracker_lib.backward_confirms(match, reverse2, allowed, 0.95).tolist() == [-1, -1, -1]


def test_fusion_matrices_on_a_trained_segmenters_predictions(tiny_run):
  from hybrid_jax import trained_models
  from hybrid_jax import workdirs
  from hybrid_jax.data import datasets
  c = synthetic.get_config('tiny')
  c.track.fusion_segments = 'predicted'
  segment = train_tracker.segment_fn_for(c, tiny_run)
  models = trained_models.load_models(c, tiny_run, variants=['hybrid'])
  clip = datasets.get_source(c, 'train', workdirs.data_dir(c, tiny_run))[0]
  out = fusion_data.pair_matrices(
      [clip], embed=models.head.embed_fn, dustbin_logit=models.head.dustbin_logit,
      table=categories_lib.get_categories(c.data.categories),
      max_instances=c.data.max_instances, labels_on_every_frame=True, segment=segment,
      flow_fn=models.flow)
  m = c.data.max_instances
  t = len(clip['frames'])
  assert out.inst.shape == out.pix.shape == out.allowed.shape == (t - 1, m, m)
  assert out.target.shape == (t - 1, m)
  # Rows of predictions without a ground-truth segment are left out; targets lie in allowed.
  rows, cols = np.nonzero(out.target >= 0)
  assert out.allowed[rows, cols, out.target[rows, cols]].all()


def test_head_pairs_on_predicted_instances():
  table = categories_lib.get_categories('cityscapes_vps')
  car = 13
  pan = np.zeros((1, 2, H, W), np.int32)
  pan[0, :, 0:6, 0:6] = car * 1000 + 4          # one car on both frames

  def segment(frames):                          # frame 0: the car + a false positive;
    n, m = len(frames), 3                       # frame 1: nothing found
    masks = np.zeros((n, m, H, W), bool)
    masks[0, 0] = _box(0, 0, 6, 5)
    masks[0, 1] = _box(8, 10, 12, 16)
    valid = masks.any((2, 3))
    return {'masks': masks, 'classes': np.where(valid, car, -1).astype(np.int32),
            'scores': valid.astype(np.float32), 'boxes': np.zeros((n, m, 4), np.float32),
            'valid': valid, 'kernels': np.zeros((n, m, 1), np.float32)}

  batch = {'frames': np.zeros((1, 2, H, W, 3), np.uint8), 'panoptic': pan}
  out = train_tracker.to_predicted_pair_batch(batch, table=table, max_instances=4,
                                              segment=segment)
  assert out['valid_prev'][0].tolist() == [True, True, False, False]
  assert not out['valid_cur'].any()               # an ordinary pair with no columns
  assert out['target'][0].tolist() == [-1, -1, -1, -1]
  assert out['masks_prev'].shape == (1, 4, H, W)
  # The same prediction on both frames: the car row targets the car column, the false
  # positive has no counterpart.
  both = lambda frames: {k: np.stack([v[0], v[0]]) for k, v in segment(frames).items()}  # noqa: E731
  out = train_tracker.to_predicted_pair_batch(batch, table=table, max_instances=4, segment=both)
  assert out['target'][0].tolist() == [0, -1, -1, -1]


# ---------------------------------------------------------------------------------------------
# Eq. 8's chained similarity (track.temporal_similarity='chained').

def test_association_probability_by_hand():
  allowed = np.array([[True, True, False], [False, False, False]])
  score = np.array([[2.0, -1.0, 9.0], [1.0, 1.0, 1.0]])
  p = tracker_lib.association_probability(score, allowed, 'hybrid')
  z = np.exp(2.0) + np.exp(-1.0) + 1.0  # the row's allowed entries and "no match" at 0
  assert p[0].tolist() == pytest.approx([np.exp(2.0) / z, np.exp(-1.0) / z, 0.0])
  assert p[1].tolist() == [0.0, 0.0, 0.0]
  dice = tracker_lib.association_probability(np.array([[0.5, 1.2]]),
                                             np.array([[True, False]]), 'pixel')
  assert dice.tolist() == [[0.5, 0.0]]


def _chain_scene(similarity: str, backward: bool = False):
  """Frame 0: A, B; frame 1: K (both A and B look like it, the mutual check gives it to A);
  frame 2: K again and J, which looks like nothing stored (B . J = -3) but like K a little.
  Returns the ids of frame 2's slots."""
  cls = 13
  emb = {0: [[5.0, 0.0, 0.0], [4.0, 0.0, -3.0]], 1: [[1.0, 0.0, 0.0]],
         2: [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]}
  masks = {0: [_box(0, 0, 4, 4), _box(6, 6, 10, 10)], 1: [_box(0, 0, 4, 4)],
           2: [_box(0, 0, 4, 4), _box(6, 6, 10, 10)]}

  def embed_fn(image, inst):
    out = np.zeros((inst.max_instances, 3), np.float32)
    e = np.asarray(emb[int(image[0, 0, 0])], np.float32)
    out[:len(e)] = e
    return out

  tracker = tracker_lib.VideoTracker('instance', temporal=True, temporal_backward=backward,
                                     temporal_similarity=similarity, max_instances=4,
                                     embed_fn=embed_fn, dustbin_logit=0.0)
  ids = []
  for t in range(3):
    inst = instances_lib.from_arrays(np.stack(masks[t]), np.full(len(masks[t]), cls),
                                     max_instances=4)
    ids.append(tracker.update(np.full((H, W, 3), t, np.uint8), inst).ids[:len(masks[t])].tolist())
  return ids


def test_chained_similarity_relinks_through_the_middle_frame():
  direct = _chain_scene('direct')
  assert direct[0] == [1, 2] and direct[1] == [1] and direct[2][0] == 1
  # Directly, p(J | B) = e^-3 / (e^4 + e^-3 + 1) < θ = 0.01: J starts a new track.
  assert direct[2][1] not in (1, 2)
  # Chained (eq. 8): p(K | B) p(J | K) = e^4/(e^4+1) * 1/(e+2) = 0.21 >= θ: J takes B's id.
  assert _chain_scene('chained')[2] == [1, 2]
  assert _chain_scene('chained', backward=True)[2] == [1, 2]  # column J's best row is B


def test_temporal_similarity_is_checked():
  with pytest.raises(errors.ConfigError, match='temporal_similarity'):
    tracker_lib.VideoTracker('pixel', temporal_similarity='eq8')
  c = synthetic.get_config('tiny')
  c.track.temporal_similarity = 'eq8'
  from hybrid_jax import config_checks
  with pytest.raises(errors.ConfigError, match='track.temporal_similarity'):
    config_checks.check_config(c)


# ---------------------------------------------------------------------------------------------
# The backward check's reverse pixel cue from real backward flow (track.temporal_backward_flow).

def _gap_scene(backward_flow_fn=None, *, flow_source=None, backward_flow=True, **kw):
  """Frame 0: A at the top left; frame 1: nothing; frame 2: C where A was (zero forward flow,
  so the memory's forward dice is 1). Returns (frame 2's id of C, A's id)."""
  if flow_source is None:
    flow_source = np.zeros((2, H, W, 2), np.float32)
  tracker = tracker_lib.VideoTracker('pixel', temporal=True, temporal_backward=True,
                                     temporal_backward_flow=backward_flow, max_instances=4,
                                     flow_source=flow_source, backward_flow_fn=backward_flow_fn,
                                     **kw)
  one = instances_lib.from_arrays(_box(0, 0, 4, 4)[None], np.array([13]), max_instances=4)
  ids = [tracker.update(np.full((H, W, 3), t, np.uint8), inst).ids[0]
         for t, inst in enumerate([one, instances_lib.empty(4, H, W), one])]
  return int(ids[2]), int(ids[0])


def test_backward_flow_rejects_a_memory_match_the_backward_warp_does_not_confirm():
  calls = []

  def moves_away(image_from, image_to):  # frame t's C lands 8 px right of where A was
    calls.append((int(image_from[0, 0, 0]), int(image_to[0, 0, 0])))
    return np.tile(np.array([8.0, 0.0], np.float32), (H, W, 1))

  c, a = _gap_scene(moves_away)
  assert c != a and calls == [(2, 0)]  # flow from frame 2 back to the stored frame 0
  # The forward-warped dice read column-wise (the default reading) confirms the same match.
  assert _gap_scene(backward_flow=False) == (a, a)


def test_backward_flow_accepts_a_consistent_match_and_a_flow_model_gives_it():
  still = lambda a, b: np.zeros((H, W, 2), np.float32)  # noqa: E731
  c, a = _gap_scene(still)
  assert c == a
  # A flow model as the flow source (`CallableFlowSource`) gives the backward flow itself.
  c, a = _gap_scene(flow_source=still)
  assert c == a


def test_backward_flow_needs_a_flow_model_and_the_direct_similarity():
  with pytest.raises(errors.ConfigError, match='temporal_backward_flow') as e:
    _gap_scene()  # precomputed forward flows only
  assert 'forward flow only' in str(e.value) and 'ArrayFlowSource' in str(e.value)
  with pytest.raises(errors.ConfigError, match="'chained'"):
    _gap_scene(lambda a, b: np.zeros((H, W, 2), np.float32), temporal_similarity='chained')


def test_make_tracker_runs_backward_flow_through_the_batched_flow_model():
  from hybrid_jax import inference
  shapes = []

  def flow_model(frames_a, frames_b):  # a batched model, as TrainedModels.flow
    shapes.append(frames_a.shape)
    out = np.zeros(frames_a.shape[:3] + (2,), np.float32)
    out[..., 0] = 8.0 * (frames_a[:, :1, :1, 0] == 2)  # only the pair starting at frame 2 moves
    return out

  cfg = dict(variant='pixel', temporal=True, mutual_check=True, threshold=1e-5,
             temporal_threshold=0.01, memory_frames=5, matcher='greedy',
             temporal_backward=True, temporal_backward_flow=True)
  tracker = inference.make_tracker(cfg, max_instances=4, categories=None,
                                   flow_model=flow_model, flow_batch=3)
  one = instances_lib.from_arrays(_box(0, 0, 4, 4)[None], np.array([13]), max_instances=4)
  ids = [tracker.update(np.full((H, W, 3), t, np.uint8), inst,
                        flow=np.zeros((H, W, 2), np.float32)).ids[0]
         for t, inst in enumerate([one, instances_lib.empty(4, H, W), one])]
  assert ids[2] != ids[0] and shapes == [(3, H, W, 3)]  # padded to the compiled batch
  cfg['temporal_backward_flow'] = False
  assert inference.make_tracker(cfg, max_instances=4, categories=None,
                                flow_model=flow_model).backward_flow_fn is None
