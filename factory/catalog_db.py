"""The catalog's two databases: SQLite (the embedded default, one file in the workspace) and PostgreSQL (a server that
several machines share: `EDGEFACTORY_CATALOG=postgresql://user:password@host:5432/db`).

Both run the same SQL. Statements are written for SQLite (`?` placeholders, `REAL`, `INTEGER PRIMARY KEY
AUTOINCREMENT`); PostgreSQL's connection rewrites those few spellings and nothing else, so the schema a user reads in
the migrations is the schema on either. Writers are serialised the same way on both: SQLite's `BEGIN IMMEDIATE`
takes the database's write lock, PostgreSQL's transaction takes one advisory lock first.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any, Iterable, Sequence
from urllib.parse import urlsplit, urlunsplit

from factory.errors import CatalogError

BUSY_TIMEOUT_S = 30.0
WRITE_LOCK = 0x6564_6765  # the advisory lock every PostgreSQL write transaction takes first ("edge")


class DatabaseError(CatalogError):
    """A statement the database refused or could not run."""


class CatalogBusy(DatabaseError):
    """Another process held the catalog's write lock for longer than BUSY_TIMEOUT_S."""

    code = "CATALOG_BUSY"


def is_url(location: str | Path) -> bool:
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def shown(location: str | Path) -> str:
    """The location as printed in messages: a URL without its password."""
    if not is_url(location):
        return str(location)
    parts = urlsplit(str(location))
    netloc = parts.netloc.rsplit("@", 1)
    if len(netloc) == 2 and ":" in netloc[0]:
        netloc[0] = netloc[0].split(":", 1)[0] + ":***"
    return urlunsplit(parts._replace(netloc="@".join(netloc)))


def _said(exc: Exception) -> str:
    """A driver's message on one line, ending with a full stop (psycopg's span lines, with tabs)."""
    text = " ".join(str(exc).split())
    return text if text.endswith((".", "?", "!")) else text + "."


def connect(location: str | Path) -> "SQLite | PostgreSQL":
    if is_url(location):
        return PostgreSQL(str(location))
    if isinstance(location, str) and re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:/", location):  # a URL, or one mistyped
        raise CatalogError(f"EDGEFACTORY_CATALOG={shown(location)} is neither a file nor a PostgreSQL URL.",
                           fix="Use postgresql://USER:PASSWORD@HOST:5432/DATABASE, or unset it for the workspace's "
                               "catalog.sqlite.")
    return SQLite(Path(location))


class SQLite:
    """catalog.sqlite in WAL mode with a busy timeout, so two processes share one workspace."""

    name = "sqlite"

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.location = path
        self.conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        try:
            self.conn.row_factory = sqlite3.Row
            self.conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            self.conn.close()
            raise self.error(exc) from exc

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self.error(exc) from exc

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            self.conn.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise self.error(exc) from exc

    def ddl(self, script: str) -> str:
        return script

    def begin(self) -> None:
        self.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        self.execute("ROLLBACK")

    def schema_version(self) -> int:
        return int(self.execute("PRAGMA user_version")[0][0])

    def set_schema_version(self, version: int) -> None:
        self.execute(f"PRAGMA user_version = {int(version)}")

    def has_table(self, table: str) -> bool:
        return table in self.tables()

    def tables(self) -> dict[str, list[str]]:
        """Each table's CREATE statements (its own, then its indexes'), as this database stores them."""
        rows = self.execute("SELECT type, tbl_name, sql FROM sqlite_master WHERE type IN ('table', 'index') AND sql IS "
                            "NOT NULL AND tbl_name NOT LIKE 'sqlite_%' ORDER BY type DESC")
        out: dict[str, list[str]] = {}
        for kind, table, sql in rows:
            out.setdefault(table, []).append(sql if kind == "table" else sql.replace("CREATE INDEX", "CREATE INDEX IF NOT EXISTS", 1))
        return out

    def identities_follow(self, table: str) -> None:
        """After rows were inserted with their ids: SQLite's AUTOINCREMENT counter follows by itself."""

    def error(self, exc: sqlite3.Error) -> CatalogError:
        text = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
            return CatalogBusy(f"The catalog {self.location} is locked by another process writing to it: {text}.",
                               fix="Try again in a moment.")
        return DatabaseError(f"The catalog {self.location} failed: {text}.",
                            fix="Check that it is an edgefactory catalog; restore it from a backup if it is damaged.")

    def close(self) -> None:
        self.conn.close()


