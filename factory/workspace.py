"""The workspace on disk: `$EDGEFACTORY_HOME` (default `./workspace`) and atomic writes.

Layout (DESIGN.md): catalog.sqlite (unless $EDGEFACTORY_CATALOG names a PostgreSQL database), datasets/, runs/, models/, artifacts/, reports/ (and tmp/: scratch folders).
Every dataset version, checkpoint and model version is written under a temporary name and renamed
into place, so a crash or Ctrl-C never leaves a half-written file or folder where a reader looks.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from factory import processes

SUBDIRS = ("datasets", "runs", "models", "artifacts", "reports")
MACHINE = re.sub(r"[^A-Za-z0-9]", "", processes.HOST)[:40] or "host"  # in scratch folder names


def default_home() -> Path:
    return Path(os.environ.get("EDGEFACTORY_HOME", "workspace")).resolve()


@dataclass(frozen=True)
class Workspace:
    home: Path

    @classmethod
    def open(cls, home: str | Path | None = None) -> "Workspace":
        """Open (and create if needed) the workspace at `home` or `$EDGEFACTORY_HOME`."""
        ws = cls(Path(home).resolve() if home else default_home())
        for sub in SUBDIRS:
            (ws.home / sub).mkdir(parents=True, exist_ok=True)
        _private(ws.home)
        ws.clean_scratch()
        return ws

    @contextlib.contextmanager
    def scratch(self, prefix: str = "") -> Iterator[Path]:
        """A temporary folder inside the workspace (tmp/<pid>.<start>.<machine>-<prefix><random>), removed on exit; one
        a killed process left behind is removed by the next open on its machine (never the system's temp folder, where
        nothing would find it)."""
        root = self.home / "tmp"
        root.mkdir(exist_ok=True)
        path = root / f"{os.getpid()}.{int(processes.started() or 0)}.{MACHINE}-{prefix}{uuid.uuid4().hex[:8]}"
        path.mkdir()
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def clean_scratch(self) -> int:
        """Remove the scratch folders of this machine's processes that are gone; returns how many. (A workspace
        several machines mount holds the others' too: their PIDs mean nothing here.)"""
        root = self.home / "tmp"
        removed = 0
        for path in root.iterdir() if root.is_dir() else ():
            pid, start, machine = (path.name.split("-", 1)[0].split(".", 2) + ["", ""])[:3]
            if machine not in ("", MACHINE):
                continue
            if pid.isdigit() and not processes.alive(int(pid), int(start) if start.isdigit() else None):
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
        return removed

    @property
    def catalog_path(self) -> Path:
        return self.home / "catalog.sqlite"

    @property
    def catalog_location(self) -> Path | str:
        """The catalog to open: `$EDGEFACTORY_CATALOG` (a PostgreSQL URL several machines share, beside a workspace
        folder they all mount) or, by default, this workspace's catalog.sqlite."""
        return os.environ.get("EDGEFACTORY_CATALOG") or self.catalog_path

    def dataset_dir(self, name: str, version: int) -> Path:
        return self.home / "datasets" / name / f"v{version}"

    def model_dir(self, name: str, version: int) -> Path:
        return self.home / "models" / name / f"v{version}"

    def run_dir(self, run_id: str) -> Path:
        return self.home / "runs" / run_id

    def run_log(self, run_id: str) -> Path:
        """A run's events, one JSON object a line (training runs, and the server's export and bench jobs)."""
        return self.run_dir(run_id) / "log.jsonl"


def append_event(log: Path, event: dict) -> None:
    """Add one event to a run's log (`Workspace.run_log`)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as fh:
        fh.write(json.dumps(event, default=str) + "\n")


def read_events(log: Path) -> list[dict]:
    """A run's logged events so far (none when it has no log); a line still being written is left for the next read."""
    try:
        lines = log.read_text().splitlines()
    except OSError:
        return []
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:
            break
    return events


def _private(home: Path) -> None:
    """The workspace folder open to its owner only: the catalog, its WAL and the QR codes (each a live preview link)
    inside stay unreadable to other users whatever their own modes."""
    mode = home.stat().st_mode & 0o777
    if mode & 0o077:
        try:
            home.chmod(mode & 0o700)
        except PermissionError:  # another user's workspace, shared on purpose: leave it
            pass


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f".tmp-{path.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file, fsync, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_json(path: Path, obj: object) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def atomic_torch_save(obj: object, path: Path) -> None:
    """torch.save through a temporary file, so a checkpoint is either the old one or the new one."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def staging_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary folder beside `final`; it is removed if the block fails or is interrupted.

    The caller renames it into place with `publish_dir` once everything inside is written.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(final)
    tmp.mkdir()
    try:
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def publish_dir(tmp: Path, final: Path) -> None:
    """Rename a fully written staging folder to its final name (fails if `final` exists)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():  # os.rename would silently replace an empty folder
        raise FileExistsError(f"{final} already exists")
    os.rename(tmp, final)
