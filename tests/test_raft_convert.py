"""RAFT converter: official key names (reference raft.md Appendix A), detection, key reports."""

import numpy as np
import pytest

from hybrid_jax import errors
from hybrid_jax.convert import raft as convert_raft


def _official_keys(small: bool) -> dict[str, tuple]:
  """Appendix A written out from the reference's rules (independent of the converter)."""
  keys = {}

  def conv(name, o, i, kh, kw=None):
    keys[f'module.{name}.weight'] = (o, i, kh, kw or kh)
    keys[f'module.{name}.bias'] = (o,)

  def bn(name, c):
    for leaf in ('weight', 'bias', 'running_mean', 'running_var'):
      keys[f'module.{name}.{leaf}'] = (c,)
    keys[f'module.{name}.num_batches_tracked'] = ()

  for enc in ('fnet', 'cnet'):
    batch = enc == 'cnet' and not small
    if small:
      conv(f'{enc}.conv1', 32, 3, 7)
      cin = 32
      for layer, planes in ((1, 32), (2, 64), (3, 96)):
        for blk in (0, 1):
          p, q = f'{enc}.layer{layer}.{blk}', planes // 4
          conv(f'{p}.conv1', q, cin, 1)
          conv(f'{p}.conv2', q, q, 3)
          conv(f'{p}.conv3', planes, q, 1)
          if blk == 0 and layer > 1:
            conv(f'{p}.downsample.0', planes, cin, 1)
          cin = planes
      conv(f'{enc}.conv2', 128 if enc == 'fnet' else 160, 96, 1)
    else:
      if batch:
        bn('cnet.norm1', 64)
      conv(f'{enc}.conv1', 64, 3, 7)
      cin = 64
      for layer, planes in ((1, 64), (2, 96), (3, 128)):
        for blk in (0, 1):
          p = f'{enc}.layer{layer}.{blk}'
          conv(f'{p}.conv1', planes, cin, 3)
          conv(f'{p}.conv2', planes, planes, 3)
          if batch:
            bn(f'{p}.norm1', planes)
            bn(f'{p}.norm2', planes)
          if blk == 0 and layer > 1:
            if batch:
              bn(f'{p}.norm3', planes)
            conv(f'{p}.downsample.0', planes, cin, 1)
            if batch:
              bn(f'{p}.downsample.1', planes)
          cin = planes
      conv(f'{enc}.conv2', 256, 128, 1)
  u = 'update_block'
  if small:
    conv(f'{u}.encoder.convc1', 96, 196, 1)
    conv(f'{u}.encoder.convf1', 64, 2, 7)
    conv(f'{u}.encoder.convf2', 32, 64, 3)
    conv(f'{u}.encoder.conv', 80, 128, 3)
    for g in 'zrq':
      conv(f'{u}.gru.conv{g}', 96, 242, 3)
    conv(f'{u}.flow_head.conv1', 128, 96, 3)
    conv(f'{u}.flow_head.conv2', 2, 128, 3)
  else:
    conv(f'{u}.encoder.convc1', 256, 324, 1)
    conv(f'{u}.encoder.convc2', 192, 256, 3)
    conv(f'{u}.encoder.convf1', 128, 2, 7)
    conv(f'{u}.encoder.convf2', 64, 128, 3)
    conv(f'{u}.encoder.conv', 126, 256, 3)
    for g in 'zrq':
      conv(f'{u}.gru.conv{g}1', 128, 384, 1, 5)
    for g in 'zrq':
      conv(f'{u}.gru.conv{g}2', 128, 384, 5, 1)
    conv(f'{u}.flow_head.conv1', 256, 128, 3)
    conv(f'{u}.flow_head.conv2', 2, 256, 3)
    conv(f'{u}.mask.0', 256, 128, 3)
    conv(f'{u}.mask.2', 576, 256, 1)
  return keys


def _random_state_dict(keys, seed=0):
  rng = np.random.default_rng(seed)
  sd = {k: rng.normal(size=s).astype(np.float32) if s else np.array(7, np.int64)
        for k, s in keys.items()}
  for k in list(sd):  # BN aliases hold the same tensor (the module is saved twice)
    if '.downsample.1.' in k:
      sd[k] = sd[k.replace('downsample.1', 'norm3')]
  return sd


