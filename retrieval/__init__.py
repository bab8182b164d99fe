"""Embedding indexes, search, and the assistant's document index."""
