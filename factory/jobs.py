"""Background jobs in this process: a thread per job, a stop flag each, state persisted in the
catalog (so another process, the CLI or a restarted server, sees the same status and progress)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

from factory.errors import FactoryError, NotFoundError
from factory.training.engine import Event, StopRequested


@dataclass
class Job:
    id: str
    thread: threading.Thread
    stop: threading.Event
    events: list[Event] = field(default_factory=list)
    result: dict | None = None
    error: str | None = None


class JobManager:
    """Owns the threads of the jobs started by one process (a server, a chat session)."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def start(self, job_id: str, work: Callable[[Callable[[Event], None], threading.Event], dict]) -> Job:
        """Run `work(on_event, stop)` in a daemon thread; returns at once."""
        stop = threading.Event()

        def target() -> None:
            job = self._jobs[job_id]
            try:
                job.result = work(job.events.append, stop)
            except StopRequested:
                job.error = "stopped"
            except FactoryError as exc:
                job.error = str(exc)

        job = Job(job_id, threading.Thread(target=target, name=f"job-{job_id}", daemon=True), stop)
        with self._lock:
            self._jobs[job_id] = job
        job.thread.start()
        return job

    def get(self, job_id: str) -> Job:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise NotFoundError(f"No job {job_id!r} runs in this process.", fix="Check the id with `edgefactory runs list`.") from None

    def stop(self, job_id: str) -> None:
        self.get(job_id).stop.set()

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        job = self.get(job_id)
        job.thread.join(timeout)
        return job
