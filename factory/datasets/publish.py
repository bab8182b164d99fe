"""The steps every task's import shares: image checks (in threads, with progress), dropping what failed them,
and publishing a new dataset version (staged folder + catalog row in one transaction)."""

from __future__ import annotations

import re
import shutil
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from factory.catalog import Catalog
from factory.datasets.images import ImageCheck, check_image
from factory.datasets.issues import IssueLog
from factory.errors import ConfigError
from factory.workspace import Workspace, atomic_write_json, publish_dir, staging_dir

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class CheckedRecord:
    record: Any  # a task's record: `path` (relative to the root) and its labels
    check: ImageCheck


def validate_name(name: str, what: str = "Dataset") -> str:
    """`name` if it is a valid catalog name of a `what` (Dataset, Model, Index), else ConfigError naming it."""
    if not NAME_RE.match(name):
        raise ConfigError(f"{what} name {name!r} is not allowed.",
                          fix="Use 1-64 characters: letters, digits, '_', '-', '.', starting with a letter.")
    return name


def check_all(root: Path, records: list[Any], progress: Progress | None) -> list[CheckedRecord]:
    out: list[CheckedRecord] = []
    with ThreadPoolExecutor(max_workers=4) as pool:
        for i, (rec, chk) in enumerate(zip(records, pool.map(lambda r: check_image(root / r.path), records))):
            out.append(CheckedRecord(rec, chk))
            if progress and (i % 50 == 0 or i + 1 == len(records)):
                progress("check images", i + 1, len(records))
    return out


def drop_bad(checked: list[CheckedRecord], log: IssueLog) -> list[CheckedRecord]:
    good = []
    for c in checked:
        if c.check.problem:
            log.add(c.check.problem, c.record.path)
        else:
            good.append(c)
    return good


def dedupe(checked: list[CheckedRecord], log: IssueLog, conflict_code: str) -> list[CheckedRecord]:
    """Keep the first copy of each content hash; drop every copy whose labels disagree (reported as `conflict_code`)."""
    groups: dict[str, list[CheckedRecord]] = defaultdict(list)
    for c in checked:
        groups[c.check.sha256].append(c)
    kept = []
    for group in groups.values():
        if len({c.record.label for c in group}) > 1:
            log.add(conflict_code, [c.record.path for c in group])
            continue
        if len(group) > 1:
            log.add("DUPLICATE_IMAGE", [c.record.path for c in group[1:]],
                    f"(kept {group[0].record.path})" if len(group) == 2 else "")
        kept.append(group[0])
    return kept


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
