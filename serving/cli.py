"""CLI commands of serving/ (`serve`, `deploy`, `undeploy`, `keys`, `qr`), registered through the
`edgefactory.cli` entry point."""

from __future__ import annotations

import argparse
import time
import sys
from typing import Callable

from serving import api, listeners


def _err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def cmd_serve(a: argparse.Namespace) -> dict:
    """The API and the chat on --host:--port; phone previews over HTTPS on every interface (--phone-port), unless
    the API's own listener already serves the LAN over HTTPS. Prints each deployment's QR code at start. With
    --workers N, N processes serve the same ports (serving.workers)."""
    import asyncio

    from factory.errors import ConfigError
    from factory.workspace import Workspace
    from serving import qr, tls

    if a.workers < 1:
        raise ConfigError(f"--workers must be 1 or more, got {a.workers}.", fix="Use --workers 2 for two server processes.")
    ws = Workspace.open(a.home)
    lan = qr.lan_ip()
    on_lan = a.host in ("0.0.0.0", "::")
    cert = tls.ensure_certificate(ws.home / "serving" / "tls", lan) if a.https or a.phone_port else None
    tls_files = {"ssl_certfile": cert["cert"], "ssl_keyfile": cert["key"]} if cert else {}
    scheme = "https" if a.https else "http"
    api_url = f"{scheme}://{lan if on_lan else a.host}:{a.port}"
    if on_lan and a.https:
        phone_url = api_url  # the API's listener reaches phones itself
    elif a.phone_port and not _port_free(a.phone_port):
        _err(f"port {a.phone_port} is taken (another `edgefactory serve`?): phones cannot reach this server; "
             "pass another --phone-port")
        phone_url = None
    else:
        phone_url = f"https://{lan}:{a.phone_port}" if a.phone_port else None
    phone_listener = bool(phone_url) and phone_url != api_url
    if a.workers > 1:
        _err(f"serving the API on {api_url} with {a.workers} worker processes  (API docs: /docs; the chat needs "
             "--workers 1: its sessions live in one process)")
    else:
        _err(f"serving the API and the chat on {api_url}  (API docs: /docs)")
    if phone_url and lan.startswith("127."):
        _err("no LAN address here (no network?): phones cannot reach this machine")
        phone_url = None
    if phone_url:
        _err(f"phones: {phone_url}/p/...  (HTTPS, self-signed certificate, SHA-256 {cert['sha256']}; a phone warns once:"
             " check the fingerprint, then accept it)")
    listeners.record(ws, api_url, phone_url, cert["sha256"] if cert else None)
    if phone_url:
        _print_codes(ws.home, phone_url)
    try:
        if a.workers > 1:
            from serving import workers

            sockets = [workers.bind(a.host, a.port)] + ([workers.bind("0.0.0.0", a.phone_port)] if phone_listener else [])
            workers.serve(a.workers, sockets, {"home": str(ws.home), "api_url": api_url, "https": a.https,
                                               "tls": tls_files})
        else:
            asyncio.run(listeners.serve_all(_servers(ws, a, api_url, tls_files, phone_listener)))
    finally:
        listeners.clear(ws)
    return {"stopped": True}


def _servers(ws, a: argparse.Namespace, api_url: str, tls_files: dict, phone_listener: bool) -> list:
    """The uvicorn servers of a one-process `serve`: the app on --host:--port, and the phone listener."""
    import uvicorn

    from serving.app import UVICORN_OPTIONS, create_app

    app = create_app(ws.home, log=_err, base_url=api_url)
    servers = [uvicorn.Server(uvicorn.Config(app, host=a.host, port=a.port, **UVICORN_OPTIONS,
                                             **(tls_files if a.https else {})))]
    if phone_listener:
        servers.append(uvicorn.Server(uvicorn.Config(listeners.PhoneOnly(app, api_url), host="0.0.0.0", port=a.phone_port,
                                                     lifespan="off", **UVICORN_OPTIONS, **tls_files)))
    return servers


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _print_codes(home, phone_url: str) -> None:
    """Each deployment's QR code in the terminal, so a phone can scan it right away."""
    from factory.errors import FactoryError

    for dep in api.list_deployments(home=home):
        try:
            out = api.preview_link(dep["name"], base_url=phone_url, home=home, reuse=True)
        except FactoryError as exc:  # e.g. no web artifact and the export failed: the server still starts
            _err(f"no QR code for {dep['name']}: {exc}")
            continue
        _err(out["terminal"])
        _err(f"{dep['name']}:v{out['version']}  {out['url']}")


def cmd_deploy(a: argparse.Namespace) -> dict:
    out = api.deploy(a.ref, target=a.target, precision=a.precision, home=a.home)
    if not a.json:
        print(f"{out['name']} -> {out['name']}:v{out['version']} ({out['target']} {out['precision']})")
        print(f"POST {out['endpoint']}  (PAI-EAS: POST {out['pai_endpoint']})")
    return out


