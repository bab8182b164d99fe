"""Per-task model builders, pre/post-processing and metrics."""
