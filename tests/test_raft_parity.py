"""Parity with torchvision's RAFT (seeded random weights, converted), 12 iterations."""

import numpy as np
import pytest
from scipy import ndimage

torch = pytest.importorskip('torch')
optical_flow = pytest.importorskip('torchvision.models.optical_flow')

from hybrid_jax.convert import raft as convert_raft  # noqa: E402
from hybrid_jax.models.raft import model as raft  # noqa: E402


def textured_pair(h, w, dx=3, dy=-2, seed=0):
  """A smooth random texture and the same texture moved by (dx, dy) px, 0..255 float32."""
  rng = np.random.default_rng(seed)
  coarse = rng.uniform(0, 255, (h // 8 + 4, w // 8 + 4, 3))
  tex = np.clip(ndimage.zoom(coarse, (8, 8, 1), order=3), 0, 255).astype(np.float32)
  img1 = tex[8:8 + h, 8:8 + w]
  img2 = tex[8 - dy:8 - dy + h, 8 - dx:8 - dx + w]
  return img1, img2


@pytest.mark.parametrize('builder', ['raft_small', 'raft_large'])
def test_matches_torchvision(builder):
  torch.set_num_threads(1)  # the CPU is shared: more threads only spin
  torch.manual_seed(0)
  model = getattr(optical_flow, builder)(weights=None).eval()
  with torch.no_grad():  # non-trivial BN statistics so that their mapping matters
    for m in model.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.running_mean.uniform_(-0.1, 0.1)
        m.running_var.uniform_(0.8, 1.2)
        m.weight.uniform_(0.8, 1.2)
        m.bias.uniform_(-0.1, 0.1)
  img1, img2 = textured_pair(128, 128)  # torchvision needs >= 128 px

  def to_torch(x):  # torchvision expects [-1, 1]; our module normalises 0..255 itself
    return torch.from_numpy(x).permute(2, 0, 1)[None] / 127.5 - 1.0
  with torch.no_grad():
    ref = model(to_torch(img1), to_torch(img2), num_flow_updates=12)[-1]
  ref = ref[0].permute(1, 2, 0).numpy()
  variables, info = convert_raft.convert_state_dict(model.state_dict())
  assert info['format'] == 'torchvision'
  ours = np.asarray(raft.estimate_flow(variables, img1, img2, variant=info['variant'], iters=12))
  assert ours.shape == ref.shape == (128, 128, 2)
  assert np.abs(ref).max() > 0.5  # a non-trivial flow field, so the comparison means something
  diff = np.abs(ours - ref).max()
  assert diff < 1e-3, f'max abs difference {diff} px'
