"""edgefactory core: workspace + catalog, datasets, tasks, training, evaluation, model registry, CLI."""

__version__ = "0.1.0"


def _quiet_libraries() -> None:
    """Warnings nobody using this product can act on stay out of the terminal (`--verbose` shows them): torch
    says at import that a CPU-only machine has no CUDA runtime."""
    import logging
    import os

    if os.environ.get("EDGEFACTORY_VERBOSE", "") in ("", "0"):
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)


_quiet_libraries()
