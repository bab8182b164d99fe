"""CLI commands of benchmarks/ (`bench`, `report`), registered through the `edgefactory.cli` entry point."""

from __future__ import annotations

import argparse
from typing import Callable

from benchmarks import api
from factory import executors
from factory.executors import add_executor_option
from factory.progress import StageBars, say
from targets import api as targets_api


def _log(a: argparse.Namespace):
    return None if a.quiet else say


def cmd_bench(a: argparse.Namespace) -> dict:
    if a.suite:
        from benchmarks import suite

        return suite.run(models=a.suite_models.split(",") if a.suite_models else None, log=_log(a),
                         detectors=[d for d in a.suite_detectors.split(",") if d] if a.suite_detectors is not None else None)
    if not a.ref or not a.target:
        raise SystemExit("edgefactory bench: give MODEL and --target (or --suite)")
    out = executors.call("bench", api.bench, executor_name=a.executor, gpus=targets_api.gpus_needed(a.target, a.device),
                         ref=a.ref, target=a.target, precision=a.precision, device=a.device, home=a.home)
    if not a.json:
        lat = out["latency_ms"]
        acc = "–" if out["accuracy"] is None else f"{out['accuracy']:.4f}"
        print(f"{out['model']} {out['target']} {out['precision']} on {out['device']['name']}")
        print(f"latency p50 {lat['p50']:.3f} ms, p90 {lat['p90']:.3f}, p99 {lat['p99']:.3f}, mean {lat['mean']:.3f} "
              f"({out['iterations']} calls); throughput {out['throughput']:.0f} img/s at batch {out['throughput_batch']}")
        print(f"memory {out['memory_mb']:.1f} MB, size {out['size_mb']:.3f} MB, accuracy {acc}, load {out['load_ms']:.0f} ms")
    return out


def cmd_report(a: argparse.Namespace) -> dict:
    out = executors.call("report", api.report, executor_name=a.executor, ref=a.ref, home=a.home,
                         export=a.export.split(",") if a.export else None, measure=not a.no_measure, budget=a.budget,
                         log=_log(a), progress=StageBars(not a.quiet))
    if not a.json:
        for r in out["results"]:
            flag = " WARNING" if r["warnings"] else ""
            kind = "measured" if r["measured"] else "estimate"
            acc = "–" if r["accuracy"] is None else f"{r['accuracy']:.4f}"
            print(f"{r['target']:12s} {r['precision']:5s} {r['device'][:20]:20s} {kind:9s} p50 {r['latency_ms']['p50']:9.3f} ms "
                  f"accuracy {acc}{flag}")
        for w in out["warnings"]:
            print(f"warning [{w['code']}]: {w['message']}")
        print(f"json: {out['json']}\nhtml: {out['html']}")
    return {k: out[k] for k in ("json", "html", "devices", "measured_rows", "warnings", "failed", "export_notes")}


def register(sub: argparse._SubParsersAction, add: Callable[..., argparse.ArgumentParser]) -> None:
    sp = add(sub, "bench", cmd_bench, "measure one artifact on this machine (latency, throughput, memory, accuracy)")
    sp.add_argument("ref", nargs="?", help="model NAME[:vN]")
    sp.add_argument("--target", help="runtime; pytorch fp32 is the eager baseline")
    sp.add_argument("--precision", default="fp32")
    sp.add_argument("--device", default="cpu")
    sp.add_argument("--suite", action="store_true", help="run the project's performance suite against peers instead")
    sp.add_argument("--suite-models", help="suite: comma-separated architectures (default resnet18, mobilenet_v3_small/large)")
    sp.add_argument("--suite-detectors", help="suite: detector backbones at 320 px (default mobilenet_v3_small; '' for none)")
    add_executor_option(sp)
    sp = add(sub, "report", cmd_report, "benchmark report of a model version: JSON + HTML, measured and estimated devices")
    sp.add_argument("ref", help="model NAME[:vN]")
    sp.add_argument("--export", help="targets to export first where missing (fp32 and int8), comma-separated")
    sp.add_argument("--no-measure", action="store_true", help="use stored results only (no new measurements)")
    sp.add_argument("--budget", type=float, default=1.0, help="accuracy budget in points for the guard (default 1)")
    add_executor_option(sp)
