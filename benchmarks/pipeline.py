"""Measuring a model of several networks (`Task.is_pipeline`; OCR: a detector and a recognizer) on one device.

A row per network: its batch-1 latency at its example input (the detector at its long side, the recognizer on a
128 px wide crop). The page row: the task's `read` of a real test picture, from the decoded image to the lines
(every network, the cropping and the post-processing in between), its latency percentiles, and the time split by
stage averaged over the whole test split, which the networks composed are scored on (`Task.pipeline_score`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import BenchSpec, latency_stats, peak_memory_kb, reset_peak_memory, result_fields, time_calls
from factory.datasets.images import load_rgb
from factory.datasets.splits import DatasetSplits
from factory.models import load_model
from factory.refs import dataset_row_for
from factory.tasks import task_of
from factory.tasks.cost import model_cost
from factory.workspace import Workspace
from targets.predictor import network_runners


def pipeline_cost(model, meta: dict) -> dict:
    """MACs and parameters of every network at its example input, summed: a page with one 128 px wide line."""
    task = task_of(meta)
    costs = [model_cost(n.module, n.meta["input_size"]) for n in (task.network(model, meta, name)
                                                                   for name in task.networks(meta))]
    return {"macs": sum(c["macs"] for c in costs), "params": sum(c["params"] for c in costs),
            "basis": "every network once at its example input (a page with one line)"}


def measure_pipeline(spec: BenchSpec, ws: Workspace, catalog, row: dict, folder: Path | None, meta: dict) -> dict:
    task = task_of(meta)
    data = DatasetSplits.open(ws, dataset_row_for(catalog, meta["dataset"]))
    split, entries = data.evaluation()
    base_kb = reset_peak_memory()
    start = time.perf_counter()
    nets = network_runners(spec.target, folder, meta, spec.device, load_model(ws, row)[0] if folder is None else None)
    load_ms = (time.perf_counter() - start) * 1000
    networks = {}
    for name, (runner, size) in nets.items():
        x = np.zeros((1, *size), np.float32)
        networks[name] = {"input_size": list(size), "latency_ms": latency_stats(time_calls(lambda: runner(x), spec.timing))}
    runners = {name: runner for name, (runner, _) in nets.items()}
    page = load_rgb(data.root / entries[0]["file"])
    times = time_calls(lambda: task.read(runners, [page], meta, None, None), spec.timing)
    peak_kb = peak_memory_kb()
    lat = latency_stats(times)
    out = {**result_fields(spec, row, meta, folder, ws.home, latency=lat, load_ms=load_ms, base_kb=base_kb,
                           peak_kb=peak_kb), "networks": networks,
           "page": {"file": entries[0]["file"], "width": page.width, "height": page.height},
           "throughput": {"images_per_s": 1000 / lat["mean"], "batch": 1, "by_batch": {"1": 1000 / lat["mean"]},
                          "threads": os.cpu_count(), "thread_setting": "runtime default (all cores)", "unit": "pages"}}
    if spec.accuracy:
        metrics = task.pipeline_score(runners, meta, data.root, entries)
        out.update(eval_split=split, accuracy=metrics[task.metric], metric=task.metric, images=metrics["images"],
                   stages_ms=metrics.get("ms_per_image"), scores=task.report_scores(metrics))
    return out
