"""References to catalogued things: `name` or `name:vN`, resolved against the catalog (latest version when
none is given), with a suggestion for a mistyped name."""

from __future__ import annotations

import re
from typing import Any

from factory.catalog import Catalog
from factory.errors import ConfigError, NotFoundError
from factory.registry import suggest

REF_RE = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9_.-]*?)(?::v?(?P<version>\d+))?$")


def parse_ref(ref: str) -> tuple[str, int | None]:
    """'name' -> (name, None); 'name:v3' or 'name:3' -> (name, 3)."""
    m = REF_RE.match(ref.strip())
    if not m:
        raise ConfigError(f"{ref!r} is not a valid reference.", fix="Write NAME or NAME:vN, e.g. digits:v1.")
    return m["name"], int(m["version"]) if m["version"] else None


def resolve(rows_for: Any, all_names: list[str], ref: str, kind: str) -> dict:
    """Pick the row for `ref` from `rows_for(name)` (latest when no version is given)."""
    name, version = parse_ref(ref)
    rows = rows_for(name)
    if not rows:
        raise NotFoundError(f"No {kind} named {name!r}.{suggest(name, all_names)}",
                            fix=f"List them with `edgefactory {'dataset' if kind == 'dataset' else 'models'} list`.")
    if version is None:
        return rows[-1]
    for row in rows:
        if row["version"] == version:
            return row
    raise NotFoundError(f"{kind.capitalize()} {name!r} has no version v{version}.",
                        fix=f"Existing versions: {', '.join('v%d' % r['version'] for r in rows)}.")


def dataset_row_for(catalog: Catalog, ref: str) -> dict:
    names = sorted({r["name"] for r in catalog.datasets()})
    return resolve(catalog.datasets, names, ref, "dataset")
