"""Measuring harness, per-device reports and the project's own performance suite."""
