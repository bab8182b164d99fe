"""Who may call the server: API keys (stored hashed, shown once, scoped to models, revocable) and
phone-preview links (HMAC-signed, expiring, revocable tokens naming a model version's artifact)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import tempfile
import threading
import time
from typing import Callable

from factory.catalog import Catalog, CatalogBusy, Schema, register_schema
from factory.errors import ConfigError, FactoryError, NotFoundError
from factory.workspace import Workspace

KEY_PREFIX = "ef_"
DEFAULT_LINK_HOURS = 72.0
SCHEMA = register_schema(Schema("serving.access", migrations=(
    # 1 (catalog schema 5 before the packages owned their tables: IF NOT EXISTS keeps those catalogs' rows)
    """
    CREATE TABLE IF NOT EXISTS api_keys (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, hash TEXT NOT NULL, scopes TEXT NOT NULL,
        created_at REAL NOT NULL, revoked_at REAL, last_used_at REAL);
    CREATE TABLE IF NOT EXISTS preview_links (
        id TEXT PRIMARY KEY, model TEXT NOT NULL, version INTEGER NOT NULL, target TEXT NOT NULL,
        precision TEXT NOT NULL, created_at REAL NOT NULL, expires_at REAL NOT NULL, revoked_at REAL);
    """,
    # 2: which key started each REST job (a key reads its own jobs; a key for every model reads all)
    """
    CREATE TABLE job_owners (job_id TEXT PRIMARY KEY, key_id TEXT NOT NULL);
    """), json_columns=frozenset({"scopes"})))


class AuthError(FactoryError):
    """Missing, wrong, revoked or out-of-scope credentials (HTTP 401 / 403)."""

    code = "UNAUTHORIZED"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()  # keys are 32 random bytes: a fast hash is enough


def create_key(catalog: Catalog, name: str, scopes: list[str] | None = None) -> dict:
    """A new key; the secret is in the result only (the catalog keeps its hash)."""
    if not name.strip():
        raise ConfigError("A key needs a name.", fix="Pass --name, e.g. --name phone-app.")
    key_id = secrets.token_hex(4)
    secret = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    row = {"id": key_id, "name": name, "hash": _digest(secret), "scopes": sorted(scopes or ["*"]), "created_at": time.time()}
    with catalog.transaction():
        catalog.insert("api_keys", row)
    return {"id": key_id, "name": name, "key": secret, "scopes": row["scopes"],
            "note": "Shown once: store it now. Send it as `Authorization: Bearer <key>`."}


def list_keys(catalog: Catalog) -> list[dict]:
    return [{k: r[k] for k in ("id", "name", "scopes", "created_at", "revoked_at", "last_used_at")}
            for r in catalog.select("SELECT * FROM api_keys ORDER BY created_at")]


def revoke_key(catalog: Catalog, key_id: str) -> dict:
    rows = catalog.select("SELECT * FROM api_keys WHERE id = ?", (key_id,))
    if not rows:
        raise NotFoundError(f"No API key {key_id!r}.", fix="List keys with `edgefactory keys list`.")
    with catalog.transaction():
        catalog.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (time.time(), key_id))
    return {"id": key_id, "revoked": True}


def active_keys(catalog: Catalog) -> int:
    return catalog.select("SELECT COUNT(*) AS n FROM api_keys WHERE revoked_at IS NULL")[0]["n"]


class KeyUse:
    """When each key was last used, kept in memory and written in one transaction now and then (`flush`, from a
    worker thread): a request never writes the catalog, so another process holding its write lock stalls no one."""

    def __init__(self):
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def touch(self, key_id: str) -> None:
        with self._lock:
            self._seen[key_id] = time.time()

    def flush(self, catalog: Catalog) -> int:
        """Write the uses seen since the last flush; kept for the next one when the catalog is busy."""
        with self._lock:
            seen, self._seen = self._seen, {}
        if not seen:
            return 0
        try:
            with catalog.transaction():
                catalog.executemany("UPDATE api_keys SET last_used_at = ? WHERE id = ? "
                                    "AND (last_used_at IS NULL OR last_used_at < ?)", [(t, k, t) for k, t in seen.items()])
        except CatalogBusy:  # locked by another process: try again next time
            with self._lock:
                for k, t in seen.items():
                    self._seen[k] = max(t, self._seen.get(k, 0))
            return 0
        return len(seen)


def allows(key: dict | None, scope: str) -> bool:
    """Whether `key` (a key row; None: no keys, a loopback client) may use `scope` (a model name, `index:NAME`,
    `index:NAME:write`, or `*` for everything). A scope grants itself and what it extends: "index:NAME:write" may
    also search index NAME ("index:NAME")."""
    if key is None or "*" in key["scopes"]:
        return True
    return scope != "*" and any(s == scope or s.startswith(scope + ":") for s in key["scopes"])


def check_key(catalog: Catalog, presented: str | None, model: str | None, touch: Callable[[str], None]) -> dict:
    """The key row for `presented` if it is valid for `model` (None: any model); raises AuthError. `touch` records
    the use (the server's KeyUse, which writes it later: never inside a request)."""
    if not presented:
        raise AuthError("This server needs an API key.", fix="Send `Authorization: Bearer <key>` (create one with "
                        "`edgefactory keys create --name NAME`).")
    rows = catalog.select("SELECT * FROM api_keys WHERE hash = ?", (_digest(presented.strip()),))
    if not rows or rows[0]["revoked_at"] is not None:
        raise AuthError("The API key is wrong or revoked.", fix="Check the key, or create a new one with "
                        "`edgefactory keys create --name NAME`.")
    row = rows[0]
    if model is not None and not allows(row, model):
        raise AuthError(f"The API key {row['id']} is not allowed to use model {model!r} (scopes: {', '.join(row['scopes'])}).",
                        fix="Use a key created with --models including this model.", code="FORBIDDEN")
    touch(row["id"])
    return row


# -- preview links --------------------------------------------------------------------------------
def signing_key(ws: Workspace) -> bytes:
    """The workspace's HMAC secret (created on first use, readable by its owner only)."""
    path = ws.home / "serving" / "link-secret"
    if not path.is_file():  # written aside, then linked in: two processes at once both read the one that won
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, aside = tempfile.mkstemp(dir=path.parent, prefix=".link-secret-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
            os.link(aside, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(aside)
    return path.read_bytes()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def create_link(ws: Workspace, catalog: Catalog, model: str, version: int, target: str, precision: str,
                hours: float = DEFAULT_LINK_HOURS) -> dict:
    if not 0 < hours <= 24 * 365:
        raise ConfigError(f"A link must expire within a year; {hours} hours was asked.", fix="Pass --hours between 1 and 8760.")
    now = time.time()
    row = {"id": secrets.token_hex(6), "model": model, "version": version, "target": target, "precision": precision,
           "created_at": now, "expires_at": now + hours * 3600}
    with catalog.transaction():
        catalog.insert("preview_links", row)
    return {**row, "token": _token(ws, row)}


def live_link(ws: Workspace, catalog: Catalog, model: str, version: int, target: str, precision: str,
              min_hours: float) -> dict | None:
    """The newest link to this artifact that is not revoked and is valid for `min_hours` more, with its token
    (the same one as when it was made: the token is signed, not stored); None when there is none."""
    rows = catalog.select("SELECT * FROM preview_links WHERE model = ? AND version = ? AND target = ? AND precision = ? "
                          "AND revoked_at IS NULL AND expires_at > ? ORDER BY created_at DESC LIMIT 1",
                          (model, version, target, precision, time.time() + min_hours * 3600))
    return {**rows[0], "token": _token(ws, rows[0])} if rows else None


def _token(ws: Workspace, row: dict) -> str:
    payload = _b64(json.dumps({"i": row["id"], "e": int(row["expires_at"])}, separators=(",", ":")).encode())
    return f"{payload}.{_sign(ws, payload)}"


def _sign(ws: Workspace, payload: str) -> str:
    return _b64(hmac.new(signing_key(ws), payload.encode(), hashlib.sha256).digest()[:18])


def check_link(ws: Workspace, catalog: Catalog, token: str) -> dict:
    """The preview-link row a token names, if the signature holds and it is neither expired nor revoked."""
    bad = AuthError("This preview link is not valid.", fix="Scan a fresh QR code (`edgefactory qr MODEL`).",
                    code="LINK_INVALID")
    try:
        payload, signature = token.split(".")
        if not hmac.compare_digest(signature.encode("utf-8", "replace"), _sign(ws, payload).encode()):
            raise bad
        claims = json.loads(_unb64(payload))
    except (ValueError, json.JSONDecodeError, UnicodeError, AttributeError):
        raise bad from None
    rows = catalog.select("SELECT * FROM preview_links WHERE id = ?", (claims.get("i"),))
    if not rows:
        raise bad
    row = rows[0]
    if row["revoked_at"] is not None:
        raise AuthError("This preview link was revoked.", fix="Ask for a new QR code.", code="LINK_REVOKED")
    if time.time() > row["expires_at"]:
        raise AuthError("This preview link has expired.", fix="Create a new one with `edgefactory qr MODEL`.",
                        code="LINK_EXPIRED")
    return row


def revoke_link(catalog: Catalog, link_id: str) -> dict:
    if not catalog.select("SELECT id FROM preview_links WHERE id = ?", (link_id,)):
        raise NotFoundError(f"No preview link {link_id!r}.", fix="See `edgefactory qr --list`.")
    with catalog.transaction():
        catalog.execute("UPDATE preview_links SET revoked_at = ? WHERE id = ?", (time.time(), link_id))
    return {"id": link_id, "revoked": True}


def list_links(catalog: Catalog) -> list[dict]:
    return catalog.select("SELECT * FROM preview_links ORDER BY created_at")
