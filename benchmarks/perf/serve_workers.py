"""Replica throughput: `edgefactory serve --workers 1` against `--workers 2` on the same workspace and model,
clients at concurrency 16 posting the same image for a bounded time (keep-alive connections, each held by one
worker). Reports req/s, p50 / p99 and errors per worker count, and the ratio 2 workers / 1.

    .venv/bin/python -m benchmarks.perf.serve_workers [--home DIR --model NAME] [--seconds 20] [--out FILE]

Without --home it makes the workspace of benchmarks.perf.serving (synthetic shapes, a small OpenVINO model).
"""

from __future__ import annotations

import base64
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.device import identity
from benchmarks.perf import serving
from benchmarks.perf.serving import load, small_workspace, start_server

RESULTS = Path(__file__).parents[1] / "results" / "serve_workers.json"
CONCURRENCY = 16


def run(home: Path | None, model: str | None, seconds: float, out: Path | None) -> dict:
    from serving import api as serving_api

    with tempfile.TemporaryDirectory() as tmp:
        home = home or Path(tmp) / "ws"
        model = model or small_workspace(home)
        serving_api.deploy(model, home=home)
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(buf, format="PNG")
        body = {"image": base64.b64encode(buf.getvalue()).decode()}
        rows = []
        for workers in (1, 2):
            proc, url = start_server(home, workers)
            try:
                load(f"{url}/v1/models/{model}/predict", body, CONCURRENCY, 2.0)  # warm every worker's runner
                row = {"workers": workers, **load(f"{url}/v1/models/{model}/predict", body, CONCURRENCY, seconds)}
            finally:
                proc.terminate()
                proc.wait(timeout=60)
            rows.append(row)
            print(f"workers {workers}: {row['req_per_s']:8.1f} req/s  p50 {row['latency_ms']['p50']:7.2f} ms  "
                  f"p99 {row['latency_ms']['p99']:7.2f} ms  errors {row['errors']}", flush=True)
    ratio = rows[1]["req_per_s"] / rows[0]["req_per_s"]
    print(f"2 workers / 1 worker: {ratio:.2f}x requests per second at concurrency {CONCURRENCY}")
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "device": identity(), "model": model, "image": "96x96 PNG",
              "concurrency": CONCURRENCY, "seconds": seconds, "rows": rows, "ratio_2_over_1": ratio}
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")
    return result


if __name__ == "__main__":
    serving.main(run, __doc__, 20.0, RESULTS)
