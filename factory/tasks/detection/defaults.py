"""A detector's own defaults: its input size from the smallest objects, and the object crops the mirror-flip
question is asked about."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from factory.datasets.images import load_rgb
from factory.training.defaults import MIRROR_SAMPLE_PER_CLASS, round32, sample_groups

SMALL_OBJECT_PIXELS = 12  # the smallest objects should span at least this many input pixels (1.5 stride-8 cells)
MAX_DETECTION_SIZE = 640


def detection_size(entries: list[dict], image_side: float, default_size: int) -> tuple[int, str]:
    """A detector's input side (a multiple of 32): the images' own side up to the architecture's default, raised
    where the smallest objects (10th percentile of box sides) would shrink under SMALL_OBJECT_PIXELS."""
    sides = [min(b["bbox"][2], b["bbox"][3]) for e in entries for b in e["boxes"]]
    base = min(round32(image_side), default_size)
    if not sides:
        return base, f"median image side {image_side:g} px (no boxes to size objects from)"
    small = float(np.percentile(sides, 10))
    at_base = small * base / image_side
    if at_base >= SMALL_OBJECT_PIXELS:
        return base, (f"median image side {image_side:g} px; the smallest objects (10th percentile {small:.0f} px) "
                      f"keep {at_base:.0f} px at {base} px")
    needed = min(MAX_DETECTION_SIZE, round32(image_side * SMALL_OBJECT_PIXELS / small), round32(2 * image_side))
    return max(base, needed), (f"small objects (10th percentile {small:.0f} px of {image_side:g} px images) would keep "
                               f"only {at_base:.0f} px at {base} px: raised to {max(base, needed)} px")


def object_samples(root: Path, entries: list[dict]) -> dict[str, list[Image.Image]]:
    """Crops of the boxed objects per class (a detector's flip question is about its objects)."""
    groups: dict[str, list[tuple[dict, dict]]] = {}
    for e in entries:
        for box in e["boxes"]:
            if box["bbox"][2] >= 4 and box["bbox"][3] >= 4:
                groups.setdefault(box["label"], []).append((e, box))
    out: dict[str, list[Image.Image]] = {}
    for c, chosen in sample_groups(groups, MIRROR_SAMPLE_PER_CLASS).items():
        crops = []
        for e, box in chosen:
            x, y, w, h = box["bbox"]
            crops.append(load_rgb(root / e["file"]).crop((round(x), round(y), round(x + w), round(y + h))))
        out[c] = crops
    return out
