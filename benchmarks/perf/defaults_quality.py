"""Defaults against a hand-tuned config (issue: a new user's first model must be as good as the demo's).

For four datasets of different natures (scikit-learn's digits at 32 px, seeded shapes at 64 px, seeded views of
scikit-image's photos at 192 px, seeded detection scenes at 160 px) and two architectures each, trains once
with defaults only (`--dataset`, `--model`, `--time-budget`) and once with the best config found by hand, same
budget, same machine, and prints both scores side by side with the options the defaults resolved to. The
generated sets are also scored on data from a held-out seed. Writes benchmarks/results/defaults_quality.json.

    .venv/bin/python -m benchmarks.perf.defaults_quality [--only digits,shapes] [--scale 0.5]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks.device import identity
from factory import api
from factory.tasks.detection.datasets import write_detection
from factory.datasets.synthetic import write_digits, write_photos, write_shapes

RESULTS = Path(__file__).parents[1] / "results" / "defaults_quality.json"
SHOWN = ("img_size", "batch_size", "lr", "hflip", "crop_scale", "pretrained", "patience")

# name: (task, headline metric, minutes, writer(dest, seed) or None for fixed data, architectures)
DATASETS = {
    "digits": ("classification", "accuracy", 4.0, None, ("mobilenet_v3_small", "efficientnet_lite0")),
    "shapes": ("classification", "accuracy", 2.0,
               lambda dest, seed: write_shapes(dest, classes=6, per_class=120, size=64, seed=seed),
               ("mobilenet_v3_small", "efficientnet_lite0")),
    "photos": ("classification", "accuracy", 3.0, lambda dest, seed: write_photos(dest, per_class=100, size=192, seed=seed),
               ("mobilenet_v3_small", "efficientnet_lite0")),
    "scenes": ("detection", "map50", 4.0,
               lambda dest, seed: write_detection(dest, images=400, size=160, seed=seed, layout="voc"),
               ("mobilenet_v3_small", "efficientnet_lite0")),
}

# The best configs found by hand (the demo's for digits, the detection benchmark's for scenes), per dataset and arch.
HAND_TUNED = {
    ("digits", "mobilenet_v3_small"): {"img_size": 32, "batch_size": 64, "lr": 2e-3, "hflip": 0.0, "crop_scale": 0.7,
                                       "patience": 40, "pretrained": "none"},  # the demo's config before the resolver
    ("digits", "efficientnet_lite0"): {"img_size": 64, "batch_size": 32, "lr": 1.5e-3, "hflip": 0.0, "crop_scale": 0.7,
                                       "patience": 1000, "pretrained": "imagenet"},
    ("shapes", "mobilenet_v3_small"): {"img_size": 64, "batch_size": 32, "lr": 2e-3, "hflip": 0.5, "crop_scale": 0.6,
                                       "patience": 1000, "pretrained": "none"},
    ("shapes", "efficientnet_lite0"): {"img_size": 64, "batch_size": 32, "lr": 1e-3, "hflip": 0.5, "crop_scale": 0.6,
                                       "patience": 1000, "pretrained": "imagenet"},
    ("photos", "mobilenet_v3_small"): {"img_size": 128, "batch_size": 32, "lr": 2e-3, "hflip": 0.5, "crop_scale": 0.5,
                                       "patience": 1000, "pretrained": "none"},
    ("photos", "efficientnet_lite0"): {"img_size": 128, "batch_size": 32, "lr": 5e-4, "hflip": 0.5, "crop_scale": 0.5,
                                       "patience": 1000, "pretrained": "imagenet"},
    ("scenes", "mobilenet_v3_small"): {"img_size": 160, "batch_size": 16, "lr": 2e-3, "hflip": 0.5, "patience": 1000,
                                       "pretrained": "none"},  # the detection quality benchmark's config
    ("scenes", "efficientnet_lite0"): {"img_size": 160, "batch_size": 16, "lr": 1e-3, "hflip": 0.5, "patience": 1000,
                                       "pretrained": "imagenet"},
}


def prepare(name: str, tmp: Path, home: Path) -> bool:
    """Import the dataset (and its held-out seed, for generated sets); returns whether a held-out set exists."""
    task, _, _, writer, _ = DATASETS[name]
    if writer is None:
        api.import_dataset(write_digits(tmp / name), name, home=home)
        return False
    api.import_dataset(writer(tmp / name, 0), name, task=task, home=home)
    api.import_dataset(writer(tmp / f"{name}-heldout", 12345), f"{name}-heldout", task=task, home=home)
    return True


def score(ref: str, name: str, metric: str, held_out: bool, home: Path) -> dict:
    test = api.evaluate(ref, split="test", home=home)["metrics"][metric]
    if not held_out:
        return {"test": round(test, 4)}
    # the held-out import's "train" split (80 %): images from a seed the model never saw
    held = api.evaluate(ref, split="train", dataset=f"{name}-heldout", home=home)["metrics"][metric]
    return {"test": round(test, 4), "held_out": round(held, 4)}


def run_one(name: str, arch: str, kind: str, home: Path, held_out: bool, scale: float) -> dict:
    task, metric, minutes, _, _ = DATASETS[name]
    config = {"dataset": name, "model": arch, "time_budget_min": round(minutes * scale, 2), "name": f"{name}-{arch}-{kind}"}
    if kind == "hand":
        config.update(HAND_TUNED[(name, arch)])
    start = time.time()
    out = api.train(config, home=home)
    run = api.run_status(out["run"], home=home)
    resolved = run["config"]
    row = {"dataset": name, "task": task, "model": arch, "config": kind, "metric": metric,
           "minutes": config["time_budget_min"], "epochs": out["metrics"]["epochs_run"],
           "best_epoch": out["metrics"]["best_epoch"], "wall_s": round(time.time() - start, 1),
           "resolved": {k: resolved.get(k) for k in SHOWN}, "why": resolved.get("why", {}),
           "warnings": [w["code"] for w in out.get("warnings", [])],
           **score(f"{out['model']}:v{out['version']}", name, metric, held_out, home)}
    print(f"  {name:7s} {arch:19s} {kind:8s} {metric} test {row['test']:.4f}"
          + (f" held-out {row['held_out']:.4f}" if "held_out" in row else "")
          + f" ({row['epochs']} epochs, {row['resolved']})", flush=True)
    return row


def table(rows: list[dict]) -> str:
    lines = ["| dataset | model | metric | defaults: test / held-out | hand-tuned: test / held-out | defaults resolved to |",
             "|---|---|---|---|---|---|"]
    for d in (r for r in rows if r["config"] == "defaults"):
        h = next((r for r in rows if r["config"] == "hand" and (r["dataset"], r["model"]) == (d["dataset"], d["model"])), None)
        fmt = lambda r: f"{r['test']:.4f}" + (f" / {r['held_out']:.4f}" if "held_out" in r else "")  # noqa: E731
        shown = ", ".join(f"{k} {v}" for k, v in d["resolved"].items() if k != "patience")
        lines.append(f"| {d['dataset']} | {d['model']} | {d['metric']} | {fmt(d)} | {fmt(h) if h else '-'} | {shown} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="comma-separated datasets (default: all)")
    ap.add_argument("--models", help="comma-separated architectures (default: both of each dataset)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every time budget (a quick look: 0.25)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    names = args.only.split(",") if args.only else list(DATASETS)
    rows = []
    with tempfile.TemporaryDirectory(prefix="defaults-quality-") as tmp:
        for name in names:
            home = Path(tmp) / f"ws-{name}"
            held_out = prepare(name, Path(tmp), home)
            for arch in (args.models.split(",") if args.models else DATASETS[name][4]):
                for kind in ("defaults", "hand"):
                    rows.append(run_one(name, arch, kind, home, held_out, args.scale))
    print(table(rows))
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "device": identity(), "scale": args.scale, "rows": rows,
              "command": "python -m benchmarks.perf.defaults_quality" + (f" --only {args.only}" if args.only else "")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
