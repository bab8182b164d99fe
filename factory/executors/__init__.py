"""Where a job (train, export, bench, report, index build) runs: one interface, several executors.

- `local` (the default): in the calling process, as always.
- `ray`: a task on a Ray cluster (`--executor ray` / `EDGEFACTORY_EXECUTOR=ray`, `EDGEFACTORY_RAY_ADDRESS`),
  with the resources it asks for; its progress events come back to the caller, who shows them exactly as a local
  job's (the CLI's bar, the REST /events stream, the chat), and Stop works.

A job is a function named by its module and name (so a worker on another machine imports it), called as
`function(**kwargs, on_event=..., stop=...)` and returning a JSON-able dict. Every path a job reads or writes is
in the workspace, which on a cluster is a folder every node mounts at the same path (README).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from typing import Any, Callable

from factory.executors.base import CALLBACKS, EventSink, Executor, JobSpec, event_callbacks, named
from factory.registry import Registry
from factory.workspace import Workspace

__all__ = ["EXECUTORS", "EventSink", "Executor", "JobSpec", "call", "chosen", "event_callbacks", "executor", "run"]
ENV = "EDGEFACTORY_EXECUTOR"
DEFAULT = "local"


EXECUTORS: Registry[Callable[[], Executor]] = Registry("executor")


class Local:
    """In this process, on this thread."""

    name = "local"

    def run(self, spec: JobSpec, on_event: EventSink, stop: threading.Event | None = None) -> dict:
        return spec.call(on_event, stop or threading.Event())


EXECUTORS.add("local", Local)


def _ray() -> Executor:
    from factory.executors.ray_cluster import RayExecutor

    return RayExecutor()


EXECUTORS.add("ray", _ray)


def add_executor_option(parser: Any) -> None:
    """`--executor` on an argparse parser: where the job of a command that starts one runs."""
    parser.add_argument("--executor", choices=EXECUTORS.names(),
                        help="where the job runs: local (this process, the default) or ray (a task on the Ray cluster "
                             "at $EDGEFACTORY_RAY_ADDRESS; the workspace must be a folder every node mounts at the same "
                             "path); default $EDGEFACTORY_EXECUTOR or local")


def chosen(name: str | None = None) -> str:
    """The executor's name: `name`, else `$EDGEFACTORY_EXECUTOR`, else local."""
    name = name or os.environ.get(ENV) or DEFAULT
    EXECUTORS.get(name)  # an unknown name fails here, with a suggestion
    return name


def executor(name: str | None = None) -> Executor:
    return EXECUTORS.get(chosen(name))()


def run(spec: JobSpec, on_event: EventSink | None = None, stop: threading.Event | None = None,
        name: str | None = None) -> dict:
    return executor(name).run(spec, on_event or (lambda event: None), stop)


def new_job_id(kind: str) -> str:
    return f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def call(kind: str, function: Callable[..., dict], /, *, executor_name: str | None = None,
         stop: threading.Event | None = None, gpus: float = 0.0, **kwargs: Any) -> dict:
    """`function(**kwargs)` (an API function of the factory or a package above it: export, bench, report, index
    build; `kwargs` may hold a `kind` of its own) on the chosen executor, with `gpus` on a cluster's worker. Its
    `log` and `progress` callbacks work on every executor: a remote job's reach the caller as events. Locally it is a
    plain call."""
    name = chosen(executor_name)
    if name == DEFAULT:
        return function(**kwargs)
    callbacks = {k: kwargs.pop(k) for k in CALLBACKS if kwargs.get(k) is not None}
    kwargs["home"] = str(Workspace.open(kwargs.get("home")).home)
    spec = JobSpec(kind, "factory.executors:api_job", {"function": f"{function.__module__}:{function.__qualname__}",
                                                       "kwargs": kwargs, "callbacks": list(callbacks),
                                                       "home": kwargs["home"]}, job_id=new_job_id(kind), gpus=gpus)

    def on_event(event: dict) -> None:
        if event["type"] == "progress" and "progress" in callbacks:
            callbacks["progress"](event["stage"], event["done"], event["total"])
        elif event["type"] in ("log", "warning", "executor") and "log" in callbacks:
            callbacks["log"](("warning: " if event["type"] == "warning" else "") + event["message"])

    return executor(name).run(spec, on_event, stop)


def api_job(function: str, kwargs: dict, callbacks: list[str], home: str, on_event: EventSink,
            stop: threading.Event) -> dict:
    """What `call` runs remotely: the API function, its callbacks turned into events."""
    given = event_callbacks(on_event)
    return named(function)(**kwargs, **{k: given[k] for k in callbacks})
