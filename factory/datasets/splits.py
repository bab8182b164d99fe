"""Seeded, stratified train/val/test splits, and a published dataset version's files by split."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from factory.errors import DatasetError
from factory.workspace import Workspace

SPLITS = ("train", "val", "test")


def stratified_split(labels: list[str], fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
                     seed: int = 0) -> list[str]:
    """Assign each index a split so every class is divided in the given fractions.

    Deterministic for a given (labels, fractions, seed); a class with few images keeps at least one
    image in train, and gets val/test images only when it has enough for them.
    """
    by_class: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_class[label].append(i)
    out = [""] * len(labels)
    for label in sorted(by_class):
        idx = by_class[label]
        random.Random(f"{seed}:{label}").shuffle(idx)
        n = len(idx)
        n_val = int(round(n * fractions[1])) if n >= 3 else 0
        n_test = int(round(n * fractions[2])) if n >= 3 else 0
        n_val, n_test = min(n_val, max(n - 1, 0)), min(n_test, max(n - 1 - n_val, 0))
        for j, i in enumerate(idx):
            out[i] = "val" if j < n_val else "test" if j < n_val + n_test else "train"
    return out


def carve(labels: list[str], current: list[str | None], seed: int = 0) -> list[str]:
    """Keep splits the data brings; fill missing val/test from its train part, stratified."""
    present = {s for s in current if s}
    if not present:
        return stratified_split(labels, seed=seed)
    result = [s or "train" for s in current]
    missing = [s for s in ("val", "test") if s not in present]
    if not missing:
        return result
    train_idx = [i for i, s in enumerate(result) if s == "train"]
    fractions = (0.8, 0.1 if "val" in missing else 0.0, 0.1 if "test" in missing else 0.0)
    sub = stratified_split([labels[i] for i in train_idx], fractions, seed)
    for i, s in zip(train_idx, sub):
        result[i] = s
    return result


@dataclass
class DatasetSplits:
    """One published dataset version: its catalog row, its folder and its manifest, by split."""

    row: dict
    root: Path
    manifest: list[dict]

    @classmethod
    def open(cls, ws: Workspace, row: dict) -> DatasetSplits:
        root = ws.home / row["path"]
        try:
            manifest = json.loads((root / "manifest.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DatasetError(f"Dataset {row['name']}:v{row['version']} cannot be read ({exc}).",
                               fix="Restore its folder from a backup, or import the data again as a new version.") from exc
        return cls(row, root, manifest)

    @property
    def ref(self) -> str:
        return f"{self.row['name']}:v{self.row['version']}"

    def entries(self, split: str) -> list[dict]:
        return [m for m in self.manifest if m["split"] == split]

    def evaluation(self) -> tuple[str, list[dict]]:
        """(split, entries) that held-out scores are measured on: test, else val when a dataset has no test images."""
        test = self.entries("test")
        return ("test", test) if test else ("val", self.entries("val"))
