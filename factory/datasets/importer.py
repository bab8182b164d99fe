"""Import a dataset: open (folder or .zip) -> pick the task (given, or the first whose layout claims the data)
-> the task's own import (detect format -> read -> check images -> split -> publish).

Errors stop the import before anything is written to the catalog; the new version's folder is
staged under a temporary name and renamed into place inside the catalog transaction.
"""

from __future__ import annotations

from pathlib import Path

from factory.catalog import Catalog
from factory.datasets.publish import Progress, validate_name
from factory.datasets.source import open_source
from factory.errors import ConfigError
from factory.registry import suggest
from factory.tasks import TASKS, all_tasks, DEFAULT_TASK
from factory.workspace import Workspace


def sniff_task(root: Path) -> str:
    """The first task (most specific layouts first) whose dataset layout claims the folder `root`."""
    return next((t.name for t in all_tasks() if t.claims(root)), DEFAULT_TASK)


def import_dataset(ws: Workspace, catalog: Catalog, path: str | Path, name: str, *,
                   task: str = DEFAULT_TASK, fmt: str = "auto", seed: int = 0,
                   progress: Progress | None = None) -> dict:
    """Import `path` (folder or .zip) as a new version of dataset `name`; returns its catalog row.
    `task` "auto" picks the first task whose layout claims the data; `fmt` "auto" tries the task's formats.

    Raises DatasetError (with every issue in `details`) when the data has an error-level problem,
    ConfigError for a bad name or task, NotFoundError (with a suggestion) for an unknown format.
    Nothing is written in any of these cases.
    """
    validate_name(name)
    if task != "auto" and task not in TASKS:
        raise ConfigError(f"Unknown task {task!r}.{suggest(task, TASKS.names())}",
                          fix=f"Use one of: {', '.join(TASKS.names())}, or auto.")
    with open_source(path, scratch=ws.home / "datasets") as root:
        chosen = TASKS.get(sniff_task(root) if task == "auto" else task)
        return chosen.import_dataset(ws, catalog, root, name, fmt=fmt, seed=seed, progress=progress)
