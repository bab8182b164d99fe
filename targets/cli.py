"""CLI commands of targets/ (`export`, `targets`), registered through the `edgefactory.cli` entry
point so factory's CLI never imports the packages above it."""

from __future__ import annotations

import argparse
from typing import Callable

from factory import executors
from factory.executors import add_executor_option
from factory.progress import StageBars, say
from factory.tasks import task_of
from targets import api


def cmd_export(a: argparse.Namespace) -> dict:
    log = say if not a.quiet else None
    out = executors.call("export", api.export, executor_name=a.executor, gpus=api.gpus_needed(a.target, a.device),
                         ref=a.ref, target=a.target,
                         precision=a.precision, max_drop=a.max_drop, device=a.device,
                         calibration_size=a.calibration_size, dynamic_batch=a.dynamic_batch,
                         keep_if_slower=a.keep_if_slower, home=a.home, log=log,
                         strategies=tuple(a.strategies.split(",")) if a.strategies else None)
    if not a.json:
        acc = "not run here" if out["accuracy"] is None else f"{out['accuracy']:.4f}"
        label = task_of(out).metric_label if out.get("task") else "accuracy"
        print(f"{out['artifact']}: {out['size_mb']:.3f} MB, {label} {acc} (PyTorch FP32 {out['reference_accuracy']:.4f})")
        if out["compression"].get("by_network"):
            print("networks: " + ", ".join(f"{n} {p}" for n, p in out["compression"]["by_network"].items()))
        print(f"path: {out['path']}")
        for note in out["notes"]:
            print(f"note: {note}")
    return out


def cmd_compress(a: argparse.Namespace) -> dict:
    log = say if not a.quiet else None
    out = executors.call("compress", api.compress, executor_name=a.executor, gpus=api.gpus_needed(a.target),
                         ref=a.ref, target=a.target, prune=a.prune,
                         target_latency_ms=a.target_latency, max_drop=a.max_drop, precision=a.precision,
                         finetune_epochs=a.finetune_epochs, keep_if_slower=a.keep_if_slower, home=a.home, log=log)
    if not a.json:
        p = out["pruning"]
        lat = (f", latency {p['before']['latency_ms']:.3f} -> {p['after']['latency_ms']:.3f} ms"
               if p["before"].get("latency_ms") else "")
        print(f"{out['model']}:v{out['version']}: MACs {p['before']['macs']:,} -> {p['after']['macs']:,} "
              f"({p['mac_ratio']:.2f}x), params {p['before']['params']:,} -> {p['after']['params']:,}{lat}")
        print(f"accuracy {p['before']['accuracy']:.4f} -> {p['after']['accuracy']:.4f}; artifact {out['artifact']} "
              f"({out['size_mb']:.3f} MB) at {out['path']}")
    return out


def cmd_predict(a: argparse.Namespace) -> dict:
    out = api.predict_folder(a.ref, a.input, a.out, target=a.target, precision=a.precision, top_k=a.top_k,
                             min_score=a.min_score, batch_size=a.batch_size, home=a.home,
                             progress=None if a.quiet else StageBars(True))
    if not a.json:
        print(f"{out['images']} images -> {out['out']} ({out['target']} {out['precision']}); {out['failed']} unreadable")
    return out


def cmd_targets(a: argparse.Namespace) -> dict:
    rows = api.list_targets()
    if not a.json:
        for r in rows:
            missing = r["missing_for_export"]
            state = "ready" if not missing else f"missing {', '.join(missing)}"
            print(f"{r['target']:12s} {'/'.join(r['precisions']):15s} {'/'.join(r['devices']):22s} {state}")
    return {"targets": rows}


def register(sub: argparse._SubParsersAction, add: Callable[..., argparse.ArgumentParser]) -> None:
    sp = add(sub, "export", cmd_export, "export a model version to a target runtime, with parity and re-evaluation")
    sp.add_argument("ref", help="model NAME[:vN]")
    sp.add_argument("--target", required=True)
    sp.add_argument("--precision", default="fp32", help="fp32, fp16 or int8")
    sp.add_argument("--max-drop", type=float, default=1.0, help="accuracy budget in points (default 1.0)")
    sp.add_argument("--device", help="default: cpu where the target runs on it, else its first device")
    sp.add_argument("--calibration-size", type=int, default=300)
    sp.add_argument("--dynamic-batch", action="store_true")
    sp.add_argument("--keep-if-slower", action="store_true", help="keep an INT8 artifact that is not faster than FP32")
    sp.add_argument("--strategies", help="INT8 strategies to try, comma-separated (default: the target's list, in order)")
    add_executor_option(sp)
    sp = add(sub, "compress", cmd_compress, "prune (structured), fine-tune, register a new version, export to a target")
    sp.add_argument("ref", help="model NAME[:vN]")
    sp.add_argument("--target", required=True)
    how = sp.add_mutually_exclusive_group(required=True)
    how.add_argument("--prune", type=float, help="fraction of MACs to remove, e.g. 0.35")
    how.add_argument("--target-latency", type=float, help="batch-1 latency goal in ms on the target's runtime here")
    sp.add_argument("--max-drop", type=float, default=1.0, help="accuracy budget in points, pruning + quantization")
    sp.add_argument("--precision", default="fp32")
    sp.add_argument("--finetune-epochs", type=int, default=15)
    sp.add_argument("--keep-if-slower", action="store_true")
    add_executor_option(sp)
    add(sub, "targets", cmd_targets, "list targets, their capabilities and what is missing here")
    sp = add(sub, "predict", cmd_predict, "offline batch prediction over a folder of images, as JSON Lines")
    sp.add_argument("ref", help="model NAME[:vN]")
    sp.add_argument("input", help="folder of images (searched recursively)")
    sp.add_argument("--out", required=True, help="results file (.jsonl), one line per image")
    sp.add_argument("--target", help="default: the fastest artifact here")
    sp.add_argument("--precision")
    sp.add_argument("--top-k", type=int, help="labels per image (default 5), or at most this many boxes (default: all)")
    sp.add_argument("--min-score", type=float, help="detectors: keep boxes scoring at least this (default 0.25)")
    sp.add_argument("--batch-size", type=int, default=32)
