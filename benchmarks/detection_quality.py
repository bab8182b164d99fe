"""Detection quality bar (issue 7), measured: the default detector (mobilenet_v3_small FCOS) at 320 px
trained from scratch on this CPU with a time budget on the seeded synthetic scenes, then evaluated
on scenes from a held-out seed (never seen in training). Prints mAP@0.5, mAP@0.5:0.95 and recall by
size; writes benchmarks/results/detection_quality.json.

    .venv/bin/python -m benchmarks.detection_quality [--minutes 10] [--images 600] [--model mobilenet_v3_small]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks.device import identity
from factory import api
from factory.datasets.detection import write_detection

RESULTS = Path(__file__).parent / "results" / "detection_quality.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--model", default="mobilenet_v3_small")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "ws"
        api.import_dataset(write_detection(Path(tmp) / "train", images=args.images, size=args.size, seed=0), "scenes",
                           task="detection", home=home)
        held_out = write_detection(Path(tmp) / "heldout", images=100, size=args.size, seed=12345)
        api.import_dataset(held_out, "heldout", task="detection", home=home)
        start = time.time()
        out = api.train({"dataset": "scenes", "model": args.model, "img_size": args.size, "time_budget_min": args.minutes,
                         "batch_size": 16, "lr": 0.002, "patience": 1000}, home=home)
        ref = f"{out['model']}:v{out['version']}"
        # the held-out dataset's "train" split: 80 scenes from a seed the model never saw
        held = api.evaluate(ref, split="train", dataset="heldout", home=home)["metrics"]
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "device": identity(), "model": args.model, "img_size": args.size,
              "train_images": args.images, "minutes": args.minutes, "wall_s": round(time.time() - start, 1),
              "in_distribution_test": {k: out["metrics"][k] for k in ("map", "map50", "by_size")},
              "held_out_seed": {k: held[k] for k in ("map", "map50", "by_size", "per_class")},
              "epochs_run": out["metrics"]["epochs_run"], "target_map50": 0.9}
    print(f"{args.model} @ {args.size}px, {args.minutes:g} min: held-out mAP@0.5 {held['map50']:.4f}, "
          f"mAP@0.5:0.95 {held['map']:.4f}; recall@0.5 by size " +
          ", ".join(f"{k} {v['recall50']:.3f}" for k, v in held["by_size"].items()) + f" ({out['metrics']['epochs_run']} epochs)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
