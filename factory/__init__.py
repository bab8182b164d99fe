"""edgefactory core: workspace + catalog, datasets, tasks, training, evaluation, model registry, CLI."""

__version__ = "0.1.0"
