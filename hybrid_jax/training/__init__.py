"""Training infrastructure shared by every stage (segmenter, flow, tracker).

Modules (import them directly; this package imports nothing heavy so that
`hybrid_jax.training.pretrained` stays cheap for the converters):
  state        TrainState pytree, create_train_state, tree_shapes
  optim        make_schedule (incl. onecycle_schedule), make_optimizer (adamw/adam/sgd, ...)
  mesh         initialize_distributed, make_mesh, replicate, shard_batch, local_batch_size
  step         make_train_step (the loss_fn contract, NaN guard), to_host
  checkpoints  Orbax CheckpointManager helpers: save, restore_latest (fallback, config check)
  writers      MetricWriter (TensorBoard + metrics.jsonl), Progress, platform_info, save_config
  loop         train_loop, stage_done, check_finite, Preempted (SIGTERM / SIGINT)
  pretrained   save_pretrained, load_pretrained, merge_pretrained
  fusion_fit   fit_fusion (the fusion conv's three numbers, full batch)
  stages/      train_segmenter, train_flow, train_tracker on top of the above
"""
