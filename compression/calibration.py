"""Calibration-set selection: drawn from the train split with per-class coverage, reported in the
artifact metadata, with a warning when it is too small or misses classes. The task says which classes
an entry shows (`Task.calibration_labels`: its label, or every class among its boxes); an entry is drawn
under its rarest one, so that rare classes are represented (an entry showing none is drawn apart)."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from typing import Callable

from factory.errors import DatasetError

DEFAULT_SIZE = 300
MIN_RECOMMENDED = 100


def select_calibration(entries: list[dict], classes: list[str], size: int = DEFAULT_SIZE, seed: int = 0, *,
                       labels_of: Callable[[dict], set[str]]) -> tuple[list[dict], dict]:
    """Pick up to `size` train entries round-robin over classes (each class shuffled with `seed`); `labels_of`
    says which classes an entry shows.

    Returns (entries, report). Raises DatasetError when there is nothing to calibrate with.
    """
    if size < 1:
        raise DatasetError(f"A calibration set of {size} images was asked for.",
                           fix="Use at least 1 image (300 is the default; 100+ is recommended).", code="CALIBRATION_EMPTY")
    if not entries:
        raise DatasetError("The train split is empty: there are no images to calibrate INT8 with.",
                           fix="Import a dataset with training images, or export at fp32.", code="CALIBRATION_EMPTY")
    frequency = Counter(c for e in entries for c in labels_of(e))
    by_class: dict[str, list[dict]] = defaultdict(list)
    for e in entries:
        labels = labels_of(e)
        by_class[min(labels, key=lambda c: (frequency[c], c)) if labels else ""].append(e)
    for label, items in by_class.items():
        random.Random(f"{seed}:{label}").shuffle(items)
    chosen: list[dict] = []
    depth = 0
    while len(chosen) < min(size, len(entries)):
        for label in sorted(by_class):
            if depth < len(by_class[label]) and len(chosen) < size:
                chosen.append(by_class[label][depth])
        depth += 1
    per_class = {c: sum(1 for e in chosen if c in labels_of(e)) for c in classes}
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
