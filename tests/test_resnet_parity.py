"""Parity of the ResNet-50 / deformable-conv ports with torchvision, and converter checks.

torch is imported once here (slow import); everything that needs it lives in this file.
"""

import os
import pickle

import jax
import numpy as np
import pytest

torch = pytest.importorskip('torch')
torchvision = pytest.importorskip('torchvision')

from hybrid_jax import errors  # noqa: E402
from hybrid_jax.convert import panoptic_fcn as pfcn_conv  # noqa: E402
from hybrid_jax.convert import resnet as resnet_conv  # noqa: E402
from hybrid_jax.models import deform_conv  # noqa: E402
from hybrid_jax.models import resnet  # noqa: E402

KEYS_FILE = os.path.join(os.path.dirname(__file__), 'test_pfcn_r50_keys.txt')


def _random_torchvision_resnet50(seed=0):
  torch.manual_seed(seed)
  model = torchvision.models.resnet50(weights=None)
  with torch.no_grad():  # non-trivial BN statistics and affine terms
    for m in model.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.running_mean.uniform_(-0.2, 0.2)
        m.running_var.uniform_(0.5, 1.5)
        m.weight.uniform_(0.5, 1.0)
        m.bias.uniform_(-0.1, 0.1)
  return model.eval()


def test_resnet50_matches_torchvision():
  """C2..C5 of the converted model equal torchvision's (eval mode), rel. error < 1e-4."""
  model = _random_torchvision_resnet50()
  sd = {k: v.numpy() for k, v in model.state_dict().items()}
  variables, report = resnet_conv.torchvision_to_variables(sd)
  assert '0 missing, 0 with wrong shape' in report
  x = np.random.default_rng(0).standard_normal((1, 64, 64, 3)).astype(np.float32)
  with torch.no_grad():
    t = torch.from_numpy(x.transpose(0, 3, 1, 2))
    t = model.maxpool(model.relu(model.bn1(model.conv1(t))))
    ref = {}
    for i, layer in enumerate((model.layer1, model.layer2, model.layer3, model.layer4)):
      t = layer(t)
      ref[f'res{i + 2}'] = t.numpy().transpose(0, 2, 3, 1)
  ours = resnet.ResNet('resnet50', stride_in_1x1=False).apply(variables, x)
  assert resnet.count_parameters(variables) == 23_508_032
  for k, r in ref.items():
    o = np.asarray(ours[k])
    assert o.shape == r.shape, k
    rel = np.abs(o - r).max() / np.abs(r).max()
    assert rel < 1e-4, (k, rel)


@pytest.mark.parametrize('modulated,groups,stride', [(True, 1, 1), (False, 2, 2)])
def test_deform_conv_matches_torchvision(modulated, groups, stride):
  from torchvision.ops import deform_conv2d
  rng = np.random.default_rng(1)
  b, c, h, w, o, k = 2, 4, 7, 9, 5, 3
  ho = (h + 2 - k) // stride + 1
  wo = (w + 2 - k) // stride + 1
  x = rng.standard_normal((b, c, h, w)).astype(np.float32)
  weight = rng.standard_normal((o, c, k, k)).astype(np.float32)
  bias = rng.standard_normal((o,)).astype(np.float32)
  # Large offsets so that samples fall between pixels and outside the image.
  offset = (3 * rng.standard_normal((b, 2 * groups * k * k, ho, wo))).astype(np.float32)
  mask = rng.uniform(size=(b, groups * k * k, ho, wo)).astype(np.float32) if modulated else None
  ref = deform_conv2d(torch.from_numpy(x), torch.from_numpy(offset), torch.from_numpy(weight),
                      torch.from_numpy(bias), stride=stride, padding=1,
                      mask=None if mask is None else torch.from_numpy(mask)).numpy()
  nhwc = lambda a: a.transpose(0, 2, 3, 1)
  ours = deform_conv.deform_conv2d(
      nhwc(x), nhwc(offset), weight.transpose(2, 3, 1, 0),
      mask=None if mask is None else nhwc(mask), bias=bias, stride=stride, padding=1)
  np.testing.assert_allclose(np.asarray(ours), nhwc(ref), rtol=1e-5, atol=1e-4)


