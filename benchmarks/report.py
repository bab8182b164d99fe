"""The benchmark report of a model version: every result in the catalog (measured here, on a GPU
machine, on phones through the preview page) plus roofline estimates for the device profiles,
with deltas against PyTorch FP32, a regression guard, and JSON + HTML + per-device JSON files."""

from __future__ import annotations

import datetime
import time
from html import escape
from pathlib import Path

from benchmarks import plots
from benchmarks.estimate import OVERHEAD_BOUND_SHARE, estimate_rows, local_peak_ops, peak_share
from factory.tasks import task_of
from factory.workspace import atomic_write_bytes, atomic_write_json

SCHEMA = "edgefactory.benchmark-report/1"
SMALL_OBJECT_RECALL_LIMIT = 2.0  # points of recall@0.5 on small objects an INT8 / FP16 detector may lose


def report_row(raw: dict, reference: dict | None, cost: dict, local: dict) -> dict:
    res = raw["result"]
    lat = res["latency_ms"]
    row = {"target": raw["target"], "precision": raw["precision"], "device": raw["device_id"],
           "device_name": raw["device"].get("name", raw["device_id"]), "measured": bool(raw["measured"]),
           "latency_ms": {k: lat.get(k) for k in ("p50", "p90", "p99", "mean")},
           "throughput": (res.get("throughput") or {}).get("images_per_s"),
           "throughput_batch": (res.get("throughput") or {}).get("batch"),
           "throughput_threads": (res.get("throughput") or {}).get("threads"),
           "memory_mb": res.get("memory_mb"), "size_mb": res.get("size_mb"), "accuracy": res.get("accuracy"),
           "metric": res.get("metric", "accuracy"), "load_ms": res.get("load_ms"), "accuracy_delta_points": None,
           "per_class_delta": None, "per_size_delta": None,
           "prediction_flips": None, "peak_share": None, "overhead_bound": None, "max_drop": res.get("max_drop"),
           "source": res.get("source", "harness" if raw["measured"] else "estimate"), "warnings": []}
    if res.get("networks"):  # a model of several networks: each network's own latency, and the page's stages
        row.update(networks={name: {"input_size": n["input_size"], "p50_ms": n["latency_ms"]["p50"]}
                             for name, n in res["networks"].items()},
                   stages_ms=res.get("stages_ms"), page=res.get("page"), scores=res.get("scores"))
    if raw["measured"] and raw["device_id"] == local["id"]:
        share = peak_share(cost["macs"], lat["p50"], local_peak_ops(local["peaks"], raw["precision"]))
        row.update(peak_share=share, overhead_bound=share < OVERHEAD_BOUND_SHARE)
    if res.get("estimate"):
        row["estimate"] = res["estimate"]
    ref = (reference or {}).get("result", {})
    if row["accuracy"] is not None and ref.get("accuracy") is not None:
        row["accuracy_delta_points"] = (row["accuracy"] - ref["accuracy"]) * 100
        if res.get("per_class") and ref.get("per_class"):
            row["per_class_delta"] = {c: (res["per_class"][c] - ref["per_class"][c]) * 100
                                      for c in ref["per_class"] if c in res["per_class"]}
        if res.get("per_size") and ref.get("per_size"):  # detection: recall@0.5 by COCO object size
            row["per_size_delta"] = {s: (res["per_size"][s] - ref["per_size"][s]) * 100
                                     for s in ref["per_size"] if s in res["per_size"]}
        if res.get("predictions") and ref.get("predictions") and len(res["predictions"]) == len(ref["predictions"]):
            row["prediction_flips"] = sum(a != b for a, b in zip(res["predictions"], ref["predictions"]))
    return row


