"""Training defaults resolved from the data: input size, batch size, learning rate, augmentation,
pretrained start and patience, each saved in the resolved config with the reason it was chosen.

A user's option always wins; an option left out is decided here, from the dataset's statistics and
the architecture, never from a hand-tuned config that only the demo knows. The chat's recipe, the
CLI, the REST API and the demo all go through `factory.training.run.resolve_config`, which calls these rules.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from factory.datasets.images import load_rgb
from factory.i18n import tr

MIRROR_SAMPLE_PER_CLASS = 40  # images (or objects) per class looked at to decide about flips
MIRROR_SIDE = 24
MIRROR_THRESHOLD = 0.9  # class means that change this much under a flip, relative to how classes differ,
MIRROR_SIGNIFICANCE = 2.0  # and clearly more than the sampling noise of a mean: orientation matters
PRETRAINED_MAX_TRAIN_IMAGES = 20_000  # beyond this, training from scratch has data enough to catch up
BUDGET_PATIENCE = 10_000  # with a time budget the schedule anneals over the whole budget: no early stop
EPOCH_PATIENCE = 15


def round32(side: float) -> int:
    return max(32, int(math.ceil(side / 32 - 0.25)) * 32)


def batch_for(n_train: int, largest: int = 64) -> int:
    """About 40 steps per epoch at least, in powers of two from 16 to `largest`."""
    return int(min(largest, max(16, 2 ** round(math.log2(max(n_train, 1) / 40)))))


def mirror_asymmetry(samples: dict[str, list[Image.Image]]) -> tuple[float, float] | None:
    """How much the mean image of each class changes under a horizontal flip, (1) relative to how far the class
    means lie from each other and (2) relative to the sampling noise of a mean (two halves of the class compared).
    Measured at 40 per class: scikit-learn's digits 1.27 / 4.6, the mirror-symmetric shape generator 0.61 / 0.5,
    random crops of scikit-image's photos 0.32 / 1.2, detection-scene objects 0.04 / 0.1. None with under two classes."""
    means, flipped, noise = [], [], []
    for images in samples.values():
        if len(images) >= 2:
            x = np.stack([np.asarray(im.convert("RGB").resize((MIRROR_SIDE, MIRROR_SIDE), Image.Resampling.BILINEAR),
                                     np.float32) / 255.0 for im in images])
            m = x.mean(axis=0)
            means.append(m)
            flipped.append(np.linalg.norm(m - m[:, ::-1]))
            noise.append(np.linalg.norm(x[0::2].mean(axis=0) - x[1::2].mean(axis=0)))
    if len(means) < 2:
        return None
    stack = np.stack(means)
    spread = np.mean([np.linalg.norm(m - stack.mean(axis=0)) for m in stack])
    return float(np.mean(flipped) / max(spread, 1e-6)), float(np.mean(flipped) / max(np.mean(noise), 1e-6))


def sample_groups(groups: dict[str, list], per_class: int) -> dict[str, list]:
    rng = np.random.default_rng(0)
    return {c: [items[i] for i in sorted(rng.permutation(len(items))[:per_class])] for c, items in groups.items()}


def class_samples(root: Path, entries: list[dict]) -> dict[str, list[Image.Image]]:
    groups: dict[str, list[dict]] = {}
    for e in entries:
        groups.setdefault(e["label"], []).append(e)
    return {c: [load_rgb(root / e["file"]) for e in chosen] for c, chosen in sample_groups(groups, MIRROR_SAMPLE_PER_CLASS).items()}


class Resolution:
    """Values chosen for the options the user left out, and why; the user's own values are kept as given.
    `parent` is the metadata of the version a run continues from (--from), for what a task keeps from it."""

    def __init__(self, given: dict, parent: dict | None = None):
        self.given, self.parent = given, parent
        self.values: dict = {}
        self.why: dict[str, str] = {}

    def pick(self, key: str, decide: Callable[[], tuple[object, str]]) -> object:
        """The user's value, else the one a task's own rule chose already, else `decide()`'s."""
        if key in self.values:
            return self.values[key]
        if self.given.get(key) is not None:
            self.values[key] = self.given[key]
            self.why[key] = "given"
        else:
            self.values[key], self.why[key] = decide()
        return self.values[key]


