"""hybrid_jax: HybridTracker (pixel + instance tracking for video panoptic segmentation) in JAX/Flax."""

__version__ = '0.1.0'
