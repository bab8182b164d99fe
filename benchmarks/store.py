"""The benchmark results' table in the catalog, owned here: an artifact measured on a device, or estimated for a
device not at hand. Its rows go with their model version when it is deleted."""

from __future__ import annotations

from typing import Any

from factory.catalog import Catalog, Schema, register_schema

SCHEMA = register_schema(Schema("benchmarks", migrations=(
    # 1 (catalog schema 4 before the packages owned their tables: IF NOT EXISTS keeps those catalogs' rows)
    """
    CREATE TABLE IF NOT EXISTS benchmarks (
        id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL, version INTEGER NOT NULL,
        target TEXT NOT NULL, precision TEXT NOT NULL, device_id TEXT NOT NULL, device TEXT NOT NULL,
        measured INTEGER NOT NULL, result TEXT NOT NULL, created_at REAL NOT NULL);
    CREATE INDEX IF NOT EXISTS benchmarks_by_model ON benchmarks (model, version);
    """,), model_tables=("benchmarks",), json_columns=frozenset({"device", "result"})))


def add_benchmark(catalog: Catalog, row: dict[str, Any]) -> None:
    with catalog.transaction():
        catalog.insert("benchmarks", {**row, "measured": int(bool(row["measured"]))})


def benchmarks(catalog: Catalog, model: str, version: int) -> list[dict[str, Any]]:
    """The latest result per (target, precision, device), oldest first."""
    rows = catalog.select("SELECT * FROM benchmarks WHERE model = ? AND version = ? ORDER BY id", (model, version))
    latest = {(r["target"], r["precision"], r["device_id"]): {**r, "measured": bool(r["measured"])} for r in rows}
    return list(latest.values())