def guard(rows: list[dict], budget: float) -> list[dict]:
    """Regression guard over measured rows: INT8 slower than FP32 on the same runtime and device, an
    accuracy drop over the budget, or (detection) a small-object recall drop over
    SMALL_OBJECT_RECALL_LIMIT points. Marks the rows and returns the warnings."""
    warnings = []
    fp32 = {(r["target"], r["device"]): r for r in rows if r["measured"] and r["precision"] == "fp32"}
    for i, r in enumerate(rows):
        if not r["measured"]:
            continue
        base = fp32.get((r["target"], r["device"]))
        if r["precision"] == "int8" and base and r["latency_ms"]["p50"] > base["latency_ms"]["p50"]:
            warnings.append({"code": "INT8_SLOWER_THAN_FP32", "row": i, "message":
                             f"{r['target']} INT8 on {r['device_name']} is slower than its FP32 "
                             f"({r['latency_ms']['p50']:.3f} vs {base['latency_ms']['p50']:.3f} ms p50): smaller, not faster.",
                             "fix": "Ship the FP32 artifact for this runtime, or try another runtime's INT8."})
        limit = r["max_drop"] if r["max_drop"] is not None else budget
        if r["accuracy_delta_points"] is not None and -r["accuracy_delta_points"] > limit + 1e-9:
            warnings.append({"code": "ACCURACY_OVER_BUDGET", "row": i, "message":
                             f"{r['target']} {r['precision']} on {r['device_name']} loses {-r['accuracy_delta_points']:.2f} "
                             f"points against PyTorch FP32 (budget {limit:g}).",
                             "fix": "Re-export with another INT8 strategy (e.g. qat), more calibration data, or at fp32."})
        small = (r["per_size_delta"] or {}).get("small")
        if small is not None and -small > SMALL_OBJECT_RECALL_LIMIT + 1e-9:
            warnings.append({"code": "SMALL_OBJECT_RECALL_DROP", "row": i, "message":
                             f"{r['target']} {r['precision']} on {r['device_name']} finds {-small:.2f} points fewer small "
                             f"objects (recall@0.5 under 32x32 px) than PyTorch FP32 (limit {SMALL_OBJECT_RECALL_LIMIT:g}); "
                             "mAP can hide this.",
                             "fix": "Re-export with ptq_mixed or accuracy_control, calibrate with more images that show "
                                    "small objects, or ship FP32 where small objects matter."})
    for w in warnings:
        rows[w["row"]]["warnings"].append(w["code"])
    return warnings


def pareto(rows: list[dict], device: str) -> None:
    """Mark the measured rows of `device` that no other is both faster and more accurate than."""
    cands = [r for r in rows if r["measured"] and r["device"] == device and r["accuracy"] is not None]
    for r in cands:
        r["pareto"] = not any(o is not r and o["latency_ms"]["p50"] <= r["latency_ms"]["p50"] and o["accuracy"] >= r["accuracy"]
                              and (o["latency_ms"]["p50"] < r["latency_ms"]["p50"] or o["accuracy"] > r["accuracy"])
                              for o in cands)


def build(model: dict, stored: list[dict], local: dict, profiles: dict, cost: dict, budget: float) -> dict:
    """The report dict from catalog rows `stored` (latest per target x precision x device)."""
    reference = next((r for r in stored if r["measured"] and r["target"] == "pytorch" and r["precision"] == "fp32"
                      and r["device_id"] == local["id"]), None) or \
        next((r for r in stored if r["measured"] and r["target"] == "pytorch" and r["precision"] == "fp32"), None)
    estimated, skipped = estimate_rows(stored, profiles, local, cost)
    ordered = sorted((r for r in stored if r["measured"]), key=lambda r: (r["device_id"] != local["id"], r["device_id"],
                                                                         r["target"] != "pytorch", r["target"], r["precision"]))
    rows = [report_row(r, reference, cost, local) for r in ordered + estimated]
    warnings = guard(rows, budget)
    for device in {r["device"] for r in rows if r["measured"]}:
        pareto(rows, device)
    devices = {r["device_id"]: r["device"] for r in ordered + estimated}
    devices[local["id"]] = {k: local[k] for k in ("id", "name", "kind", "host", "os", "python", "cpu", "gpus", "packages", "peaks")}
    return {"schema": SCHEMA, "model": model["name"], "version": model["version"], "task": model["task"],
            "created_at": time.time(), "budget_points": budget, "cost": cost,
            "metric": task_of(model).metric_label,
            "reference": {"target": "pytorch", "precision": "fp32", "device": reference["device_id"] if reference else None,
                          "accuracy": reference["result"].get("accuracy") if reference else None},
            "devices": devices, "local_device": local["id"], "results": rows, "warnings": warnings,
            "estimates_skipped": skipped, "measured_rows": sum(r["measured"] for r in rows)}


