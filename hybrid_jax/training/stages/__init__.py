"""One module per training stage (segmenter, flow, tracker), all on `training.loop.train_loop`."""