# SQLite spellings PostgreSQL reads differently: REAL is 4 bytes there (a timestamp would lose its seconds)
# and INTEGER (SQLite's has 8 bytes, PostgreSQL's 4: an index file's size in bytes would not fit)
_DDL = [(re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b", re.I), "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
        (re.compile(r"\bINTEGER\b", re.I), "BIGINT"), (re.compile(r"\bREAL\b", re.I), "DOUBLE PRECISION")]


class PostgreSQL:
    """One connection to a PostgreSQL database (psycopg 3, autocommit outside `begin()`)."""

    name = "postgresql"

    def __init__(self, url: str):
        try:
            import psycopg
            from psycopg.rows import dict_row
        except ImportError as exc:
            raise CatalogError("EDGEFACTORY_CATALOG names a PostgreSQL database, but psycopg is not installed.",
                               fix="pip install 'psycopg[binary]' (scripts/setup installs it).") from exc
        self.psycopg, self.row_factory = psycopg, dict_row
        self.url, self.location = url, shown(url)
        self.in_transaction = False
        self._connect()

    def _connect(self) -> None:
        try:
            self.conn = self.psycopg.connect(self.url, autocommit=True, row_factory=self.row_factory, connect_timeout=10,
                                             options=f"-c lock_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        except self.psycopg.Error as exc:
            raise CatalogError(f"Cannot connect to the catalog at {self.location}: {_said(exc)}",
                               fix="Start the PostgreSQL server and check the URL's host, port, user, password and "
                                   "database (EDGEFACTORY_CATALOG), or unset it for the workspace's catalog.sqlite.") from exc

    def _usable(self) -> None:
        """A connection the server dropped (a restart, a network cut) is made again between transactions; within one
        the transaction's error stands."""
        if self.conn.broken and not self.in_transaction:
            self.conn.close()
            self._connect()

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("%", "%%").replace("?", "%s")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        self._usable()
        try:
            cursor = self.conn.execute(self._sql(sql), tuple(params))
            return cursor.fetchall() if cursor.description else []
        except self.psycopg.Error as exc:
            raise self.error(exc) from exc

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._usable()
        try:
            with self.conn.cursor() as cursor:
                cursor.executemany(self._sql(sql), [tuple(r) for r in rows])
        except self.psycopg.Error as exc:
            raise self.error(exc) from exc

    def ddl(self, script: str) -> str:
        for pattern, replacement in _DDL:
            script = pattern.sub(replacement, script)
        return script

    def begin(self) -> None:
        self.execute("BEGIN")
        self.in_transaction = True
        self.execute("SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK,))

    def commit(self) -> None:
        try:
            self.execute("COMMIT")
        finally:
            self.in_transaction = False

    def rollback(self) -> None:
        self.in_transaction = False
        if not self.conn.broken:
            self.execute("ROLLBACK")

    def schema_version(self) -> int:
        if not self.has_table("catalog_schema"):
            return 0
        rows = self.execute("SELECT version FROM catalog_schema")
        return int(rows[0]["version"]) if rows else 0

    def set_schema_version(self, version: int) -> None:
        """PostgreSQL has no user_version: a one-row table holds it (call inside `begin()`)."""
        self.execute("CREATE TABLE IF NOT EXISTS catalog_schema (version INTEGER NOT NULL)")
        self.execute("DELETE FROM catalog_schema")
        self.execute("INSERT INTO catalog_schema (version) VALUES (?)", (int(version),))

    def has_table(self, table: str) -> bool:
        return table in self.tables()

    def tables(self) -> dict[str, list[str]]:
        """The tables of this database's schema (their statements are not kept by PostgreSQL: empty lists)."""
        rows = self.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
                            "AND table_type = 'BASE TABLE'")
        return {r["table_name"]: [] for r in rows}

    def identities_follow(self, table: str) -> None:
        """After rows were inserted with their ids: each identity column's next value comes after the largest."""
        for row in self.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = "
                                "current_schema() AND table_name = ? AND is_identity = 'YES'", (table,)):
            column = row["column_name"]
            self.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                         f"(SELECT COALESCE(MAX({column}), 0) + 1 FROM {table}), false)")

    def error(self, exc: Exception) -> CatalogError:
        errors = self.psycopg.errors
        if isinstance(exc, (errors.LockNotAvailable, errors.QueryCanceled, errors.SerializationFailure)):
            return CatalogBusy(f"The catalog at {self.location} is locked by another process writing to it: "
                               f"{_said(exc)}", fix="Try again in a moment.")
        if isinstance(exc, self.psycopg.OperationalError):
            return DatabaseError(f"The catalog at {self.location} cannot be reached: {_said(exc)}",
                                fix="Check that the PostgreSQL server is running and reachable from this machine.")
        return DatabaseError(f"The catalog at {self.location} failed: {_said(exc)}",
                            fix="Check that the database is an edgefactory catalog.")

    def close(self) -> None:
        self.conn.close()
