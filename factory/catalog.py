"""The catalog: datasets, runs (jobs) and model versions, with a schema version and migrations.

It lives in the workspace's catalog.sqlite (WAL mode and a busy timeout let two processes share it), or in a
PostgreSQL database several machines share (`EDGEFACTORY_CATALOG=postgresql://...`; factory/catalog_db.py runs the
same SQL on both). Version numbers are allocated inside write transactions that take the database's write lock
first, so two writers never get the same `name:vN`.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from factory import processes
from factory.catalog_db import BUSY_TIMEOUT_S, CatalogBusy, DatabaseError, connect  # noqa: F401 (re-exported)
from factory.errors import CatalogError

# Each entry migrates the schema from version i to i + 1. Never edit a released entry: append. An entry is SQL for
# both databases, or {database name: SQL} where they differ.
MIGRATIONS: list[str | dict[str, str]] = [
    # 1: datasets and model versions
    """
    CREATE TABLE datasets (
        name TEXT NOT NULL, version INTEGER NOT NULL, task TEXT NOT NULL,
        source_format TEXT NOT NULL, path TEXT NOT NULL, classes TEXT NOT NULL,
        splits TEXT NOT NULL, stats TEXT NOT NULL, issues TEXT NOT NULL,
        created_at REAL NOT NULL, PRIMARY KEY (name, version));
    CREATE TABLE model_versions (
        name TEXT NOT NULL, version INTEGER NOT NULL, task TEXT NOT NULL, arch TEXT NOT NULL,
        dataset TEXT NOT NULL, path TEXT NOT NULL, metrics TEXT NOT NULL,
        created_at REAL NOT NULL, PRIMARY KEY (name, version));
    """,
    # 2: runs (background jobs with persisted status and progress), linked from model versions
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL, config TEXT NOT NULL,
        progress TEXT NOT NULL DEFAULT '{}', history TEXT NOT NULL DEFAULT '[]',
        result TEXT, error TEXT, pid INTEGER,
        created_at REAL NOT NULL, updated_at REAL NOT NULL);
    ALTER TABLE model_versions ADD COLUMN run_id TEXT REFERENCES runs(id);
    """,
    # 3: artifacts (a model version exported for one target at one precision)
    """
    CREATE TABLE artifacts (
        model TEXT NOT NULL, version INTEGER NOT NULL, target TEXT NOT NULL, precision TEXT NOT NULL,
        path TEXT NOT NULL, size_mb REAL NOT NULL, accuracy REAL, reference_accuracy REAL,
        parity TEXT NOT NULL, compression TEXT NOT NULL, created_at REAL NOT NULL,
        PRIMARY KEY (model, version, target, precision));
    """,
    # 4-6 created the tables of benchmarks/, serving/ and chat_ui/; those packages own them now (`register_schema`),
    # with CREATE TABLE IF NOT EXISTS as their first migration, so catalogs made before keep their rows
    "", "", "",
    # 7: each owner's schema version, and its tables keyed by (model, version) (they go with a deleted version);
    # a PostgreSQL catalog is younger than the benchmarks table of migration 4, so it has none to carry over
    {"sqlite": """
    CREATE TABLE schema_owners (
        owner TEXT PRIMARY KEY, version INTEGER NOT NULL, model_tables TEXT NOT NULL DEFAULT '[]');
    INSERT INTO schema_owners (owner, version, model_tables)
        SELECT 'benchmarks', 0, '["benchmarks"]' WHERE EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'benchmarks');
    """, "postgresql": """
    CREATE TABLE schema_owners (
        owner TEXT PRIMARY KEY, version INTEGER NOT NULL, model_tables TEXT NOT NULL DEFAULT '[]');
    """},
    # 8: when a run's process started, beside its PID (a reused PID or a zombie is not the run's process)
    """
    ALTER TABLE runs ADD COLUMN pid_started REAL;
    """,
    # 9: the machine a run's process is on (with a shared catalog, a PID means nothing on another machine)
    """
    ALTER TABLE runs ADD COLUMN host TEXT;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
PUT_OWNER = ("INSERT INTO schema_owners (owner, version, model_tables) VALUES (?, ?, ?) ON CONFLICT (owner) "
             "DO UPDATE SET version = excluded.version, model_tables = excluded.model_tables")
JSON_COLUMNS = {"parity", "compression", "classes", "splits", "stats", "issues", "metrics", "config", "progress", "history",
                "result", "model_tables"}


@dataclass(frozen=True)
class Schema:
    """The tables a package above factory/ keeps in the catalog: its own migrations (each from version i to i + 1;
    never edit a released one, append), the tables whose rows belong to a model version (columns `model` and
    `version`; deleted with it), and the columns that hold JSON."""

    owner: str
    migrations: tuple[str, ...]
    model_tables: tuple[str, ...] = ()
    json_columns: frozenset[str] = frozenset()


SCHEMAS: dict[str, Schema] = {}


def register_schema(schema: Schema) -> Schema:
    """Declare a package's tables (at its import); every catalog opened from then on migrates them."""
    if SCHEMAS.get(schema.owner, schema) != schema:
        raise ValueError(f"the catalog schema of {schema.owner!r} is already registered differently")
    SCHEMAS[schema.owner] = schema
    JSON_COLUMNS.update(schema.json_columns)
    return schema


