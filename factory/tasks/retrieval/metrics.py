"""Retrieval metrics with the metric-learning definitions (pytorch-metric-learning's AccuracyCalculator):

- Recall@K: a query scores 1 when at least one of its K nearest references has its label; averaged over queries.
- MAP@R: R = the number of references with the query's label; (1/R) * sum over the top R ranks of
  precision@i * rel(i).
- R-precision: the share of the top R that match.

Leave-one-out (no separate gallery): every image is a query against all the others, itself excluded.
Queries whose label no reference holds ("lone" queries) are left out of the averages, as PML does.
Exact inner-product search (faiss IndexFlatIP) on L2-normalised embeddings = cosine similarity.
"""

from __future__ import annotations

import numpy as np

KS = (1, 5, 10)


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (float32): inner product = cosine similarity."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def knn(queries: np.ndarray, references: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, indices) of the k most similar references to each query (exact inner product)."""
    import faiss

    index = faiss.IndexFlatIP(references.shape[1])
    index.add(np.ascontiguousarray(references, dtype=np.float32))
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, len(references)))


def retrieval_metrics(queries: np.ndarray, query_labels: list, references: np.ndarray | None = None,
                      reference_labels: list | None = None, ks: tuple[int, ...] = KS) -> dict:
    """Recall@K for `ks`, MAP@R and R-precision; leave-one-out when `references` is None."""
    self_match = references is None
    refs = queries if self_match else references
    ref_labels = np.asarray(query_labels if self_match else reference_labels, dtype=object)
    q_labels = np.asarray(query_labels, dtype=object)
    _, inverse = np.unique(np.concatenate([ref_labels, q_labels]).astype(str), return_inverse=True)
    ref_ids, q_ids = inverse[:len(ref_labels)], inverse[len(ref_labels):]
    per_label = np.bincount(ref_ids, minlength=int(inverse.max()) + 1 if len(inverse) else 1)
    r = per_label[q_ids] - (1 if self_match else 0)  # relevant references per query
    k = int(max(max(ks), r.max() if len(r) else 0)) + (1 if self_match else 0)
    _, idx = knn(queries, refs, k) if len(queries) and len(refs) else (None, np.zeros((len(queries), 0), np.int64))
    if self_match:
        idx = drop_self(idx)
    hits = (ref_ids[np.clip(idx, 0, None)] == q_ids[:, None]) & (idx >= 0)
    valid = r > 0
    out = {"queries": int(valid.sum()), "references": int(len(refs)), "lone_queries": int((~valid).sum())}
    if not valid.any():
        return {**out, **{f"recall@{k_}": 0.0 for k_ in ks}, "map@r": 0.0, "r_precision": 0.0}
    hits, r = hits[valid], r[valid]
    for k_ in ks:
        out[f"recall@{k_}"] = float(hits[:, :k_].any(axis=1).mean())
    ranks = np.arange(1, hits.shape[1] + 1)
    within_r = ranks[None, :] <= r[:, None]
    precision_at_i = np.cumsum(hits, axis=1) / ranks[None, :]
    out["map@r"] = float(((precision_at_i * hits * within_r).sum(axis=1) / r).mean())
    out["r_precision"] = float(((hits * within_r).sum(axis=1) / r).mean())
    return out


def drop_self(idx: np.ndarray) -> np.ndarray:
    """Remove each row's own index (row i is query i); where it is absent (exact duplicates tie), the last column."""
    n, k = idx.shape
    own = idx == np.arange(n)[:, None]
    missing = ~own.any(axis=1)
    own[missing, k - 1] = True
    return idx[~own].reshape(n, k - 1)
