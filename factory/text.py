"""Plain-text rendering shared by the command line and the tasks' own words."""

from __future__ import annotations


def table(rows: list[dict], columns: list[str]) -> list[str]:
    """Rows as left-aligned columns (a header line first); '(none)' when there are no rows."""
    if not rows:
        return ["(none)"]
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    return ["  ".join(c.ljust(w) for c, w in zip(columns, widths)),
            *("  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells)]
