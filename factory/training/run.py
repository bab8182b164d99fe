"""A training run as a job: resolve and save the config first, train with persisted progress,
evaluate on the test split, register the model version. Resumable after a crash or restart."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from typing import Callable

import torch

from factory.catalog import Catalog
from factory.config import TrainConfig
from factory.datasets.importer import validate_name
from factory.errors import UnsupportedSpecError, ConfigError, FactoryError, TrainingError
from factory.evaluation import dataset_row_for, evaluate_split, split_entries, write_eval_report
from factory.models import load_model, register_model_version, resolve_model
from factory.tasks.classification import MODELS, build_model, load_matching, load_pretrained, preprocessing_spec
from factory.training.data import ImageTensors
from factory.training.engine import Event, StopRequested, Trainer, recalibrate_batchnorm
from factory.workspace import Workspace, atomic_write_json

EventSink = Callable[[Event], None]
DEFAULT_ARCH = "mobilenet_v3_small"


def new_run_id() -> str:
    return time.strftime("run-%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def resolve_config(catalog: Catalog, cfg: TrainConfig) -> dict:
    """Fill defaults that depend on the data and architecture; the result is saved before work starts."""
    ds = dataset_row_for(catalog, cfg.dataset)
    if ds["task"] == "detection":
        return _resolve_detection(ds, cfg)
    arch = cfg.model or DEFAULT_ARCH
    if cfg.from_model:
        parent = resolve_model(catalog, cfg.from_model)
        if cfg.model and cfg.model != parent["arch"]:
            raise ConfigError(f"--from {cfg.from_model} is a {parent['arch']}, but --model {cfg.model} was asked for.",
                              fix="Leave out --model when continuing from an earlier version.")
        arch = parent["arch"]
    spec = MODELS.get(arch)
    img_size = cfg.img_size or spec.default_img_size
    name = validate_name(cfg.name or f"{ds['name']}-{arch}".replace("_", "-"))
    return {**cfg.to_dict(), "model": arch, "dataset": f"{ds['name']}:v{ds['version']}", "img_size": img_size, "name": name,
            "classes": ds["classes"], "torch_version": torch.__version__}


def _resolve_detection(ds: dict, cfg: TrainConfig) -> dict:
    from factory.tasks.detection import DETECTORS

    if cfg.from_model or cfg.pretrained:
        raise UnsupportedSpecError("--from and --pretrained are not available for detectors yet.",
                                   fix="Train the detector from scratch (leave them out).")
    arch = cfg.model or DEFAULT_ARCH
    spec = DETECTORS.get(arch)
    img_size = cfg.img_size or spec.default_img_size
    if img_size % 32:
        raise ConfigError(f"A detector's input size must be a multiple of 32 (strides 8, 16, 32); got {img_size}.",
                          fix=f"Use --img-size {max(32, round(img_size / 32) * 32)}.")
    name = validate_name(cfg.name or f"{ds['name']}-{arch}".replace("_", "-"))
    return {**cfg.to_dict(), "model": arch, "dataset": f"{ds['name']}:v{ds['version']}", "img_size": img_size, "name": name,
            "classes": ds["classes"], "task": "detection", "torch_version": torch.__version__}


def _log_writer(ws: Workspace, catalog: Catalog, run_id: str, sink: EventSink | None) -> EventSink:
    log_path = ws.run_dir(run_id) / "log.jsonl"
    last_persist = [0.0]

    def on_event(event: Event) -> None:
        event = {"run": run_id, "time": round(time.time(), 3), **event}
        with open(log_path, "a") as fh:
            fh.write(json.dumps(event) + "\n")
        now = time.monotonic()
        if event["type"] != "step" or now - last_persist[0] > 5:
            last_persist[0] = now
            fields = {"progress": event}
            if event["type"] == "epoch":
                run = catalog.run(run_id)
                fields["history"] = [*(run["history"] if run else []), {k: v for k, v in event.items() if k != "run"}]
            catalog.update_run(run_id, **fields)
        if sink:
            sink(event)

    return on_event


def _initial_model(ws: Workspace, catalog: Catalog, resolved: dict, sink: EventSink) -> torch.nn.Module:
    model = build_model(resolved["model"], len(resolved["classes"]))
    if resolved["pretrained"] == "imagenet":
        info = load_pretrained(model, resolved["model"])
        sink({"type": "init", "source": "imagenet", "loaded_tensors": info["loaded"]})
    elif resolved["from_model"]:
        parent_model, parent_meta = load_model(ws, resolve_model(catalog, resolved["from_model"]))
        same_head = parent_meta["classes"] == resolved["classes"]
        info = load_matching(model, parent_model.state_dict(),
                             skip_prefix="" if same_head else MODELS.get(resolved["model"]).head)
        sink({"type": "init", "source": resolved["from_model"], "loaded_tensors": info["loaded"]})
    return model


def start_run(ws: Workspace, catalog: Catalog, cfg: TrainConfig) -> str:
    """Create the run record and save its resolved config; returns the run id."""
    resolved = resolve_config(catalog, cfg)
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
    sink = _log_writer(ws, catalog, run_id, on_event)
    catalog.update_run(run_id, status="running", pid=os.getpid(), error=None)
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
                            fix=f"See {ws.run_dir(run_id) / 'log.jsonl'}; resume with `edgefactory train --resume {run_id}`.") from exc
    catalog.update_run(run_id, status="completed", result=result)
    return result


def _train_and_register(ws: Workspace, catalog: Catalog, run_id: str, resolved: dict, resume: bool,
                        sink: EventSink, stop: threading.Event | None) -> dict:
    if resolved.get("task") == "detection":
        from factory.training.detection import train_detector

        return train_detector(ws, catalog, run_id, resolved, resume, sink, stop)
    ds = dataset_row_for(catalog, resolved["dataset"])
    root, train_entries = split_entries(ws, ds, "train")
    _, val_entries = split_entries(ws, ds, "val")
    if not val_entries:
        val_entries = train_entries  # tiny data with no validation images: report it, do not crash
        sink({"type": "warning", "message": "The dataset has no validation images; early stopping uses train."})
    size, classes = resolved["img_size"], resolved["classes"]
    sink({"type": "stage", "stage": "load data", "images": len(train_entries) + len(val_entries)})
    train, val = ImageTensors(root, train_entries, classes, size), ImageTensors(root, val_entries, classes, size)
    model = _initial_model(ws, catalog, resolved, sink)
    cfg = TrainConfig.from_dict({k: resolved[k] for k in TrainConfig.__dataclass_fields__})
    trainer = Trainer(cfg, model, train, val, preprocessing_spec(size), ws.run_dir(run_id), on_event=sink, stop=stop)
    state = trainer.fit(resume=resume)
    model.load_state_dict(torch.load(trainer.best_path, map_location="cpu", weights_only=True))
    model.cpu().eval()
    recalibrate_batchnorm(model, train, preprocessing_spec(size))  # exact statistics for the kept weights
    _, test_entries = split_entries(ws, ds, "test")
    meta = {"classes": classes, "input_size": [3, size, size], "preprocessing": preprocessing_spec(size)}
    test = evaluate_split(model, meta, root, test_entries or val_entries)
    metrics = {"accuracy": test["accuracy"], "f1_macro": test["f1_macro"], "precision_macro": test["precision_macro"],
               "recall_macro": test["recall_macro"], "val_accuracy": state.best_metric, "best_epoch": state.best_epoch,
               "epochs_run": state.epoch, "train_time_s": round(state.elapsed_s, 1),
               "split": "test" if test_entries else "val"}
    row = register_model_version(ws, catalog, name=resolved["name"], arch=resolved["model"], classes=classes,
                                 img_size=size, state_dict=model.state_dict(), dataset=resolved["dataset"],
                                 run_id=run_id, metrics=metrics,
                                 extra={"parent": resolved.get("from_model"), "pretrained": resolved.get("pretrained"),
                                        "history": state.history})
    try:  # the version is registered: a failed report must not fail the run (a resume would register it twice)
        write_eval_report(ws, row, metrics["split"], test, root, classes)
    except Exception as exc:
        sink({"type": "warning", "message": f"evaluation report not written ({type(exc).__name__}: {exc}); "
                                            f"run `edgefactory eval {row['name']}:v{row['version']}` to make it"})
    sink({"type": "registered", "model": row["name"], "version": row["version"], "metrics": metrics})
    return {"model": row["name"], "version": row["version"], "run": run_id, "metrics": metrics}


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mark_orphans(catalog: Catalog) -> list[str]:
    """Runs left 'running' by a process that died (crash, kill, reboot) become 'interrupted'."""
    orphans = [r["id"] for r in catalog.runs()
               if r["status"] in ("running", "queued") and r["pid"] != os.getpid() and not pid_alive(r["pid"])]
    for run_id in orphans:
        catalog.update_run(run_id, status="interrupted")
    return orphans
