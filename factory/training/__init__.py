"""The training engine, its data pipeline and the background job runner."""
