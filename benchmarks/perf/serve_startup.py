"""Time from `edgefactory serve` to the chat page answering (HTTP 200 on / with the Gradio app, and
/healthz), on an empty workspace and on one with a deployed model; aim under 10 s on this machine.

    .venv/bin/python -m benchmarks.serve_startup [--runs 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.device import identity

RESULTS = Path(__file__).parents[1] / "results" / "serve_startup.json"
TARGET_S = 10.0


def time_to_page(home: Path) -> float:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "factory.cli", "serve", "--home", str(home), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    try:
        while time.perf_counter() - start < 120:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                if page.status_code == 200 and "gradio" in page.text.lower() and \
                        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    return time.perf_counter() - start
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("the server did not answer within 120 s")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--home", type=Path, help="a workspace to serve (default: an empty one)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = args.home or Path(tmp) / "ws"
        times = [time_to_page(home) for _ in range(args.runs)]
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "device": identity(), "workspace": "given" if args.home else "empty",
              "seconds": times, "median_s": statistics.median(times), "target_s": TARGET_S}
    print(f"serve -> page answering: median {result['median_s']:.2f} s over {args.runs} runs "
          f"({', '.join(f'{t:.2f}' for t in times)}); target {TARGET_S:g} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
