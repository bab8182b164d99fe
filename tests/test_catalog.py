"""The catalog on both of its databases (SQLite, and PostgreSQL from Debian's package on a loopback port): schema
version, migrations, WAL, two processes sharing one workspace, and errors that name the database."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from factory import api
from factory.catalog import SCHEMA_VERSION, Catalog
from factory.catalog_db import connect
from factory.errors import CatalogError

from tests.conftest import REPO


def test_new_catalog_is_at_latest_schema_in_wal_mode(tmp_path: Path):
    cat = Catalog(tmp_path / "catalog.sqlite")
    assert cat.schema_version() == SCHEMA_VERSION >= 2 and cat.dialect == "sqlite"
    assert cat.db.execute("PRAGMA journal_mode")[0][0] == "wal"
    assert cat.db.execute("PRAGMA busy_timeout")[0][0] >= 10_000


def test_migration_from_version_1_keeps_rows(catalog_location: Path | str):
    path = catalog_location
    old = Catalog(path, migrate_to=1)
    assert old.schema_version() == 1
    with old.transaction():
        old.insert("model_versions", {"name": "m", "version": 1, "task": "classification", "arch": "tiny_cls",
                                      "dataset": "d:v1", "path": "models/m/v1", "metrics": {"accuracy": 0.5},
                                      "created_at": 1.0})
    old.close()
    cat = Catalog(path)
    assert cat.schema_version() == SCHEMA_VERSION
    rows = cat.model_versions("m")
    assert rows[0]["metrics"] == {"accuracy": 0.5} and rows[0]["run_id"] is None
    cat.create_run("r1", "train", {"dataset": "d"}, pid=1)  # table added by migration 2
    assert cat.run("r1")["status"] == "queued"


def test_catalog_from_a_newer_edgefactory_is_refused(tmp_path: Path):
    path = tmp_path / "catalog.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.close()
    with pytest.raises(CatalogError, match="newer than this edgefactory"):
        Catalog(path)


def test_failed_migration_rolls_back(catalog_location: Path | str, monkeypatch: pytest.MonkeyPatch):
    import factory.catalog as catalog_mod

    Catalog(catalog_location, migrate_to=1).close()
    monkeypatch.setattr(catalog_mod, "MIGRATIONS", [catalog_mod.MIGRATIONS[0], "CREATE TABLE runs (id TEXT); BROKEN SQL"])
    with pytest.raises(CatalogError, match="cannot be opened or migrated"):
        Catalog(catalog_location)
    db = connect(catalog_location)
    assert db.schema_version() == 1 and not db.has_table("runs")
    db.close()


def test_postgresql_catalog_stores_what_sqlite_does(postgres_catalog: str):
    """The spellings PostgreSQL reads differently: timestamps keep their fractions (REAL is 4 bytes there), ids
    count up, and a statement with a literal % runs."""
    from benchmarks import store

    cat = Catalog(postgres_catalog)
    assert cat.dialect == "postgresql" and cat.schema_version() == SCHEMA_VERSION
    now = 1_764_550_000.123456
    cat.create_run("r1", "train", {"lr": 0.001}, pid=1)
    cat.update_run("r1", status="running", progress={"epoch": 2})
    for device in ("cpu", "gpu"):
        store.add_benchmark(cat, {"model": "m", "version": 1, "target": "onnxruntime", "precision": "fp32",
                                  "device_id": device, "device": {"id": device}, "measured": True, "result": {},
                                  "created_at": now})
    rows = store.benchmarks(cat, "m", 1)
    assert [r["id"] for r in rows] == [1, 2] and rows[0]["created_at"] == now and rows[0]["measured"] is True
    assert cat.run("r1")["progress"] == {"epoch": 2} and cat.run("r1")["config"] == {"lr": 0.001}
    assert cat.select("SELECT '100%' AS p WHERE ? = 1", (1,)) == [{"p": "100%"}]
    cat.close()


def test_a_catalog_that_cannot_be_reached_says_where_and_hides_the_password(postgres_server):
    url = postgres_server.url("postgres").replace(f":{postgres_server.port}/", f":{_closed_port()}/")
    with pytest.raises(CatalogError, match="Cannot connect to the catalog at postgresql://edgefactory:\\*\\*\\*@") as err:
        Catalog(url)
    assert "s3cret" not in str(err.value) and "EDGEFACTORY_CATALOG" in err.value.fix


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


WORKER = textwrap.dedent("""
    import sys
    from factory import api
    home, data, tag = sys.argv[1], sys.argv[2], sys.argv[3]
    for i in range(3):
        api.import_dataset(data, "shared", home=home)
        api.import_dataset(data, f"own-{tag}", home=home)
