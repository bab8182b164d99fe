"""The serving API: the functions the CLI's `deploy`, `undeploy`, `keys`, `qr` and `serve`
commands and the chat assistant call."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Callable

from factory.api import Home, session
from factory.errors import BudgetError, ConfigError
from factory.models import read_metadata, resolve_model
from factory.tasks import task_of
from factory.workspace import Workspace
from serving import access, deployments, listeners, qr
from serving.access import DEFAULT_LINK_HOURS

DEFAULT_PORT = 8000


def deploy(ref: str, *, target: str | None = None, precision: str | None = None, home: Home = None) -> dict:
    """Serve model `NAME[:vN]` under NAME with `target`/`precision` (default: the fastest artifact
    here: openvino int8, openvino fp32, onnxruntime fp32, else the eager model). The artifact is
    loaded once now, so a deployment that cannot run is refused here.
    Returns: {name, version, target, precision, endpoint, pai_endpoint}. Raises: NotFoundError, UnsupportedSpecError."""
    with session(home) as (ws, catalog):
        dep = deployments.deploy(ws, catalog, ref, target, precision)
    return {**dep, "endpoint": f"/v1/models/{dep['name']}/predict", "pai_endpoint": f"/api/predict/{dep['name']}"}


def undeploy(name: str, *, home: Home = None) -> dict:
    with session(home) as (_, catalog):
        return deployments.undeploy(catalog, name)


def list_deployments(*, home: Home = None) -> list[dict]:
    with session(home) as (_, catalog):
        return deployments.list_deployments(catalog)


def create_key(name: str, *, models: list[str] | None = None, home: Home = None) -> dict:
    """A new API key (the secret is returned once), scoped to `models` (default: all)."""
    with session(home) as (_, catalog):
        return access.create_key(catalog, name, models)


def list_keys(*, home: Home = None) -> list[dict]:
    with session(home) as (_, catalog):
        return access.list_keys(catalog)


def revoke_key(key_id: str, *, home: Home = None) -> dict:
    with session(home) as (_, catalog):
        return access.revoke_key(catalog, key_id)


def _web_artifact(ref: str, home: Home, log: Callable[[str], None]) -> tuple[str, str]:
    """The web artifact's precision, exporting it (INT8, else FP32 when INT8 breaks the budget) if missing."""
    from targets import api as targets_api

    with session(home) as (_, catalog):
        row = resolve_model(catalog, ref)
        have = {a["precision"] for a in catalog.artifacts(row["name"], row["version"]) if a["target"] == "web"}
    for precision in ("int8", "fp32"):
        if precision in have:
            return f"{row['name']}:v{row['version']}", precision
    try:
        log("no web artifact yet: exporting web int8 ...")
        targets_api.export(f"{row['name']}:v{row['version']}", "web", precision="int8", home=home, log=log)
        return f"{row['name']}:v{row['version']}", "int8"
    except BudgetError as exc:
        log(f"web int8 refused ({exc.message}); exporting web fp32")
        targets_api.export(f"{row['name']}:v{row['version']}", "web", precision="fp32", home=home, log=log)
        return f"{row['name']}:v{row['version']}", "fp32"


def preview_link(ref: str, *, base_url: str | None = None, port: int = listeners.PHONE_PORT, https: bool = True,
                 hours: float = DEFAULT_LINK_HOURS, out_dir: str | Path | None = None, home: Home = None,
                 log: Callable[[str], None] | None = None, reuse: bool = False) -> dict:
    """A signed, expiring phone-preview link for model `NAME[:vN]` and its QR code.

    The URL is `base_url`, else the phone listener of the server running on this workspace, else the one
    `edgefactory serve` will open (https://<LAN address>:<port>), then /p/<token>; `warning` says why a phone
    cannot open it now (no server up, or no LAN address) and what to do. Exports the `web` artifact first if missing.
    `reuse`: give the live link made earlier for this artifact, if it is valid for at least half of `hours` more
    (what `serve` does at each start: a QR code already printed or scanned keeps working), instead of a new one.
    Returns: {url, png, svg, terminal, expires_at, link_id, model, version, precision, metrics, warning}.
    """
    log = log or (lambda line: None)
    ref, precision = _web_artifact(ref, home, log)
    with session(home) as (ws, catalog):
        row = resolve_model(catalog, ref)
        meta = read_metadata(ws, row)
        link = (reuse and access.live_link(ws, catalog, row["name"], row["version"], "web", precision, hours / 2)) or \
            access.create_link(ws, catalog, row["name"], row["version"], "web", precision, hours)
    if base_url and not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"--base-url {base_url!r} must start with http:// or https://.", fix="e.g. https://192.168.1.20:8443")
    base, warning = base_url, None
    if not base:
        base, warning = phone_base(ws, port, https)
    base = base.rstrip("/")
    url = f"{base}/p/{link['token']}"
    task = task_of(row)
    metric, label = task.metric, task.metric_label
    accuracy = (row.get("metrics") or {}).get(metric)
    created = datetime.datetime.fromtimestamp(row["created_at"]).strftime("%Y-%m-%d %H:%M")
    lines = [f"{row['name']}:v{row['version']}", f"{meta.get('arch', '')} · web {precision}",
             f"{label} {accuracy:.2%}" if accuracy is not None else f"{label} –", f"created {created}",
             f"link expires {datetime.datetime.fromtimestamp(link['expires_at']).strftime('%Y-%m-%d %H:%M')}"]
    folder = Path(out_dir) if out_dir else ws.home / "serving" / "qr"
    folder.mkdir(parents=True, exist_ok=True)
    png, svg = folder / f"{row['name']}-v{row['version']}-{link['id']}.png", folder / f"{row['name']}-v{row['version']}-{link['id']}.svg"
    png.write_bytes(qr.card_png(url, lines))
    svg.write_bytes(qr.svg(url))
    return {"url": url, "png": str(png), "svg": str(svg), "terminal": qr.terminal(url), "link_id": link["id"],
            "expires_at": link["expires_at"], "model": row["name"], "version": row["version"], "precision": precision,
            "metrics": row.get("metrics"), "created_at": row["created_at"], "caption": lines, "warning": warning}


def phone_base(ws: Workspace, port: int = listeners.PHONE_PORT, https: bool = True) -> tuple[str, str | None]:
    """Where phones reach this workspace's previews: the running server's phone listener; else the one `serve`
    opens by default, with a warning that says it is not up yet. A warning also when no listener reaches phones."""
    server = listeners.running(ws)
    if server and server.get("phone"):
        return server["phone"], None
    lan = qr.lan_ip()
    base = f"{'https' if https else 'http'}://{lan}:{port}"
    if lan.startswith("127."):
        return base, "This machine has no LAN address, so no phone can reach it: join the phone's Wi-Fi, then make the code again."
    if server:
        return base, (f"The server running now ({server['api']}) has no listener phones reach: restart it with "
                      f"`edgefactory serve` (phones: {base}).")
    return base, f"No server is running: start `edgefactory serve` and this code opens (phones: {base})."


def list_links(*, home: Home = None) -> list[dict]:
    """Every preview link (never its token): id, model, version, target, precision, created_at, expires_at,
    revoked_at."""
    with session(home) as (_, catalog):
        return access.list_links(catalog)


def revoke_link(link_id: str, *, home: Home = None) -> dict:
    with session(home) as (_, catalog):
        return access.revoke_link(catalog, link_id)
