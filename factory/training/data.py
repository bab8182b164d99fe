"""The training data pipeline: images decoded and resized once into uint8 tensors, then augmented a
whole batch at a time with one affine warp, so loading and augmentation cost little next to the model.

Datasets too large for the in-memory cache are decoded on the fly by DataLoader workers.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from factory.datasets.images import load_rgb
from factory.training.distributed import SINGLE, Group

CACHE_LIMIT_BYTES = 3 * 1024**3


def decode(path: Path, size: int) -> np.ndarray:
    img = load_rgb(path).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy()


class ImageTensors(torch.utils.data.Dataset):
    """(uint8 CHW image, label index) pairs for one split of a dataset version."""

    def __init__(self, root: Path, entries: list[dict], classes: list[str], size: int, *, cache: bool | None = None):
        self.root, self.size = root, size
        self.files = [root / e["file"] for e in entries]
        self.labels = torch.tensor([classes.index(e["label"]) for e in entries], dtype=torch.long)
        fits = len(self.files) * 3 * size * size <= CACHE_LIMIT_BYTES
        self.images: torch.Tensor | None = None
        if cache if cache is not None else fits:
            with ThreadPoolExecutor(max_workers=4) as pool:
                arrays = list(pool.map(lambda p: decode(p, size), self.files))
            self.images = torch.from_numpy(np.stack(arrays)) if arrays else torch.empty(0, 3, size, size, dtype=torch.uint8)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[i] if self.images is not None else torch.from_numpy(decode(self.files[i], self.size))
        return image, self.labels[i]


def batches(data: ImageTensors, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None,
            workers: int | None = None, group: Group = SINGLE) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (uint8 images, labels) batches; in-memory data is sliced directly (no per-item overhead). A
    data-parallel rank (`group`) gets its share of each batch."""
    n = len(data)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    if group.world > 1:
        order = torch.tensor([i for start in range(0, n, batch_size)
                              for i in group.shard(order[start:start + batch_size].tolist())], dtype=torch.long)
        batch_size, n = group.share(batch_size), len(order)
    if data.images is not None:
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            yield data.images[idx], data.labels[idx]
        return
    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    # forkserver: forking a process that already runs threads (JAX, OpenVINO, OpenMP pools) can deadlock
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(data, order.tolist()), batch_size=batch_size,
                                         num_workers=workers, shuffle=False,
                                         multiprocessing_context="forkserver" if workers else None)
    yield from loader


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW -> normalised float."""
    return (images.float().div_(255.0) - mean) / std


def augment(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, *, hflip: float, crop_scale: float,
            color_jitter: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 NCHW batch -> augmented, normalised float batch, in as few passes over the pixels as possible.

    Random resized crop + horizontal flip are one affine warp (grid_sample) for the whole batch;
    brightness/contrast jitter and the mean/std normalisation fold into one multiply-add per pixel.
    `mean` and `std` are (1, 3, 1, 1) tensors on the batch's device. Works on any device.
    """
    x = images.float()  # 0..255
    n, dev = x.shape[0], x.device

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator).to(dev)

    if crop_scale < 1 or hflip > 0:
        area = crop_scale + (1 - crop_scale) * rand(n)
        ratio = torch.exp((rand(n) * 2 - 1) * math.log(4 / 3))
        sx = torch.sqrt(area * ratio).clamp(max=1.0)
        sy = torch.sqrt(area / ratio).clamp(max=1.0)
        flip = torch.where(rand(n) < hflip, -1.0, 1.0)
        theta = torch.zeros(n, 2, 3, device=dev)
        theta[:, 0, 0], theta[:, 0, 2] = sx * flip, (rand(n) * 2 - 1) * (1 - sx)
        theta[:, 1, 1], theta[:, 1, 2] = sy, (rand(n) * 2 - 1) * (1 - sy)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    # jitter: x' = (x - m) * contrast + m * brightness = x * contrast + m * (brightness - contrast)
    # normalise: (x' / 255 - mean) / std  ->  x * scale + shift with per-image, per-channel scale and shift
    contrast = 1 + (rand(n, 1, 1, 1) * 2 - 1) * color_jitter if color_jitter > 0 else torch.ones(n, 1, 1, 1, device=dev)
    scale = contrast / (255.0 * std)
    shift = -mean / std
    if color_jitter > 0:
        brightness = 1 + (rand(n, 1, 1, 1) * 2 - 1) * color_jitter
        pixel_mean = x.mean(dim=(1, 2, 3), keepdim=True)
        shift = shift + pixel_mean * (brightness - contrast) / (255.0 * std)
    return torch.addcmul(shift.expand(n, 3, 1, 1), x, scale.expand(n, 3, 1, 1))
