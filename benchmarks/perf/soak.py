"""Bounded soak of the server on loopback: `edgefactory serve` in its own process with a key configured, 32
clients sending 5,000 mixed requests (good images, undecodable bytes, large photos, images past the decode
cap, JSON nested past the parser, wrong keys, the PAI-EAS route) while a probe reads /healthz every 50 ms.
Reports every status seen (a 500 fails it), /healthz p50/p99 over the whole run, and the server's resident
memory at the start (after one request of each kind), at its peak and 10 s after the last request.

    .venv/bin/python -m benchmarks.perf.soak [--requests 5000] [--concurrency 32] [--out FILE]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import psutil
from PIL import Image

from benchmarks.device import identity
from benchmarks.harness import latency_stats
from benchmarks.perf.serving import small_workspace, start_server

RESULTS = Path(__file__).parents[1] / "results" / "soak.json"
# what each request is, and how often: (kind, weight)
MIX = (("good", 40), ("pai", 10), ("bad_bytes", 10), ("large_photo", 8), ("past_decode_cap", 7), ("nested_json", 10),
       ("wrong_key", 10), ("no_key", 5))
HEALTH_EVERY_S = 0.05
SETTLE_S = 10.0


def payloads(seed: int = 0) -> dict[str, bytes]:
    """The image bodies, made once: a 96 px photo-like PNG, a 12 MP JPEG, an 8000 x 8000 grey PNG (64 MP, over the
    server's 50 MP decode cap, 200 KB on the wire) and bytes that are no image."""
    rng = np.random.default_rng(seed)

    def encode(image: Image.Image, fmt: str) -> bytes:
        buf = io.BytesIO()
        image.save(buf, format=fmt, quality=85) if fmt == "JPEG" else image.save(buf, format=fmt)
        return buf.getvalue()

    small = Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8))
    gradient = np.linspace(0, 255, 4000, dtype=np.uint8)[None, :, None].repeat(3000, 0).repeat(3, 2)
    return {"good": encode(small, "PNG"), "large_photo": encode(Image.fromarray(gradient), "JPEG"),
            "past_decode_cap": encode(Image.new("L", (8000, 8000), 128), "PNG"), "bad_bytes": rng.bytes(4096)}


