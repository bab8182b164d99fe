"""faiss indexes for a gallery of L2-normalised embeddings (inner product = cosine): the choice of kind by size and
memory, the build, and the tuning of nprobe / efSearch against exact search.

Every kind keeps the gallery's own 64-bit ids (IDMap2 around Flat and HNSW; IVF kinds keep ids in their lists).
Which kinds change in place: Flat, IVF-Flat and IVF-PQ add and remove without a rebuild (IVF keeps the centroids
of its first build, so a gallery grown far past it is rebuilt by `index build` again); HNSW adds in place but
cannot remove (faiss#3339), so a removal rebuilds it from the stored vectors.
"""

from __future__ import annotations

import math
import time

import numpy as np

from factory.errors import ConfigError
from factory.tasks.retrieval.metrics import knn

KINDS = ("auto", "flat", "ivf", "hnsw", "ivfpq")
EXACT_BELOW = 50_000  # items: an exact scan is fast enough below this (about 1-5 ms per query at 256-d)
MIN_PER_LIST = 39  # faiss's k-means wants at least 39 training vectors per centroid (faiss/Clustering.h)
HNSW_M = 32
TARGET_RECALL = 0.95  # Recall@10 against exact search that tuning must reach
TUNING_QUERIES = 500
TRAIN_PER_LIST = 64  # training vectors per IVF list (faiss warns under 39; more gives better centroids)
TRAIN_SAMPLE = 256 * 256  # vectors that train an index at least (when the gallery has them): PQ codebooks need them
REBUILDS_ON_REMOVE = ("hnsw",)  # cannot delete: removed items are hidden (tombstones), then it is rebuilt
TOMBSTONES = 0.1  # share of hidden items at which a graph index is rebuilt
HNSW_MAX = 2_000_000  # above this a graph takes too long to build here (1e6 x 128: 280 s on 2 cores)
TUNING_MARGIN = 0.02  # gallery items as queries sit in denser places than new photos: tune to target + margin


def choose_kind(n: int, dim: int, memory_bytes: int | None = None) -> tuple[str, str]:
    """(kind, why) for `n` vectors of `dim` floats: exact under EXACT_BELOW; HNSW up to HNSW_MAX items where its graph
    fits in half of `memory_bytes` (the fastest search here: benchmarks/perf/retrieval_index.py); IVF-Flat above,
    or where HNSW does not fit; IVF-PQ where even the float vectors do not fit."""
    flat_bytes = n * dim * 4
    hnsw_bytes = n * (dim * 4 + HNSW_M * 2 * 4)
    budget = memory_bytes / 2 if memory_bytes else float("inf")
    if n < EXACT_BELOW:
        return "flat", f"{n} items: an exact scan ({flat_bytes / 1e6:.1f} MB) is fast enough and never misses"
    if n <= HNSW_MAX and hnsw_bytes <= budget:
        return "hnsw", (f"{n} items: a graph (HNSW{HNSW_M}, {hnsw_bytes / 1e6:.0f} MB) searches fastest; removals "
                        f"are hidden until {TOMBSTONES:.0%} of it is removed, then it is rebuilt")
    if flat_bytes > budget:
        return "ivfpq", (f"{n} x {dim} floats ({flat_bytes / 1e9:.2f} GB) would take over half of the "
                         f"{(memory_bytes or 0) / 1e9:.1f} GB available: product-quantised codes")
    return "ivf", f"{n} items: inverted lists ({nlist_for(n)} lists of about {n // nlist_for(n)}) cut the scan"


def nlist_for(n: int) -> int:
    """A power of two near 4 * sqrt(n), with at least MIN_PER_LIST vectors per list."""
    target = 4 * math.sqrt(max(n, 1))
    nlist = 2 ** max(0, round(math.log2(target)))
    while nlist > 1 and n / nlist < MIN_PER_LIST:
        nlist //= 2
    return nlist