""")


def test_two_processes_share_one_workspace(tmp_path: Path, shapes_dir: Path, shared_catalog: str):
    home = tmp_path / "ws"
    api.list_datasets(home=home)  # create the catalog first, as a user's first command would
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(home), str(shapes_dir), tag], cwd=REPO,
                              stderr=subprocess.PIPE, text=True) for tag in ("a", "b")]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    rows = api.list_datasets(home=home)
    shared = sorted(r["version"] for r in rows if r["dataset"] == "shared")
    assert shared == [1, 2, 3, 4, 5, 6]  # no version handed out twice
    assert sorted(r["version"] for r in rows if r["dataset"] == "own-a") == [1, 2, 3]
    if shared_catalog == "sqlite":
        conn = sqlite3.connect(home / "catalog.sqlite")
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    else:
        assert not (home / "catalog.sqlite").exists()  # every row went to PostgreSQL
    for v in shared:
        folder = home / "datasets" / "shared" / f"v{v}"
        manifest = json.loads((folder / "manifest.json").read_text())
        assert len(manifest) == 90 and all((folder / m["file"]).is_file() for m in manifest)
    leftovers = [p.name for p in (home / "datasets" / "shared").iterdir() if p.name.startswith(".tmp")]
    assert leftovers == []


# the tables migrations 4-6 made before the packages above factory/ owned them (a catalog from then)
LEGACY_4_TO_6 = """
    CREATE TABLE benchmarks (
        id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL, version INTEGER NOT NULL,
        target TEXT NOT NULL, precision TEXT NOT NULL, device_id TEXT NOT NULL, device TEXT NOT NULL,
        measured INTEGER NOT NULL, result TEXT NOT NULL, created_at REAL NOT NULL);
    CREATE INDEX benchmarks_by_model ON benchmarks (model, version);
    CREATE TABLE deployments (
        name TEXT PRIMARY KEY, version INTEGER NOT NULL, target TEXT NOT NULL, precision TEXT NOT NULL,
        created_at REAL NOT NULL);
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, hash TEXT NOT NULL, scopes TEXT NOT NULL,
        created_at REAL NOT NULL, revoked_at REAL, last_used_at REAL);
    CREATE TABLE preview_links (
        id TEXT PRIMARY KEY, model TEXT NOT NULL, version INTEGER NOT NULL, target TEXT NOT NULL,
        precision TEXT NOT NULL, created_at REAL NOT NULL, expires_at REAL NOT NULL, revoked_at REAL);
    CREATE TABLE conversations (
        id TEXT PRIMARY KEY, state TEXT NOT NULL, messages TEXT NOT NULL,
        created_at REAL NOT NULL, updated_at REAL NOT NULL);
