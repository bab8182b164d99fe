"""Data-parallel training throughput (issue 17): `edgefactory train --devices 2` against one process, same data.

scikit-learn's digits (real handwriting, 1,797 images) at `--img-size` px, `--model` from scratch, batch
`--batch-size`, `--epochs` epochs, trained once in one process and once in `--devices` processes (gloo on this
CPU, each process taking its share of the cores; on a GPU machine NCCL, one GPU each). Reported per run: training
images per second over the training steps of the epochs after the first (the first also waits for the other
ranks to load the data and build the model; validation, which rank 0 alone runs, is timed apart), the whole
run's seconds (with validation and, for N processes, their start), the images seen per epoch and the test accuracy. Writes results/ddp_throughput.json.

    .venv/bin/python -m benchmarks.perf.ddp_throughput [--devices 2] [--epochs 5] [--img-size 32] [--out FILE] [--model mobilenet_v3_small]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks.device import identity
from factory import api
from factory.datasets.synthetic import write_digits

RESULTS = Path(__file__).parents[1] / "results" / "ddp_throughput.json"


def run(home: Path, devices: int, args: argparse.Namespace) -> dict:
    events: list[dict] = []
    start = time.perf_counter()
    out = api.train({"dataset": "digits", "model": args.model, "epochs": args.epochs, "batch_size": args.batch_size,
                     "img_size": args.img_size, "devices": devices, "name": f"ddp{devices}", "patience": 1000},
                    home=home, on_event=events.append)
    wall = time.perf_counter() - start
    epochs = [e for e in events if e["type"] == "epoch"]
    steady = epochs[1:]  # the first epoch also waits for the other ranks to load the data and build the model
    train_s = sum(e["train_s"] for e in steady)  # the epochs' training steps, validation left out
    return {"devices": devices, "wall_s": round(wall, 1), "train_s": round(train_s, 1),
            "first_epoch_train_s": epochs[0]["train_s"], "run_s": epochs[-1]["elapsed_s"],
            "images_per_epoch": [e["samples"] for e in epochs],
            "images_per_s": round(sum(e["samples"] for e in steady) / train_s, 1),
            "test_accuracy": out["metrics"]["accuracy"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--model", default="mobilenet_v3_small")
    ap.add_argument("--img-size", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "ws"
        api.import_dataset(write_digits(Path(tmp) / "digits", size=args.img_size), "digits", home=home)
        rows = [run(home, 1, args), run(home, args.devices, args)]
    ratio = rows[1]["images_per_s"] / rows[0]["images_per_s"]
    print(f"{'processes':>9} {'img/s':>8} {'train s':>8} {'run s':>7} {'wall s':>7} {'img/epoch':>10} {'test acc':>8}")
    for r in rows:
        print(f"{r['devices']:>9} {r['images_per_s']:>8.1f} {r['train_s']:>8.1f} {r['run_s']:>7.1f} {r['wall_s']:>7.1f} "
              f"{r['images_per_epoch'][0]:>10} {r['test_accuracy']:>8.4f}")
    print(f"throughput ratio {args.devices} vs 1 process: {ratio:.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "device": identity(), "model": args.model,
                                    "img_size": args.img_size, "batch_size": args.batch_size, "epochs": args.epochs,
                                    "runs": rows, "throughput_ratio": round(ratio, 3)}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
