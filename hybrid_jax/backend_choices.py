"""The CPU-specific fast paths, one small function per choice, each taking the platform.

Three choices were measured on a 2-core CPU and pay off there only (benchmarks/RESULTS.md):

- the dice matrix by bit-packed AND + popcount (`tracking.pixel`, ~25x the float matmul on
  XLA:CPU); on GPU / TPU the natural form is one matrix product (bf16 operands are exact for
  0/1 masks, the counts accumulate in float32);
- Winograd convolutions in RAFT's refinement loop (`models.raft.winograd`, faster at inference
  on XLA:CPU); accelerators run the plain convolutions their libraries are tuned for;
- the XLA:CPU compiler option that routes RAFT's convolutions to Eigen instead of YNNPACK
  (`models.raft.model.CPU_COMPILER_OPTIONS`); other backends do not know it.

`platform` is a JAX platform name ('cpu', 'cuda', 'rocm', 'tpu', or the backend name 'gpu');
None means the default backend of this process. `tests/test_lowering.py` exports every
program with each platform's choices.
"""

from __future__ import annotations

import jax

_GPU_NAMES = ('gpu', 'cuda', 'rocm')


def platform_of(platform: str | None = None) -> str:
  """The platform name ('cpu', 'cuda', 'rocm', 'tpu'); 'gpu' (a backend name) -> 'cuda'."""
  name = (platform or jax.default_backend()).lower()
  return 'cuda' if name == 'gpu' else name


def is_cpu(platform: str | None = None) -> bool:
  return platform_of(platform) == 'cpu'


def dice_method(platform: str | None = None) -> str:
  """'packed' on CPU, 'matmul' elsewhere (`tracking.pixel.dice_matrix(method='auto')`)."""
  return 'packed' if is_cpu(platform) else 'matmul'


def raft_winograd(platform: str | None = None) -> bool:
  """Winograd convolutions in RAFT's inference loop: on CPU only."""
  return is_cpu(platform)


def raft_uses_cpu_compiler_options(platform: str | None = None) -> bool:
  """Whether RAFT's programs are jitted with the XLA:CPU option (also needs an XLA that
  accepts it: `models.raft.model.cpu_compiler_options`)."""
  return is_cpu(platform)
