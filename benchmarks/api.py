"""The benchmark API: the functions the CLI's `bench` / `report` commands, the chat and the server call."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, ClassVar

from pydantic import Field

from benchmarks import report as reports
from benchmarks import store
from benchmarks.device import local_device
from benchmarks.galleries import gallery_rows
from benchmarks.harness import BenchSpec, Timing
from benchmarks.measure import measurable, run_isolated
from benchmarks.pipeline import pipeline_cost
from factory import params
from factory.api import Home, session
from factory.catalog import Catalog
from factory.errors import BudgetError, ConfigError, FactoryError, UnsupportedSpecError
from factory.models import load_model, resolve_model
from factory.tasks import task_of
from factory.tasks.cost import model_cost
from factory.workspace import Workspace
from targets.base import TARGETS
from targets.devices import load_profiles

Log = Callable[[str], None]
Progress = Callable[[str, int, int], None]


def _device(ws: Workspace, runtime_device: str = "cpu") -> dict:
    """This machine as the device of a measurement; a GPU run is a device of its own (its GPU, not the CPU)."""
    here = local_device(ws.home / "reports" / "devices")
    if runtime_device == "cpu":
        return here
    gpu = here["gpus"][0]["name"] if here["gpus"] else runtime_device
    return {**here, "id": f"{here['id']}-{runtime_device}", "name": f"{gpu} on {here['host']}", "kind": "gpu"}


def _record(catalog: Catalog, result: dict, device: dict, measured: bool = True) -> None:
    store.add_benchmark(catalog, {"model": result["model"], "version": result["version"], "target": result["target"],
                           "precision": result["precision"], "device_id": device["id"], "device": device,
                           "measured": measured, "result": result, "created_at": time.time()})


class BenchParams(params.Params):
    """A bench job's parameters (REST /v1/jobs, `edgefactory bench` / `report`): a target measures one artifact;
    without one (or with report) every runnable artifact is measured and the report written."""

    what: ClassVar[str] = "Bench parameter"
    model: str = Field(description="model NAME or NAME:vN")
    target: str | None = Field(default=None, description="runtime of the artifact to measure")
    precision: str = Field(default="fp32", description="fp32, fp16 or int8")
    report: bool = Field(default=False, description="write the whole benchmark report")


def bench(ref: str, target: str, *, precision: str = "fp32", device: str = "cpu", home: Home = None,
          timing: Timing | None = None) -> dict:
    """Measure one artifact of model `NAME[:vN]` on this machine (`pytorch fp32` is the eager model).

    Returns: {device (id, name), target, precision, latency_ms {p50, p90, p99, mean}, throughput (images/s),
    throughput_batch, memory_mb (the runner's peak resident memory over the process before loading),
    size_mb, accuracy (test split, this runtime), load_ms}. The result is kept for `report`.
    Raises: NotFoundError (no such model / target / artifact: the fix names the export command),
    UnsupportedSpecError (artifact not runnable here).
    """
    with session(home) as (ws, catalog):
        row = resolve_model(catalog, ref)
        spec = BenchSpec(str(ws.home), f"{row['name']}:v{row['version']}", target, precision, device, timing or Timing())
        here = _device(ws, device)
        result = run_isolated(spec)
        _record(catalog, result, here)
    return summary(result, here)


def summary(result: dict, device: dict) -> dict:
    tp = result["throughput"]
    return {"model": f"{result['model']}:v{result['version']}", "target": result["target"], "precision": result["precision"],
            "device": {"id": device["id"], "name": device["name"], "runtime_device": result["device"]},
            "latency_ms": {k: result["latency_ms"][k] for k in ("p50", "p90", "p99", "mean")},
            "iterations": result["latency_ms"]["iterations"], "throughput": tp["images_per_s"],
            "throughput_batch": tp["batch"], "throughput_threads": tp["threads"], "memory_mb": result["memory_mb"],
            "size_mb": result["size_mb"], "accuracy": result.get("accuracy"), "load_ms": result["load_ms"]}


def _export_missing(ref: str, targets: list[str], have: set[tuple[str, str]], home: Home, log: Log) -> list[dict]:
    from targets import api as targets_api  # export runs only when asked for

    notes = []
    for target in targets:
        caps = TARGETS.get(target).capabilities
        for precision in ("fp32", "int8"):
            if precision not in caps.precisions or (target, precision) in have:
                continue
            log(f"export {target} {precision} ...")
            try:
                # kept even when not faster than FP32: the report is where that shows (flagged by the guard)
                targets_api.export(ref, target, precision=precision, keep_if_slower=True, home=home, log=log)
            except (BudgetError, UnsupportedSpecError) as exc:  # refused, not broken: the report says why
                notes.append({"target": target, "precision": precision, "code": exc.code, "message": exc.message})
                log(f"not exported: {exc}")
    return notes


def report_folder(ws: Workspace, row: dict) -> Path:
    """Where the benchmark report of model version `row` is written (report.html, report.json, devices/)."""
    return ws.home / "reports" / row["name"] / f"v{row['version']}" / "benchmark"


def report_path(ref: str, *, home: Home = None) -> Path:
    """The benchmark report page of model `NAME[:vN]` (it may not be written yet)."""
    with session(home) as (ws, catalog):
        return report_folder(ws, resolve_model(catalog, ref)) / "report.html"


def report(ref: str, *, home: Home = None, export: list[str] | None = None, measure: bool = True,
           budget: float = 1.0, timing: Timing | None = None, log: Log | None = None,
           progress: Progress | None = None) -> dict:
    """The benchmark report of model `NAME[:vN]`: measure PyTorch FP32 and every runnable artifact
    here (unless measure=False), add every stored result (phones, GPU machines) and roofline
    estimates for the device profiles, and write JSON + HTML + per-device JSON.

    `export`: targets to export first (fp32 and int8) where the version has no artifact yet; INT8
    that is not faster than FP32 is kept, so the report shows it (flagged), rather than refused.
    Returns: {json, html, devices (per-device JSON paths), results, warnings, measured_rows, failed}.
    Raises: NotFoundError, ConfigError (bad budget or device profiles).
    """
    log, progress = log or (lambda line: None), progress or (lambda stage, done, total: None)
    if not 0 <= budget <= 100:
        raise ConfigError(f"Budget {budget} is not between 0 and 100 points.", fix="Pass --budget 1 for one point.")
    for target in export or []:
        TARGETS.get(target)
    with session(home) as (ws, catalog):
        row = resolve_model(catalog, ref)
        ref = f"{row['name']}:v{row['version']}"
        have = {(a["target"], a["precision"]) for a in catalog.artifacts(row["name"], row["version"])}
    export_notes = _export_missing(ref, export, have, home, log) if export else []
    with session(home) as (ws, catalog):
        model, meta = load_model(ws, row)
        cost = pipeline_cost(model, meta) if task_of(meta).is_pipeline(meta) else model_cost(model, meta["input_size"])
        here = _device(ws)
        failed = measure_all(ws, catalog, row, here, timing or Timing(), log, progress) if measure else []
        rep = reports.build(row, store.benchmarks(catalog, row["name"], row["version"]), here, load_profiles(ws.home), cost, budget)
        rep["export_notes"], rep["failed"] = export_notes, failed
        if task_of(row).uses_gallery:
            rep["retrieval"] = gallery_rows(ws, catalog, row, rep["results"], here["id"])
        files = reports.write(rep, report_folder(ws, row))
    log(f"report {files['html']}")
    return {**files, "results": rep["results"], "warnings": rep["warnings"], "measured_rows": rep["measured_rows"],
            "failed": failed, "export_notes": export_notes, **({"retrieval": rep["retrieval"]} if "retrieval" in rep else {})}


def measure_all(ws: Workspace, catalog: Catalog, row: dict, here: dict, timing: Timing, log: Log, progress: Progress) -> list[dict]:
    """Bench PyTorch FP32 and every artifact of `row` that runs here; a failure is recorded, not fatal."""
    pairs = [("pytorch", "fp32")] + [(a["target"], a["precision"]) for a in catalog.artifacts(row["name"], row["version"])
                                     if (a["target"], a["precision"]) != ("pytorch", "fp32") and measurable(ws, a)]
    failed = []
    for i, (target, precision) in enumerate(pairs):
        progress("bench", i, len(pairs))
        spec = BenchSpec(str(ws.home), f"{row['name']}:v{row['version']}", target, precision, "cpu", timing)
        try:
            result = run_isolated(spec)
        except FactoryError as exc:
            failed.append({"target": target, "precision": precision, **exc.to_dict()})
            log(f"bench {target} {precision}: failed: {exc}")
            continue
        _record(catalog, result, here)
        log(f"bench {target:12s} {precision}: p50 {result['latency_ms']['p50']:.3f} ms, "
            f"{result['throughput']['images_per_s']:.0f} img/s, accuracy {result.get('accuracy', float('nan')):.4f}")
    progress("bench", len(pairs), len(pairs))
    return failed


def record_measurement(ref: str, target: str, precision: str, device: dict, result: dict, *, home: Home = None) -> dict:
    """Store a measurement taken elsewhere (a phone's browser, a GPU machine) as a measured row of
    its own device. `device`: {id, name, kind, ...}; `result`: at least latency_ms {p50, ...}."""
    lat = result.get("latency_ms")
    numbers = isinstance(lat, dict) and all(isinstance(lat.get(k, 1.0), (int, float)) and not isinstance(lat.get(k), bool)
                                            for k in ("p50", "p90", "p99", "mean"))
    if not numbers or not isinstance(lat.get("p50"), (int, float)) or not 0 < lat["p50"] < 3.6e6:
        raise ConfigError("A measurement needs latency_ms {p50, p90, p99, mean} as positive numbers of milliseconds.",
                          fix="Send {'latency_ms': {'p50': 12.5, 'p90': 14.0, 'p99': 20.1}}.")
    if not device.get("id"):
        raise ConfigError("A measurement needs a device id.", fix="Send device: {'id': ..., 'name': ...}.")
    with session(home) as (ws, catalog):
        row = resolve_model(catalog, ref)
        full = {"model": row["name"], "version": row["version"], "target": target, "precision": precision,
                "device": device.get("runtime_device", device.get("kind", "cpu")), "source": "external",
                "latency_ms": {k: float(lat.get(k, lat["p50"])) for k in ("p50", "p90", "p99", "mean")},
                **{k: result.get(k) for k in ("throughput", "memory_mb", "size_mb", "accuracy")}, "measured_at": time.time()}
        _record(catalog, full, device)
    return full
