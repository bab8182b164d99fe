"""The report's retrieval rows: for each gallery index built with the model version, the query's time split into
embedding (the artifact's measured p50 here) and search (measured here at the index's own size and parameters),
end to end, and the embedder's Recall@1."""

from __future__ import annotations

import time

import numpy as np

from factory.catalog import Catalog
from factory.workspace import Workspace
from retrieval.gallery import index_rows, load_gallery

SEARCH_QUERIES = 200
K = 5


def gallery_rows(ws: Workspace, catalog: Catalog, model: dict, results: list[dict], local_id: str) -> list[dict]:
    ref = f"{model['name']}:v{model['version']}"
    latest: dict[str, dict] = {}
    for row in index_rows(catalog):
        if row["model"] == ref:
            latest[row["name"]] = row  # rows come by version: the last is the newest
    out = []
    for row in latest.values():
        gallery = load_gallery(ws, row)
        rng = np.random.default_rng(0)
        queries = gallery.vectors[rng.choice(len(gallery.vectors), min(SEARCH_QUERIES, len(gallery.vectors)), replace=False)]
        times = []
        for q in queries:
            t = time.perf_counter()
            gallery.search(q[None, :], K)
            times.append((time.perf_counter() - t) * 1000)
        embed = next((r for r in results if r["measured"] and r["device"] == local_id and r["target"] == row["target"]
                      and r["precision"] == row["precision"]), None)
        embed_ms = embed["latency_ms"]["p50"] if embed else None
        search_ms = float(np.percentile(times, 50))
        out.append({"index": f"{row['name']}:v{row['version']}", "items": row["items"], "kind": row["kind"],
                    "params": row["params"], "target": row["target"], "precision": row["precision"],
                    "embed_p50_ms": embed_ms, "search_p50_ms": round(search_ms, 4),
                    "search_p99_ms": round(float(np.percentile(times, 99)), 4),
                    "end_to_end_p50_ms": None if embed_ms is None else round(embed_ms + search_ms, 4),
                    "recall_at_1": embed["accuracy"] if embed else None,
                    "recall_at_10_vs_exact": row["recall_at_10_vs_exact"]})
    return out
