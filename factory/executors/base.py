"""A job and an executor, as every executor sees them (factory.executors lists the executors)."""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

EventSink = Callable[[dict], None]
CALLBACKS = ("log", "progress")  # the API functions' callbacks that a remote job turns into events (event_callbacks)


@dataclass(frozen=True)
class JobSpec:
    """One job: what to call, with what, and what it needs.

    `kwargs["home"]` is the workspace; `job_id` names its folder there (runs/<job_id>/). `cpus` and `gpus` are what
    a cluster reserves for it (each, for every rank; `cpus` None: a whole node's cores, at most 8; `gpus` None: one
    where the cluster has GPUs, else none). `resumable` jobs (training) go on from their last checkpoint when the
    worker running them died and the job is run again.
    `distributed` ranks > 1: rank 0 calls `function`, the others `rank_function`, in one torch.distributed group."""

    kind: str
    function: str  # "module:function"
    kwargs: dict[str, Any] = field(default_factory=dict)
    job_id: str = ""
    cpus: float | None = None
    gpus: float | None = 0.0
    resumable: bool = False
    distributed: int = 1
    rank_function: str = ""

    def call(self, on_event: EventSink, stop: threading.Event) -> dict:
        return named(self.function)(**self.kwargs, on_event=on_event, stop=stop)


def named(function: str) -> Callable[..., dict]:
    """The function "module:function" names (a worker on another machine imports it)."""
    module, _, name = function.partition(":")
    return getattr(importlib.import_module(module), name)


def event_callbacks(on_event: EventSink) -> dict[str, Callable[..., None]]:
    """The API functions' `log` and `progress` callbacks, each handing its call on as an event."""
    return {"log": lambda line: on_event({"type": "log", "message": line}),
            "progress": lambda stage, done, total: on_event({"type": "progress", "stage": stage, "done": done,
                                                              "total": total})}


class Executor(Protocol):
    name: str

    def run(self, spec: JobSpec, on_event: EventSink, stop: threading.Event | None = None) -> dict:
        """Run the job to its end (its events to `on_event` as they happen); returns its result or raises its
        error. Setting `stop` stops it (StopRequested)."""
        ...
