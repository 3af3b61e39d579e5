"""Pure loss functions, one module per concern (keyword-only arguments, shapes in docstrings):

- `flow`: RAFT's gamma-weighted sequence loss and end-point-error metrics;
- `panoptic`: PanopticFCN's focal position loss and weighted dice;
- `tracking`: the differentiable matching layer's cross-entropy, contrastive and triplet losses.
"""

from hybrid_jax.losses import flow
from hybrid_jax.losses import panoptic
from hybrid_jax.losses import tracking

__all__ = ['flow', 'panoptic', 'tracking']
