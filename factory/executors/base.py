"""A job and an executor, as every executor sees them (factory.executors lists the executors)."""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

EventSink = Callable[[dict], None]


@dataclass(frozen=True)
class JobSpec:
    """One job: what to call, with what, and what it needs.

    `kwargs["home"]` is the workspace; `job_id` names its folder there (runs/<job_id>/). `cpus` and `gpus` are what
    a cluster reserves for it (each, for every rank; `cpus` None: a whole node's cores, at most 8; `gpus` None: one
    where the cluster has GPUs, else none), `resumable` jobs
    (training) go on from their last checkpoint when the worker running them died and the job is run again.
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

    def function_object(self) -> Callable[..., dict]:
        module, _, name = self.function.partition(":")
        return getattr(importlib.import_module(module), name)

    def call(self, on_event: EventSink, stop: threading.Event) -> dict:
        return self.function_object()(**self.kwargs, on_event=on_event, stop=stop)


class Executor(Protocol):
    name: str

    def run(self, spec: JobSpec, on_event: EventSink, stop: threading.Event | None = None) -> dict:
        """Run the job to its end (its events to `on_event` as they happen); returns its result or raises its
        error. Setting `stop` stops it (StopRequested)."""
        ...
