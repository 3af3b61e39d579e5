"""PanopticFCN: the per-frame segmenter (network, targets, inference, build from a config)."""
