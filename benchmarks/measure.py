"""What the harness measures for one (model version, target, precision, device), in the process it
is called in (the harness calls it in a fresh one): load time, latency, throughput, peak memory,
size, and accuracy on the test split with the artifact's own runtime."""

from __future__ import annotations

import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict
from pathlib import Path

import numpy as np

from benchmarks.harness import (THROUGHPUT_BATCHES, BenchSpec, Timing, error_from_dict, latency_stats, peak_memory_kb,
                                reset_peak_memory, result_fields, throughput, time_calls)
from benchmarks.pipeline import measure_pipeline
from factory.api import session
from factory.datasets.splits import DatasetSplits
from factory.isolated import output_log
from factory.models import load_model, resolve_model
from factory.refs import dataset_row_for
from factory.tasks import task_of
from factory.tasks.base import EvalSet, run_batched, shaped
from factory.workspace import Workspace
from targets.base import TARGETS, Runner
from targets.predictor import runnable_artifact, runs_on
from targets.pytorch import eager_runner


def locate(ws: Workspace, catalog, ref: str, target: str, precision: str, device: str = "cpu") -> tuple[dict, Path | None, dict]:
    """(model row, artifact folder or None for the eager model, metadata to run it with)."""
    row = resolve_model(catalog, ref)
    if target == "pytorch" and precision == "fp32":
        _, meta = load_model(ws, row)
        return row, None, {**meta, "precision": "fp32", "input_shape": [-1, *meta["input_size"]]}
    folder, meta = runnable_artifact(ws, catalog, row, target, precision, device)
    return row, folder, meta


def measurable(ws: Workspace, artifact: dict, device: str = "cpu") -> bool:
    """Whether an artifact runs here on `device` with its own runtime (not a proxy, not another OS)."""
    try:
        return runs_on(json.loads((ws.home / artifact["path"] / "metadata.json").read_text()), device)
    except (OSError, json.JSONDecodeError):
        return False


def load_runner(ws: Workspace, row: dict, folder: Path | None, meta: dict, target: str, device: str) -> Runner:
    if folder is None:
        model, _ = load_model(ws, row)
        if device != "cpu":
            import torch

            model = model.to(device)
            inner = eager_runner(model)
            return lambda x: inner(torch.from_numpy(x).to(device)).cpu().numpy()  # noqa: E731
        return eager_runner(model)
    return TARGETS.get(target)().load(folder, meta, device)


def test_split(ws: Workspace, catalog, meta: dict) -> tuple[str, EvalSet]:
    data = DatasetSplits.open(ws, dataset_row_for(catalog, meta["dataset"]))
    split, entries = data.evaluation()
    return split, task_of(meta).eval_set(data.root, entries, meta)


def scores(runner, data: EvalSet, meta: dict, batch: int) -> dict:
    """The task's scores of `runner` on `data`: `accuracy` is the primary metric (accuracy, or mAP@0.5)."""
    task = task_of(meta)
    outputs = shaped(run_batched(runner, data.inputs, batch), task, meta)
    metrics = task.score(outputs, data.truth, meta)
    return {"accuracy": metrics[task.metric], "metric": task.metric, "images": int(len(data.inputs)),
            "predictions": task.predictions(outputs), "per_class": metrics.get("recall_by_class"),
            "per_size": metrics.get("recall_by_size"), **task.report_scores(metrics)}


def measure(spec: BenchSpec) -> dict:
    with session(spec.home) as (ws, catalog):
        row, folder, meta = locate(ws, catalog, spec.ref, spec.target, spec.precision, spec.device)
        if task_of(meta).is_pipeline(meta):
            return measure_pipeline(spec, ws, catalog, row, folder, meta)
        split, data = test_split(ws, catalog, meta) if spec.accuracy else ("", None)
        base_kb = reset_peak_memory()
        start = time.perf_counter()
        runner = load_runner(ws, row, folder, meta, spec.target, spec.device)
        load_ms = (time.perf_counter() - start) * 1000
        image = np.zeros((1, *meta["input_size"]), np.float32) if data is None else data.inputs[:1]
        times = time_calls(lambda: runner(image), spec.timing)
        dynamic = meta["input_shape"][0] == -1
        rate = throughput(runner, image, THROUGHPUT_BATCHES if dynamic else (1,), spec.timing)
        peak_kb = peak_memory_kb()
        out = {**result_fields(spec, row, meta, folder, ws.home, latency=latency_stats(times), load_ms=load_ms,
                               base_kb=base_kb, peak_kb=peak_kb), "throughput": rate}
        if data is not None:
            out.update(eval_split=split, **scores(runner, data, meta, 32 if dynamic else 1))
        return out


def run_isolated(spec: BenchSpec) -> dict:
    """Measure `spec` in a fresh spawned process; any failure there is raised here as a FactoryError."""
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            out = pool.submit(_child, asdict(spec), bench_output_log(spec)).result()
    except BrokenProcessPool as exc:  # killed (out of memory?) or crashed inside a runtime
        out = {"error": {"code": "BENCH_CRASHED", "message": f"The measuring process for {spec.target} {spec.precision} "
                         f"died ({exc}).", "fix": "Check free memory; run `edgefactory bench` on this artifact alone."}}
    if "error" in out:
        raise error_from_dict(out["error"])
    return out


def bench_output_log(spec: BenchSpec) -> Path:
    """Where the measuring process's runtimes write (XNNPACK and cpuinfo lines, torch warnings): logs/ in the
    workspace, one file per artifact, each run appended (`--verbose` shows it in the terminal instead)."""
    return output_log(spec.home, "bench", spec.ref, spec.target, spec.precision)


def _child(spec: dict, output: Path) -> dict:
    from factory.errors import FactoryError
    from factory.isolated import capture_output

    capture_output(output)

    spec["timing"] = Timing(**spec["timing"])
    try:
        return measure(BenchSpec(**spec))
    except FactoryError as exc:
        return {"error": exc.to_dict()}
    except Exception as exc:  # a runtime's own exception: reported, never a traceback across processes
        return {"error": {"code": "BENCH_FAILED", "message": f"{spec['target']} {spec['precision']} failed while measuring: "
                          f"{type(exc).__name__}: {str(exc)[:300]}", "fix": "Re-export the artifact; report it if it persists."}}
