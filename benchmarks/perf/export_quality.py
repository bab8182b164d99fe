"""Export quality bars of the targets issue, measured in one run on this machine:

1. every target that runs here, fp32 and int8 (fp16 where offered), on the digits model: size,
   re-evaluated accuracy and its drop, parity (max |diff|, top-1 agreement), batch-1 median latency;
   OpenVINO INT8 vs PyTorch eager FP32 speed;
2. structured pruning of the digits model (MACs, params, accuracy, latency before and after).

Prints tables and writes benchmarks/results/export_quality.json.

    .venv/bin/python -m benchmarks.export_quality [--home DIR] [--model REF] [--skip-pruning]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.perf.train_throughput import cpu_name
from factory import api as core_api
from factory.errors import FactoryError
from targets import TARGETS
from targets import api
from targets.pytorch import eager_runner
from targets.timing import median_latency_ms

RESULTS = Path(__file__).parents[1] / "results" / "export_quality.json"


def ensure_model(home: Path, ref: str | None) -> str:
    if ref:
        return ref
    models = [m for m in core_api.list_models(home=home) if m["model"].startswith("digits-mobilenet-v3-small")]
    if models:
        return models[0]["ref"]
    print("training the digits demo model (4 minutes) ...", flush=True)
    out = core_api.demo(home=home)
    return f"{out['train']['model']}:v{out['train']['version']}"


def artifact_latency(row: dict) -> tuple[float | None, str | None]:
    """(batch-1 median latency, the runtime that measured it); the latency is None for an artifact checked here only
    with a stand-in runtime (a TensorRT graph with no engine, the phone page's graph): its speed is not the target's."""
    folder = Path(row["path"])
    meta = json.loads((folder / "metadata.json").read_text())
    if not meta["runnable_here"]:
        return None, None
    if meta.get("proxy"):
        return None, f"{meta['proxy']} (proxy; {meta['target']}'s own runtime not run here)"
    runner = TARGETS.get(meta["target"])().load(folder, meta, meta["device"])
    return median_latency_ms(runner, np.zeros([1, *meta["input_shape"][1:]], np.float32)), meta["target"]


def part1_targets(home: Path, ref: str) -> list[dict]:
    rows = []
    for name in TARGETS.names():
        caps = TARGETS.get(name).capabilities
        for precision in caps.precisions:
            t0 = time.perf_counter()
            try:
                out = api.export(ref, name, precision=precision, keep_if_slower=True, home=home)
            except FactoryError as exc:
                rows.append({"target": name, "precision": precision, "error": f"{exc.code}: {exc.message[:160]}"})
                print(f"{name:12s} {precision:5s} ERROR {exc.code}", flush=True)
                continue
            lat, measured_with = artifact_latency(out)
            par = out["parity"]
            row = {"target": name, "precision": precision, "size_mb": out["size_mb"], "accuracy": out["accuracy"],
                   "reference_accuracy": out["reference_accuracy"], "drop_points": out["accuracy_drop_points"],
                   "max_abs_diff": par.get("max_abs_diff"), "top1_agreement": par.get("top1_agreement"),
                   "parity_passed": par.get("passed"), "latency_ms": lat, "measured_with": measured_with,
                   "runnable_here": out["runnable_here"],
                   "strategy": out["compression"]["strategy"], "export_s": round(time.perf_counter() - t0, 1),
                   "notes": out["notes"]}
            rows.append(row)
            fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
            print(f"{name:12s} {precision:5s} {row['size_mb']:8.3f} MB  acc {fmt(row['accuracy'], '.4f')} "
                  f"(drop {fmt(row['drop_points'], '+.2f')})  |diff| {fmt(row['max_abs_diff'], '.1e')}  "
                  f"agree {fmt(row['top1_agreement'], '.3f')}  {fmt(lat, '.3f')} ms"
                  + (f"  (checked with {measured_with}: no speed)" if lat is None and measured_with else ""), flush=True)
    return rows


def eager_latency(home: Path, ref: str) -> float:
    from factory.models import load_model, resolve_model

    with core_api.session(home) as (ws, catalog):
        model, meta = load_model(ws, resolve_model(catalog, ref))
    return median_latency_ms(eager_runner(model), np.zeros([1, *meta["input_size"]], np.float32))


def part2_pruning(home: Path, ref: str, prune: float, epochs: int) -> dict:
    try:
        out = api.compress(ref, "openvino", prune=prune, finetune_epochs=epochs, home=home,
                           log=lambda line: print("  " + line, flush=True))
    except FactoryError as exc:
        return {"error": f"{exc.code}: {exc.message}", "details": exc.details}
    p = out["pruning"]
    print(f"pruning: MACs {p['before']['macs']:,} -> {p['after']['macs']:,} ({p['mac_ratio']:.2f}x), accuracy "
          f"{p['before']['accuracy']:.4f} -> {p['after']['accuracy']:.4f}, OpenVINO fp32 latency "
          f"{p['before']['latency_ms']:.3f} -> {p['after']['latency_ms']:.3f} ms", flush=True)
    return {"model": f"{out['model']}:v{out['version']}", **p}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, help="workspace (default: a temporary one with the digits demo)")
    ap.add_argument("--model", help="model ref (default: the digits demo model, trained if absent)")
    ap.add_argument("--prune", type=float, default=0.335)
    ap.add_argument("--finetune-epochs", type=int, default=40)
    ap.add_argument("--skip-pruning", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = args.home or Path(tmp) / "ws"
        ref = ensure_model(home, args.model)
        print(f"model {ref} on {cpu_name()}", flush=True)
        targets = part1_targets(home, ref)
        eager = eager_latency(home, ref)
        ov_int8 = next((r for r in targets if r["target"] == "openvino" and r["precision"] == "int8" and "error" not in r), None)
        summary = {"pytorch_fp32_ms": round(eager, 3),
                   "openvino_int8_vs_pytorch": round(eager / ov_int8["latency_ms"], 2) if ov_int8 else None,
                   "openvino_int8_drop_points": ov_int8["drop_points"] if ov_int8 else None}
        print(f"PyTorch eager fp32 {eager:.3f} ms; OpenVINO INT8 is {summary['openvino_int8_vs_pytorch']}x faster, "
              f"drop {summary['openvino_int8_drop_points']} points", flush=True)
        pruning = None if args.skip_pruning else part2_pruning(home, ref, args.prune, args.finetune_epochs)
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": cpu_name(), "model": ref, "targets": targets,
              "digits_summary": summary, "pruning": pruning}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
