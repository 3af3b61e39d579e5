"""Shared pytest setup: CPU only, repository root importable (for `configs`).

Compiled XLA programs are cached on disk (JAX's persistent compilation cache) and shared by
the xdist workers and the subprocesses tests start (the notebook kernel, multi-process
training): the end-to-end tests compile many of the same tiny programs, and on a 2-core
machine compiling is most of their time. Set HYBRID_JAX_TEST_JAX_CACHE='' to switch it off.
"""

import os
import sys
import tempfile

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
_CACHE = os.environ.get('HYBRID_JAX_TEST_JAX_CACHE',
                        os.path.join(tempfile.gettempdir(), 'hybrid_jax_test_jax_cache'))
if _CACHE:
  os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', _CACHE)
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.5')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)
