"""Shared pytest setup: CPU only, repository root importable (for `configs`).

Compiled XLA programs are cached on disk (JAX's persistent compilation cache) and shared by
the xdist workers and the subprocesses tests start (the notebook kernel, multi-process
training): the end-to-end tests compile many of the same tiny programs, and on a 2-core
machine compiling is most of their time. Set HYBRID_JAX_TEST_JAX_CACHE='' to switch it off.
"""

import os
import sys
import tempfile

import pytest

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
_CACHE = os.environ.get('HYBRID_JAX_TEST_JAX_CACHE',
                        os.path.join(tempfile.gettempdir(), 'hybrid_jax_test_jax_cache'))
if _CACHE:
  os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', _CACHE)
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.5')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)


# ---- In CI a skipped proof is a failed proof ---------------------------------------------------
# The parity tests import torch / torchvision and the notebook test the Jupyter client with
# pytest.importorskip, so a broken install would turn those proofs into silent skips. With
# CI=true (set by .ci/run) every skip, at collection or at run time, is reported as a failure.


_IN_CI = os.environ.get('CI', '').strip().lower() in ('1', 'true', 'yes')


def _fail_skip(report):
  if _IN_CI and report.skipped and not hasattr(report, 'wasxfail'):
    reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
    report.outcome = 'failed'
    report.longrepr = (f'skipped in CI (CI=true), which counts as a failure: {reason}. '
                       'Install the test extras (pip install -r requirements-test.txt).')


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
  del item, call
  outcome = yield
  _fail_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
  del collector
  outcome = yield
  _fail_skip(outcome.get_result())


# ---- A finished tiny pipeline, shared by the tests that need trained networks ------------------

@pytest.fixture(scope='session')
def tiny_run(tmp_path_factory) -> str:
  """The workdir of ``mode=all`` on configs/synthetic.py:tiny (no_match='dustbin')."""
  from configs import synthetic  # pylint: disable=g-import-not-at-top
  from hybrid_jax import train  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path_factory.mktemp('tiny_run'))
  train.run(synthetic.get_config('tiny'), workdir)
  return workdir
