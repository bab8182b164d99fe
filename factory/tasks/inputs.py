"""Model inputs as NumPy, built from the preprocessing spec in the metadata (never re-derived):
the same decode + resize + normalise as training, for every Python runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from factory.training.data import ImageTensors, normalize


def split_arrays(root: Path, entries: list[dict], meta: dict) -> tuple[np.ndarray, np.ndarray]:
    """(inputs NCHW float32, label indices) for dataset `entries` under `root`, per `meta`."""
    size = meta["preprocessing"]["resize"]
    data = ImageTensors(root, entries, meta["classes"], size[0])
    pre = meta["preprocessing"]
    x = normalize(data.images, torch.tensor(pre["mean"]).view(1, 3, 1, 1), torch.tensor(pre["std"]).view(1, 3, 1, 1))
    return x.numpy().astype(np.float32), data.labels.numpy()


def run_batched(runner, inputs: np.ndarray, batch: int = 1) -> np.ndarray:
    """Outputs of `runner` over `inputs`, `batch` images at a time (batch 1 for static-shape artifacts)."""
    outs = [np.asarray(runner(inputs[i:i + batch])) for i in range(0, len(inputs), batch)]
    return np.concatenate(outs) if outs else np.empty((0,))
