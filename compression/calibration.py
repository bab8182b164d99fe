"""Calibration-set selection: drawn from the train split with per-class coverage, reported in the
artifact metadata, with a warning when it is too small or misses classes."""

from __future__ import annotations

import random
from collections import defaultdict

from factory.errors import DatasetError

DEFAULT_SIZE = 300
MIN_RECOMMENDED = 100


def select_calibration(entries: list[dict], classes: list[str], size: int = DEFAULT_SIZE, seed: int = 0) -> tuple[list[dict], dict]:
    """Pick up to `size` train entries round-robin over classes (each class shuffled with `seed`).

    Returns (entries, report). Raises DatasetError when there is nothing to calibrate with.
    """
    if size < 1:
        raise DatasetError(f"A calibration set of {size} images was asked for.",
                           fix="Use at least 1 image (300 is the default; 100+ is recommended).", code="CALIBRATION_EMPTY")
    if not entries:
        raise DatasetError("The train split is empty: there are no images to calibrate INT8 with.",
                           fix="Import a dataset with training images, or export at fp32.", code="CALIBRATION_EMPTY")
    by_class: dict[str, list[dict]] = defaultdict(list)
    for e in entries:
        by_class[e["label"]].append(e)
    for label, items in by_class.items():
        random.Random(f"{seed}:{label}").shuffle(items)
    chosen: list[dict] = []
    depth = 0
    while len(chosen) < min(size, len(entries)):
        for label in sorted(by_class):
            if depth < len(by_class[label]) and len(chosen) < size:
                chosen.append(by_class[label][depth])
        depth += 1
    per_class = {c: sum(1 for e in chosen if e["label"] == c) for c in classes}
    missing = [c for c, n in per_class.items() if n == 0]
    warnings = []
    if len(chosen) < MIN_RECOMMENDED:
        warnings.append(f"Only {len(chosen)} calibration images (fewer than {MIN_RECOMMENDED}): INT8 ranges may be "
                        "poorly estimated. Add training images if the accuracy drop is large.")
    if missing:
        warnings.append(f"No calibration images for class(es) {', '.join(missing)}: their activations are not "
                        "represented. Add training images for them.")
    report = {"size": len(chosen), "requested": size, "source": "train", "seed": seed, "per_class": per_class,
              "missing_classes": missing, "warnings": warnings}
    return chosen, report
