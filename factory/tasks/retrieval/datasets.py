"""Importing a retrieval dataset: read the layout, check the images, drop duplicates (across identities: every
copy), split by identity (never by image: validation and test measure identities the model has not seen) and
publish."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from factory.catalog import Catalog
from factory.datasets.issues import IssueLog
from factory.datasets.publish import CheckedRecord, Progress, check_all, dedupe, drop_bad, write_version
from factory.datasets.stats import compute_stats, summary
from factory.tasks.retrieval.formats import detect_format, reader
from factory.workspace import Workspace

MIN_IDENTITIES = 4
HELD_OUT = (0.15, 0.15)  # shares of the identities held back for validation and test


def import_retrieval(ws: Workspace, catalog: Catalog, root: Path, name: str, *, fmt: str = "auto", seed: int = 0,
                     progress: Progress | None = None) -> dict:
    log = IssueLog()
    chosen = detect_format(root) if fmt == "auto" else fmt
    records = [r for r in reader(chosen).read(root, log) if r.label is not None]
    checked = dedupe(drop_bad(check_all(root, records, progress), log), log, "DUPLICATE_ACROSS_IDENTITIES")
    counts = Counter(c.record.label for c in checked)
    single = sorted(label for label, n in counts.items() if n == 1)
    if single:
        log.add("SINGLE_IMAGE_IDENTITY", single[:50], f"({len(single)} identities)" if len(single) > 50 else "")
    usable = sum(1 for n in counts.values() if n >= 2)
    if usable < MIN_IDENTITIES:
        log.add("TOO_FEW_IDENTITIES", detail=f"(found {len(counts)} identities, {usable} with two or more images)")
    log.raise_if_errors()
    splits = split_by_identity([c.record for c in checked], seed, log)
    identities = sorted(counts)
    manifest = [{"file": _target_file(c), "label": c.record.label, "split": s, "source": c.record.path,
                 "sha256": c.check.sha256, "width": c.check.width, "height": c.check.height, "mode": c.check.mode,
                 **({"role": c.record.role} if getattr(c.record, "role", None) else {})}
                for c, s in zip(checked, splits)]
    stats = compute_stats(manifest, identities)
    stats["identities_per_split"] = {s: len({m["label"] for m in manifest if m["split"] == s}) for s in ("train", "val", "test")}
    stats["images_per_identity"] = summary(list(counts.values()))
    return write_version(ws, catalog, root, name, "retrieval", chosen, identities, manifest, stats, log, seed, progress)


def split_by_identity(records: list, seed: int, log: IssueLog) -> list[str]:
    """Each record's split. Splits the data brings are kept (a warning when an identity straddles train and the
    held-out splits); otherwise identities (not images) are shuffled and about 15 % go to val and 15 % to test.
    Identities with one image go to test, where they are gallery distractors."""
    given = [r.split for r in records]
    labels = [r.label for r in records]
    if any(given):
        result = [s or "train" for s in given]
        train_ids = {lab for lab, s in zip(labels, result) if s == "train"}
        held = {lab for lab, s in zip(labels, result) if s != "train"}
        if train_ids & held:
            log.add("OVERLAPPING_IDENTITIES", sorted(train_ids & held)[:50])
        if "val" not in result:  # carve validation identities out of train
            val_ids = _pick(sorted(train_ids), HELD_OUT[0], seed)
            result = ["val" if s == "train" and lab in val_ids else s for lab, s in zip(labels, result)]
        return result
    counts = Counter(labels)
    multi = sorted(lab for lab, n in counts.items() if n >= 2)
    held = _pick(multi, HELD_OUT[0] + HELD_OUT[1], seed)
    ordered = [lab for lab in multi if lab in held]
    random.Random(f"{seed}:order").shuffle(ordered)
    val_ids = set(ordered[:max(1, round(len(ordered) * HELD_OUT[0] / sum(HELD_OUT)))])
    return ["test" if counts[lab] == 1 or (lab in held and lab not in val_ids) else "val" if lab in val_ids else "train"
            for lab in labels]


def _pick(identities: list[str], share: float, seed: int) -> set[str]:
    order = list(identities)
    random.Random(f"{seed}:identities").shuffle(order)
    return set(order[:max(2, round(len(order) * share))] if len(order) >= 4 else order[:1])


def _target_file(c: CheckedRecord) -> str:
    # labels may hold spaces or characters a file system refuses: the content hash names the file, the manifest
    # holds the label
    return f"images/{c.check.sha256[:2]}/{c.check.sha256[:16]}{Path(c.record.path).suffix.lower()}"
