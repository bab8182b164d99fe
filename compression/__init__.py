"""Structured pruning, quantization and the accuracy-budget search (built on `factory`)."""
