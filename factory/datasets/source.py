"""Open an import source: a folder as it is, or a .zip checked for size, file count, bombs and
unsafe paths before it is unpacked into a staging folder."""

from __future__ import annotations

import contextlib
import os
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Iterator

from factory.datasets.issues import fail

MAX_ARCHIVE_BYTES = 2 * 1024**3
MAX_UNPACKED_BYTES = 20 * 1024**3
MAX_ARCHIVE_FILES = 50_000
IGNORED_NAMES = {"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini"}


def check_archive(path: Path) -> list[zipfile.ZipInfo]:
    """Validate a .zip before unpacking; returns its file entries. Raises DatasetError."""
    if path.stat().st_size > MAX_ARCHIVE_BYTES:
        raise fail("ARCHIVE_TOO_LARGE", path.name, f"({path.stat().st_size / 1024**3:.2f} GB)")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as fh:  # a zip's local header but no readable directory: cut short
            truncated_zip = fh.read(4) == b"PK\x03\x04"
        raise fail("CORRUPT_ARCHIVE", path.name, "(truncated)") if truncated_zip else fail("NOT_AN_ARCHIVE", path.name)
    try:
        with zipfile.ZipFile(path) as zf:
            entries = [e for e in zf.infolist() if not e.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise fail("CORRUPT_ARCHIVE", path.name, f"({exc})") from None
    if len(entries) > MAX_ARCHIVE_FILES:
        raise fail("TOO_MANY_FILES", path.name, f"({len(entries):,} files)")
    if sum(e.file_size for e in entries) > MAX_UNPACKED_BYTES:
        raise fail("ARCHIVE_TOO_LARGE", path.name, "(unpacked size)")
    unsafe = [e.filename for e in entries
              if PurePosixPath(e.filename).is_absolute() or ".." in PurePosixPath(e.filename).parts]
    if unsafe:
        raise fail("UNSAFE_PATH", unsafe[:20])
    return entries


def _unpack(path: Path, entries: list[zipfile.ZipInfo], dest: Path) -> None:
    try:
        with zipfile.ZipFile(path) as zf:
            for entry in entries:
                if any(part in IGNORED_NAMES for part in PurePosixPath(entry.filename).parts):
                    continue
                zf.extract(entry, dest)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as exc:  # includes CRC errors
        raise fail("CORRUPT_ARCHIVE", path.name, f"({exc})") from None


def _visible(folder: Path) -> list[Path]:
    return [c for c in folder.iterdir() if c.name not in IGNORED_NAMES and not c.name.startswith(".")]


def data_root(root: Path) -> Path:
    """Descend through a single wrapping folder (`data.zip -> data/ -> classes`).

    A lone folder holding only files is a class folder (one class), not a wrapper: stay above it.
    """
    while True:
        children = _visible(root)
        if len(children) == 1 and children[0].is_dir() and any(c.is_dir() or c.suffix.lower() in (".json", ".csv")
                                                               for c in _visible(children[0])):
            root = children[0]
        else:
            return root


@contextlib.contextmanager
def open_source(path: str | Path, scratch: Path | None = None) -> Iterator[Path]:
    """Yield the folder to read the dataset from; a zip is unpacked into a temporary folder."""
    path = Path(path).expanduser()
    if not path.exists():
        raise fail("PATH_NOT_FOUND", str(path))
    if path.is_dir():
        yield data_root(path)
        return
    entries = check_archive(path)
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".unpack-", dir=scratch) as tmp:
        _unpack(path, entries, Path(tmp))
        yield data_root(Path(tmp))


def walk_files(root: Path) -> Iterator[Path]:
    """Every regular file under `root`, sorted, skipping hidden and OS metadata files."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in IGNORED_NAMES and not d.startswith("."))
        for name in sorted(filenames):
            if name not in IGNORED_NAMES and not name.startswith("."):
                yield Path(dirpath) / name