def cmd_undeploy(a: argparse.Namespace) -> dict:
    return api.undeploy(a.name, home=a.home)


def cmd_keys_create(a: argparse.Namespace) -> dict:
    out = api.create_key(a.name, models=a.models.split(",") if a.models else None, home=a.home)
    if not a.json:
        print(out["key"])
        _err(out["note"])
    return out


def cmd_keys_list(a: argparse.Namespace) -> dict:
    rows = api.list_keys(home=a.home)
    if not a.json:
        for r in rows:
            state = "revoked" if r["revoked_at"] else "active"
            print(f"{r['id']}  {r['name']:20s} {state:8s} models: {','.join(r['scopes'])}")
    return {"keys": rows}


def cmd_keys_revoke(a: argparse.Namespace) -> dict:
    return api.revoke_key(a.id, home=a.home)


def cmd_qr(a: argparse.Namespace) -> dict:
    if a.revoke:
        return api.revoke_link(a.revoke, home=a.home)
    if a.list:
        rows = api.list_links(home=a.home)
        if not a.json:
            now = time.time()
            if not rows:
                print("no preview links yet: make one with `edgefactory qr MODEL`")
            for r in rows:
                state = "revoked" if r["revoked_at"] else "expired" if r["expires_at"] < now else "active"
                print(f"{r['id']}  {r['model']}:v{r['version']}  {r['target']} {r['precision']}  {state:8s} "
                      f"expires {time.strftime('%Y-%m-%d %H:%M', time.localtime(r['expires_at']))}")
        return {"links": rows}
    if not a.ref:
        raise SystemExit("edgefactory qr: give MODEL (or --list, or --revoke LINK_ID)")
    out = api.preview_link(a.ref, base_url=a.base_url, port=a.port, https=not a.http, hours=a.hours, home=a.home,
                           log=None if a.quiet else _err)
    if not a.json:
        code_lines = out["terminal"].splitlines()
        caption = out["caption"] + ["", "scan with the phone's camera", f"link id {out['link_id']} (revoke: edgefactory qr --revoke ID)"]
        for i, line in enumerate(code_lines):
            print(line + ("   " + caption[i - 2] if 2 <= i < len(caption) + 2 else ""))
        print(out["url"])
        print(f"png: {out['png']}\nsvg: {out['svg']}")
        if out["warning"]:
            _err(f"note: {out['warning']}")
    return {k: v for k, v in out.items() if k != "caption"}


def register(sub: argparse._SubParsersAction, add: Callable[..., argparse.ArgumentParser]) -> None:
    sp = add(sub, "serve", cmd_serve, "run the REST server (API, PAI-EAS route, phone previews)")
    sp.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve the LAN (phones)")
    sp.add_argument("--port", type=int, default=api.DEFAULT_PORT)
    sp.add_argument("--https", action="store_true", help="self-signed HTTPS for the API too (with --host 0.0.0.0 it "
                    "serves phones itself)")
    sp.add_argument("--phone-port", type=int, default=listeners.PHONE_PORT,
                    help="HTTPS port on every interface for phone previews only (0: none)")
    sp.add_argument("--workers", type=int, default=1, help="server processes on the same ports (default 1); they "
                    "share the workspace's catalog: deployments, keys, revocations and preview links")
    sp = add(sub, "deploy", cmd_deploy, "serve a model version under its name")
    sp.add_argument("ref", help="model NAME[:vN]")
    sp.add_argument("--target", help="default: the fastest artifact here")
    sp.add_argument("--precision")
    add(sub, "undeploy", cmd_undeploy, "stop serving a model").add_argument("name")
    ks = sub.add_parser("keys", help="API keys").add_subparsers(dest="action", required=True)
    sp = add(ks, "create", cmd_keys_create, "create an API key (shown once)")
    sp.add_argument("--name", required=True)
    sp.add_argument("--models", help="comma-separated model names this key may use (default: all)")
    add(ks, "list", cmd_keys_list, "list API keys (never their secrets)")
    add(ks, "revoke", cmd_keys_revoke, "revoke an API key").add_argument("id")
    sp = add(sub, "qr", cmd_qr, "a QR code that opens the model on a phone (runs in its browser)")
    sp.add_argument("ref", nargs="?", help="model NAME[:vN]")
    sp.add_argument("--base-url", help="the server as phones reach it (default: the running server's phone listener)")
    sp.add_argument("--port", type=int, default=listeners.PHONE_PORT, help="the phone port when no server runs")
    sp.add_argument("--http", action="store_true", help="plain HTTP link (the phone's camera will not open)")
    sp.add_argument("--hours", type=float, default=api.DEFAULT_LINK_HOURS, help="link lifetime (default 72)")
    sp.add_argument("--revoke", metavar="LINK_ID", help="revoke a preview link instead")
    sp.add_argument("--list", action="store_true", help="list the preview links (ids, models, state) instead")
    from serving import gallery

    gallery.register(sub, add)
