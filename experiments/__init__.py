"""Scripts that reproduce the paper's tables (run as ``python experiments/<name>.py``)."""
