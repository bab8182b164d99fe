"""The `ray` executor: a job runs as a task on a Ray cluster (`EDGEFACTORY_RAY_ADDRESS`, e.g. 10.0.0.5:6379; unset:
the cluster `ray start` made on this machine, else a Ray instance of this process's own).

Nothing goes through Ray's object store but the job's arguments and its result. The task writes its progress events
to `runs/<job>/executor/events.jsonl` in the workspace (a folder every node mounts at the same path) and this
process follows that file, handing each event on as a local job would. Stop is a file beside it that the task
watches (the job stops at its next step, keeping its checkpoint, as a local Stop does). A worker that dies is
retried by Ray (`RETRIES` times) and a training job then resumes from its last checkpoint. A training job with
several ranks (`--devices N`) runs on N Ray Train workers (TorchTrainer, its process group: gloo on CPUs, NCCL on
GPUs), rank 0 of which runs the job itself.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import pickle
import socket
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path

from factory import processes
from factory.errors import ConfigError, FactoryError, MissingDependencyError
from factory.executors.base import JobSpec
from factory.training.engine import StopRequested
from factory.workspace import append_event

ADDRESS_ENV = "EDGEFACTORY_RAY_ADDRESS"
RETRIES = 3  # a job's tries after its worker died (Ray's max_retries; Ray Train's max_failures)
POLL_S = 0.25
CONNECT_TIMEOUT_S = 5.0
STOP_GRACE_S = 120.0  # a stopped job ends at its next step; after this it is cancelled
MAX_AUTO_CPUS = 8  # a job that names no CPU count takes a whole node's cores, at most this many
START_FIX = (f"Start it (`ray start --head --port 6379` on the head node) or correct {ADDRESS_ENV} (HOST:PORT of the "
             "head node), or use --executor local.")
PASSED_ENV = ("EDGEFACTORY_CATALOG", "EDGEFACTORY_VERBOSE")  # what a worker needs of the caller's settings
_CONNECTED = threading.Lock()


class JobFailed(FactoryError):
    code = "JOB_FAILED"


def channel(spec: JobSpec) -> Path:
    """The job's folder in the shared workspace where its task writes events and reads Stop."""
    return Path(spec.kwargs["home"]) / "runs" / spec.job_id / "executor"


def connect():
    """This process's connection to the cluster (made once)."""
    try:
        import ray
    except ImportError as exc:
        raise MissingDependencyError("The ray executor needs Ray, which is not installed.",
                                     fix="pip install 'ray[train]' (scripts/setup installs it), or use --executor "
                                         "local.") from exc
    with _CONNECTED:
        if not ray.is_initialized():
            address = os.environ.get(ADDRESS_ENV) or None
            if address and address != "auto":
                _reachable(address)
            env = {k: os.environ[k] for k in PASSED_ENV if os.environ.get(k)}
            try:
                ray.init(address=address, namespace="edgefactory", log_to_driver=False, logging_level=logging.WARNING,
                         include_dashboard=False, runtime_env={"env_vars": env} if env else None)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ConfigError(f"Cannot reach the Ray cluster at {address}: {str(exc).splitlines()[0][:300]}",
                                  fix=START_FIX) from exc
    return ray


