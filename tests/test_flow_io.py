""".flo files and the `python -m hybrid_jax.cli.estimate_flow` command."""

import numpy as np
import pytest

from hybrid_jax import errors
from hybrid_jax.data import flo_files as flow_io


def test_flo_roundtrip_and_header(tmp_path):
  flow = np.random.default_rng(0).normal(size=(5, 7, 2)).astype(np.float32)
  path = tmp_path / 'a.flo'
  flow_io.write_flo(path, flow)
  raw = path.read_bytes()
  assert raw[:4] == b'PIEH'  # float32 202021.25, little-endian
  assert np.frombuffer(raw[4:12], '<i4').tolist() == [7, 5]  # width, then height
  assert len(raw) == 12 + 5 * 7 * 2 * 4
  assert np.frombuffer(raw[12:20], '<f4').tolist() == flow[0, 0].tolist()  # u first
  np.testing.assert_array_equal(flow_io.read_flo(path), flow)


def test_flo_rejects_bad_files(tmp_path):
  bad = tmp_path / 'bad.flo'
  bad.write_bytes(b'PIEX' + np.array([1, 1], '<i4').tobytes() + b'\0' * 8)
  with pytest.raises(errors.FormatError, match='magic'):
    flow_io.read_flo(bad)
  short = tmp_path / 'short.flo'
  flow_io.write_flo(short, np.zeros((3, 3, 2)))
  short.write_bytes(short.read_bytes()[:-4])
  with pytest.raises(errors.FormatError, match='truncated'):
    flow_io.read_flo(short)
  with pytest.raises(errors.FormatError):
    flow_io.write_flo(tmp_path / 'x.flo', np.zeros((3, 3, 3)))


def test_flow_command(tmp_path, capsys):
  from PIL import Image
  from hybrid_jax.cli import estimate_flow as flow_cmd
  from hybrid_jax.models.raft import model as raft
  from hybrid_jax.training import pretrained
  rng = np.random.default_rng(0)
  tex = rng.integers(0, 256, (72, 80, 3), dtype=np.uint8)
  Image.fromarray(tex[:64, :72]).save(tmp_path / 'a.png')
  Image.fromarray(tex[2:66, 3:75]).save(tmp_path / 'b.png')
  Image.fromarray(tex[:64, :72, 0]).save(tmp_path / 'gray.png')
  Image.fromarray(tex[:40, :72]).save(tmp_path / 'other_size.png')
  variables = raft.init_raft(0, variant='small')
  pretrained.save_pretrained(str(tmp_path / 'ckpt'), variables,
                             {'architecture': 'raft_small', 'source': 'test'})
  args = ['--checkpoint', str(tmp_path / 'ckpt'), '--iters', '2', '--out',
          str(tmp_path / 'f.flo')]
  assert flow_cmd.main([str(tmp_path / 'a.png'), str(tmp_path / 'b.png'), *args,
                        '--png', str(tmp_path / 'f.png')]) == 0
  flow = flow_io.read_flo(tmp_path / 'f.flo')
  assert flow.shape == (64, 72, 2) and np.isfinite(flow).all()
  assert np.asarray(Image.open(tmp_path / 'f.png')).shape == (64, 72, 3)
  assert 'raft' in capsys.readouterr().out.lower()
  # User mistakes: clear messages, exit code 2, no traceback.
  assert flow_cmd.main([str(tmp_path / 'a.png'), str(tmp_path / 'gray.png'), *args]) == 2
  assert 'RGB' in capsys.readouterr().err
  assert flow_cmd.main([str(tmp_path / 'a.png'), str(tmp_path / 'other_size.png'), *args]) == 2
  assert 'same size' in capsys.readouterr().err
  assert flow_cmd.main([str(tmp_path / 'a.png'), str(tmp_path / 'b.png'), '--checkpoint',
                        str(tmp_path), '--out', str(tmp_path / 'g.flo')]) == 2
  assert 'not a hybrid_jax pretrained checkpoint' in capsys.readouterr().err