def request_for(kind: str, url: str, model: str, key: str, images: dict[str, bytes]) -> tuple[str, str, bytes, dict]:
    """(method, url, body, headers) of one request of `kind`."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    predict = f"{url}/v1/models/{model}/predict"
    if kind == "nested_json":
        return "POST", predict, b"[" * 20_000 + b"]" * 20_000, headers
    if kind == "pai":
        body = {"dataArray": [{"name": "image", "type": "stream", "body": base64.b64encode(images["good"]).decode()}]}
        return "POST", f"{url}/api/predict/{model}", json.dumps(body).encode(), {**headers, "Authorization": key}
    image = images["good" if kind in ("wrong_key", "no_key") else kind]
    body = json.dumps({"image": base64.b64encode(image).decode()}).encode()
    if kind == "wrong_key":
        headers = {**headers, "Authorization": "Bearer ef_00000000_wrong"}
    elif kind == "no_key":
        headers = {"Content-Type": "application/json"}
    return "POST", predict, body, headers


def memory_mb(proc: psutil.Process) -> float:
    return proc.memory_info().rss / 2 ** 20


def probe_health(url: str, every_s: float, stop, out) -> None:
    """/healthz every `every_s` seconds until `stop` is set, in its own process (the load generator's threads
    would otherwise delay the probe, not the server); sends the latencies in ms through `out`."""
    times = []
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            t = time.perf_counter()
            client.get(f"{url}/healthz")
            times.append((time.perf_counter() - t) * 1000)
            time.sleep(every_s)
    out.send(times)


def soak(url: str, model: str, key: str, server: psutil.Process, total: int, concurrency: int,
         settle_s: float = SETTLE_S) -> dict:
    import http.client
    import multiprocessing

    images = payloads()
    rng = np.random.default_rng(1)
    kinds, weights = zip(*MIX)
    plan = list(rng.choice(kinds, size=total, p=np.array(weights) / sum(weights)))
    requests = {kind: request_for(kind, url, model, key, images) for kind in kinds}  # encoded once
    with httpx.Client(timeout=120) as client:  # one of each first: runtimes loaded, code paths warm
        for method, target, body, headers in requests.values():
            client.request(method, target, content=body, headers=headers)
    start_mb = memory_mb(server)
    statuses: dict[str, Counter] = {kind: Counter() for kind in kinds}
    lock, done = threading.Lock(), threading.Event()
    peak_mb = start_mb
    host, port = url.removeprefix("http://").split(":")

    def worker(share: list[str]) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=120)  # keep-alive, and light on the client's CPU
        for kind in share:
            method, target, body, headers = requests[kind]
            conn.request(method, target.removeprefix(url), body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.will_close:
                conn.close()
            with lock:
                statuses[kind][response.status] += 1
        conn.close()

    def watch_memory() -> None:
        nonlocal peak_mb
        while not done.is_set():
            peak_mb = max(peak_mb, memory_mb(server))
            time.sleep(0.1)

    spawn = multiprocessing.get_context("spawn")
    stop, (receive, send) = spawn.Event(), spawn.Pipe(duplex=False)
    prober = spawn.Process(target=probe_health, args=(url, HEALTH_EVERY_S, stop, send))
    prober.start()
    watcher = threading.Thread(target=watch_memory)
    watcher.start()
    workers = [threading.Thread(target=worker, args=(plan[i::concurrency],)) for i in range(concurrency)]
    began = time.perf_counter()
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    elapsed = time.perf_counter() - began
    done.set()
    stop.set()
    health_ms = receive.recv()
    prober.join()
    watcher.join()
    time.sleep(settle_s)
    end_mb = memory_mb(server)
    seen = {kind: dict(sorted(c.items())) for kind, c in statuses.items()}
    errors_5xx = sum(n for c in statuses.values() for status, n in c.items() if status >= 500)
    return {"requests": total, "concurrency": concurrency, "seconds": elapsed, "req_per_s": total / elapsed,
            "statuses": seen, "server_errors": errors_5xx, "healthz_ms": latency_stats(health_ms),
            "healthz_samples": len(health_ms), "memory_mb": {"start": start_mb, "peak": peak_mb, "end": end_mb},
            "memory_end_vs_start": end_mb / start_mb - 1}


def run(total: int, concurrency: int, out: Path | None) -> dict:
    from serving import api as serving_api

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "ws"
        model = small_workspace(home)
        serving_api.deploy(model, home=home)
        key = serving_api.create_key("soak", home=home)["key"]
        proc, url = start_server(home)
        try:
            result = soak(url, model, key, psutil.Process(proc.pid), total, concurrency)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    report(result)
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "device": identity(), "model": model, **result}
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")
    return result


def report(r: dict) -> None:
    print(f"{r['requests']} requests at concurrency {r['concurrency']} in {r['seconds']:.1f} s ({r['req_per_s']:.1f} req/s)")
    print(f"{'kind':16s} statuses")
    for kind, seen in r["statuses"].items():
        print(f"{kind:16s} " + ", ".join(f"{status}: {n}" for status, n in seen.items()))
    h, m = r["healthz_ms"], r["memory_mb"]
    print(f"server errors (5xx): {r['server_errors']}   /healthz p50 {h['p50']:.1f} ms, p99 {h['p99']:.1f} ms, "
          f"max {h['max']:.1f} ms over {r['healthz_samples']} probes (goal: p99 < 100 ms)")
    print(f"server memory: start {m['start']:.0f} MB, peak {m['peak']:.0f} MB, {SETTLE_S:.0f} s after {m['end']:.0f} MB "
          f"({r['memory_end_vs_start']:+.1%}; goal: within 10 %)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    run(args.requests, args.concurrency, args.out)


if __name__ == "__main__":
    main()
