"""Deployments: which artifact of which model version the server loads and serves under the
model's name, and the pool of loaded runners (loaded at start-up, then on demand)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable

from factory.catalog import Catalog, Schema, register_schema
from factory.errors import ConfigError, FactoryError, NotFoundError
from factory.models import resolve_model
from factory.registry import suggest
from factory.workspace import Workspace
from targets.predictor import Predictor, load_predictor

SCHEMA = register_schema(Schema("serving.deployments", migrations=(
    # 1 (catalog schema 5 before the packages owned their tables: IF NOT EXISTS keeps those catalogs' rows)
    """
    CREATE TABLE IF NOT EXISTS deployments (
        name TEXT PRIMARY KEY, version INTEGER NOT NULL, target TEXT NOT NULL, precision TEXT NOT NULL,
        created_at REAL NOT NULL);
    """,)))


def deploy(ws: Workspace, catalog: Catalog, ref: str, target: str | None = None, precision: str | None = None) -> dict:
    """Serve `ref` under its model name (replacing an earlier deployment of that name). The artifact
    is loaded once here, so a deployment that cannot run fails now, not at the first request."""
    row = resolve_model(catalog, ref)
    predictor = load_predictor(ws, catalog, f"{row['name']}:v{row['version']}", target, precision)
    dep = {"name": row["name"], "version": row["version"], "target": predictor.target, "precision": predictor.precision,
           "created_at": time.time()}
    with catalog.transaction():
        catalog.execute("DELETE FROM deployments WHERE name = ?", (row["name"],))
        catalog.insert("deployments", dep)
    return dep


def undeploy(catalog: Catalog, name: str) -> dict:
    dep = get_deployment(catalog, name)
    with catalog.transaction():
        catalog.execute("DELETE FROM deployments WHERE name = ?", (name,))
    return {**dep, "undeployed": True}


def list_deployments(catalog: Catalog) -> list[dict]:
    return catalog.select("SELECT * FROM deployments ORDER BY name")


def get_deployment(catalog: Catalog, name: str) -> dict:
    rows = catalog.select("SELECT * FROM deployments WHERE name = ?", (name,))
    if not rows:
        names = [d["name"] for d in list_deployments(catalog)]
        raise NotFoundError(f"No deployed model {name!r}.{suggest(name, names)}",
                            fix=f"Deployed: {', '.join(names) or 'none'}. Deploy with `edgefactory deploy MODEL`.")
    return rows[0]


MAX_EXTRAS = 4  # loaded artifacts besides the deployments' own (other versions or runtimes clients asked for)


class ModelPool:
    """Loaded predictors keyed by (name, version, target, precision); thread-safe, loads each once."""

    def __init__(self, ws: Workspace, catalog_factory):
        self.ws, self.catalog_factory = ws, catalog_factory
        self._loaded: dict[tuple, Predictor] = {}
        self._failed: dict[str, dict] = {}
        self._lock = threading.Lock()  # guards the dicts only; each load holds its own key's lock
        self._key_locks: dict[tuple, threading.Lock] = {}
        self._kept: set[tuple] = set()  # deployments' own artifacts: never evicted
        self._extras: OrderedDict[tuple, None] = OrderedDict()  # the others, least recently used first

    def load_deployments(self, log=print) -> None:
        with self.catalog_factory() as catalog:
            deployments = list_deployments(catalog)
        for dep in deployments:
            try:
                self.get(dep["name"])
                log(f"loaded {dep['name']}:v{dep['version']} ({dep['target']} {dep['precision']})")
            except Exception as exc:  # one broken deployment must not stop the server
                self._failed[dep["name"]] = exc.to_dict() if isinstance(exc, FactoryError) else \
                    {"code": "LOAD_FAILED", "message": f"{type(exc).__name__}: {exc}", "fix": "Export or deploy it again."}
                log(f"could not load {dep['name']}: {exc}")

    def get(self, name: str, version: int | None = None, target: str | None = None) -> Predictor:
        if version is not None and version < 1:
            raise ConfigError(f"version must be 1 or more, got {version}.", fix="Leave it out for the deployed version.")
        with self.catalog_factory() as catalog:
            dep = get_deployment(catalog, name)
            version = dep["version"] if version is None else version
            deployed = target in (None, dep["target"]) and version == dep["version"]
        return self.load(name, version, target or dep["target"], dep["precision"] if deployed else None, extra=not deployed)

    def load(self, name: str, version: int, target: str | None = None, precision: str | None = None, *,
             extra: bool = True) -> Predictor:
        """The predictor of `name:vVERSION` (default target: the fastest here), loaded once. An `extra` (not a
        deployment's own artifact: another version or runtime a client asked for) is dropped again once MAX_EXTRAS
        others were used after it."""
        key = (name, version, target, precision)
        with self._lock:
            if key in self._loaded:
                return self._used(key, extra)
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # a slow load (a compile) blocks only requests for this same artifact
            with self._lock:
                have = self._loaded.get(key)
            if have is None:
                with self.catalog_factory() as catalog:
                    predictor = load_predictor(self.ws, catalog, f"{name}:v{version}", target, precision)
                with self._lock:
                    self._loaded[key] = predictor
        with self._lock:
            return self._used(key, extra)

    def _used(self, key: tuple, extra: bool) -> Predictor:
        """Mark `key` used (the caller holds the lock); evict the least recently used extras past MAX_EXTRAS."""
        predictor = self._loaded[key]
        if extra and key not in self._kept:
            self._extras.pop(key, None)
            self._extras[key] = None
            while len(self._extras) > MAX_EXTRAS:
                old, _ = self._extras.popitem(last=False)
                self._loaded.pop(old, None)
        elif not extra:
            self._kept.add(key)
            self._extras.pop(key, None)
        return predictor

    def loaded_names(self) -> set[str]:
        with self._lock:
            return {key[0] for key in self._loaded}

    def status(self, shown: Callable[[str], bool] = lambda name: True) -> dict:
        """What is loaded and what failed to, for the models `shown` accepts (those a key may use)."""
        with self._lock:
            return {"loaded": [f"{n}:v{v} {t} {p}" for n, v, t, p in self._loaded if shown(n)],
                    "failed": {n: why for n, why in self._failed.items() if shown(n)}}