def resolve_common(res: Resolution, *, n_train: int, image_side: float, default_size: int, weights_available: bool,
                   min_size: int = 32) -> None:
    """Pretrained start, input size, batch size and learning rate: the rules every task shares."""
    has_parent = bool(res.given.get("from_model"))

    def pretrained() -> tuple[object, str]:
        if has_parent:
            return "none", tr("continuing from an earlier version (--from)")
        if not weights_available:
            return "none", tr("no ImageNet weights for this architecture on this machine: from scratch")
        if n_train > PRETRAINED_MAX_TRAIN_IMAGES:
            return "none", tr("{n} training images are enough to train from scratch", n=n_train)
        return "imagenet", tr("ImageNet weights are on this machine and {n} training images is little data", n=n_train)

    res.pick("pretrained", pretrained)

    def size() -> tuple[object, str]:
        side = round32(image_side)
        if side < min_size:
            return min_size, tr("median image side {side:g} px, upscaled to {size} px, the smallest this architecture "
                                "trains well at", side=image_side, size=min_size)
        if side >= default_size:
            return default_size, tr("median image side {side:g} px; the architecture's default {size} px",
                                    side=image_side, size=default_size)
        return side, tr("median image side {side:g} px: not upscaled to the architecture's {size} px (it would cost "
                        "time, here and on the device, and add no detail)", side=image_side, size=default_size)

    res.pick("img_size", size)
    batch = res.pick("batch_size", lambda: (batch_for(n_train),
                                            f"{n_train} training images: about {math.ceil(n_train / batch_for(n_train))} "
                                            "steps an epoch"))

    def lr() -> tuple[object, str]:
        if has_parent:
            return 5e-4, "continuing from an earlier version: a smaller step keeps what it knows"
        # an ImageNet start takes the same step: the warm-up epoch protects its features, and a smaller step
        # (5e-4) was no better on photos and far worse on digits (0.88 against 0.98, benchmarks/perf/defaults_quality.py)
        value = round(2e-3 * math.sqrt(batch / 64), 5)
        return value, f"AdamW 2e-3 at batch 64, scaled by the square root of batch {batch}"

    res.pick("lr", lr)


def resolve_schedule(res: Resolution) -> None:
    budget = res.given.get("time_budget_min")
    res.pick("patience", lambda: (BUDGET_PATIENCE, "with a time budget the learning rate anneals over the whole "
                                  "budget; stopping early would cut it before it falls") if budget and not
             res.given.get("epochs") else (EPOCH_PATIENCE, "15 epochs without a better validation score"))


def resolve_flip(res: Resolution, samples: Callable[[], dict[str, list[Image.Image]]]) -> None:
    def decide() -> tuple[object, str]:
        score = mirror_asymmetry(samples())
        if score is None:
            return 0.5, tr("one class only: flips assumed harmless")
        relative, significance = score
        if relative >= MIRROR_THRESHOLD and significance >= MIRROR_SIGNIFICANCE:
            return 0.0, tr("orientation matters: class means change under a flip by {change:.2f} of their spread "
                           "(digits, text, arrows); --hflip 0.5 turns flips on", change=relative)
        return 0.5, tr("flips look harmless: class means change under a flip by only {change:.2f} of their spread",
                       change=relative)

    res.pick("hflip", decide)


def resolve_crop(res: Resolution, image_side: float) -> None:
    res.pick("crop_scale", lambda: (0.7, f"small images ({image_side:g} px): a crop keeps at least 70 % of the object")
             if image_side <= 64 else (0.6, "random resized crops down to 60 % of the area"))