def insert_sql(table: str, columns: list[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def _decode(row: Any) -> dict[str, Any]:
    return {k: (json.loads(row[k]) if k in JSON_COLUMNS and row[k] is not None else row[k]) for k in row.keys()}


def _encode(value: Any) -> Any:
    return json.dumps(value, default=str) if isinstance(value, (dict, list)) else value


class Catalog:
    """Thin access layer over the catalog database (`location`: catalog.sqlite's path or a PostgreSQL URL). One
    connection per instance; safe across processes and machines."""

    def __init__(self, location: Path | str, *, migrate_to: int = SCHEMA_VERSION):
        self.db = connect(location)
        self.location = self.db.location
        try:
            self.migrate(migrate_to)
        except BaseException as exc:
            self.db.close()
            if isinstance(exc, DatabaseError) and not isinstance(exc, CatalogBusy):
                raise CatalogError(f"The catalog {self.db.location} cannot be opened or migrated: {exc.message}",
                                   fix="Check that no other program holds it and that it is an edgefactory catalog; "
                                       "restore it from a backup if it is damaged.") from exc
            raise

    @property
    def dialect(self) -> str:
        """"sqlite" or "postgresql"."""
        return self.db.name

    # -- schema -------------------------------------------------------------------------------
    def schema_version(self) -> int:
        return self.db.schema_version()

    def migrate(self, target: int = SCHEMA_VERSION) -> None:
        """Apply the migrations between the stored schema version and `target`, each atomically."""
        with self.transaction():
            current = self.schema_version()
            if current > SCHEMA_VERSION:
                raise CatalogError(
                    f"{self.db.location} has schema version {current}, newer than this edgefactory "
                    f"({SCHEMA_VERSION}).",
                    fix="Upgrade edgefactory, or point EDGEFACTORY_HOME (or EDGEFACTORY_CATALOG) at another workspace.",
                )
            for version in range(current, target):
                migration = MIGRATIONS[version]
                self._execute_script(migration[self.dialect] if isinstance(migration, dict) else migration)
                self.db.set_schema_version(version + 1)
            if target == SCHEMA_VERSION:
                for schema in SCHEMAS.values():
                    self._migrate_owner(schema)

    def _execute_script(self, script: str) -> None:
        for statement in self.db.ddl(script).split(";"):
            if statement.strip():
                self.db.execute(statement)

    def _migrate_owner(self, schema: Schema) -> None:
        rows = self.select("SELECT version FROM schema_owners WHERE owner = ?", (schema.owner,))
        current = int(rows[0]["version"]) if rows else 0
        if current > len(schema.migrations):
            raise CatalogError(f"{self.db.location} holds {schema.owner}'s tables at version {current}, "
                               f"newer than this edgefactory ({len(schema.migrations)}).",
                               fix="Upgrade edgefactory, or point EDGEFACTORY_HOME (or EDGEFACTORY_CATALOG) at another "
                                   "workspace.")
        for version in range(current, len(schema.migrations)):
            self._execute_script(schema.migrations[version])
        self.execute(PUT_OWNER, (schema.owner, len(schema.migrations), json.dumps(list(schema.model_tables))))

    @contextlib.contextmanager
    def transaction(self) -> Iterator["Catalog"]:
        """A write transaction that takes the database's write lock at once (SQLite: BEGIN IMMEDIATE). On any error,
        the lock's wait included, it is rolled back and the error raised (a rollback that fails too, on a connection
        that is gone, does not hide it)."""
        try:
            self.db.begin()
            yield self
        except BaseException:
            with contextlib.suppress(DatabaseError):
                self.db.rollback()
            raise
        self.db.commit()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement written for SQLite (`?` placeholders); JSON values are encoded."""
        self.db.execute(sql, [_encode(v) for v in params])

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.db.executemany(sql, [[_encode(v) for v in row] for row in rows])

    # -- generic helpers ------------------------------------------------------------------------
    def next_version(self, table: str, name: str) -> int:
        """Next free version for `name`; call inside `transaction()` so it stays free."""
        row = self.select(f"SELECT MAX(version) AS latest FROM {table} WHERE name = ?", (name,))[0]
        return int(row["latest"] or 0) + 1

    def insert(self, table: str, row: dict[str, Any]) -> None:
        self.execute(insert_sql(table, list(row)), list(row.values()))

    def select(self, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
        return [_decode(r) for r in self.db.execute(sql, params)]

    # -- datasets -------------------------------------------------------------------------------
    def datasets(self, name: str | None = None) -> list[dict[str, Any]]:
        if name is None:
            return self.select("SELECT * FROM datasets ORDER BY name, version")
        return self.select("SELECT * FROM datasets WHERE name = ? ORDER BY version", (name,))

    # -- model versions -----------------------------------------------------------------------
    def model_versions(self, name: str | None = None) -> list[dict[str, Any]]:
        if name is None:
            return self.select("SELECT * FROM model_versions ORDER BY name, version")
        return self.select("SELECT * FROM model_versions WHERE name = ? ORDER BY version", (name,))

    def delete_model_version(self, name: str, version: int) -> None:
        """Remove a version and every row that belongs to it (its artifacts, and the rows of the tables the owners
        declared, read from the catalog itself, so a process that never imported an owner deletes them too), in one
        transaction."""
        owned = [t for r in self.select("SELECT model_tables FROM schema_owners") for t in r["model_tables"]]
        with self.transaction():
            for table in ["artifacts", *owned]:
                self.execute(f"DELETE FROM {table} WHERE model = ? AND version = ?", (name, version))
            self.execute("DELETE FROM model_versions WHERE name = ? AND version = ?", (name, version))

    # -- artifacts ------------------------------------------------------------------------------
    def artifacts(self, model: str | None = None, version: int | None = None) -> list[dict[str, Any]]:
        sql, params = "SELECT * FROM artifacts", []
        if model is not None:
            sql += " WHERE model = ?" + (" AND version = ?" if version is not None else "")
            params = [model] + ([version] if version is not None else [])
        return self.select(sql + " ORDER BY model, version, target, precision", tuple(params))

    def put_artifact(self, row: dict[str, Any]) -> None:
        """Insert or replace the row of (model, version, target, precision); call inside `transaction()`."""
        self.execute("DELETE FROM artifacts WHERE model = ? AND version = ? AND target = ? AND precision = ?",
                     (row["model"], row["version"], row["target"], row["precision"]))
        self.insert("artifacts", row)

    # -- runs -----------------------------------------------------------------------------------
    def create_run(self, run_id: str, kind: str, config: dict, pid: int) -> None:
        """A queued run of process `pid` on this machine, with that process's start time (`processes.alive` checks
        both)."""
        now = time.time()
        with self.transaction():
            self.insert("runs", {"id": run_id, "kind": kind, "status": "queued", "config": config, "pid": pid,
                                 "pid_started": processes.started(pid), "host": processes.HOST, "created_at": now,
                                 "updated_at": now})

    def claim_run(self, run_id: str, **fields: Any) -> None:
        """The calling process runs `run_id` from now on (a resume, a retried Ray task): its PID, start time and
        machine become the run's."""
        self.update_run(run_id, pid=os.getpid(), pid_started=processes.started(), host=processes.HOST, **fields)

    def update_run(self, run_id: str, **fields: Any) -> None:
        fields["updated_at"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.transaction():
            self.execute(f"UPDATE runs SET {sets} WHERE id = ?", [*fields.values(), run_id])

    def run(self, run_id: str) -> dict[str, Any] | None:
        rows = self.select("SELECT * FROM runs WHERE id = ?", (run_id,))
        return rows[0] if rows else None

    def runs(self) -> list[dict[str, Any]]:
        return self.select("SELECT * FROM runs ORDER BY created_at")


# -- moving a workspace's catalog (catalog.sqlite to a shared PostgreSQL database) -------------------------------------
BOOKKEEPING = ("catalog_schema", "schema_owners")
FIRST = ("runs",)  # referenced by model_versions.run_id


def copy_catalog(source: Catalog, dest: Catalog) -> dict[str, int]:
    """Copy every row of `source` into the empty catalog `dest`, in one transaction; returns rows per table. Tables
    of packages this process never imported are created in `dest` from the source's own statements (SQLite keeps
    them), so nothing is left behind."""
    taken = [t for t in ("datasets", "model_versions", "runs") if dest.select(f"SELECT 1 FROM {t} LIMIT 1")]
    if taken:
        raise CatalogError(f"The catalog {dest.location} already holds {', '.join(taken)}: a copy goes into an empty one.",
                           fix="Create a new database for it (createdb NAME), or keep using the one it holds.")
    versions = source.schema_version(), dest.schema_version()
    if versions[0] != versions[1]:
        raise CatalogError(f"{source.location} is at schema version {versions[0]}, {dest.location} at {versions[1]}.",
                           fix="Open both with this edgefactory first (any command migrates).")
    theirs, ours = source.db.tables(), dest.db.tables()
    missing = [t for t in theirs if t not in ours and t not in BOOKKEEPING]
    if any(not theirs[t] for t in missing):
        raise CatalogError(f"{dest.location} lacks the tables {', '.join(missing)} of {source.location}.",
                           fix="Copy from the workspace's catalog.sqlite, whose statements make them.")
    copied: dict[str, int] = {}
    with dest.transaction():
        for table in missing:
            dest._execute_script(";".join(theirs[table]))
        for table in sorted(theirs, key=lambda t: (t not in FIRST, t)):
            if table in BOOKKEEPING:
                continue
            rows = [dict(r) for r in source.db.execute(f"SELECT * FROM {table}")]
            if rows:
                columns = list(rows[0])
                dest.db.executemany(insert_sql(table, columns), [[r[c] for c in columns] for r in rows])
                dest.db.identities_follow(table)
            copied[table] = len(rows)
        dest.executemany(PUT_OWNER, [(r["owner"], r["version"], r["model_tables"])
                                     for r in source.select("SELECT * FROM schema_owners")])
    return copied