def test_resnet_converter_reports_missing_and_unexpected():
  model = _random_torchvision_resnet50()
  sd = {k: v.numpy() for k, v in model.state_dict().items()}
  sd['extra.weight'] = np.zeros(3, np.float32)
  _, report = resnet_conv.torchvision_to_variables(sd)
  assert 'unexpected: extra.weight' in report
  del sd['layer3.2.conv2.weight']
  # Named as the user's file spells it, with our name beside it.
  with pytest.raises(errors.CheckpointError, match=r'missing: layer3\.2\.conv2\.weight \(ours: '
                     'params/res4_2/conv2/conv/kernel\\)'):
    resnet_conv.torchvision_to_variables(sd)
  sd2 = {k: v.numpy() for k, v in model.state_dict().items()}
  sd2['layer1.0.conv1.weight'] = np.zeros((64, 64, 3, 3), np.float32)
  with pytest.raises(errors.CheckpointError, match='wrong shape'):
    resnet_conv.torchvision_to_variables(sd2)
  with pytest.raises(errors.CheckpointError, match='another architecture'):
    resnet_conv.torchvision_to_variables({'fnet.conv1.weight': np.zeros((64, 3, 7, 7))})


def test_detectron2_pickle_names_and_safe_unpickler(tmp_path):
  """Caffe2 names map to the same variables as torchvision names; code objects are refused."""
  model = _random_torchvision_resnet50()
  d2, _ = resnet_conv.torchvision_to_d2_names(
      {k: v.numpy() for k, v in model.state_dict().items()})
  inverse = {}
  for name, v in d2.items():  # build Caffe2 blob names from Detectron2 names
    c2 = (name.replace('.norm.weight', '.bn_gamma').replace('.norm.bias', '.bn_beta')
          .replace('.norm.running_mean', '.bn_running_mean')
          .replace('.norm.running_var', '.bn_running_var')
          .replace('stem.conv1.bn_', 'res_conv1_bn_').replace('stem.conv1.weight', 'conv1_w')
          .replace('.shortcut.', '.branch1.').replace('.conv1.', '.branch2a.')
          .replace('.conv2.', '.branch2b.').replace('.conv3.', '.branch2c.')
          .replace('.weight', '_w').replace('.', '_'))
    inverse[c2] = v
  assert 'res2_0_branch2a_bn_gamma' in inverse and 'res_conv1_bn_running_var' in inverse
  inverse['fc1000_w'] = np.zeros((10, 2048), np.float32)
  path = tmp_path / 'R-50.pkl'
  with open(path, 'wb') as f:
    pickle.dump({'blobs': inverse}, f, protocol=2)
  vars_c2, report = resnet_conv.detectron2_to_variables(resnet_conv.load_numpy_pickle(str(path)))
  vars_tv, _ = resnet_conv.torchvision_to_variables(
      {k: v.numpy() for k, v in model.state_dict().items()})
  flat_a = resnet_conv.flatten(vars_c2)
  flat_b = resnet_conv.flatten(vars_tv)
  assert flat_a.keys() == flat_b.keys()
  assert all(np.array_equal(flat_a[k], flat_b[k]) for k in flat_a)
  assert 'fc1000.weight' in report

  class Evil:
    def __reduce__(self):
      return (os.system, ('echo pwned',))
  bad = tmp_path / 'evil.pkl'
  with open(bad, 'wb') as f:
    pickle.dump({'x': Evil()}, f)
  with pytest.raises(errors.CheckpointError, match='Refusing to unpickle'):
    resnet_conv.load_numpy_pickle(str(bad))


def _official_state_dict():
  rng = np.random.default_rng(0)
  state = {}
  with open(KEYS_FILE) as f:
    for line in f:
      if line.startswith('#') or not line.strip():
        continue
      name, shape = line.strip().split(' ', 1)
      shape = tuple(int(s) for s in shape.strip('[]').split(',') if s.strip())
      state[name] = rng.standard_normal(shape).astype(np.float32) if len(shape) > 1 else (
          rng.uniform(0.5, 1.5, shape).astype(np.float32))
  return state


