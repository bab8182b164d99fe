"""Dataset statistics: images per class and split, image sizes and aspect ratios."""

from __future__ import annotations

from collections import Counter

import numpy as np


def summary(values: list[float]) -> dict:
    """min, median, max and mean of `values` ({} when there are none)."""
    if not values:
        return {}
    arr = np.asarray(values, dtype=float)
    return {"min": float(arr.min()), "median": float(np.median(arr)), "max": float(arr.max()),
            "mean": round(float(arr.mean()), 3)}


def compute_stats(manifest: list[dict], classes: list[str]) -> dict:
    labelled = [m for m in manifest if m["label"] is not None]
    per_class = Counter(m["label"] for m in labelled)
    per_split: dict[str, dict[str, int]] = {}
    for m in labelled:
        per_split.setdefault(m["split"], {c: 0 for c in classes})[m["label"]] += 1
    counts = [per_class[c] for c in classes]
    return {
        "num_images": len(labelled),
        "num_unlabelled": len(manifest) - len(labelled),
        "num_classes": len(classes),
        "images_per_class": {c: per_class[c] for c in classes},
        "images_per_split_and_class": per_split,
        "imbalance_ratio": round(max(counts) / min(counts), 2) if counts and min(counts) else None,
        "width": summary([m["width"] for m in manifest]),
        "height": summary([m["height"] for m in manifest]),
        "aspect_ratio": summary([round(m["width"] / m["height"], 3) for m in manifest if m["height"]]),
    }
