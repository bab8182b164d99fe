"""faiss indexes for a gallery of L2-normalised embeddings (inner product = cosine): the choice of kind by size and
memory, the build, and the tuning of nprobe / efSearch against exact search.

Every kind keeps the gallery's own 64-bit ids (IDMap2 around Flat and HNSW; IVF kinds keep ids in their lists).
Which kinds change in place: Flat, IVF-Flat and IVF-PQ add and remove without a rebuild (IVF keeps the centroids
of its first build, so a gallery grown far past it is rebuilt by `index build` again); HNSW adds in place but
cannot remove (faiss#3339), so a removal rebuilds it from the stored vectors.

Past memory: `ivf_disk` is IVF-Flat whose inverted lists live in a file beside the index (faiss
OnDiskInvertedLists, memory-mapped when loaded: RAM holds the centroids, the page cache whatever lists the searches
touch). It is built chunk by chunk (each chunk's lists written, then merged into the one file), and every change
re-lists the stored vectors under the same centroids into the new version's own file (the version before keeps its
file untouched).
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from factory.errors import ConfigError
from factory.tasks.retrieval.metrics import knn

KINDS = ("auto", "flat", "ivf", "hnsw", "ivfpq", "ivf_disk")
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
RELISTS = ("ivf_disk",)  # on-disk lists: every add or remove writes the next version's lists file (same centroids)
LISTS_FILE = "index.ivfdata"  # an on-disk index's inverted lists, beside index.faiss
CHUNK = 200_000  # vectors per in-memory shard while an on-disk index is built
TUNING_MARGIN = 0.02  # gallery items as queries sit in denser places than new photos: tune to target + margin


def choose_kind(n: int, dim: int, memory_bytes: int | None = None) -> tuple[str, str]:
    """(kind, why) for `n` vectors of `dim` floats: exact under EXACT_BELOW; HNSW up to HNSW_MAX items where its graph
    fits in half of `memory_bytes` (the fastest search here: benchmarks/perf/retrieval_index.py); IVF-Flat above,
    or where HNSW does not fit; IVF-Flat with its lists on disk where even the float vectors do not fit (exact
    vectors, read as searched; IVF-PQ fits in memory but loses recall, so it is chosen only by name)."""
    flat_bytes = n * dim * 4
    hnsw_bytes = n * (dim * 4 + HNSW_M * 2 * 4)
    budget = memory_bytes / 2 if memory_bytes else float("inf")
    if n < EXACT_BELOW:
        return "flat", f"{n} items: an exact scan ({flat_bytes / 1e6:.1f} MB) is fast enough and never misses"
    if n <= HNSW_MAX and hnsw_bytes <= budget:
        return "hnsw", (f"{n} items: a graph (HNSW{HNSW_M}, {hnsw_bytes / 1e6:.0f} MB) searches fastest; removals "
                        f"are hidden until {TOMBSTONES:.0%} of it is removed, then it is rebuilt")
    if flat_bytes > budget:
        return "ivf_disk", (f"{n} x {dim} floats ({flat_bytes / 1e9:.2f} GB) would take over half of the "
                            f"{(memory_bytes or 0) / 1e9:.1f} GB available: inverted lists on disk, memory-mapped "
                            f"({nlist_for(n)} lists; a search reads the few it probes)")
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
    if kind in ("ivf", "ivfpq", "ivf_disk"):
        index = (faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT) if kind != "ivfpq" else
                 faiss.IndexIVFPQ(quantizer, dim, nlist, pq_m(dim), 8, faiss.METRIC_INNER_PRODUCT))
        # unit vectors searched by inner product: centroids must stay on the sphere too, or k-means with an
        # inner-product assignment lets a few long centroids take every vector
        index.cp.spherical = True
        return index
    raise ConfigError(f"Unknown index kind {kind!r}.", fix=f"Use one of: {', '.join(KINDS)}.")


def build(kind: str, vectors: np.ndarray, ids: np.ndarray, seed: int = 0, folder: Path | None = None):
    """A trained index of `kind` holding `vectors` under `ids` (an on-disk kind writes its lists into `folder`)."""
    index = make(kind, vectors.shape[1], len(vectors))
    if not index.is_trained:
        rng = np.random.default_rng(seed)
        want = max(TRAIN_SAMPLE, TRAIN_PER_LIST * nlist_for(len(vectors)))
        pick = np.arange(len(vectors)) if len(vectors) <= want else np.sort(rng.choice(len(vectors), want, replace=False))
        index.train(np.ascontiguousarray(vectors[pick], dtype=np.float32))
    if kind in RELISTS:
        return fill_on_disk(index, vectors, ids, _folder(folder))
    index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids.astype(np.int64))
    return index


def _folder(folder: Path | None) -> Path:
    if folder is None:
        raise ConfigError("An on-disk index needs a folder for its lists.", fix="Build it through retrieval.gallery.")
    return folder


def fill_on_disk(trained, vectors: np.ndarray, ids: np.ndarray, folder: Path):
    """`trained` (an empty IVF index) with `vectors` added into inverted lists in folder/LISTS_FILE: CHUNK vectors
    at a time go into an in-memory shard that is written out, then the shards' lists are merged into the file
    (faiss.contrib.ondisk), so building needs memory for one chunk, not the gallery."""
    import faiss
    from faiss.contrib.ondisk import merge_ondisk

    shards = []
    try:
        for start in range(0, len(vectors), CHUNK):
            shard = faiss.clone_index(trained)
            shard.add_with_ids(np.ascontiguousarray(vectors[start:start + CHUNK], dtype=np.float32),
                               np.ascontiguousarray(ids[start:start + CHUNK], dtype=np.int64))
            shards.append(folder / f"shard-{len(shards)}.faiss")
            faiss.write_index(shard, str(shards[-1]))
            del shard
        with _c_stdout_to_stderr():  # faiss printf()s "creating/resizing <file>": never into a --json answer
            merge_ondisk(trained, [str(p) for p in shards], str(folder / LISTS_FILE))
    finally:
        for p in shards:
            p.unlink(missing_ok=True)
    return trained


@contextlib.contextmanager
def _c_stdout_to_stderr() -> Iterator[None]:
    """C code's writes to file descriptor 1 go to 2 for the block (C's buffer flushed on both sides)."""
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    libc.fflush(None)
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)


def empty_like(index):
    """An empty IVF-Flat index with the centroids of `index` (no retraining)."""
    import faiss

    ivf = faiss.extract_index_ivf(index)
    quantizer = faiss.clone_index(ivf.quantizer)
    out = faiss.IndexIVFFlat(quantizer, ivf.d, ivf.nlist, ivf.metric_type)
    out.own_fields = True
    quantizer.this.disown()  # the index owns its quantizer now
    return out


def lists_bytes(folder: Path) -> int:
    """Size of an on-disk index's lists file (0 for an in-memory index)."""
    path = folder / LISTS_FILE
    return path.stat().st_size if path.is_file() else 0


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
        name, values = "efSearch", [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024]
    else:
        import faiss

        nlist = faiss.extract_index_ivf(index).nlist
        # steps of about 1.5x: a power-of-two ladder can double the lists scanned for the last point of recall
        name, values = "nprobe", sorted({min(v, nlist) for v in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192,
                                                                  256, 384, 512, nlist)})
    recall = 0.0
    for value in values:
        set_params(index, {name: value})
        recall = recall_vs_exact(index, ids, queries, query_ids, truth, k)
        if recall >= min(1.0, target + TUNING_MARGIN):
            return {name: value}, recall
    return {name: values[-1]}, recall


def timed_build(kind: str, vectors: np.ndarray, ids: np.ndarray, index=None, seed: int = 0,
                folder: Path | None = None) -> tuple[object, dict, float, float]:
    """(index, tuned params, Recall@10 vs exact, seconds): `index` when given (changed in place; an on-disk kind
    re-lists `vectors` under its centroids into folder/LISTS_FILE), else a new one."""
    start = time.perf_counter()
    if index is None:
        index = build(kind, vectors, ids, seed, folder)
    elif kind in RELISTS:
        index = fill_on_disk(empty_like(index), vectors, ids, _folder(folder))
    params, recall = tune(index, kind, vectors, ids, seed)
    return index, params, recall, time.perf_counter() - start