def test_panoptic_fcn_converter_maps_every_official_key():
  state = _official_state_dict()
  assert len(state) == 346
  variables, report, info = pfcn_conv.convert_state_dict(state)
  assert '346 arrays converted, 346 expected; 0 missing, 0 with wrong shape, 0 unexpected' in report
  assert info['num_thing'] == 80 and info['num_stuff'] == 54 and info['position_deform'] == 'v2'
  n = sum(int(np.size(a)) for a in jax.tree_util.tree_leaves(variables))
  assert n == 37_105_751  # reference: total elements incl. FrozenBN buffers
  # Weight layouts: OIHW -> HWIO; the 1x1 generator conv -> [Cin, E].
  w = state['kernel_head.kernel_head.kernel_head_head_1.weight']
  np.testing.assert_array_equal(
      variables['params']['kernel_head']['tower_0']['conv']['kernel'][:, :, 257, 3], w[3, 257])
  g = state['thing_generator.embed_extractor.weight']
  np.testing.assert_array_equal(variables['params']['thing_generator']['kernel'], g[:, :, 0, 0].T)
  # Adapting to Cityscapes-VPS (8 things, 11 stuff + things channel).
  variables, report, info = pfcn_conv.convert_state_dict(state, num_thing=8, num_stuff=12)
  assert 're-initialised' in report and 'out_inst (80 -> 8' in report
  assert variables['params']['position_head']['out_inst']['kernel'].shape == (3, 3, 256, 8)
  # Missing and unexpected keys.
  del state['kernel_head.out_conv.bias']
  state['foo.bar'] = np.zeros(1)
  with pytest.raises(errors.CheckpointError, match=r'missing: kernel_head\.out_conv\.bias \(ours: '
                     'params/kernel_head/out_conv/bias\\)'):
    pfcn_conv.convert_state_dict(state)
  with pytest.raises(errors.CheckpointError, match='not a PanopticFCN'):
    pfcn_conv.convert_state_dict({'fnet.conv1.weight': np.zeros((64, 3, 7, 7))})


def test_convert_cli_writes_loadable_checkpoint(tmp_path):
  from hybrid_jax.cli import convert as cli
  from hybrid_jax.training import pretrained
  model = _random_torchvision_resnet50()
  pth = tmp_path / 'resnet50.pth'
  torch.save(model.state_dict(), pth)
  out = tmp_path / 'r50'
  assert cli.main(['resnet50', str(pth), str(out)]) == 0
  variables, meta = pretrained.load_pretrained(str(out), expect_architecture='resnet50')
  assert meta['stride_in_1x1'] is False and meta['input_format'] == 'RGB'
  np.testing.assert_array_equal(variables['params']['res3_0']['conv2']['conv']['kernel'],
                                model.layer2[0].conv2.weight.detach().numpy().transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(variables['batch_stats']['stem_conv1']['norm']['var'],
                                model.bn1.running_var.numpy())
  assert cli.main(['resnet50', str(tmp_path / 'missing.pth'), str(tmp_path / 'x')]) == 2


def test_missing_keys_are_named_as_the_checkpoint_spells_them():
  """The inverse name maps give back every key the converters read (no torch needed)."""
  flat = resnet_conv.flatten(pfcn_conv.expected_shapes(8, 12, 'v2'))
  assert len(flat) > 300
  for path in flat:
    name = pfcn_conv.source_name(path)
    assert name.split('.')[0] in ('backbone', 'semantic_fpn', 'position_head', 'kernel_head',
                                  'feature_encoder', 'thing_generator', 'stuff_generator'), name
    coll, flax_path = pfcn_conv._entry(name)
    assert (coll,) + flax_path == path, name
  for path in resnet_conv.flatten(resnet_conv.expected_resnet50_shapes(False)):
    d2 = resnet_conv.d2_backbone_name(path[1:])
    assert resnet_conv.d2_backbone_entry(d2) == (path[0], path[1:])
    renamed, _ = resnet_conv.torchvision_to_d2_names({resnet_conv.torchvision_name(d2): 0})
    assert list(renamed) == [d2]
  assert pfcn_conv.source_name(('params', 'kernel_head', 'tower_0', 'conv', 'kernel')) == (
      'kernel_head.kernel_head.kernel_head_head_1.weight')
