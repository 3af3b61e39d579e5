"""In CI (CI=true) a skipped test fails the run: the parity and notebook proofs cannot vanish."""

import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def _pytest(tmp_path, ci: str):
  shutil.copy(os.path.join(HERE, 'conftest.py'), tmp_path / 'conftest.py')
  (tmp_path / 'test_needs_missing_extra.py').write_text(
      "import pytest\n"
      "pytest.importorskip('hybrid_jax_no_such_module')\n"
      "def test_parity():\n  pass\n")
  (tmp_path / 'test_skips_itself.py').write_text(
      "import pytest\n"
      "def test_skipped():\n  pytest.skip('no torch')\n"
      "def test_passes():\n  pass\n")
  env = {**os.environ, 'CI': ci, 'HYBRID_JAX_TEST_JAX_CACHE': ''}
  return subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-rA',
                         '--continue-on-collection-errors',
                         str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True,
                        timeout=120)


def test_skips_fail_in_ci(tmp_path):
  r = _pytest(tmp_path, 'true')
  assert r.returncode != 0, r.stdout
  assert 'skipped in CI' in r.stdout
  assert 'test_needs_missing_extra.py' in r.stdout and 'test_skipped' in r.stdout


def test_skips_stay_skips_outside_ci(tmp_path):
  r = _pytest(tmp_path, '')
  assert r.returncode == 0, r.stdout
  assert '2 skipped' in r.stdout and '1 passed' in r.stdout
