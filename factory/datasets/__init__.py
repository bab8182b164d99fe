"""Dataset import, validation, statistics, splits and generators."""
