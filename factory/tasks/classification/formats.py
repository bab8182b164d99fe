"""Classification dataset layouts, one small reader each, found through `DATASET_FORMATS`.

A reader turns a folder into `Record`s (relative path, label or None, split or None) and reports
layout problems to the issue log; image checks happen afterwards, once, for every format.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from factory.datasets.images import is_image
from factory.datasets.issues import IssueLog, fail, register_codes
from factory.datasets.source import walk_files
from factory.registry import Registry

SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test", "testing": "test"}
CLASSIFICATION_CODES = register_codes({
    "UNKNOWN_FORMAT": ("error", "No supported dataset layout was found.",
                       "Use one folder per class, a train/val/test split of such folders, a Ku+ "
                       "txfl-result.json, or a CSV with columns path,label; or pass --format."),
    "TOO_FEW_CLASSES": ("error", "A classification dataset needs at least 2 classes.",
                        "Add a folder (or label) for each class you want the model to tell apart."),
    "CONFLICTING_LABELS": ("warning", "The same image content appears under different labels; all copies were "
                           "left out.", "Decide the right class for each file and keep one copy."),
    "SMALL_CLASS": ("warning", "Classes with fewer than 20 images.",
                    "Add images to these classes (20+ per class, balanced, is the usual minimum)."),
    "INVALID_LABEL_NAME": ("warning", "Label names that are not valid identifiers (ASCII letters, digits, '_', "
                           "not starting with a digit).",
                           "Rename the folders or labels; some runtimes and platforms reject other names."),
    "UNLABELLED_IMAGES": ("note", "Images at the top level of a folder-per-class layout are kept as unlabelled "
                          "and not used for training.", "Move them into a class folder to use them."),
})
TXFL_FILE = "txfl-result.json"
CSV_PATH_COLUMNS = ("path", "file", "filename", "image", "url")
CSV_LABEL_COLUMNS = ("label", "class", "category")


@dataclass(frozen=True)
class Record:
    path: str  # relative to the dataset root, POSIX separators
    label: str | None
    split: str | None = None


class DatasetFormat(Protocol):
    name: str
    description: str

    def detect(self, root: Path) -> bool: ...

    def read(self, root: Path, log: IssueLog) -> list[Record]: ...


DATASET_FORMATS: Registry[DatasetFormat] = Registry("dataset format")


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "__MACOSX")


def _read_class_folders(root: Path, base: Path, log: IssueLog, split: str | None) -> list[Record]:
    records: list[Record] = []
    for path in walk_files(root):
        rel_parts = path.relative_to(root).parts
        if path.suffix.lower() in (".json", ".csv", ".txt", ".md", ".yaml", ".yml") and len(rel_parts) == 1:
            continue  # side files at the top level (readme, label lists)
        if not is_image(path):
            log.add("UNSUPPORTED_EXTENSION", _rel(path, base))
            continue
        label = rel_parts[0] if len(rel_parts) > 1 else None
        records.append(Record(_rel(path, base), label, split))
    return records


def _split_dirs(root: Path) -> dict[str, Path]:
    return {SPLIT_ALIASES[p.name.lower()]: p for p in _class_dirs(root) if p.name.lower() in SPLIT_ALIASES}


@DATASET_FORMATS.register("folder_per_class")
class FolderPerClass:
    """One folder per class (PAI AutoLearning, ModelArts); images at the top level are unlabelled."""

    name = "folder_per_class"
    description = "one folder per class; top-level images are unlabelled"

    def detect(self, root: Path) -> bool:
        top_level_images = any(is_image(p) for p in root.iterdir() if p.is_file())
        return top_level_images or any(any(is_image(f) for f in walk_files(d)) for d in _class_dirs(root))

    def read(self, root: Path, log: IssueLog) -> list[Record]:
        return _read_class_folders(root, root, log, None)


@DATASET_FORMATS.register("split_folders")
class SplitFolders:
    """train/ val/ test/ folders, each holding one folder per class; the split is kept."""

    name = "split_folders"
    description = "train/, val/ and/or test/ folders, each with one folder per class"

    def detect(self, root: Path) -> bool:
        splits = _split_dirs(root)
        return "train" in splits and len(splits) >= 2 and all(_class_dirs(d) for d in splits.values())

    def read(self, root: Path, log: IssueLog) -> list[Record]:
        records: list[Record] = []
        for split, folder in sorted(_split_dirs(root).items()):
            records += [r for r in _read_class_folders(folder, root, log, split) if r.label is not None]
        return records


@DATASET_FORMATS.register("kuplus_txfl")
class KuplusTxfl:
    """Ku+ MLOps image classification: `txfl-result.json` = {"categories": [{"name", "images": [{"url"}]}]}."""

    name = "kuplus_txfl"
    description = "Ku+ MLOps txfl-result.json label file"

    def detect(self, root: Path) -> bool:
        return (root / TXFL_FILE).is_file()

    def read(self, root: Path, log: IssueLog) -> list[Record]:
        try:
            text = (root / TXFL_FILE).read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:  # absent (format forced) or not UTF-8 text
            raise fail("LABEL_FILE_INVALID", TXFL_FILE, f"({TXFL_FILE}: {exc})") from None
        try:
            doc = json.loads(text)
            categories = doc["categories"]
            pairs = [(str(img["url"]), str(cat["name"])) for cat in categories for img in cat["images"]]
        except json.JSONDecodeError as exc:
            raise fail("LABEL_FILE_INVALID", TXFL_FILE, f"({TXFL_FILE} line {exc.lineno}: {exc.msg})") from None
        except (KeyError, TypeError) as exc:
            raise fail("LABEL_FILE_INVALID", TXFL_FILE,
                       f"({TXFL_FILE}: missing or wrong field {exc}; expected "
                       '{"categories":[{"name":..,"images":[{"url":..}]}]})') from None
        return records_from_pairs(root, pairs, log)


@DATASET_FORMATS.register("csv")
class CsvLabels:
    """A CSV of `path,label` (header optional); paths are relative to the CSV's folder."""

    name = "csv"
    description = "a CSV file with columns path,label"

    def _csv(self, root: Path) -> Path | None:
        found = sorted(root.glob("*.csv"))
        return found[0] if len(found) == 1 else None

    def detect(self, root: Path) -> bool:
        return any(root.glob("*.csv"))  # several CSVs: read() says which to keep

    def read(self, root: Path, log: IssueLog) -> list[Record]:
        path = self._csv(root)
        if path is None:  # no or several top-level CSVs
            found = sorted(p.name for p in root.glob("*.csv"))
            raise fail("LABEL_FILE_INVALID", found, f"(expected exactly one .csv at the top level, found {len(found)})")
        try:
            with open(path, newline="", encoding="utf-8-sig") as fh:
                rows = [(n, row) for n, row in enumerate(csv.reader(fh), start=1) if any(c.strip() for c in row)]
        except (UnicodeDecodeError, csv.Error) as exc:
            raise fail("LABEL_FILE_INVALID", path.name, f"({path.name} is not UTF-8 CSV text: {exc})") from None
        if not rows:
            raise fail("LABEL_FILE_INVALID", path.name, f"({path.name} is empty)")
        header = [c.strip().lower() for c in rows[0][1]]
        path_col, label_col = 0, 1
        if any(c in CSV_PATH_COLUMNS for c in header):
            path_col = next(header.index(c) for c in CSV_PATH_COLUMNS if c in header)
            label_col = next((header.index(c) for c in CSV_LABEL_COLUMNS if c in header), -1)
            if label_col < 0:
                raise fail("LABEL_FILE_INVALID", path.name,
                           f"({path.name} line 1: no label column; name it one of {', '.join(CSV_LABEL_COLUMNS)})")
            rows = rows[1:]
        pairs = []
        for n, row in rows:
            if len(row) <= max(path_col, label_col) or not row[path_col].strip() or not row[label_col].strip():
                raise fail("LABEL_FILE_INVALID", path.name,
                           f"({path.name} line {n}: expected 'path,label', got {','.join(row)!r})")
            pairs.append((row[path_col].strip(), row[label_col].strip()))
        return records_from_pairs(root, pairs, log)


def records_from_pairs(root: Path, pairs: list[tuple[str, str]], log: IssueLog) -> list[Record]:
    """Records of (path, label) pairs from a label file; unsafe, missing and non-image paths are reported."""
    records = []
    for rel, label in pairs:
        rel = rel.replace("\\", "/").lstrip("./")
        if ".." in PurePosixPath(rel).parts:  # would read a file outside the dataset
            log.add("UNSAFE_PATH", rel)
        elif not (root / rel).is_file():
            log.add("MISSING_FILE", rel)
        elif not is_image(root / rel):
            log.add("UNSUPPORTED_EXTENSION", rel)
        else:
            records.append(Record(rel, label))
    return records


# Auto-detection order: explicit label files first, then folder layouts.
DETECTION_ORDER = ("kuplus_txfl", "csv", "split_folders", "folder_per_class")


def detect_format(root: Path) -> str:
    """Name of the first format whose `detect` accepts `root`; raises UNKNOWN_FORMAT otherwise."""
    for name in DETECTION_ORDER:
        if DATASET_FORMATS.get(name)().detect(root):
            return name
    raise fail("UNKNOWN_FORMAT", detail=f"(looked in {root.name or root})")
