"""The task registry: `TASKS[name]` is the `Task` (factory.tasks.base) that knows everything that differs per
task. Code outside a task's own package asks `task_of(meta)` and never names a task.

The installed tasks are the packages below (`factory/tasks/<name>/`, each registering itself on import), any
package that declares an `edgefactory.tasks` entry point, and the modules named in $EDGEFACTORY_TASKS
("module" or "module:function", comma-separated: a task under development, without installing a package; the
function, when given, registers it). They are imported on the first lookup, so importing this registry stays
cheap and free of cycles, and processes spawned for exports and measurements find the same tasks.
"""

from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from factory.registry import Registry

if TYPE_CHECKING:
    from factory.tasks.base import Task

INSTALLED = ("classification", "detection", "retrieval", "ocr")
PLUGINS_ENV = "EDGEFACTORY_TASKS"
DEFAULT_TASK = "classification"  # what a model or dataset without a recorded task is


class TaskRegistry(Registry["Task"]):
    """A Registry whose entries load on first use (the task packages import the engine and torch)."""

    def __init__(self, kind: str):
        super().__init__(kind)
        self._loaded = False
        self._plugins: set[str] = set()

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True  # first: a task package's own lookups while it registers must not recurse
            try:
                for name in INSTALLED:
                    importlib.import_module(f"{__name__}.{name}")
                for plugin in entry_points(group="edgefactory.tasks"):
                    loaded = plugin.load()  # a module that registers on import, or a function that registers
                    if callable(loaded):
                        loaded()
            except BaseException:
                self._loaded = False  # the next lookup raises the same error, not "unknown task"
                raise
        # read at every lookup: a process forked from one started earlier (a fork server) may see it named later
        for spec in filter(None, (s.strip() for s in os.environ.get(PLUGINS_ENV, "").split(","))):
            if spec not in self._plugins:
                self._plugins.add(spec)
                module, _, function = spec.partition(":")
                try:
                    loaded = importlib.import_module(module)
                    if function:
                        getattr(loaded, function)()
                except BaseException:
                    self._plugins.discard(spec)
                    raise

    def get(self, name: str) -> Task:
        self._load()
        return super().get(name)

    def names(self) -> list[str]:
        self._load()
        return super().names()

    def __contains__(self, name: object) -> bool:
        self._load()
        return super().__contains__(name)

    def remove(self, name: str) -> None:
        """Unregister a task (tests that define their own)."""
        self._items.pop(name, None)


TASKS = TaskRegistry("task")


def task_of(record: dict) -> Task:
    """The task of a model version, artifact or dataset record (its metadata or catalog row)."""
    return TASKS.get(record.get("task") or DEFAULT_TASK)


def all_tasks() -> list[Task]:
    """Every installed task, in the order `--task auto` tries them (most specific layout first)."""
    return sorted((TASKS.get(n) for n in TASKS.names()), key=lambda t: -t.sniff_priority)
