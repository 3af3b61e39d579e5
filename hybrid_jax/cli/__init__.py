"""Command-line entry points: thin argparse/absl wrappers around the library."""