def pq_m(dim: int) -> int:
    """Sub-quantizers for IVF-PQ: about 8 dimensions each, a divisor of `dim`."""
    for m in (dim // 8, dim // 4, dim // 2, dim):
        if m and dim % m == 0 and m <= 64:
            return m
    return 1


def make(kind: str, dim: int, n: int):
    import faiss

    if kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    if kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = 80
        return faiss.IndexIDMap2(inner)
    nlist = nlist_for(n)
    quantizer = faiss.IndexFlatIP(dim)
    if kind in ("ivf", "ivfpq"):
        index = (faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT) if kind == "ivf" else
                 faiss.IndexIVFPQ(quantizer, dim, nlist, pq_m(dim), 8, faiss.METRIC_INNER_PRODUCT))
        # unit vectors searched by inner product: centroids must stay on the sphere too, or k-means with an
        # inner-product assignment lets a few long centroids take every vector
        index.cp.spherical = True
        return index
    raise ConfigError(f"Unknown index kind {kind!r}.", fix=f"Use one of: {', '.join(KINDS)}.")


def build(kind: str, vectors: np.ndarray, ids: np.ndarray, seed: int = 0):
    """A trained index of `kind` holding `vectors` under `ids`."""
    index = make(kind, vectors.shape[1], len(vectors))
    if not index.is_trained:
        rng = np.random.default_rng(seed)
        want = max(TRAIN_SAMPLE, TRAIN_PER_LIST * nlist_for(len(vectors)))
        sample = vectors if len(vectors) <= want else vectors[rng.choice(len(vectors), want, replace=False)]
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
    index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids.astype(np.int64))
    return index


def set_params(index, params: dict) -> None:
    import faiss

    if "nprobe" in params:
        faiss.extract_index_ivf(index).nprobe = int(params["nprobe"])
    if "efSearch" in params:
        faiss.downcast_index(index.index).hnsw.efSearch = int(params["efSearch"])


def recall_vs_exact(index, ids: np.ndarray, queries: np.ndarray, query_ids: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Share of the exact top-k that `index` returns, each query's own item left out of both (the queries are held
    back from the gallery: a query that finds itself proves nothing). `truth`: exact top-(k+1) positions. Items the
    index holds beyond `ids` (removed ones, hidden) are skipped as search does."""
    hidden = index.ntotal - len(ids)
    found = index.search(np.ascontiguousarray(queries, dtype=np.float32), k + 1 + hidden)[1].tolist()
    if hidden:
        live = set(ids.tolist())
        found = [[i for i in row if i in live] for row in found]
    exact = ids[truth]
    hits = []
    for f, e, own in zip(found, exact.tolist(), query_ids.tolist()):
        want = [i for i in e if i != own][:k]
        got = [i for i in f if i != own][:k]
        hits.append(len(set(got) & set(want)) / max(len(want), 1))
    return float(np.mean(hits))


def tune(index, kind: str, vectors: np.ndarray, ids: np.ndarray, seed: int = 0, k: int = 10,
         target: float = TARGET_RECALL) -> tuple[dict, float]:
    """The cheapest nprobe / efSearch whose Recall@k against exact search on held-back gallery queries (a sample
    of the gallery's items, each searched for its k nearest other items) reaches `target`; ({}, recall) for an
    exact index."""
    k = max(1, min(k, len(vectors) - 1))
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(vectors), min(TUNING_QUERIES, len(vectors)), replace=False)
    queries, query_ids = vectors[pick], ids[pick]
    truth = knn(queries, vectors, k + 1)[1]
    if kind == "flat":
        return {}, recall_vs_exact(index, ids, queries, query_ids, truth, k)
    if kind == "hnsw":
        name, values = "efSearch", [16, 32, 64, 128, 256, 512, 1024]
    else:
        import faiss

        nlist = faiss.extract_index_ivf(index).nlist
        name, values = "nprobe", sorted({min(v, nlist) for v in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, nlist)})
    recall = 0.0
    for value in values:
        set_params(index, {name: value})
        recall = recall_vs_exact(index, ids, queries, query_ids, truth, k)
        if recall >= min(1.0, target + TUNING_MARGIN):
            return {name: value}, recall
    return {name: values[-1]}, recall


def timed_build(kind: str, vectors: np.ndarray, ids: np.ndarray, index=None, seed: int = 0) -> tuple[object, dict, float, float]:
    """(index, tuned params, Recall@10 vs exact, seconds): `index` when given (changed in place), else a new one."""
    start = time.perf_counter()
    index = index if index is not None else build(kind, vectors, ids, seed)
    params, recall = tune(index, kind, vectors, ids, seed)
    return index, params, recall, time.perf_counter() - start