def test_official_standard_keys_land_in_place():
  keys = _official_keys(small=False)
  assert len(keys) == 179
  sd = _random_state_dict(keys)
  variables, info = convert_raft.convert_state_dict(sd)
  assert info['format'] == 'official' and info['variant'] == 'standard'
  p, s = variables['params'], variables['batch_stats']
  w = sd['module.update_block.gru.convz1.weight']  # [128, 384, 1, 5] OIHW
  k = p['update_block']['gru']['convz1']['kernel']
  assert k.shape == (1, 5, 384, 128)
  assert k[0, 3, 17, 5] == w[5, 17, 0, 3]
  w = sd['module.fnet.conv1.weight']
  assert p['fnet']['conv1']['kernel'][2, 6, 1, 40] == w[40, 1, 2, 6]
  np.testing.assert_array_equal(p['mask']['conv_2']['bias'], sd['module.update_block.mask.2.bias'])
  np.testing.assert_array_equal(s['cnet']['layer3_0']['norm3']['var'],
                                sd['module.cnet.layer3.0.downsample.1.running_var'])
  np.testing.assert_array_equal(p['cnet']['norm1']['scale'], sd['module.cnet.norm1.weight'])
  n = sum(x.size for x in __import__('jax').tree_util.tree_leaves(p))
  assert n == 5_257_536


def test_official_small_and_torchvision_detection():
  keys = _official_keys(small=True)
  assert len(keys) == 106
  sd = {k[len('module.'):]: v for k, v in _random_state_dict(keys).items()}  # prefix optional
  variables, info = convert_raft.convert_state_dict(sd, variant='small')
  assert (info['format'], info['variant']) == ('official', 'small')
  np.testing.assert_array_equal(variables['params']['cnet']['layer2_0']['downsample_0']['kernel'],
                                sd['cnet.layer2.0.downsample.0.weight'].transpose(2, 3, 1, 0))
  with pytest.raises(errors.CheckpointError, match="'small'.*'standard'"):
    convert_raft.convert_state_dict(sd, variant='standard')


def test_key_report_names_missing_and_unexpected():
  sd = _random_state_dict(_official_keys(small=False))
  del sd['module.update_block.flow_head.conv2.bias']
  sd['module.extra_head.weight'] = np.zeros(3, np.float32)
  with pytest.raises(errors.CheckpointError) as exc:
    convert_raft.convert_state_dict(sd)
  msg = str(exc.value)
  assert 'missing' in msg and 'update_block.flow_head.conv2.bias' in msg
  assert 'unexpected' in msg and 'extra_head.weight' in msg
  sd['module.update_block.flow_head.conv2.bias'] = np.zeros(2, np.float32)
  _, info = convert_raft.convert_state_dict(sd, strict=False)
  assert info['unexpected'] == ['extra_head.weight']
  sd['module.update_block.flow_head.conv2.bias'] = np.zeros(3, np.float32)
  with pytest.raises(errors.CheckpointError, match=r'wrong shape.*conv2.bias'):
    convert_raft.convert_state_dict(sd, strict=False)


def test_not_a_raft_checkpoint_and_inconsistent_alias():
  with pytest.raises(errors.CheckpointError, match='Not a RAFT checkpoint'):
    convert_raft.convert_state_dict({'backbone.conv1.weight': np.zeros((64, 3, 7, 7))})
  with pytest.raises(errors.CheckpointError, match='Not a RAFT'):
    convert_raft.convert_state_dict({})
  sd = _random_state_dict(_official_keys(small=False))
  sd['module.cnet.layer2.0.downsample.1.bias'] = sd['module.cnet.layer2.0.norm3.bias'] + 1
  with pytest.raises(errors.CheckpointError, match='same BatchNorm'):
    convert_raft.convert_state_dict(sd)


def test_convert_file_cli_roundtrip(tmp_path):
  torch = pytest.importorskip('torch')
  sd = _random_state_dict(_official_keys(small=True))
  torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, tmp_path / 'raft-small.pth')
  from hybrid_jax.cli.convert import main
  assert main(['raft', str(tmp_path / 'raft-small.pth'), str(tmp_path / 'out')]) == 0
  from hybrid_jax.models.raft import model as raft
  variables, variant = raft.load_raft(str(tmp_path / 'out'))
  assert variant == 'small'
  np.testing.assert_allclose(variables['params']['update_block']['gru']['convq']['bias'],
                             sd['module.update_block.gru.convq.bias'])
  with pytest.raises(errors.CheckpointError, match='raft_small'):
    raft.load_raft(str(tmp_path / 'out'), variant='standard')
  torch.save({'weight': torch.zeros(3)}, tmp_path / 'other.pth')
  assert main(['raft', str(tmp_path / 'other.pth'), str(tmp_path / 'out2')]) == 2
