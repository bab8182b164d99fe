"""Import a classification dataset: open -> detect format -> read -> check images -> split -> publish.

Errors stop the import before anything is written to the catalog; the new version's folder is
staged under a temporary name and renamed into place inside the catalog transaction.
"""

from __future__ import annotations

import re
import shutil
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from factory.catalog import Catalog
from factory.datasets.formats import DATASET_FORMATS, Record, detect_format
from factory.datasets.images import ImageCheck, check_image
from factory.datasets.issues import IssueLog
from factory.datasets.source import open_source
from factory.datasets.splits import carve
from factory.datasets.stats import compute_stats
from factory.errors import ConfigError, DatasetError
from factory.registry import suggest
from factory.workspace import Workspace, atomic_write_json, publish_dir, staging_dir

MIN_CLASS_IMAGES = 20
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
LABEL_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TASKS = ("classification", "detection")

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class CheckedRecord:
    record: Record
    check: ImageCheck


def validate_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ConfigError(f"Dataset name {name!r} is not allowed.",
                          fix="Use 1-64 characters: letters, digits, '_', '-', '.', starting with a letter.")
    return name


def _check_all(root: Path, records: list[Record], progress: Progress | None) -> list[CheckedRecord]:
    out: list[CheckedRecord] = []
    with ThreadPoolExecutor(max_workers=4) as pool:
        for i, (rec, chk) in enumerate(zip(records, pool.map(lambda r: check_image(root / r.path), records))):
            out.append(CheckedRecord(rec, chk))
            if progress and (i % 50 == 0 or i + 1 == len(records)):
                progress("check images", i + 1, len(records))
    return out


def _drop_bad(checked: list[CheckedRecord], log: IssueLog) -> list[CheckedRecord]:
    good = []
    for c in checked:
        if c.check.problem:
            log.add(c.check.problem, c.record.path)
        else:
            good.append(c)
    return good


def _dedupe(checked: list[CheckedRecord], log: IssueLog) -> list[CheckedRecord]:
    """Keep the first copy of each content hash; drop every copy whose labels disagree."""
    groups: dict[str, list[CheckedRecord]] = defaultdict(list)
    for c in checked:
        groups[c.check.sha256].append(c)
    kept = []
    for group in groups.values():
        labels = {c.record.label for c in group}
        if len(labels) > 1:
            log.add("CONFLICTING_LABELS", [c.record.path for c in group])
            continue
        if len(group) > 1:
            log.add("DUPLICATE_IMAGE", [c.record.path for c in group[1:]],
                    f"(kept {group[0].record.path})" if len(group) == 2 else "")
        kept.append(group[0])
    return kept


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


def sniff_task(ws: Workspace, path: str | Path) -> str:
    """'detection' when a detection layout (VOC, COCO, YOLO, Ku+, ModelArts, CSV boxes) claims `path`, else
    'classification' (folders per class and the label-file layouts)."""
    from factory.datasets.detection_formats import detect_detection_format

    with open_source(path, scratch=ws.home / "datasets") as root:
        try:
            detect_detection_format(root)
        except DatasetError:
            return "classification"
    return "detection"


def import_dataset(ws: Workspace, catalog: Catalog, path: str | Path, name: str, *,
                   task: str = "classification", fmt: str = "auto", seed: int = 0,
                   progress: Progress | None = None) -> dict:
    """Import `path` (folder or .zip) as a new version of dataset `name`; returns its catalog row.
    `task` "auto" picks detection when a detection layout claims the data.

    Raises DatasetError (with every issue in `details`) when the data has an error-level problem,
    ConfigError for a bad name or task, NotFoundError (with a suggestion) for an unknown format.
    Nothing is written in any of these cases.
    """
    validate_name(name)
    if task not in TASKS + ("auto",):
        raise ConfigError(f"Unknown task {task!r}.{suggest(task, list(TASKS))}",
                          fix=f"Use one of: {', '.join(TASKS)}, or auto.")
    if task == "auto":
        task = sniff_task(ws, path)
    if task == "detection":
        from factory.datasets.detection import import_detection

        return import_detection(ws, catalog, path, name, fmt=fmt, seed=seed, progress=progress)
    log = IssueLog()
    with open_source(path, scratch=ws.home / "datasets") as root:
        chosen = detect_format(root) if fmt == "auto" else fmt
        records = DATASET_FORMATS.get(chosen)().read(root, log)
        checked = _dedupe(_drop_bad(_check_all(root, records, progress), log), log)
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
        return _publish(ws, catalog, root, name, task, chosen, classes, labelled, splits, unlabelled, log,
                        seed, progress)


def _publish(ws: Workspace, catalog: Catalog, root: Path, name: str, task: str, fmt: str, classes: list[str],
             labelled: list[CheckedRecord], splits: list[str], unlabelled: list[CheckedRecord], log: IssueLog,
             seed: int, progress: Progress | None) -> dict:
    entries = [(c, s) for c, s in zip(labelled, splits)] + [(c, "unlabelled") for c in unlabelled]
    manifest = [{"file": _target_file(c), "label": c.record.label, "split": s, "source": c.record.path,
                 "sha256": c.check.sha256, "width": c.check.width, "height": c.check.height, "mode": c.check.mode}
                for c, s in entries]
    stats = compute_stats(manifest, classes)
    return write_version(ws, catalog, root, name, task, fmt, classes, manifest, stats, log, seed, progress)


def write_version(ws: Workspace, catalog: Catalog, root: Path, name: str, task: str, fmt: str, classes: list[str],
                  manifest: list[dict], stats: dict, log: IssueLog, seed: int, progress: Progress | None) -> dict:
    """Copy each manifest entry's `source` to its `file` in a staging folder, then publish the folder and
    the catalog row in one transaction (the staging folder is removed on any failure)."""
    split_counts = {s: sum(1 for m in manifest if m["split"] == s) for s in ("train", "val", "test")}
    issues = [i.to_dict() for i in log.all()]
    with staging_dir(ws.home / "datasets" / name / "pending") as tmp:
        for i, m in enumerate(manifest):
            dest = tmp / m["file"]
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / m["source"], dest)
            if progress and (i % 100 == 0 or i + 1 == len(manifest)):
                progress("copy images", i + 1, len(manifest))
        atomic_write_json(tmp / "manifest.json", manifest)
        with catalog.transaction():
            version = catalog.next_version("datasets", name)
            row = {"name": name, "version": version, "task": task, "source_format": fmt,
                   "path": str(ws.dataset_dir(name, version).relative_to(ws.home)), "classes": classes,
                   "splits": split_counts, "stats": stats, "issues": issues, "created_at": time.time()}
            atomic_write_json(tmp / "dataset.json", {**row, "seed": seed})
            publish_dir(tmp, ws.dataset_dir(name, version))
            catalog.insert("datasets", row)
    return row
