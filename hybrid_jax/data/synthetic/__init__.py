"""The procedural synthetic VPS dataset: scene generator and its TFDS builder."""
