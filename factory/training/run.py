"""A training run as a job: resolve and save the config first, train with persisted progress,
evaluate on the test split, register the model version. Resumable after a crash or restart."""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

import torch

from factory import executors, processes
from factory.catalog import Catalog
from factory.config import TrainConfig
from factory.datasets.publish import validate_name
from factory.datasets.splits import DatasetSplits
from factory.errors import ConfigError, FactoryError, TrainingError
from factory.executors.base import JobSpec
from factory.i18n import speaking
from factory.models import load_model, read_metadata, register_model_version, resolve_model
from factory.refs import dataset_row_for
from factory.tasks import DEFAULT_TASK, all_tasks, task_of
from factory.tasks.base import Task
from factory.training import defaults, distributed
from factory.training.engine import CHECKPOINT, Event, StopRequested, seed_everything
from factory.workspace import Workspace, append_event, atomic_write_json

EventSink = Callable[[Event], None]


def new_run_id() -> str:
    return time.strftime("run-%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def resolve_config(ws: Workspace, catalog: Catalog, cfg: TrainConfig, *, here: bool = True) -> dict:
    """Fill the options the user left out from the data and architecture, each with its reason under "why";
    the result is saved before work starts. `here`: the run trains on this machine (its devices are checked)."""
    ds = dataset_row_for(catalog, cfg.dataset)
    task = task_of(ds)
    arch = cfg.model or task.default_architecture(cfg.to_dict())
    parent = None
    if cfg.from_model:
        parent = resolve_model(catalog, cfg.from_model)
        if (parent.get("task") or DEFAULT_TASK) != task.name:
            raise ConfigError(f"--from {cfg.from_model} is a {parent.get('task') or DEFAULT_TASK} model; {ds['name']} is a "
                              f"{task.name} dataset.", fix=f"Continue from a {task.name} model, or leave --from out.")
        if cfg.model and cfg.model != parent["arch"]:
            raise ConfigError(f"--from {cfg.from_model} is a {parent['arch']}, but --model {cfg.model} was asked for.",
                              fix="Leave out --model when continuing from an earlier version.")
        arch = parent["arch"]
    foreign = [o for t in all_tasks() if t is not task for o in t.options
               if o not in task.options and getattr(cfg, o) is not None]
    if foreign:
        raise ConfigError(f"Training option {foreign[0]} does not apply to {task.name} models.",
                          fix=f"Leave it out (it is read by: {', '.join(t.name for t in all_tasks() if foreign[0] in t.options)}).")
    if cfg.pretrained is not None and cfg.pretrained not in task.pretrained_sources:
        raise ConfigError(f"--pretrained {cfg.pretrained} does not apply to {task.name} models.",
                          fix=f"Use one of: {', '.join(task.pretrained_sources)}; or leave it out.")
    if here:  # a cluster's job is checked by its scheduler (Ray waits for, or refuses, what no node has)
        distributed.check_devices(cfg.devices or 1, cfg.device)
    res = defaults.Resolution(cfg.to_dict(), read_metadata(ws, parent) if parent else None)
    data = DatasetSplits.open(ws, ds)
    extra = task.resolve(ws, ds, arch, res, data.entries("train"), data.root)
    defaults.resolve_schedule(res)
    name = validate_name(cfg.name or f"{ds['name']}-{arch}".replace("_", "-"), "Model")
    return {**cfg.to_dict(), **res.values, "model": arch, "dataset": f"{ds['name']}:v{ds['version']}", "name": name,
            "classes": ds["classes"], "task": task.name, **extra, "why": res.why, "torch_version": torch.__version__}


def _log_writer(ws: Workspace, catalog: Catalog, run_id: str, sink: EventSink | None, metric_label: str) -> EventSink:
    log_path = ws.run_log(run_id)
    last_persist = [0.0]

    def on_event(event: Event) -> None:
        event = {"run": run_id, "time": round(time.time(), 3), **event}
        if "metric" in event:
            event.setdefault("metric_label", metric_label)  # the task's words for it, for every front end
        append_event(log_path, event)
        now = time.monotonic()
        if event["type"] != "step" or now - last_persist[0] > 5:
            last_persist[0] = now
            fields = {"progress": event}
            if event["type"] == "epoch":
                run = catalog.run(run_id)
                fields["history"] = [*(run["history"] if run else []), {k: v for k, v in event.items() if k != "run"}]
            catalog.update_run(run_id, **fields)
        if sink:
            _deliver(sink, event, log_path)

    return on_event


def _deliver(sink: EventSink, event: Event, log_path: Path) -> None:
    """Hand an event to a consumer (progress bar, chat, SSE stream): its failure is logged, never the run's."""
    try:
        sink(event)
    except Exception as exc:  # a consumer's bug must not fail (or half-register) the run it watches
        append_event(log_path, {"type": "consumer_error", "event": event.get("type"),
                                "error": f"{type(exc).__name__}: {exc}"})


def start_run(ws: Workspace, catalog: Catalog, cfg: TrainConfig, *, here: bool = True) -> str:
    """Create the run record and save its resolved config; returns the run id. The reasons it stores are in English
    (the chat, speaking another language, renders them again when it shows them)."""
    with speaking("en"):
        resolved = resolve_config(ws, catalog, cfg, here=here)
    run_id = new_run_id()
    ws.run_dir(run_id).mkdir(parents=True)
    atomic_write_json(ws.run_dir(run_id) / "config.json", resolved)
    catalog.create_run(run_id, "train", resolved, os.getpid())
    return run_id


def execute_run(ws: Workspace, catalog: Catalog, run_id: str, *, resume: bool = False,
                on_event: EventSink | None = None, stop: threading.Event | None = None) -> dict:
    """Train (or resume) run `run_id` to the end and register its model version; returns the result.

    Status moves queued -> running -> completed | stopped | interrupted | failed, persisted at each step.
    """
    run = catalog.run(run_id)
    if run is None:
        raise ConfigError(f"No run {run_id!r}.", fix="List runs with `edgefactory runs list`.")
    resolved = run["config"]
    sink = _log_writer(ws, catalog, run_id, on_event, task_of(resolved).metric_label)
    catalog.claim_run(run_id, status="running", error=None)
    try:
        result = _train_and_register(ws, catalog, run_id, resolved, resume, sink, stop)
    except StopRequested:
        catalog.update_run(run_id, status="stopped")
        sink({"type": "stopped"})
        raise
    except KeyboardInterrupt:
        catalog.update_run(run_id, status="interrupted")
        raise
    except FactoryError as exc:
        catalog.update_run(run_id, status="failed", error=str(exc))
        raise
    except Exception as exc:  # unexpected: keep the run inspectable, then surface it
        catalog.update_run(run_id, status="failed", error=f"{type(exc).__name__}: {exc}")
        raise TrainingError(f"Training run {run_id} failed: {type(exc).__name__}: {exc}",
                            fix=f"See {ws.run_log(run_id)}; resume with `edgefactory train --resume {run_id}`.") from exc
    catalog.update_run(run_id, status="completed", result=result)
    return result


def job(run_id: str, home: str, resolved: dict) -> JobSpec:
    """The run as an executor's job (factory.executors): on a GPU when it asks for CUDA, with its ranks."""
    gpus = {"cuda": 1.0, "cpu": 0.0}.get(resolved.get("device"))  # None ("auto"): one where the cluster has GPUs
    return JobSpec("train", "factory.training.run:run_job", {"home": home, "run_id": run_id}, job_id=run_id,
                   gpus=gpus, resumable=True, distributed=resolved.get("devices") or 1,
                   rank_function="factory.training.rank:follow")


def execute_job(home: str, run_id: str, on_event: EventSink | None = None, stop: threading.Event | None = None,
                executor: str | None = None) -> dict:
    """The run on `executor` (factory.executors). A run its executor lost (its worker died for good, or it was
    cancelled) is left `interrupted`, never `running`: its last process may be on a machine no command runs on."""
    ws = Workspace.open(home)
    with Catalog(ws.catalog_location) as catalog:
        spec = job(run_id, str(ws.home), catalog.run(run_id)["config"])
    try:
        return executors.run(spec, on_event, stop, executor)
    except BaseException:
        with Catalog(ws.catalog_location) as catalog:
            run = catalog.run(run_id)
            if run and run["status"] in ("queued", "running") and run["pid"] != os.getpid():
                catalog.update_run(run_id, status="interrupted")
        raise


def run_job(home: str, run_id: str, on_event: EventSink | None = None, stop: threading.Event | None = None) -> dict:
    """`execute_run` in a workspace session of its own, from the run's last checkpoint when it has one (a run
    resumed, or a job run again after its worker died)."""
    ws = Workspace.open(home)
    with Catalog(ws.catalog_location) as catalog:
        return execute_run(ws, catalog, run_id, resume=has_checkpoint(ws, run_id), on_event=on_event, stop=stop)


def has_checkpoint(ws: Workspace, run_id: str) -> bool:
    """Whether the run has a last checkpoint to resume from (every rank decides alike from it)."""
    return (ws.run_dir(run_id) / CHECKPOINT).exists()


def _trainer_for(ws: Workspace, catalog: Catalog, run_id: str, resolved: dict, sink: EventSink,
                 stop: threading.Event | None):
    """The run's splits, initial model and trainer, as every data-parallel rank builds them alike."""
    task = task_of(resolved)
    data = DatasetSplits.open(ws, dataset_row_for(catalog, resolved["dataset"]))
    train_entries, val_entries = data.entries("train"), data.entries("val")
    if not val_entries:
        val_entries = train_entries  # tiny data with no validation images: report it, do not crash
        sink({"type": "warning", "message": "The dataset has no validation images; early stopping uses train."})
    sink({"type": "stage", "stage": "load data", "images": len(train_entries) + len(val_entries)})
    train, val = task.training_data(data.root, train_entries, resolved), task.training_data(data.root, val_entries, resolved)
    parent = load_model(ws, resolve_model(catalog, resolved["from_model"])) if resolved.get("from_model") else None
    seed_everything(resolved.get("seed", 0))  # the fresh layers' initial weights are part of a reproducible run
    model = task.initial_model(resolved, parent, sink)
    pre = task.preprocessing(resolved)
    cfg = TrainConfig.from_dict({k: resolved[k] for k in TrainConfig.__dataclass_fields__ if k in resolved})
    trainer = task.trainer(cfg, model, train, val, pre, ws.run_dir(run_id), resolved, on_event=sink, stop=stop)
    trainer.metric_label = trainer.metric_label or task.metric_label  # a trainer may track a score of its own
    return task, data, val_entries, model, pre, trainer


def _fit(ws: Workspace, run_id: str, resolved: dict, trainer, resume: bool, sink: EventSink):
    """The trainer's fit, in `devices` data-parallel processes when the run asks for more than one."""
    devices = resolved.get("devices") or 1
    if devices == 1:
        return trainer.fit(resume=resume)
    device = resolved.get("device", "auto")
    with distributed.ranks(devices, device, "factory.training.rank", [str(ws.home), run_id, "resume" if resume else "new"],
                           lambda rank: distributed.rank_log(ws.run_dir(run_id), rank)) as group:
        trainer.group = group
        restore = distributed.sync_batchnorm(trainer.model, device)
        sink({"type": "stage", "stage": "data parallel", "processes": devices, "backend": distributed.backend(device),
              "batch_per_process": group.share(trainer.cfg.batch_size)})
        group.ready()  # the other ranks have built their trainers: the run's clock starts now
        try:
            return trainer.fit(resume=resume)
        finally:
            restore()  # plain BatchNorm again in the model that is registered


def _train_and_register(ws: Workspace, catalog: Catalog, run_id: str, resolved: dict, resume: bool,
                        sink: EventSink, stop: threading.Event | None) -> dict:
    """Every task's run: load the splits, train with the engine, keep the best weights with exact BN statistics,
    evaluate on the test split (val when there is none), register the version, write its report."""
    task, data, val_entries, model, pre, trainer = _trainer_for(ws, catalog, run_id, resolved, sink, stop)
    state = _fit(ws, run_id, resolved, trainer, resume, sink)
    model.load_state_dict(torch.load(trainer.best_path, map_location="cpu", weights_only=True))
    model.cpu().eval()
    trainer.recalibrate(model)  # exact statistics for the kept weights
    split, test_entries = data.evaluation()
    split, test_entries = (split, test_entries) if test_entries else ("val", val_entries)
    size, classes = resolved["img_size"], resolved["classes"]
    meta = {"task": task.name, "arch": resolved["model"], "classes": classes, "num_classes": len(classes),
            "input_size": [3, size, size], "preprocessing": pre, "postprocessing": task.postprocessing(resolved)}
    full = task.evaluate(model, meta, data.root, test_entries)
    metrics = {**task.version_metrics(full), f"val_{trainer.metric}": state.best_metric, "best_epoch": state.best_epoch,
               "epochs_run": state.epoch, "train_time_s": round(state.elapsed_s, 1), "split": split}
    warnings = trainer.diagnose()
    row = register_model_version(ws, catalog, name=resolved["name"], arch=resolved["model"], classes=classes,
                                 img_size=size, state_dict=model.state_dict(), dataset=resolved["dataset"],
                                 run_id=run_id, metrics=metrics, task=task.name, preprocessing=pre,
                                 postprocessing=meta["postprocessing"],
                                 extra={"parent": resolved.get("from_model"), "pretrained": resolved.get("pretrained"),
                                        "history": state.history, "training_warnings": warnings})
    _report(ws, task, row, split, full, data.root, meta, sink)
    return registered(row, run_id, metrics, warnings, task.metric, sink)


def _report(ws: Workspace, task: Task, row: dict, split: str, full: dict, root: Path, meta: dict,
            sink: EventSink) -> None:
    """The version's evaluation report; registered already, so a failure here is a warning, never the run's
    (a resume would register the version twice)."""
    try:
        task.write_report(ws, row, split, full, root, meta)
    except Exception as exc:
        sink({"type": "warning", "message": f"evaluation report not written ({type(exc).__name__}: {exc}); "
                                            f"run `edgefactory eval {row['name']}:v{row['version']}` to make it"})


def registered(row: dict, run_id: str, metrics: dict, warnings: list[dict], headline: str, sink: EventSink) -> dict:
    """The end of every task's run: one `registered` event (with the headline test metric) and the result,
    which carries the end-of-run warnings (validation at chance, first epoch best) for every front end."""
    sink({"type": "registered", "model": row["name"], "version": row["version"], "metrics": metrics,
          "metric": headline, "score": metrics[headline], "warnings": warnings})
    return {"model": row["name"], "version": row["version"], "task": row["task"], "run": run_id, "metrics": metrics,
            "warnings": warnings}


def mark_orphans(catalog: Catalog) -> list[str]:
    """Runs left 'running' by a process of this machine that died (crash, kill, reboot) become 'interrupted': one
    whose PID now names another process (reused) or a zombie is dead too. Another machine's runs (a shared catalog)
    are that machine's to judge, or their executor's."""
    orphans = [r["id"] for r in catalog.runs() if r["status"] in ("running", "queued") and r["pid"] != os.getpid()
               and processes.gone(r["pid"], r.get("pid_started"), r.get("host"))]
    for run_id in orphans:
        catalog.update_run(run_id, status="interrupted")
    return orphans
