"""Gallery index speed (issue 15), side by side in one run: the index `index build --kind auto` makes (kind chosen
by size, nprobe / efSearch tuned to Recall@10 >= 0.95 against exact search) against exact faiss IndexFlatIP on the
same vectors, at 1e5 x 256 and 1e6 x 128: clustered unit vectors of intrinsic dimension 24 (50 per identity), as
the embeddings of a trained model are; vectors spread uniformly over all dimensions have no neighbourhoods to find
and are every ANN index's worst case.

Per size: batch QPS (1,000 queries in one call, all threads), single-query latency p50 / p99 (one query a call),
Recall@10 against exact search on queries that are not in the gallery, build seconds, index bytes, and the
exact-scan floor: the bytes one exact query must read divided by this machine's memory bandwidth (measured here
with a large NumPy copy), i.e. the fastest any exact scan could be. `ivf_disk` (the lists in a memory-mapped file,
for galleries past memory) is measured warm: its lists file was just written, so the page cache holds it.

    .venv/bin/python -m benchmarks.perf.retrieval_index [--sizes 100000x256,1000000x128]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.device import identity
from retrieval import faiss_index

RESULTS = Path(__file__).parents[1] / "results" / "retrieval_index.json"
QUERIES = 1000
SINGLE = 300
LATENT = 24  # intrinsic dimension of the synthetic embeddings
NOISE = 0.5  # a point's distance from its identity's centre, relative to the spread of the centres


def clustered(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n unit vectors around max(16, n / 50) identity centres, the centres). The centres lie near a LATENT-dimensional
    subspace (a random linear map of Gaussian latents plus a little full-dimensional noise), as the embeddings of a
    trained model do; each point is its centre plus NOISE per latent dimension and a little full-dimensional noise."""
    rng = np.random.default_rng(seed)
    k = max(16, n // 50)
    mix = rng.normal(size=(LATENT, dim)).astype(np.float32) / np.sqrt(LATENT)
    centres = (rng.normal(size=(k, LATENT)).astype(np.float32) @ mix
               + 0.2 * rng.normal(size=(k, dim)).astype(np.float32))
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):  # in chunks: the noise of 1e6 x 128 at once would double the memory
        m = min(100_000, n - start)
        out[start:start + m] = _around(centres, rng.integers(0, k, m), mix, rng)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out, (centres, mix)


def _around(centres: np.ndarray, which: np.ndarray, mix: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    m = len(which)
    return (centres[which] + NOISE * rng.normal(size=(m, LATENT)).astype(np.float32) @ mix
            + 0.1 * rng.normal(size=(m, centres.shape[1])).astype(np.float32))


def memory_bandwidth_gbs() -> float:
    src = np.ones(64 * 2**20 // 8)  # 64 MB
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t)
    return 2 * src.nbytes / best / 1e9  # read + write


def timed(index, queries: np.ndarray, k: int = 10) -> dict:
    t = time.perf_counter()
    _, ids = index.search(queries, k)
    batch_s = time.perf_counter() - t
    lat = []
    for q in queries[:SINGLE]:
        t = time.perf_counter()
        index.search(q[None, :], k)
        lat.append((time.perf_counter() - t) * 1000)
    return {"ids": ids, "batch_qps": round(len(queries) / batch_s, 1), "p50_ms": round(float(np.percentile(lat, 50)), 4),
            "p99_ms": round(float(np.percentile(lat, 99)), 4)}


def run(n: int, dim: int, bandwidth: float, also: list[str]) -> dict:
    import faiss

    vectors, model = clustered(n, dim, seed=0)
    queries = _queries(model)
    ids = np.arange(n, dtype=np.int64)
    flat = faiss.IndexFlatIP(dim)
    t = time.perf_counter()
    flat.add(vectors)
    exact = {"build_s": round(time.perf_counter() - t, 3), **timed(flat, queries)}
    chosen, why = faiss_index.choose_kind(n, dim)
    indexes = {}
    for kind in [chosen, *[k for k in also if k != chosen]]:
        with tempfile.TemporaryDirectory(dir=RESULTS.parent) as folder:  # an on-disk kind's lists file
            index, params, tuned_recall, build_s = faiss_index.timed_build(kind, vectors, ids, folder=Path(folder))
            row = {"build_s": round(build_s, 3), **timed(index, queries)}
            on_disk = faiss_index.lists_bytes(Path(folder))
            found = row.pop("ids")
            in_ram = len(faiss.serialize_index(index)) if not on_disk else centroid_bytes(index)
            row.update({"params": params, "tuning_recall_at_10": round(tuned_recall, 4),
                        "recall_at_10_vs_exact": round(float(np.mean([len(set(a) & set(b)) / 10 for a, b in
                                                                      zip(found.tolist(), exact["ids"].tolist())])), 4),
                        "index_bytes": in_ram + on_disk, "ram_bytes": in_ram, "disk_bytes": on_disk,
                        "batch_speedup": round(row["batch_qps"] / exact["batch_qps"], 1)})
            indexes[kind] = row
            del index
    exact.pop("ids")
    return {"n": n, "dim": dim, "auto": chosen, "why": why, "exact": exact, "indexes": indexes,
            "exact_scan_floor_ms": round(n * dim * 4 / (bandwidth * 1e9) * 1000, 4)}


def centroid_bytes(index) -> int:
    """What an on-disk IVF index keeps in memory: its centroids (the lists are mapped from the file)."""
    import faiss

    ivf = faiss.extract_index_ivf(index)
    return ivf.nlist * ivf.d * 4


def _queries(model: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """New points around the gallery's own centres (other noise): queries that are not in the gallery."""
    centres, mix = model
    rng = np.random.default_rng(1)
    q = _around(centres, rng.integers(0, len(centres), QUERIES), mix, rng)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000x256,1000000x128")
    ap.add_argument("--also", default="ivf,ivf_disk", help="index kinds measured beside the one auto chooses")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    import faiss

    bandwidth = memory_bandwidth_gbs()
    rows = []
    for spec in args.sizes.split(","):
        n, dim = (int(v) for v in spec.split("x"))
        row = run(n, dim, bandwidth, [k for k in args.also.split(",") if k])
        rows.append(row)
        e = row["exact"]
        print(f"{n:>9,d} x {dim:<4d} exact IndexFlatIP: batch QPS {e['batch_qps']:>9,.0f}, single query p50 "
              f"{e['p50_ms']:.3f} ms (exact-scan floor {row['exact_scan_floor_ms']:.3f} ms)")
        for kind, r in row["indexes"].items():
            mark = " (auto)" if kind == row["auto"] else ""
            print(f"{'':>17s} {kind + mark:<11s} {str(r['params']):<18s} Recall@10 vs exact {r['recall_at_10_vs_exact']:.3f}; "
                  f"batch QPS {r['batch_qps']:>9,.0f} ({r['batch_speedup']}x); p50 {r['p50_ms']:.3f} ms, p99 "
                  f"{r['p99_ms']:.3f} ms; build {r['build_s']:.1f} s, {r['index_bytes'] / 1e6:.0f} MB"
                  + (f" ({r['ram_bytes'] / 1e6:.1f} MB in RAM, the rest on disk, mapped)" if r["disk_bytes"] else ""))
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "device": identity(), "faiss": faiss.__version__,
              "threads": faiss.omp_get_max_threads(), "memory_bandwidth_gbs": round(bandwidth, 2), "queries": QUERIES,
              "single_queries": SINGLE, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"memory bandwidth {bandwidth:.1f} GB/s; wrote {args.out}")


if __name__ == "__main__":
    main()