def write(report: dict, folder: Path) -> dict:
    """report.json, report.html and devices/<id>.json under `folder`; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "report.json", "html": folder / "report.html"}
    per_device = {}
    for device_id, device in report["devices"].items():
        path = folder / "devices" / f"{device_id}.json"
        path.parent.mkdir(exist_ok=True)
        atomic_write_json(path, {"schema": SCHEMA, "model": report["model"], "version": report["version"], "device": device,
                                 "results": [r for r in report["results"] if r["device"] == device_id]})
        per_device[device_id] = str(path)
    report["files"] = {"json": str(paths["json"]), "html": str(paths["html"]), "devices": per_device}
    atomic_write_json(paths["json"], report)
    atomic_write_bytes(paths["html"], render_html(report).encode())
    return report["files"]


# -- HTML -------------------------------------------------------------------------------------------
def _num(v, fmt: str = "{:.3f}") -> str:
    return "–" if v is None else fmt.format(v)


def _label(r: dict) -> str:
    return f"{r['target']} {r['precision']}"


def render_html(report: dict) -> str:
    rows, local = report["results"], report["local_device"]
    here = [(i, r) for i, r in enumerate(rows) if r["device"] == local or not r["measured"]]
    points = [{"x": r["latency_ms"]["p50"], "y": None if r["accuracy"] is None else r["accuracy"] * 100, "row": i,
               "label": _label(r) if r["measured"] else f"{_label(r)} @ {r['device']}", "measured": r["measured"],
               "pareto": r.get("pareto", False), "warn": bool(r["warnings"]), "series": r["device"]} for i, r in here]
    measured_here = [(i, r) for i, r in enumerate(rows) if r["measured"] and r["device"] == local]
    sizes = [{"label": _label(r), "value": r["size_mb"], "row": i, "measured": True, "series": r["precision"]}
             for i, r in measured_here if r["size_mb"] is not None]
    changed = [(i, r) for i, r in measured_here if r["precision"] in ("int8", "fp16")
               and any(abs(d) > 1e-9 for d in (r["per_class_delta"] or {}).values())]
    changed = sorted(changed, key=lambda ir: min(ir[1]["per_class_delta"].values()))[:4]  # the worst-hit artifacts
    deltas = [{"label": c, "value": d, "row": i, "series": _label(r), "warn": d < -report["budget_points"]}
              for i, r in changed for c, d in r["per_class_delta"].items()]
    by_size = [{"label": size, "value": d, "row": i, "series": _label(r), "warn": size == "small" and d < -SMALL_OBJECT_RECALL_LIMIT}
               for i, r in measured_here if r["precision"] in ("int8", "fp16") for size, d in (r["per_size_delta"] or {}).items()]
    metric = report.get("metric", "accuracy")
    device = report["devices"][local]
    title = f"{report['model']}:v{report['version']} benchmark report"
    created = datetime.datetime.fromtimestamp(report["created_at"]).strftime("%Y-%m-%d %H:%M")
    parts = [f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{escape(title)}</title>",
             "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">", f"<style>{CSS}</style></head><body>",
             f"<h1>{escape(title)}</h1>",
             f"<p>{escape(report['task'])}; {report['cost']['macs'] / 1e6:.1f} M MACs, {report['cost']['params'] / 1e6:.2f} M "
             f"parameters; written {created}. Reference: PyTorch FP32 {escape(metric)} "
             f"{_num(report['reference']['accuracy'], '{:.4f}')}. Budget {report['budget_points']:g} points.</p>",
             f"<p class=\"device\">Measured on <b>{escape(device['name'])}</b> ({escape(', '.join(device['cpu']['isa']))}); "
             f"peaks measured here: FP32 {device['peaks']['fp32_gflops']:g} GFLOPS, INT8 {device['peaks']['int8_gops']:g} GOPS, "
             f"copy {device['peaks']['memory_gbps']:g} GB/s.</p>"]
    parts.append("<section id=\"warnings\"><h2>Warnings</h2>" + (
        "<ul>" + "".join(f"<li class=\"warn\" data-code=\"{w['code']}\">{escape(w['message'])} {escape(w['fix'])}</li>"
                         for w in report["warnings"]) + "</ul>" if report["warnings"] else "<p>None.</p>") + "</section>")
    parts.append("<section id=\"plots\"><h2>Plots</h2>"
                 + plots.scatter("latency-accuracy", f"Latency vs {metric}", points, "p50 latency (ms, batch 1)", f"{metric} (%)")
                 + plots.bars("size", "Size on disk per target", sizes, "MB")
                 + plots.bars("per-class-delta", "Per-class recall change after compression (points)", deltas, "points")
                 + ("" if deltas else "<p>No class changed its recall after compression on this device.</p>")
                 + (plots.bars("per-size-delta", "Recall@0.5 change by object size after compression (points)", by_size,
                               "points") if by_size else "")
                 + "</section>")
    parts.append(_table(rows, metric))
    if any(r.get("networks") for r in rows):
        parts.append(_pipeline_table(rows))
    if report.get("retrieval"):
        parts.append(_retrieval_table(report["retrieval"]))
    if report["estimates_skipped"]:
        parts.append("<p>Not estimated: " + escape("; ".join(f"{s['device']} {s['precision']} ({s['reason']})"
                                                             for s in report["estimates_skipped"])) + ".</p>")
    parts.append("<p>Machine-readable: <a href=\"report.json\">report.json</a>; per device: "
                 + ", ".join(f"<a href=\"devices/{d}.json\">{escape(d)}</a>" for d in report["devices"]) + ".</p>")
    return "\n".join(parts + ["</body></html>"])


def _pipeline_table(rows: list[dict]) -> str:
    """A model of several networks: a row per network (batch 1 at its example input) and the page's time split."""
    piped = [r for r in rows if r.get("networks")]
    names = list(piped[0]["networks"])
    stages = list((piped[0].get("stages_ms") or {}))
    head = (["target", "precision", "device"] + [f"{n} p50 ms ({'x'.join(map(str, piped[0]['networks'][n]['input_size'][1:]))})"
                                                 for n in names]
            + ["page p50 ms"] + [f"{s.replace('_ms', '')} ms / page" for s in stages] + ["scores"])
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in (
            [r["target"], r["precision"], r["device_name"]] + [_num(r["networks"][n]["p50_ms"]) for n in names]
            + [_num(r["latency_ms"]["p50"])] + [_num((r.get("stages_ms") or {}).get(s), "{:.1f}") for s in stages]
            + [", ".join(f"{k} {v:.4f}" for k, v in (r.get("scores") or {}).items())])) + "</tr>" for r in piped)
    page = piped[0].get("page") or {}
    return ("<section id=\"pipeline\"><h2>Per network and per page</h2><p>Each network alone at batch 1 on its example "
            f"input; the page: a {page.get('width')}x{page.get('height')} test picture read end to end (every network, "
            "the cropping and the post-processing); the stages: mean milliseconds per picture over the test split.</p>"
            "<table><thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head)
            + f"</tr></thead><tbody>{body}</tbody></table></section>")


