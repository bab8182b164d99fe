"""A Ray job's overhead over the same local job (issue 17): each command run as a user runs it, once with
`--executor local` and once with `--executor ray`, against a Ray head started here on loopback (2 CPUs, or the
cluster at `--address`).

Jobs: `train` (`--model` from scratch on scikit-learn's digits at 32 px, `--epochs` epochs), `export` of that model
to ONNX Runtime FP32, and `train --devices 2` (local: two gloo processes; Ray: two Ray Train workers). Each is run
`--repeats` times per executor, alternating; reported per job and executor: the median wall seconds of the whole
command (Python start, imports, the job, its result), the job's own training seconds where it trains (the same
work on either), and the overhead (Ray's median minus local's). Ray's first job of each kind is listed apart too
(`cold`): the cluster then starts a worker process and imports the factory in it, which later jobs reuse.
Writes results/ray_overhead.json.

    .venv/bin/python -m benchmarks.perf.ray_overhead [--repeats 3] [--epochs 3] [--address HOST:PORT] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.device import identity
from factory import api
from factory.datasets.synthetic import write_digits

RESULTS = Path(__file__).parents[1] / "results" / "ray_overhead.json"
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_head(temp: Path) -> str:
    port = _free_port()
    subprocess.run([str(Path(sys.executable).parent / "ray"), "start", "--head", f"--port={port}",
                    "--node-ip-address=127.0.0.1", "--num-cpus=2", "--object-store-memory=100000000",
                    "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
                   check=True, capture_output=True, timeout=180)
    return f"127.0.0.1:{port}"


def timed(args: list[str], home: Path, address: str) -> tuple[float, dict]:
    env = {**os.environ, "EDGEFACTORY_HOME": str(home), "EDGEFACTORY_RAY_ADDRESS": address, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "factory.cli", *args, "--json", "--quiet"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=1800, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"edgefactory {' '.join(args)} failed:\n{done.stderr}")
    return wall, json.loads(done.stdout.strip().splitlines()[-1])


def jobs(args: argparse.Namespace) -> dict[str, list[str]]:
    train = ["train", "--dataset", "digits", "--model", args.model, "--epochs", str(args.epochs), "--img-size", "32",
             "--batch-size", "64", "--patience", "1000", "--pretrained", "none"]
    return {"train": [*train, "--name", "bench"],
            "export": ["export", "bench:v1", "--target", "onnxruntime"],
            "train --devices 2": [*train, "--devices", "2", "--name", "bench-ddp"]}


def measure(home: Path, address: str, args: argparse.Namespace) -> list[dict]:
    rows = []
    for job, command in jobs(args).items():
        times: dict[str, list[float]] = {"local": [], "ray": []}
        trained: dict[str, list[float]] = {"local": [], "ray": []}
        for _ in range(args.repeats + 1):  # Ray's first is cold; local's first warms the file cache alike
            for executor in ("local", "ray"):
                wall, out = timed([*command, "--executor", executor], home, address)
                times[executor].append(wall)
                if "metrics" in out:
                    trained[executor].append(out["metrics"]["train_time_s"])
                print(f"  {job:18s} {executor:5s} {wall:7.2f} s", file=sys.stderr)
        local, ray = statistics.median(times["local"][1:]), statistics.median(times["ray"][1:])
        rows.append({"job": job, "local_s": round(local, 2), "ray_s": round(ray, 2), "overhead_s": round(ray - local, 2),
                     "ray_cold_s": round(times["ray"][0], 2), "runs": {k: [round(t, 2) for t in v] for k, v in times.items()},
                     "train_time_s": {k: round(statistics.median(v), 2) for k, v in trained.items() if v}})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--model", default="mobilenet_v3_small")
    ap.add_argument("--address", help="an existing Ray cluster (default: a head started here, 2 CPUs)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    temp = Path(tempfile.mkdtemp(prefix="ray-ef-"))
    try:
        address = args.address or start_head(temp / "ray")
        home = temp / "ws"
        api.import_dataset(write_digits(temp / "digits", size=32), "digits", home=home)
        rows = measure(home, address, args)
    finally:
        if not args.address:
            subprocess.run([str(Path(sys.executable).parent / "ray"), "stop", "--force"], capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)
    print(f"{'job':18s} {'local s':>8} {'ray s':>7} {'overhead s':>10} {'ray cold s':>10} {'train s (local/ray)':>20}")
    for r in rows:
        trained = "/".join(f"{r['train_time_s'][k]:.1f}" for k in ("local", "ray")) if r["train_time_s"] else "-"
        print(f"{r['job']:18s} {r['local_s']:8.2f} {r['ray_s']:7.2f} {r['overhead_s']:10.2f} {r['ray_cold_s']:10.2f} "
              f"{trained:>20}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"device": identity(), "repeats": args.repeats, "epochs": args.epochs,
                                    "model": args.model, "cluster": args.address or "local head, 2 CPUs, loopback",
                                    "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
