"""Pure loss functions, one module per concern (keyword-only arguments, shapes in docstrings):

- `flow`: RAFT's gamma-weighted sequence loss and end-point-error metrics;
- `panoptic`: PanopticFCN's focal position loss and weighted dice, and the segmenter's
  training loss (`segmenter_loss_fn`);
- `tracking`: the differentiable matching layer's cross-entropy, contrastive and triplet losses;
- `fusion`: the fusion conv's row cross-entropy.

Import the module you need (``from hybrid_jax.losses import panoptic``).
"""
