"""Retrieval dataset layouts: folder per identity (and any classification layout), the PP-ShiTu list file
(`path<TAB>label`, labels may hold spaces) and NVIDIA TAO's train/ + reference/ + query/ folders.

A reader returns classification `Record`s (path, label, split); TAO's reference and query folders come back
as the test split with a role, so evaluation searches queries against references as TAO does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from factory.datasets.images import is_image
from factory.datasets.issues import IssueLog, fail, register_codes
from factory.registry import Registry
from factory.tasks.classification import formats as classification

RETRIEVAL_CODES = register_codes({
    "SINGLE_IMAGE_IDENTITY": ("warning", "Identities with a single image: they are kept for the gallery (the test "
                              "split) but cannot teach the model what stays the same across views.",
                              "Add a second photo of each (another angle, light or background) to train on them."),
    "DUPLICATE_ACROSS_IDENTITIES": ("warning", "The same image content appears under different identities; all "
                                    "copies were left out.", "Decide which identity each file shows and keep one copy."),
    "TOO_FEW_IDENTITIES": ("error", "A retrieval dataset needs at least 4 identities with two or more images each "
                           "(some to train on, some held back to measure unseen identities).",
                           "Add identities: one folder of photos per product, part or person."),
    "OVERLAPPING_IDENTITIES": ("warning", "Identities appear both in the training split and in the held-out splits "
                               "the data brought: Recall@K then also measures identities the model was trained on.",
                               "Keep every identity in one split (the split is by identity for retrieval)."),
})
LIST_SUFFIXES = (".txt", ".tsv", ".list")
TAO_FOLDERS = ("train", "reference", "query")


@dataclass(frozen=True)
class Record(classification.Record):
    role: str | None = None  # "reference" or "query" in a test split that comes with its own gallery


RETRIEVAL_FORMATS: Registry = Registry("retrieval dataset format")


@RETRIEVAL_FORMATS.register("ppshitu_list")
class PPShiTuList:
    """PP-ShiTu's gallery list: one `relative/path.jpg<TAB>label` line per image; the label is everything after
    the first TAB (PP-ShiTu itself truncates labels at a space, we keep them whole)."""

    name = "ppshitu_list"
    description = "a PP-ShiTu list file: path<TAB>label per line"

    def _lists(self, root: Path) -> list[Path]:
        found = []
        for p in sorted(root.iterdir()):
            if p.is_file() and p.suffix.lower() in LIST_SUFFIXES:
                lines = [ln for ln in p.read_text(encoding="utf-8-sig", errors="replace").splitlines()[:20] if ln.strip()]
                if lines and all("\t" in ln and is_image(Path(ln.split("\t", 1)[0])) for ln in lines):
                    found.append(p)
        return found

    def detect(self, root: Path) -> bool:
        return bool(self._lists(root))

    def read(self, root: Path, log: IssueLog) -> list[Record]:
        lists = self._lists(root)
        if len(lists) != 1:
            raise fail("LABEL_FILE_INVALID", [p.name for p in lists],
                       f"(expected exactly one path<TAB>label list file at the top level, found {len(lists)})")
        path = lists[0]
        pairs = []
        for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
            if not line.strip():
                continue
            rel, _, label = line.partition("\t")
            if not label.strip():
                raise fail("LABEL_FILE_INVALID", path.name, f"({path.name} line {n}: expected 'path<TAB>label', "
                                                            f"got {line!r})")
            pairs.append((rel.strip(), label.strip()))
        return classification.records_from_pairs(root, pairs, log)


@RETRIEVAL_FORMATS.register("tao")
class TaoFolders:
    """NVIDIA TAO metric learning: train/ (folder per class) for training, reference/ and query/ (folder per
    class) for evaluation: each query is searched against the references."""

    name = "tao"
    description = "train/, reference/ and query/ folders, each with one folder per identity"

    def detect(self, root: Path) -> bool:
        return all((root / f).is_dir() for f in TAO_FOLDERS)

    def read(self, root: Path, log: IssueLog) -> list[Record]:
        records: list[Record] = []
        for folder, split, role in (("train", None, None), ("reference", "test", "reference"), ("query", "test", "query")):
            found = classification._read_class_folders(root / folder, root, log, split)
            records += [Record(r.path, r.label, split, role) for r in found if r.label is not None]
        return records


class ClassificationLayout:
    """Any classification layout (folder per class = folder per identity, split folders, Ku+ txfl, CSV)."""

    def __init__(self, name: str):
        self.name = name
        self.description = classification.DATASET_FORMATS.get(name).description

    def detect(self, root: Path) -> bool:
        return classification.DATASET_FORMATS.get(self.name)().detect(root)

    def read(self, root: Path, log: IssueLog) -> list[Record]:
        return classification.DATASET_FORMATS.get(self.name)().read(root, log)


for _name in classification.DETECTION_ORDER:
    RETRIEVAL_FORMATS.add(_name, ClassificationLayout(_name))
RETRIEVAL_FORMATS.add("folder_per_identity", ClassificationLayout("folder_per_class"))

DETECTION_ORDER = ("tao", "ppshitu_list", *classification.DETECTION_ORDER)


def reader(name: str):
    found = RETRIEVAL_FORMATS.get(name)
    return found() if isinstance(found, type) else found


def detect_format(root: Path) -> str:
    for name in DETECTION_ORDER:
        if reader(name).detect(root):
            return "folder_per_identity" if name == "folder_per_class" else name
    raise fail("UNKNOWN_FORMAT", detail=f"(looked in {root.name or root}; retrieval reads a folder per identity, a "
                                        "PP-ShiTu path<TAB>label list, or TAO's train/ reference/ query/ folders)")

