"""Importing a classification dataset: read the layout's records, check the images, drop duplicates and
conflicting labels, check the classes, split (stratified, seeded) and publish."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from factory.catalog import Catalog
from factory.datasets.issues import IssueLog
from factory.datasets.publish import CheckedRecord, Progress, check_all, dedupe, drop_bad, write_version
from factory.datasets.splits import carve
from factory.datasets.stats import compute_stats
from factory.tasks.classification.formats import DATASET_FORMATS, detect_format
from factory.workspace import Workspace

MIN_CLASS_IMAGES = 20
LABEL_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def import_classification(ws: Workspace, catalog: Catalog, root: Path, name: str, *, fmt: str = "auto", seed: int = 0,
                          progress: Progress | None = None) -> dict:
    log = IssueLog()
    chosen = detect_format(root) if fmt == "auto" else fmt
    records = DATASET_FORMATS.get(chosen)().read(root, log)
    checked = dedupe(drop_bad(check_all(root, records, progress), log), log, "CONFLICTING_LABELS")
    labelled = [c for c in checked if c.record.label is not None]
    unlabelled = [c for c in checked if c.record.label is None]
    if unlabelled:
        log.add("UNLABELLED_IMAGES", [c.record.path for c in unlabelled])
    converted = [c for c in checked if c.check.mode != "RGB"]
    if converted:
        log.add("COLOR_MODE_CONVERTED", [c.record.path for c in converted],
                f"(modes: {', '.join(sorted({c.check.mode for c in converted}))})")
    classes = _class_checks([c.record.label for c in labelled], log, len(unlabelled))
    log.raise_if_errors()
    splits = carve([c.record.label for c in labelled], [c.record.split for c in labelled], seed)
    return _publish(ws, catalog, root, name, "classification", chosen, classes, labelled, splits, unlabelled, log,
                    seed, progress)


def _class_checks(labels: list[str], log: IssueLog, unlabelled: int = 0) -> list[str]:
    counts = Counter(labels)
    classes = sorted(counts)
    if not classes:
        log.add("EMPTY_DATASET", detail=f"({unlabelled} images at the top level are unlabelled.)" if unlabelled else "")
    elif len(classes) < 2:
        log.add("TOO_FEW_CLASSES", detail=f"(found only {classes[0]!r})")
    small = [f"{c} ({counts[c]})" for c in classes if counts[c] < MIN_CLASS_IMAGES]
    if small:
        log.add("SMALL_CLASS", small)
    bad = [c for c in classes if not LABEL_RE.match(c)]
    if bad:
        log.add("INVALID_LABEL_NAME", bad)
    return classes


def _target_file(c: CheckedRecord) -> str:
    folder = c.record.label if c.record.label is not None else "_unlabelled"
    return f"images/{folder}/{c.check.sha256[:16]}{Path(c.record.path).suffix.lower()}"


def _publish(ws: Workspace, catalog: Catalog, root: Path, name: str, task: str, fmt: str, classes: list[str],
             labelled: list[CheckedRecord], splits: list[str], unlabelled: list[CheckedRecord], log: IssueLog,
             seed: int, progress: Progress | None) -> dict:
    entries = [(c, s) for c, s in zip(labelled, splits)] + [(c, "unlabelled") for c in unlabelled]
    manifest = [{"file": _target_file(c), "label": c.record.label, "split": s, "source": c.record.path,
                 "sha256": c.check.sha256, "width": c.check.width, "height": c.check.height, "mode": c.check.mode}
                for c, s in entries]
    stats = compute_stats(manifest, classes)
    return write_version(ws, catalog, root, name, task, fmt, classes, manifest, stats, log, seed, progress)


