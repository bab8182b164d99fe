"""The Python API: the functions the CLI, the chat assistant and the server call.

Every function takes `home` (the workspace folder; default `$EDGEFACTORY_HOME` or `./workspace`)
and raises a `FactoryError` subclass whose message says what went wrong and how to fix it.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Callable, Iterator

from factory import executors
from factory.catalog import Catalog
from factory.catalog import copy_catalog as catalog_copy
from factory.config import TrainConfig
from factory.datasets import importer
from factory.datasets.synthetic import write_digits
from factory.datasets.splits import DatasetSplits
from factory.errors import ConfigError, NotFoundError
from factory.jobs import JobManager
from factory.models import delete_model_version, load_model, read_metadata, resolve_model
from factory.refs import dataset_row_for
from factory.registry import suggest
from factory.tasks import DEFAULT_TASK, task_of
from factory.training import run as runs
from factory.training.engine import Event
from factory.workspace import Workspace

Home = str | Path | None


@contextlib.contextmanager
def session(home: Home = None) -> Iterator[tuple[Workspace, Catalog]]:
    """Open the workspace and its catalog (migrating it if needed) for one call."""
    ws = Workspace.open(home)
    with Catalog(ws.catalog_location) as catalog:
        yield ws, catalog


# -- datasets ------------------------------------------------------------------------------------
def import_dataset(path: str | Path, name: str, *, task: str = DEFAULT_TASK, fmt: str = "auto", seed: int = 0,
                   home: Home = None, progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Import a folder or .zip as a new version of dataset `name`.

    Args: path (folder or .zip), name, task, fmt ('auto' or a name from DATASET_FORMATS), seed for the split.
    Returns: dict with dataset, version, task, format, num_images, classes, splits, stats, issues.
    Raises: DatasetError (nothing written; every issue in `.details`), ConfigError.
    """
    with session(home) as (ws, catalog):
        row = importer.import_dataset(ws, catalog, path, name, task=task, fmt=fmt, seed=seed, progress=progress)
    return dataset_summary(row)


def export_dataset(ref: str, dest: str | Path, *, fmt: str, home: Home = None) -> dict:
    """Write dataset `NAME[:vN]` to the new folder `dest` as `fmt`, one of its task's export formats (detection:
    coco, yolo or voc), splits kept.
    Raises: NotFoundError, ConfigError (a task without export formats, an unknown format, `dest` not empty)."""
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise ConfigError(f"{dest} is not empty.", fix="Give a new or empty folder.")
    with session(home) as (ws, catalog):
        row = dataset_row_for(catalog, ref)
        task_of(row).export_dataset(ws, row, fmt, dest)
    return {"dataset": f"{row['name']}:v{row['version']}", "format": fmt, "path": str(dest)}


def dataset_summary(row: dict) -> dict:
    return {"dataset": row["name"], "version": row["version"], "task": row["task"], "format": row["source_format"],
            "num_images": row["stats"]["num_images"], "classes": row["classes"], "splits": row["splits"],
            "stats": row["stats"], "issues": row["issues"], "path": row["path"]}


def inspect_dataset(ref: str, *, home: Home = None) -> dict:
    """The catalog record of dataset `NAME[:vN]` (latest version when none is given)."""
    with session(home) as (_, catalog):
        return dataset_summary(dataset_row_for(catalog, ref))


def list_datasets(*, home: Home = None) -> list[dict]:
    with session(home) as (_, catalog):
        return [{"dataset": r["name"], "version": r["version"], "task": r["task"], "format": r["source_format"],
                 "num_images": r["stats"]["num_images"], "classes": len(r["classes"]), "splits": r["splits"]}
                for r in catalog.datasets()]


