"""A training run as a job: resolve and save the config first, train with persisted progress,
evaluate on the test split, register the model version. Resumable after a crash or restart."""

from __future__ import annotations

import json
import math
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

import torch

from factory.catalog import Catalog
from factory.config import TrainConfig
from factory.datasets.importer import validate_name
from factory.errors import UnsupportedSpecError, ConfigError, FactoryError, TrainingError
from factory.evaluation import dataset_row_for, evaluate_split, split_entries, write_eval_report
from factory.models import load_model, register_model_version, resolve_model
from factory.tasks.classification import MODELS, build_model, imagenet_weights_available, load_matching, load_pretrained, preprocessing_spec
from factory.training import defaults
from factory.training.data import ImageTensors
from factory.training.engine import Event, StopRequested, Trainer, recalibrate_batchnorm
from factory.workspace import Workspace, atomic_write_json

EventSink = Callable[[Event], None]
DEFAULT_ARCH = "mobilenet_v3_small"


def new_run_id() -> str:
    return time.strftime("run-%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def resolve_config(ws: Workspace, catalog: Catalog, cfg: TrainConfig) -> dict:
    """Fill the options the user left out from the data and architecture, each with its reason under "why";
    the result is saved before work starts."""
    ds = dataset_row_for(catalog, cfg.dataset)
    resolver = RESOLVERS.get(ds["task"])
    if resolver is None:
        raise UnsupportedSpecError(f"Datasets of task {ds['task']!r} cannot be trained yet.",
                                   fix=f"Train a dataset of one of: {', '.join(RESOLVERS)}.")
    arch = cfg.model or DEFAULT_ARCH
    if cfg.from_model:
        parent = resolve_model(catalog, cfg.from_model)
        if cfg.model and cfg.model != parent["arch"]:
            raise ConfigError(f"--from {cfg.from_model} is a {parent['arch']}, but --model {cfg.model} was asked for.",
                              fix="Leave out --model when continuing from an earlier version.")
        arch = parent["arch"]
    res = defaults.Resolution(cfg.to_dict())
    extra = resolver(ws, ds, arch, res)
    defaults.resolve_schedule(res)
    name = validate_name(cfg.name or f"{ds['name']}-{arch}".replace("_", "-"))
    return {**cfg.to_dict(), **res.values, "model": arch, "dataset": f"{ds['name']}:v{ds['version']}", "name": name,
            "classes": ds["classes"], **extra, "why": res.why, "torch_version": torch.__version__}


def _resolve_classification(ws: Workspace, ds: dict, arch: str, res: defaults.Resolution) -> dict:
    spec = MODELS.get(arch)
    root, entries = split_entries(ws, ds, "train")
    stats = ds["stats"]
    side = math.sqrt((stats.get("width") or {}).get("median", spec.default_img_size) *
                     (stats.get("height") or {}).get("median", spec.default_img_size))
    defaults.resolve_common(res, n_train=len(entries), image_side=side, default_size=spec.default_img_size,
                            weights_available=imagenet_weights_available(arch),
                            min_size=min(spec.min_img_size, spec.default_img_size))
    defaults.resolve_flip(res, lambda: defaults.class_samples(root, entries))
    defaults.resolve_crop(res, side)
    return {}


def _resolve_detection(ws: Workspace, ds: dict, arch: str, res: defaults.Resolution) -> dict:
    from factory.tasks.detection import DETECTORS
    from factory.training.detection import detector_imagenet_available

    if res.given.get("from_model"):
        raise UnsupportedSpecError("--from is not available for detectors yet.",
                                   fix="Train the detector from scratch or from ImageNet weights (leave --from out).")
    spec = DETECTORS.get(arch)
    root, entries = split_entries(ws, ds, "train")
    stats = ds["stats"]
    side = max((stats.get("width") or {}).get("median", spec.default_img_size),
               (stats.get("height") or {}).get("median", spec.default_img_size))
    res.pick("img_size", lambda: defaults.detection_size(entries, side, spec.default_img_size))
    defaults.resolve_common(res, n_train=len(entries), image_side=side, default_size=spec.default_img_size,
                            weights_available=detector_imagenet_available(arch))
    defaults.resolve_flip(res, lambda: defaults.object_samples(root, entries))
    res.pick("crop_scale", lambda: (0.6, "unused by detectors (they zoom 0.6-1.4x instead)"))
    img_size = res.values["img_size"]
    if img_size % 32:
        raise ConfigError(f"A detector's input size must be a multiple of 32 (strides 8, 16, 32); got {img_size}.",
                          fix=f"Use --img-size {max(32, round(img_size / 32) * 32)}.")
    return {"task": "detection"}


RESOLVERS: dict[str, Callable[[Workspace, dict, str, defaults.Resolution], dict]] = {
    "classification": _resolve_classification, "detection": _resolve_detection}


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
            _deliver(sink, event, log_path)

    return on_event


def _deliver(sink: EventSink, event: Event, log_path: Path) -> None:
    """Hand an event to a consumer (progress bar, chat, SSE stream): its failure is logged, never the run's."""
    try:
        sink(event)
    except Exception as exc:  # a consumer's bug must not fail (or half-register) the run it watches
        with open(log_path, "a") as fh:
            fh.write(json.dumps({"type": "consumer_error", "event": event.get("type"),
                                 "error": f"{type(exc).__name__}: {exc}"}) + "\n")


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
    resolved = resolve_config(ws, catalog, cfg)
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
    warnings = trainer.diagnose()
    row = register_model_version(ws, catalog, name=resolved["name"], arch=resolved["model"], classes=classes,
                                 img_size=size, state_dict=model.state_dict(), dataset=resolved["dataset"],
                                 run_id=run_id, metrics=metrics,
                                 extra={"parent": resolved.get("from_model"), "pretrained": resolved.get("pretrained"),
                                        "history": state.history, "training_warnings": warnings})
    try:  # the version is registered: a failed report must not fail the run (a resume would register it twice)
        write_eval_report(ws, row, metrics["split"], test, root, classes)
    except Exception as exc:
        sink({"type": "warning", "message": f"evaluation report not written ({type(exc).__name__}: {exc}); "
                                            f"run `edgefactory eval {row['name']}:v{row['version']}` to make it"})
    return registered(row, run_id, metrics, warnings, "accuracy", sink)


def registered(row: dict, run_id: str, metrics: dict, warnings: list[dict], headline: str, sink: EventSink) -> dict:
    """The end of every task's run: one `registered` event (with the headline test metric) and the result,
    which carries the end-of-run warnings (validation at chance, first epoch best) for every front end."""
    sink({"type": "registered", "model": row["name"], "version": row["version"], "metrics": metrics,
          "metric": headline, "score": metrics[headline], "warnings": warnings})
    return {"model": row["name"], "version": row["version"], "run": run_id, "metrics": metrics, "warnings": warnings}


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
