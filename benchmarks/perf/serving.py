"""Serving load test on loopback: the server in its own process (`edgefactory serve`), clients at
concurrency 1, 8 and 32 posting the same image for a bounded time, keep-alive connections.
Reports req/s and client-side p50 / p99, and the server's overhead over the raw runner: client p50
at concurrency 1 minus the runner's own p50 on the same (already preprocessed) input.

    .venv/bin/python -m benchmarks.serving [--home DIR --model NAME] [--seconds 10] [--out FILE]

Without --home it makes a workspace with the synthetic shapes data and a small model (seconds).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from benchmarks.device import identity
from benchmarks.harness import Timing, latency_stats, time_calls

RESULTS = Path(__file__).parents[1] / "results" / "serving.json"
LEVELS = (1, 8, 32)


def small_workspace(home: Path) -> str:
    from factory import api as core_api
    from factory.datasets.synthetic import write_shapes
    from targets import api as targets_api

    data = write_shapes(home.parent / "shapes", classes=3, per_class=40, seed=0)
    core_api.import_dataset(data, "shapes", home=home)
    core_api.train({"dataset": "shapes", "model": "mobilenet_v3_small", "img_size": 64, "epochs": 2, "name": "shapes-mnv3"},
                   home=home)
    targets_api.export("shapes-mnv3", "openvino", precision="fp32", home=home)
    return "shapes-mnv3"


def start_server(home: Path, workers: int = 1) -> tuple[subprocess.Popen, str]:
    """`edgefactory serve` on a free loopback port, once all its `workers` answer (each has a series in /metrics)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "factory.cli", "serve", "--home", str(home), "--port", str(port),
                             "--phone-port", "0", "--workers", str(workers)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(Path.cwd())})
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200 and (
                    workers == 1 or httpx.get(f"{url}/metrics", timeout=1).text.count("edgefactory_worker_requests{") >= workers):
                return proc, url
            time.sleep(0.2)
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server did not start: {proc.stderr.read().decode()[-2000:]}")


def load(url: str, body: dict, concurrency: int, seconds: float) -> dict:
    times: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    stop = time.perf_counter() + seconds

    host, port = url.split("//")[1].split("/")[0].split(":")
    path = "/" + url.split("//")[1].split("/", 1)[1]
    payload = json.dumps(body).encode()

    def client(i: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)  # keep-alive; a light client

        def post() -> int:
            conn.request("POST", path, body=payload, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            return response.status

        post()  # connect and warm up
        while time.perf_counter() < stop:
            t = time.perf_counter()
            status = post()
            times[i].append((time.perf_counter() - t) * 1000)
            errors[i] += status != 200
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    flat = [x for ts in times for x in ts]
    return {"concurrency": concurrency, "requests": len(flat), "errors": sum(errors), "req_per_s": len(flat) / elapsed,
            "latency_ms": latency_stats(flat)}


def raw_runner_p50(home: Path, model: str, image: bytes) -> tuple[float, str]:
    from factory.api import session
    from serving.deployments import get_deployment
    from targets.predictor import decode_image, load_predictor, preprocess

    with session(home) as (ws, catalog):
        dep = get_deployment(catalog, model)
        predictor = load_predictor(ws, catalog, f"{model}:v{dep['version']}", dep["target"], dep["precision"])
    x = preprocess([decode_image(image)], predictor.meta["preprocessing"])
    stats = latency_stats(time_calls(lambda: predictor.runner(x), Timing(min_time_s=3.0)))
    return stats["p50"], f"{predictor.target} {predictor.precision}"


def run(home: Path | None, model: str | None, seconds: float, out: Path | None) -> dict:
    import base64

    from serving import api as serving_api

    with tempfile.TemporaryDirectory() as tmp:
        home = home or Path(tmp) / "ws"
        model = model or small_workspace(home)
        serving_api.deploy(model, home=home)
        rng = np.random.default_rng(0)
        from io import BytesIO

        from PIL import Image

        buf = BytesIO()
        Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(buf, format="PNG")
        image = buf.getvalue()
        raw, runtime = raw_runner_p50(home, model, image)
        proc, url = start_server(home)
        try:
            body = {"image": base64.b64encode(image).decode()}
            rows = []
            for level in LEVELS:
                row = load(f"{url}/v1/models/{model}/predict", body, level, seconds)
                rows.append(row)
                print(f"concurrency {level:3d}: {row['req_per_s']:8.1f} req/s  p50 {row['latency_ms']['p50']:7.2f} ms  "
                      f"p99 {row['latency_ms']['p99']:7.2f} ms  errors {row['errors']}", flush=True)
            with httpx.Client() as http_client:
                health = latency_stats([_timed_get(http_client, f"{url}/healthz") for _ in range(50)])
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    overhead = rows[0]["latency_ms"]["p50"] - raw
    print(f"runner ({runtime}) p50 {raw:.3f} ms; server p50 at concurrency 1 {rows[0]['latency_ms']['p50']:.3f} ms: "
          f"overhead {overhead:.3f} ms (target <= 2 ms); /healthz p50 {health['p50']:.2f} ms")
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "device": identity(), "model": model, "runtime": runtime,
              "image": "96x96 PNG", "seconds_per_level": seconds, "runner_p50_ms": raw, "levels": rows,
              "overhead_p50_ms": overhead, "overhead_target_ms": 2.0, "healthz_ms": health}
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")
    return result


def _timed_get(client: httpx.Client, url: str) -> float:
    t = time.perf_counter()
    client.get(url)
    return (time.perf_counter() - t) * 1000


def main(run=run, doc: str | None = __doc__, seconds: float = 10.0, results: Path = RESULTS) -> None:
    """The command line of a serving benchmark: `run(home, model, seconds, out)` with --home, --model, --seconds, --out."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path)
    ap.add_argument("--model")
    ap.add_argument("--seconds", type=float, default=seconds)
    ap.add_argument("--out", type=Path, default=results)
    args = ap.parse_args()
    run(args.home, args.model, args.seconds, args.out)


if __name__ == "__main__":
    main()