def _reachable(address: str) -> None:
    """Fail at once on an address nothing listens on (Ray itself retries for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Cannot reach the Ray cluster at {address} ({ADDRESS_ENV}): {exc}.", fix=START_FIX) from exc


class RayExecutor:
    name = "ray"

    def run(self, spec: JobSpec, on_event, stop: threading.Event | None = None) -> dict:
        if not spec.job_id:
            raise ValueError("a Ray job needs a job_id: its folder in the workspace")
        ray = connect()
        folder = channel(spec)
        folder.mkdir(parents=True, exist_ok=True)
        for left in ("stop", "attempts", "error.pickle"):  # an earlier submission's (a run resumed)
            (folder / left).unlink(missing_ok=True)
        events = folder / "events.jsonl"
        offset = events.stat().st_size if events.exists() else 0  # a resumed job's folder has the earlier tries'
        spec = replace(spec, cpus=cpus_for(ray, spec), gpus=gpus_for(ray, spec))
        ref = _submit(ray, spec, str(folder))
        on_event({"type": "executor", "executor": "ray", "job": spec.job_id,
                  "message": f"{spec.kind} {spec.job_id} submitted to the Ray cluster at "
                             f"{os.environ.get(ADDRESS_ENV) or ray.get_runtime_context().gcs_address} "
                             f"({_resources_text(spec)})"})
        if not os.environ.get("EDGEFACTORY_CATALOG") and len([n for n in ray.nodes() if n.get("Alive")]) > 1:
            on_event({"type": "warning", "message": "the cluster has several nodes but the catalog is the workspace's "
                                                    "catalog.sqlite, which SQLite cannot share safely between machines",
                      "fix": "Set EDGEFACTORY_CATALOG=postgresql://... (a database every node reaches; `edgefactory "
                             "catalog copy --to URL` moves the catalog there)."})
        follower = _Follower(events, offset, on_event)
        try:
            _wait(ray, ref, follower, folder, stop)
        except KeyboardInterrupt:  # Ctrl-C stops the job as Stop does, then ends the caller
            _stop(ray, ref, follower, folder)
            raise
        finally:
            follower.read()
        return _result(ray, ref, spec)


def cpus_for(ray, spec: JobSpec) -> float:
    """The CPUs each rank of `spec` asks for: its own count, else its share of the largest node's cores (at most
    MAX_AUTO_CPUS for the job)."""
    if spec.cpus is not None:
        return spec.cpus
    largest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=1)
    return max(1.0, min(largest, MAX_AUTO_CPUS) // spec.distributed)


def gpus_for(ray, spec: JobSpec) -> float:
    """The GPUs each rank asks for: its own count, else one where the cluster has GPUs (training on `auto`)."""
    if spec.gpus is not None:
        return spec.gpus
    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def _resources_text(spec: JobSpec) -> str:
    if spec.distributed > 1:
        return f"{spec.distributed} Ray Train workers, {spec.cpus:g} CPU{f' and {spec.gpus:g} GPU' if spec.gpus else ''} each"
    return f"{spec.cpus:g} CPU" + (f", {spec.gpus:g} GPU" if spec.gpus else "")


def _submit(ray, spec: JobSpec, folder: str):
    task = ray.remote(_remote_job)
    # a job of several ranks only waits for its Ray Train workers, which hold the cores and GPUs
    cpus, gpus = (0, 0) if spec.distributed > 1 else (spec.cpus, spec.gpus)
    return task.options(num_cpus=cpus, num_gpus=gpus, max_retries=0 if spec.distributed > 1 else RETRIES,
                        retry_exceptions=False, name=f"edgefactory-{spec.kind}-{spec.job_id}").remote(asdict(spec), folder)


class _Follower:
    """Hands on the events the task appends to its file (whole lines only; a line a killed worker left half-written
    is skipped)."""

    def __init__(self, path: Path, offset: int, on_event):
        self.path, self.offset, self.on_event = path, offset, on_event

    def read(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return
        complete = data.rfind(b"\n") + 1
        self.offset += complete
        for line in data[:complete].splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self.on_event(event)


def _ended(ray, ref, follower: _Follower) -> bool:
    """Whether the task has ended, after waiting POLL_S for it and handing on its new events."""
    done, _ = ray.wait([ref], timeout=POLL_S)
    follower.read()
    return bool(done)


def _wait(ray, ref, follower: _Follower, folder: Path, stop: threading.Event | None) -> None:
    while not _ended(ray, ref, follower):
        if stop is not None and stop.is_set():
            _stop(ray, ref, follower, folder)
            return


def _stop(ray, ref, follower: _Follower, folder: Path) -> None:
    """Ask the task to stop at its next step; cancel it when it has not within STOP_GRACE_S."""
    (folder / "stop").touch()
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline:
        if _ended(ray, ref, follower):
            return
    ray.cancel(ref, force=True)


def _result(ray, ref, spec: JobSpec) -> dict:
    from ray import exceptions

    try:
        return ray.get(ref)
    except exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):  # the job's own error (a FactoryError with its fix, StopRequested)
            raise cause from None
        raise JobFailed(f"The {spec.kind} job {spec.job_id} failed on the Ray cluster: {str(exc)[:500]}",
                        fix=f"See {channel(spec).parent}.") from exc
    except exceptions.TaskCancelledError as exc:
        raise StopRequested() from exc
    except (exceptions.WorkerCrashedError, exceptions.NodeDiedError, exceptions.OutOfMemoryError,
            exceptions.RayError) as exc:
        raise JobFailed(f"The Ray worker running {spec.kind} job {spec.job_id} died {RETRIES + 1} times: "
                        f"{str(exc).splitlines()[0][:300]}",
                        fix="Check the nodes' memory and logs (`ray status`); " + (
                            f"`edgefactory train --resume {spec.job_id}` goes on from the last checkpoint."
                            if spec.resumable else "then run it again.")) from exc


# -- on the worker -------------------------------------------------------------------------------------------------
def _remote_job(spec_fields: dict, folder: str) -> dict:
    spec = JobSpec(**spec_fields)
    if spec.distributed > 1:
        return _ray_train(spec, Path(folder))
    return _here(spec, Path(folder))


def _here(spec: JobSpec, folder: Path) -> dict:
    """Run the job in this worker: its events to the channel file, Stop read from it."""
    attempt = _count_attempt(folder)
    events = folder / "events.jsonl"

    def on_event(event: dict) -> None:
        append_event(events, event)

    if attempt > 1:
        on_event({"type": "warning", "message": f"the Ray worker running {spec.job_id} stopped (killed, or its node "
                                                f"lost); Ray runs it again on {processes.HOST} (try {attempt} of "
                                                f"{RETRIES + 1})" + (", from its last checkpoint" if spec.resumable else "")})
    stop, done = threading.Event(), threading.Event()
    watcher = threading.Thread(target=_watch_stop, args=(folder / "stop", stop, done), daemon=True)
    watcher.start()
    try:
        return spec.call(on_event, stop)
    finally:
        done.set()


def _count_attempt(folder: Path) -> int:
    """This try's number (1 first): each try adds a line to the job's `attempts` file."""
    with open(folder / "attempts", "a+") as fh:
        fh.write(f"{processes.HOST} {os.getpid()} {time.time():.0f}\n")
        fh.seek(0)
        return len(fh.read().splitlines())


def _watch_stop(path: Path, stop: threading.Event, done: threading.Event) -> None:
    while not done.wait(POLL_S):
        if path.exists():
            stop.set()
            return


def _ray_train(spec: JobSpec, folder: Path) -> dict:
    """A job of several ranks on Ray Train: rank 0 runs the job itself; the others run `spec.rank_function`. A group
    that lost a worker (killed, its node gone) is started again (RETRIES times), the training then resuming from its
    checkpoint; the job's own error (a FactoryError, a Stop) ends it as itself, never retried."""
    import ray.train
    from ray.exceptions import RayActorError
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    for attempt in range(RETRIES + 1):
        for left in ("result.json", "error.pickle"):
            (folder / left).unlink(missing_ok=True)
        trainer = TorchTrainer(
            functools.partial(_train_worker, asdict(spec), str(folder)),
            scaling_config=ScalingConfig(num_workers=spec.distributed, use_gpu=bool(spec.gpus),
                                         resources_per_worker={"CPU": spec.cpus, **({"GPU": spec.gpus} if spec.gpus else {})}),
            run_config=RunConfig(name=f"{spec.job_id}-{attempt}", storage_path=str(folder / "ray-train"),
                                 failure_config=FailureConfig(max_failures=0)))  # the retries are this loop's
        try:
            trainer.fit()
            return json.loads((folder / "result.json").read_text())
        except ray.train.TrainingFailedError as exc:
            failures = getattr(exc, "worker_failures", {}) or {}
            lost = any(isinstance(e, RayActorError) for e in failures.values())
            if lost and attempt < RETRIES:
                continue
            if (folder / "error.pickle").exists():  # rank 0's own error
                raise pickle.loads((folder / "error.pickle").read_bytes()) from None
            first = next(iter(failures.values()), exc)
            raise JobFailed(f"The {spec.kind} job {spec.job_id} failed on its Ray Train workers"
                            f"{f' ({RETRIES + 1} times a worker was lost)' if lost else ''}: "
                            f"{str(first).splitlines()[0][:300]}",
                            fix=f"See {folder.parent}; `edgefactory train --resume {spec.job_id}` goes on from the last "
                                "checkpoint.") from exc
    raise AssertionError("unreachable")


def _train_worker(spec_fields: dict, folder: str) -> None:
    import ray.train

    spec = JobSpec(**spec_fields)
    if ray.train.get_context().get_world_rank() != 0:
        replace(spec, function=spec.rank_function).call(lambda event: None, threading.Event())
        return
    try:
        result = _here(spec, Path(folder))
    except (FactoryError, StopRequested) as exc:  # the job's own end: told as itself, not retried
        Path(folder, "error.pickle").write_bytes(pickle.dumps(exc))
        raise
    tmp = Path(folder) / f".result-{os.getpid()}.json"
    tmp.write_text(json.dumps(result, default=str))
    tmp.replace(Path(folder) / "result.json")
