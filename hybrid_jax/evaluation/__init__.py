"""Evaluation: VPQ (Cityscapes-VPS and VIPER protocols), image PQ and STQ.

Public entry points (see `runner` for the input conventions):
  evaluate_arrays / evaluate_vpq_arrays / evaluate_stq_arrays  -- panoptic maps in memory
  evaluate_segments                                            -- (id map, segments_info) pairs
  evaluate_official                                            -- pred.json + pan_pred/ on disk
  evaluate_pq_arrays                                           -- image PQ
  STQuality                                                    -- deeplab2-style STQ accumulator
"""

from hybrid_jax.evaluation.pq import evaluate_pq_arrays
from hybrid_jax.evaluation.runner import evaluate_arrays
from hybrid_jax.evaluation.runner import evaluate_official
from hybrid_jax.evaluation.runner import evaluate_segments
from hybrid_jax.evaluation.runner import evaluate_stq_arrays
from hybrid_jax.evaluation.runner import evaluate_vpq_arrays
from hybrid_jax.evaluation.stq import STQuality
