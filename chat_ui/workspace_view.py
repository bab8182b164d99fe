"""What the workspace holds, for the app's tabs: every dataset, model version, report and deployment, newest
first, whatever conversation made them (the demo's, the CLI's, another browser's). The conversation's current
one is marked; when the conversation has none yet, the newest model's confusion matrix and the newest deployment's
QR code are shown."""

from __future__ import annotations

import time
from pathlib import Path

from factory.api import session
from factory.i18n import tr
from factory.tasks import task_of


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))


def _marked(ref: str, current: str | None) -> str:
    return f"**{ref}** {tr('(this chat)')}" if ref == current else ref


def datasets(home: Path, current: str | None) -> str:
    with session(home) as (_, catalog):
        rows = sorted(catalog.datasets(), key=lambda r: r["created_at"], reverse=True)
    if not rows:
        return ""
    lines = [tr("**In this workspace**"), "", tr("| dataset | task | images | classes | imported |"), "|---|---|---|---|---|"]
    for r in rows:
        ref = f"{r['name']}:v{r['version']}"
        lines.append(f"| {_marked(ref, current)} | {tr(task_of(r).name)} | "
                     f"{r['stats'].get('num_images', '')} | {len(r['classes'])} | {_when(r['created_at'])} |")
    return "\n".join(lines)


def models(home: Path, current: str | None) -> tuple[str, str | None]:
    """The model versions as a table (metric, report link), and the confusion matrix to show: the current
    model's, else the newest one that has one."""
    with session(home) as (_, catalog):
        rows = sorted(catalog.model_versions(), key=lambda r: r["created_at"], reverse=True)
    if not rows:
        return "", None
    lines = [tr("**In this workspace**"), "", tr("| model | task | test metric | report | trained |"), "|---|---|---|---|---|"]
    matrix = None
    for r in rows:
        ref, task = f"{r['name']}:v{r['version']}", task_of(r)
        folder = Path(home) / "reports" / r["name"] / f"v{r['version']}"
        score = (r["metrics"] or {}).get(task.metric)
        report = (f"[{tr('report')}](/v1/models/{r['name']}/versions/{r['version']}/report)"
                  if (folder / "benchmark" / "report.html").is_file() else tr("not written yet"))
        shown = f"{tr(task.metric_label)} {score:.2%}" if score is not None else "–"
        lines.append(f"| {_marked(ref, current)} | {tr(task.name)} | {shown} | {report} | "
                     f"{_when(r['created_at'])} |")
        found = next(iter(sorted(folder.glob("eval-*/confusion_matrix.png"))), None)
        if found and (matrix is None or ref == current):
            matrix = str(found)
    return "\n".join(lines), matrix


def deployments(home: Path) -> tuple[str, str | None]:
    """The deployments as a table, and the newest QR code of the first one whose link is still live."""
    import importlib

    from serving import deployments as deps

    importlib.import_module("serving.access")  # the owner of the preview_links table: its schema is registered

    with session(home) as (_, catalog):
        rows = deps.list_deployments(catalog)
        live = {(link["model"], link["version"], link["id"]) for link in catalog.select(
            "SELECT * FROM preview_links WHERE revoked_at IS NULL AND expires_at > ?", (time.time(),))}
    if not rows:
        return "", None
    lines = [tr("**Deployed in this workspace**"), "", tr("| name | serves | endpoint |"), "|---|---|---|"]
    code = None
    for d in rows:
        lines.append(f"| {d['name']} | {d['name']}:v{d['version']} {d['target']} {d['precision']} | "
                     f"`/v1/models/{d['name']}/predict` |")
        pngs = sorted(Path(home, "serving", "qr").glob(f"{d['name']}-v{d['version']}-*.png"), key=lambda p: p.stat().st_mtime,
                      reverse=True)
        fresh = [p for p in pngs if (d["name"], d["version"], p.stem.rsplit("-", 1)[1]) in live]
        if code is None and fresh:
            code = str(fresh[0])
    return "\n".join(lines), code