# -- training ------------------------------------------------------------------------------------
def train(config: dict | TrainConfig, *, home: Home = None, on_event: Callable[[Event], None] | None = None,
          stop: threading.Event | None = None, executor: str | None = None) -> dict:
    """Train until done (on `executor`: this thread by default, or a Ray cluster's worker); returns {model, version,
    run, metrics}.

    Raises: ConfigError for bad options, NotFoundError for an unknown dataset or model, TrainingError,
    MissingDependencyError (pretrained weights not in the local cache), StopRequested when `stop` is set.
    """
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    name = executors.chosen(executor)
    with session(home) as (ws, catalog):
        runs.mark_orphans(catalog)
        run_id = runs.start_run(ws, catalog, cfg, here=name == executors.DEFAULT)
        if on_event:
            on_event({"type": "run", "run": run_id, "config": catalog.run(run_id)["config"]})
    return runs.execute_job(str(ws.home), run_id, on_event, stop, name)


def resolve_training(config: dict | TrainConfig, *, home: Home = None) -> dict:
    """The config a run would use, without starting it: every option left out is resolved from the data and the
    architecture, and `why` says, per option, why it has its value ("given" for the caller's own).

    Raises: ConfigError for bad options, NotFoundError for an unknown dataset or model.
    """
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    with session(home) as (ws, catalog):
        return runs.resolve_config(ws, catalog, cfg)


def start_training(config: dict | TrainConfig, jobs: JobManager, *, home: Home = None) -> str:
    """Start training in a background thread of this process; returns the run id at once."""
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    with session(home) as (ws, catalog):
        run_id = runs.start_run(ws, catalog, cfg, here=executors.chosen() == executors.DEFAULT)

    def work(on_event: Callable[[Event], None], stop: threading.Event) -> dict:  # EDGEFACTORY_EXECUTOR says where
        return runs.execute_job(str(ws.home), run_id, on_event, stop)

    jobs.start(run_id, work)
    return run_id


def resume_training(run_id: str, *, home: Home = None, on_event: Callable[[Event], None] | None = None,
                    stop: threading.Event | None = None, executor: str | None = None) -> dict:
    """Continue an interrupted, stopped or failed run from its last checkpoint (on `executor`)."""
    with session(home) as (ws, catalog):
        runs.mark_orphans(catalog)
        run = catalog.run(run_id)
        if run is None:
            raise NotFoundError(f"No run {run_id!r}.{suggest(run_id, [r['id'] for r in catalog.runs()])}",
                                fix="List runs with `edgefactory runs list`.")
        if run["status"] == "completed":  # results from before they named their task: the run's config does
            return {"task": run["config"].get("task") or DEFAULT_TASK, **run["result"]}
        if run["status"] == "running":
            raise ConfigError(f"Run {run_id} is still running (process {run['pid']}).", fix="Wait for it or stop it first.")
    return runs.execute_job(str(ws.home), run_id, on_event, stop, executor)


def list_runs(*, home: Home = None) -> list[dict]:
    with session(home) as (_, catalog):
        runs.mark_orphans(catalog)
        return [{"run": r["id"], "status": r["status"], "dataset": r["config"].get("dataset"),
                 "model": r["config"].get("model"), "name": r["config"].get("name"), "progress": r["progress"],
                 "error": r["error"], "result": r["result"]} for r in catalog.runs()]


def copy_catalog(to: str, *, home: Home = None) -> dict:
    """Copy this workspace's catalog.sqlite, every row, into the empty catalog at `to` (a PostgreSQL URL that several
    machines then share through EDGEFACTORY_CATALOG). The source is left as it was."""
    ws = Workspace.open(home)
    if not ws.catalog_path.is_file():
        raise NotFoundError(f"{ws.catalog_path} does not exist: this workspace has no catalog to copy.",
                            fix="Pass --home (or set EDGEFACTORY_HOME) to the workspace whose catalog should move.")
    with Catalog(ws.catalog_path) as source, Catalog(to) as dest:
        rows = catalog_copy(source, dest)
    return {"from": str(ws.catalog_path), "to": dest.location, "rows": rows,
            "next": "export EDGEFACTORY_CATALOG=<the URL> on every machine that shares this workspace"}


def run_status(run_id: str, *, home: Home = None) -> dict:
    with session(home) as (_, catalog):
        runs.mark_orphans(catalog)  # a run whose process is gone is interrupted, not running
        run = catalog.run(run_id)
    if run is None:
        raise NotFoundError(f"No run {run_id!r}.", fix="List runs with `edgefactory runs list`.")
    return run


