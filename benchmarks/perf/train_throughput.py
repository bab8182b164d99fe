"""Training throughput of the engine vs a minimal plain-PyTorch loop, same data, same process.

For each architecture and input size: images/s of `Trainer.train_epoch` (batch slicing, batch
augmentation, normalisation, LR schedule, progress events) and of a bare loop (pre-normalised
tensors, forward, loss, backward, AdamW step). Rounds alternate between the two (and which goes
first) so machine noise hits both alike; the table shows medians over rounds. Prints a table and writes benchmarks/results/train_throughput.json.

    .venv/bin/python -m benchmarks.train_throughput [--archs a,b] [--sizes 64,160] [--steps 8]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from factory.config import TrainConfig
from factory.datasets.synthetic import write_shapes
from factory.tasks.classification import build_model, preprocessing_spec
from factory.training.data import ImageTensors, normalize
from factory.training.engine import Trainer

RESULTS = Path(__file__).parents[1] / "results" / "train_throughput.json"


def engine_rate(arch: str, data: ImageTensors, size: int, batch: int, steps: int, run_dir: Path) -> float:
    torch.manual_seed(0)
    cfg = TrainConfig(dataset="bench", model=arch, img_size=size, batch_size=batch, epochs=1, device="cpu")
    trainer = Trainer(cfg, build_model(arch, 6), data, data, preprocessing_spec(size), run_dir)
    gen = torch.Generator().manual_seed(0)
    trainer.train_epoch(gen, time.perf_counter())  # warm-up epoch (one step per batch of the small set)
    start = time.perf_counter()
    done = 0
    while done < steps * batch:
        trainer.train_epoch(gen, time.perf_counter())
        done += len(data)
    return done / (time.perf_counter() - start)


def plain_rate(arch: str, data: ImageTensors, size: int, batch: int, steps: int) -> float:
    torch.manual_seed(0)
    model = build_model(arch, 6).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    pre = preprocessing_spec(size)
    x_all = normalize(data.images, torch.tensor(pre["mean"]).view(1, 3, 1, 1), torch.tensor(pre["std"]).view(1, 3, 1, 1))
    y_all = data.labels

    def epoch() -> int:
        for i in range(0, len(x_all), batch):
            loss = F.cross_entropy(model(x_all[i:i + batch]), y_all[i:i + batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
        return len(x_all)

    epoch()
    start = time.perf_counter()
    done = 0
    while done < steps * batch:
        done += epoch()
    return done / (time.perf_counter() - start)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", default="mobilenet_v3_small,mobilenet_v3_large,efficientnet_b0,resnet18")
    ap.add_argument("--sizes", default="64,160")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=8, help="batches timed per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = write_shapes(Path(tmp) / "shapes", classes=6, per_class=args.batch // 2, size=64, seed=0)
        entries = [{"file": str(p.relative_to(src)), "label": p.parent.name} for p in sorted(src.rglob("*.png"))]
        classes = sorted({e["label"] for e in entries})
        for size in map(int, args.sizes.split(",")):
            data = ImageTensors(src, entries, classes, size)
            for arch in args.archs.split(","):
                eng, plain = [], []
                for r in range(args.rounds):  # alternate which goes first, so order effects cancel
                    first_engine = r % 2 == 0
                    if first_engine:
                        eng.append(engine_rate(arch, data, size, args.batch, args.steps, Path(tmp)))
                    plain.append(plain_rate(arch, data, size, args.batch, args.steps))
                    if not first_engine:
                        eng.append(engine_rate(arch, data, size, args.batch, args.steps, Path(tmp)))
                ratios = sorted(e / p for e, p in zip(eng, plain))
                row = {"arch": arch, "img_size": size, "batch": args.batch, "engine_img_s": round(statistics.median(eng), 1),
                       "plain_img_s": round(statistics.median(plain), 1), "ratio": round(statistics.median(ratios), 3),
                       "ratios": [round(x, 3) for x in ratios]}
                rows.append(row)
                print(f"{arch:20s} {size:4d}px  engine {row['engine_img_s']:8.1f} img/s  plain {row['plain_img_s']:8.1f} "
                      f"img/s  ratio {row['ratio']:.3f} (rounds {row['ratios']})", flush=True)
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": cpu_name(),
              "cpu_count": torch.get_num_threads(), "torch": torch.__version__, "rows": rows,
              "min_ratio": min(r["ratio"] for r in rows)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"min ratio {result['min_ratio']:.3f}; wrote {args.out}")


if __name__ == "__main__":
    main()