def _retrieval_table(rows: list[dict]) -> str:
    head = ("index", "items", "kind", "embedder", "embed p50 ms", "search p50 ms", "search p99 ms", "end to end p50 ms",
            "Recall@1", "Recall@10 vs exact")
    body = "".join(
        f"<tr><td>{escape(r['index'])}</td><td>{r['items']}</td><td>{escape(r['kind'])} "
        f"{escape(', '.join(f'{k} {v}' for k, v in (r['params'] or {}).items()))}</td>"
        f"<td>{escape(r['target'])} {escape(r['precision'])}</td><td>{_num(r['embed_p50_ms'])}</td>"
        f"<td>{_num(r['search_p50_ms'])}</td><td>{_num(r['search_p99_ms'])}</td><td>{_num(r['end_to_end_p50_ms'])}</td>"
        f"<td>{_num(r['recall_at_1'], '{:.4f}')}</td><td>{_num(r['recall_at_10_vs_exact'])}</td></tr>" for r in rows)
    return ("<section id=\"retrieval\"><h2>Retrieval: a query end to end</h2><p>Per gallery index of this model: the "
            "embedder's p50 here, the search's at the index's size, and both together.</p><table><thead><tr>"
            + "".join(f"<th>{h}</th>" for h in head) + f"</tr></thead><tbody>{body}</tbody></table></section>")


COLUMNS = ("target", "precision", "device", "kind", "p50 ms", "p90 ms", "p99 ms", "throughput img/s", "memory MB",
           "size MB", "accuracy", "Δ points", "flips", "peak share")


def _table(rows: list[dict], metric: str = "accuracy") -> str:
    out = ["<section id=\"results\"><h2>Results</h2><table><thead><tr>"
           + "".join(f"<th>{escape(metric) if c == 'accuracy' else c}</th>" for c in COLUMNS) + "</tr></thead><tbody>"]
    for i, r in enumerate(rows):
        classes = ["measured" if r["measured"] else "estimated"] + (["warn"] if r["warnings"] else [])
        lat = r["latency_ms"]
        cells = [r["target"], r["precision"], r["device_name"], "measured" if r["measured"] else
                 f"estimate ({r['estimate']['confidence']} confidence)", _num(lat["p50"]), _num(lat["p90"]), _num(lat["p99"]),
                 _num(r["throughput"], "{:.0f}"), _num(r["memory_mb"], "{:.1f}"), _num(r["size_mb"]),
                 _num(r["accuracy"], "{:.4f}"), _num(r["accuracy_delta_points"], "{:+.2f}"), _num(r["prediction_flips"], "{}"),
                 _num(r["peak_share"], "{:.1%}")]
        title = f" title=\"{escape('; '.join(r['warnings']))}\"" if r["warnings"] else ""
        out.append(f"<tr class=\"{' '.join(classes)}\" data-row=\"{i}\" data-measured=\"{str(r['measured']).lower()}\"{title}>"
                   + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>")
    return "\n".join(out + ["</tbody></table></section>"])


CSS = """body{font-family:system-ui,sans-serif;margin:1.5rem;max-width:1100px}
table{border-collapse:collapse;font-size:.85rem}td,th{border:1px solid #ccc;padding:.2rem .4rem;text-align:right}
td:first-child,td:nth-child(2),td:nth-child(3),td:nth-child(4){text-align:left}
tr.estimated{color:#666;font-style:italic;background:#f7f7f7}tr.warn,li.warn{color:#b00020;background:#fde7ea}
svg.plot{display:block;margin:1rem 0;max-width:100%;height:auto;border:1px solid #eee}"""