# -- evaluation and registry ---------------------------------------------------------------------
def evaluate(ref: str, *, split: str = "test", dataset: str | None = None, home: Home = None,
             save_predictions: str | Path | None = None, gallery: str | Path | None = None,
             queries: str | Path | None = None) -> dict:
    """Evaluate model `NAME[:vN]` on a split of its dataset (or of `dataset`).

    Returns: {model, version, dataset, split, task, metrics, ...} plus what the task adds (classification:
    confusion_matrix, worst misclassified images, files (metrics JSON, confusion PNG, worst-images PNG); detection:
    images, predictions, predictions_file with `save_predictions`, a COCO results list).
    Raises: NotFoundError, ConfigError (unknown split, an option the task does not offer), DatasetError (empty split).
    """
    if split not in ("train", "val", "test"):
        raise ConfigError(f"Unknown split {split!r}.", fix="Use train, val or test.")
    if gallery is not None or queries is not None:
        return _evaluate_folders(ref, gallery, queries, home, save_predictions)
    with session(home) as (ws, catalog):
        row = resolve_model(catalog, ref)
        model, meta = load_model(ws, row)
        data = DatasetSplits.open(ws, dataset_row_for(catalog, dataset or meta["dataset"]))
        task = task_of(meta)
        out = task.evaluation(ws, row, model, meta, data.root, data.entries(split), split, save_predictions)
    return {"model": row["name"], "version": row["version"], "dataset": data.ref, "split": split, "task": task.name,
            **out}


def _evaluate_folders(ref: str, gallery: str | Path | None, queries: str | Path | None, home: Home,
                      save_predictions: str | Path | None) -> dict:
    """The gallery / query protocol: each image under `queries` searched against those under `gallery`."""
    if gallery is None or queries is None:
        raise ConfigError("--gallery and --queries go together.", fix="Pass both folders (one folder per identity each).")
    with session(home) as (ws, catalog):
        row = resolve_model(catalog, ref)
        model, meta = load_model(ws, row)
        task = task_of(meta)
        out = task.evaluation_on_folders(model, meta, Path(gallery), Path(queries), save_predictions)
    return {"model": row["name"], "version": row["version"], "dataset": None, "split": "queries", "task": task.name,
            "gallery": str(gallery), "queries": str(queries), **out}


def list_models(*, home: Home = None) -> list[dict]:
    with session(home) as (_, catalog):
        return [{"model": r["name"], "version": r["version"], "ref": f"{r['name']}:v{r['version']}",
                 "task": r["task"], "arch": r["arch"], "dataset": r["dataset"], "metrics": r["metrics"],
                 "path": r["path"], "run": r["run_id"]} for r in catalog.model_versions()]


def show_model(ref: str, *, home: Home = None) -> dict:
    with session(home) as (ws, catalog):
        row = resolve_model(catalog, ref)
        meta = read_metadata(ws, row)
        meta.pop("history", None)
        return {**meta, "path": str(ws.home / row["path"])}


def delete_model(ref: str, *, home: Home = None) -> dict:
    with session(home) as (ws, catalog):
        row = delete_model_version(ws, catalog, ref)
    return {"deleted": f"{row['name']}:v{row['version']}"}


# -- the demo pipeline ---------------------------------------------------------------------------
def demo(*, home: Home = None, model: str = "mobilenet_v3_small", time_budget_min: float = 4.0,
         epochs: int | None = None, on_event: Callable[[Event], None] | None = None,
         progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Import scikit-learn's digits (real handwriting, 32 px), train, evaluate: the offline demo."""
    with Workspace.open(home).scratch("digits-") as tmp:
        imported = import_dataset(write_digits(tmp / "digits"), "digits", home=home, progress=progress)
    # defaults only, as a new user gets them: the options are resolved from the data (factory.training.defaults)
    cfg = {"dataset": f"digits:v{imported['version']}", "model": model, "time_budget_min": time_budget_min,
           "epochs": epochs}
    trained = train(cfg, home=home, on_event=on_event)
    evaluated = evaluate(f"{trained['model']}:v{trained['version']}", home=home)
    return {"dataset": imported, "train": trained, "eval": evaluated}
