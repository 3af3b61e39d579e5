"""RAFT optical flow (network, correlation, update block, Winograd convolutions)."""