"""


def test_a_catalog_from_before_the_packages_owned_their_tables_keeps_their_rows(tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch):
    import factory.catalog as catalog_mod
    from benchmarks import store
    from serving import access

    path = tmp_path / "catalog.sqlite"
    old = Catalog(path, migrate_to=3)
    with old.transaction():
        for statement in LEGACY_4_TO_6.split(";"):
            if statement.strip():
                old.execute(statement)
        old.db.set_schema_version(6)
    old.close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO api_keys VALUES ('k1', 'phone', 'h', '[\"*\"]', 1.0, NULL, NULL)")
    for model in ("m", "n"):
        conn.execute("INSERT INTO benchmarks (model, version, target, precision, device_id, device, measured, result, "
                     f"created_at) VALUES ('{model}', 1, 'onnxruntime', 'fp32', 'cpu', '{{\"id\": \"cpu\"}}', 1, '{{}}', 1.0)")
    conn.commit()
    conn.close()
    with monkeypatch.context() as m:  # first opened by a process that imported no owner (a notebook, say)
        m.setattr(catalog_mod, "SCHEMAS", {})
        bare = Catalog(path)
        bare.delete_model_version("m", 1)  # its benchmark rows go with it all the same
        bare.close()
    cat = Catalog(path)
    assert cat.schema_version() == SCHEMA_VERSION
    assert [k["id"] for k in access.list_keys(cat)] == ["k1"] and access.list_keys(cat)[0]["scopes"] == ["*"]
    assert store.benchmarks(cat, "m", 1) == [] and store.benchmarks(cat, "n", 1)[0]["device"] == {"id": "cpu"}
    owners = {r["owner"]: r for r in cat.select("SELECT * FROM schema_owners")}
    assert owners["benchmarks"]["model_tables"] == ["benchmarks"] and owners["serving.access"]["version"] == len(access.SCHEMA.migrations)


def test_an_owner_migrates_its_tables_and_its_rows_go_with_a_deleted_version(catalog_location: Path | str,
                                                                              monkeypatch: pytest.MonkeyPatch):
    import factory.catalog as catalog_mod

    path = catalog_location
    first = catalog_mod.Schema("test.notes", ("CREATE TABLE IF NOT EXISTS notes (model TEXT, version INTEGER, note TEXT)",),
                               model_tables=("notes",))
    monkeypatch.setitem(catalog_mod.SCHEMAS, first.owner, first)
    cat = Catalog(path)
    with cat.transaction():
        cat.insert("model_versions", {"name": "m", "version": 1, "task": "classification", "arch": "tiny_cls",
                                      "dataset": "d:v1", "path": "models/m/v1", "metrics": {}, "created_at": 1.0})
        cat.insert("notes", {"model": "m", "version": 1, "note": "kept until the version goes"})
    cat.close()
    second = catalog_mod.Schema(first.owner, (*first.migrations, "ALTER TABLE notes ADD COLUMN author TEXT"),
                                model_tables=("notes",))
    monkeypatch.setitem(catalog_mod.SCHEMAS, first.owner, second)
    cat = Catalog(path)  # the owner's second migration, once
    assert cat.select("SELECT note, author FROM notes") == [{"note": "kept until the version goes", "author": None}]
    cat.close()
    monkeypatch.delitem(catalog_mod.SCHEMAS, first.owner)  # a process that never imported the owner
    cat = Catalog(path)
    cat.delete_model_version("m", 1)
    assert cat.select("SELECT * FROM notes") == [] and cat.model_versions() == []


def test_a_workspace_catalog_is_copied_to_postgresql_with_every_row(trained_home: Path, tmp_path: Path,
                                                                    postgres_catalog: str,
                                                                    monkeypatch: pytest.MonkeyPatch):
    """`edgefactory catalog copy --to URL`, then the same workspace read through EDGEFACTORY_CATALOG: the same datasets,
    models, runs and keys; new versions and ids continue after the copied ones."""
    from serving import access
    from tests.conftest import copy_home, run_cli

    home = copy_home(trained_home, tmp_path / "ws")
    before = {kind: api_list(home) for kind, api_list in LISTS.items()}
    cat = Catalog(home / "catalog.sqlite")
    access.create_key(cat, "phone")
    cat.execute("CREATE TABLE notes_of_a_plugin (id INTEGER PRIMARY KEY AUTOINCREMENT, note REAL NOT NULL)")
    cat.execute("INSERT INTO notes_of_a_plugin (note) VALUES (0.5)")
    cat.close()
    _, out, _ = run_cli("catalog", "copy", "--to", postgres_catalog, home=home)
    assert out["rows"]["model_versions"] == 1 and out["rows"]["notes_of_a_plugin"] == 1 and "s3cret" not in out["to"]
    monkeypatch.setenv("EDGEFACTORY_CATALOG", postgres_catalog)
    assert {kind: api_list(home) for kind, api_list in LISTS.items()} == before
    shared = Catalog(postgres_catalog)
    assert [k["name"] for k in access.list_keys(shared)] == ["phone"]
    shared.execute("INSERT INTO notes_of_a_plugin (note) VALUES (0.25)")
    assert shared.select("SELECT id, note FROM notes_of_a_plugin ORDER BY id") == [{"id": 1, "note": 0.5}, {"id": 2, "note": 0.25}]
    shared.close()
    code, _, err = run_cli("catalog", "copy", "--to", postgres_catalog, home=home, check=False)
    assert code == 1 and "already holds" in err


LISTS = {"datasets": lambda home: api.list_datasets(home=home), "models": lambda home: api.list_models(home=home),
         "runs": lambda home: api.list_runs(home=home)}


def test_a_run_of_another_machine_is_not_taken_for_an_orphan(catalog_location: Path | str):
    """With a shared catalog a PID means nothing on another machine: only this machine's dead runs are marked."""
    from factory.training.run import mark_orphans

    cat = Catalog(catalog_location)
    for run_id, host in (("here", None), ("there", "gpu-node-7")):
        cat.create_run(run_id, "train", {}, pid=1)
        cat.update_run(run_id, status="running", pid=4_000_000, host=host)  # no such PID here
    assert mark_orphans(cat) == ["here"]
    assert cat.run("there")["status"] == "running" and cat.run("here")["status"] == "interrupted"
    cat.claim_run("there")
    assert cat.run("there")["host"] == socket.gethostname() and cat.run("there")["pid"] == os.getpid()
    cat.close()


def test_a_writer_that_waited_too_long_is_told_busy_and_its_connection_stays_usable(catalog_location: Path | str,
                                                                                     monkeypatch: pytest.MonkeyPatch):
    """Another process holds the write lock past the timeout: CATALOG_BUSY, and the next write on the same
    connection works once the lock is free (on PostgreSQL a failed lock wait leaves an aborted transaction behind
    unless it is rolled back)."""
    from factory import catalog_db
    from factory.catalog import CatalogBusy

    Catalog(catalog_location).close()
    monkeypatch.setattr(catalog_db, "BUSY_TIMEOUT_S", 0.5)
    cat = Catalog(catalog_location)
    if cat.dialect == "sqlite":
        holder = sqlite3.connect(catalog_location, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
    else:
        import psycopg

        holder = psycopg.connect(catalog_location, autocommit=True)
        holder.execute("SELECT pg_advisory_lock(%s)", (catalog_db.WRITE_LOCK,))
    with pytest.raises(CatalogBusy, match="locked by another process"):
        cat.create_run("r1", "train", {}, pid=1)
    holder.close()  # the lock goes with its connection
    cat.create_run("r1", "train", {}, pid=1)
    assert cat.run("r1")["status"] == "queued"
    cat.close()


def test_a_mistyped_url_is_refused_rather_than_made_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    for wrong in ("postgresql:/db.lan/edgefactory", "mysql://u@h/db"):
        with pytest.raises(CatalogError, match="neither a file nor a PostgreSQL URL"):
            Catalog(wrong)
    assert list(tmp_path.iterdir()) == []
