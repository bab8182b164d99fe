"""What a probe of the server found (issue 18), each sent again to a real server on loopback: PostScript bodies
that would run Ghostscript, images whose decode would take hundreds of MB, JSON nested past the parser's limit, and
the size limit's wording."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import httpx
import pytest
from PIL import Image

from factory.datasets.images import check_image
from serving import api as serving_api
from targets import api as targets_api
from targets.predictor import ImageInputError, decode_image
from tests.conftest import copy_home
from tests.serving_helpers import running_server

MODEL = "shapes-tiny"
# ~100 bytes of PostScript that loops forever once Ghostscript runs it (the probe's input)
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n{ } loop\n"
NESTED = b"[" * 20_000 + b"]" * 20_000  # 40 KB: under every body limit, 20x past the parser's depth


@pytest.fixture(scope="module")
def served_home(trained_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("hardening") / "ws"
    copy_home(trained_home, home)
    targets_api.export(f"{MODEL}:v1", "web", home=home)
    serving_api.deploy(MODEL, home=home)
    return home


@pytest.fixture(scope="module")
def served(served_home: Path):
    home = served_home
    with running_server(home) as url:
        token = serving_api.preview_link(MODEL, base_url=url, home=home)["url"].rsplit("/", 1)[1]
        yield url, token


def code(r: httpx.Response) -> tuple[int, str]:
    body = r.json()
    return r.status_code, body["error"]["code"] if "error" in body else body.get("errorCode")


def test_postscript_is_never_decoded(served, tmp_path: Path):
    url, token = served
    assert Image.open(io.BytesIO(EPS)).format == "EPS"  # what Pillow would have made of it, running gs
    with pytest.raises(ImageInputError, match="not an image in a format"):
        decode_image(EPS)
    files = {"image": ("photo.png", EPS, "image/png")}
    assert code(httpx.post(f"{url}/v1/models/{MODEL}/predict", files=files, timeout=10)) == (400, "IMAGE_DECODE_ERROR")
    assert code(httpx.post(f"{url}/p/{token}/predict", files=files, timeout=10)) == (400, "IMAGE_DECODE_ERROR")
    pai = {"dataArray": [{"name": "image", "type": "stream", "body": base64.b64encode(EPS).decode()}]}
    assert code(httpx.post(f"{url}/api/predict/{MODEL}", json=pai, timeout=10)) == (400, "1002")
    (tmp_path / "cat.png").write_bytes(EPS)  # nor on import
    assert check_image(tmp_path / "cat.png").problem == "CORRUPT_IMAGE"


def test_an_image_too_large_to_decode_is_refused_before_decoding(served):
    url, _ = served
    buf = io.BytesIO()
    Image.new("L", (9400, 9400)).save(buf, format="PNG")  # 86 KB on the wire, 88 MP: ~500 MB once decoded
    r = httpx.post(f"{url}/v1/models/{MODEL}/predict", files={"image": ("big.png", buf.getvalue(), "image/png")})
    assert code(r) == (400, "IMAGE_TOO_LARGE") and "50 MP" in r.json()["error"]["message"]
    buf = io.BytesIO()
    Image.new("RGB", (2500, 2000), (10, 200, 30)).save(buf, format="JPEG")  # a large photo still decodes
    assert httpx.post(f"{url}/v1/models/{MODEL}/predict", files={"image": ("ok.jpg", buf.getvalue())}).status_code == 200


def test_json_nested_past_the_parser_gets_the_input_format_error(served):
    url, token = served
    json_type = {"Content-Type": "application/json"}
    for route in (f"/v1/models/{MODEL}/predict", f"/v1/models/{MODEL}/predict:batch", f"/p/{token}/predict",
                  f"/p/{token}/measurement"):
        assert code(httpx.post(url + route, content=NESTED, headers=json_type)) == (400, "INPUT_FORMAT_ERROR"), route
    assert code(httpx.post(f"{url}/api/predict/{MODEL}", content=NESTED, headers=json_type)) == (400, "1001")


def test_a_small_limit_is_named_in_kilobytes(served):
    url, token = served
    r = httpx.post(f"{url}/p/{token}/measurement", content=b"{" + b" " * 70_000 + b"}",
                   headers={"Content-Type": "application/json"})
    assert code(r) == (413, "PAYLOAD_TOO_LARGE") and "64 KB limit" in r.json()["error"]["message"]


def test_a_forwarded_for_header_does_not_change_who_is_local(served):
    """The client is the socket's peer: X-Forwarded-For neither makes a local client remote nor (behind a proxy on
    this host that passes it through) a remote one local."""
    url, _ = served
    assert httpx.get(f"{url}/v1/models", headers={"X-Forwarded-For": "10.1.2.3"}).status_code == 200
    from starlette.requests import Request

    from serving.http import is_loopback

    def peer(host: str) -> Request:
        return Request({"type": "http", "client": (host, 1), "headers": []})

    assert is_loopback(peer("127.0.0.1")) and is_loopback(peer("::1"))
    assert not is_loopback(peer("localhost")) and not is_loopback(peer("testclient"))  # names, not addresses


def test_every_chat_tool_that_writes_waits_for_a_yes(tmp_path: Path):
    from chat_ui.tools import build_tools

    tools = build_tools(tmp_path / "ws", jobs=None, docs_search=lambda query: [])
    asks = {name for name, tool in tools.items() if (tool.metadata or {}).get("needs_confirmation")}
    assert {"evaluate", "benchmark_report", "export", "deploy", "start_training", "import_dataset"} <= asks
    assert not asks & {"search_docs", "list_datasets", "inspect_dataset", "training_status", "resolve_training"}


def test_the_workspace_is_private_to_its_owner(tmp_path: Path):
    import os

    from factory.workspace import Workspace

    home = tmp_path / "ws"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    Workspace.open(home)
    assert home.stat().st_mode & 0o777 == 0o700  # other users cannot reach the catalog or the QR codes inside


def test_a_bad_model_name_is_called_a_model_name(trained_home: Path, tmp_path: Path):
    from factory import api
    from factory.errors import ConfigError

    home = copy_home(trained_home, tmp_path / "ws")
    with pytest.raises(ConfigError, match="^Model name 'bad name!' is not allowed"):
        api.train({"dataset": "shapes", "name": "bad name!", "epochs": 1}, home=home)


def test_dns_rebinding_and_cross_site_posts_are_refused(served):
    """A page on another site that rebinds its name to 127.0.0.1 sends its own name as Host; a cross-site form or
    fetch sends its Origin. Neither reaches the keyless loopback API."""
    from serving.hosts import hostname

    url, _ = served
    r = httpx.get(f"{url}/v1/models", headers={"Host": "attacker.example:8000"})
    assert code(r) == (400, "HOST_NOT_ALLOWED") and "EDGEFACTORY_ALLOWED_HOSTS" in r.json()["error"]["fix"]
    assert httpx.get(f"{url}/v1/models", headers={"Host": "localhost:8000"}).status_code == 200
    assert httpx.get(f"{url}/v1/models", headers={"Host": "10.9.8.7:8000"}).status_code == 200  # an address: not rebindable
    job = {"kind": "bench", "params": {"model": MODEL}}
    for origin in ("http://attacker.example", "null"):
        r = httpx.post(f"{url}/v1/jobs", json=job, headers={"Origin": origin})
        assert code(r) == (403, "CROSS_SITE_REQUEST"), origin
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), (200, 30, 30)).save(buf, format="PNG")
    ok = httpx.post(f"{url}/v1/models/{MODEL}/predict", files={"image": ("a.png", buf.getvalue())}, headers={"Origin": url})
    assert ok.status_code == 200  # the server's own pages post with their own origin
    assert httpx.get(f"{url}/v1/models", headers={"Origin": "http://attacker.example"}).status_code == 200  # reads: CORS
    assert [hostname(h) for h in ("[::1]:8000", "Example.COM:80", "127.0.0.1", "http://[::1]:9/x", "::1")] == \
        ["::1", "example.com", "127.0.0.1", "::1", "::1"]


def test_a_locked_catalog_stalls_no_request(trained_home: Path, tmp_path: Path):
    """With keys, checking one used to write its last-used time inside the request: another process holding the
    catalog's write lock stalled every request, then failed it with a 500. Now the uses are written later."""
    import sqlite3

    from factory.catalog import BUSY_TIMEOUT_S, Catalog
    from serving.access import create_key, list_keys

    home = copy_home(trained_home, tmp_path / "ws")
    serving_api.deploy(MODEL, home=home)
    catalog = Catalog(home / "catalog.sqlite")
    key = create_key(catalog, "phone", [MODEL])["key"]
    catalog.close()
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), (200, 30, 30)).save(buf, format="PNG")
    with running_server(home) as url:
        other = sqlite3.connect(home / "catalog.sqlite", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process writing: holds the write lock throughout
        try:
            r = httpx.post(f"{url}/v1/models/{MODEL}/predict", files={"image": ("a.png", buf.getvalue())},
                           headers={"Authorization": f"Bearer {key}"}, timeout=BUSY_TIMEOUT_S + 30)
            assert r.status_code == 200, r.text
        finally:
            other.execute("ROLLBACK")
            other.close()
    catalog = Catalog(home / "catalog.sqlite")
    assert list_keys(catalog)[0]["last_used_at"] is not None  # written when the server stopped
    catalog.close()


def test_measurements_are_checked_and_limited_per_link(served, served_home: Path):
    url, _ = served
    token = serving_api.preview_link(MODEL, base_url=url, home=served_home)["url"].rsplit("/", 1)[1]
    route = f"{url}/p/{token}/measurement"
    for bad in ({"latency_ms": {"p50": "fast"}}, {"latency_ms": {"p90": 3}}, {"latency_ms": {"p50": 3}, "backend": "x" * 5000},
                {"latency_ms": {"p50": 3}, "threads": True}, ["latency_ms"]):
        assert code(httpx.post(route, json=bad)) == (400, "INPUT_FORMAT_ERROR"), bad
    good = {"latency_ms": {"p50": 12.5, "p90": 14.0, "p99": 20.0}, "backend": "wasm", "threads": 2, "user_agent": "x" * 60_000}
    from serving.preview import MEASUREMENTS_PER_HOUR

    for _ in range(MEASUREMENTS_PER_HOUR):
        r = httpx.post(route, json=good)
        assert r.status_code == 201 and len(r.json()["device"]["user_agent"]) <= 512
    assert code(httpx.post(route, json=good)) == (429, "RATE_LIMITED")


def test_metrics_docs_and_health_details_follow_the_access_rule(served_home: Path):
    from fastapi.testclient import TestClient

    from serving.app import create_app

    app = create_app(served_home, log=lambda *a: None, apps=False)
    with TestClient(app, client=("10.1.2.3", 5000), base_url="http://127.0.0.1") as remote, \
            TestClient(app, client=("127.0.0.1", 5000), base_url="http://127.0.0.1") as local:
        for path in ("/metrics", "/openapi.json", "/docs"):  # no keys: this machine only
            assert remote.get(path).status_code == 403, path
            assert local.get(path).status_code == 200, path
        assert remote.get("/healthz").json() == {"status": "ok"}  # alive, and nothing about what is loaded
        assert MODEL in str(local.get("/healthz").json())


def test_a_scoped_key_sees_only_its_models_and_its_own_jobs_and_jobs_are_capped(served_home: Path, tmp_path: Path,
                                                                                  monkeypatch):
    """A key scoped to model A listed every model and deployment and read any job's config and paths; jobs had no
    owner and no cap. Now lists are filtered by scope, each job records its key, and running jobs are capped."""
    import time

    from fastapi.testclient import TestClient

    from factory.catalog import Catalog
    from serving import access, jobs
    from serving.app import create_app

    home = tmp_path / "ws"
    copy_home(served_home, home)
    cat = Catalog(home / "catalog.sqlite")
    admin, mine, other, elsewhere = (access.create_key(cat, name, scopes)["key"] for name, scopes in
                                     (("admin", None), ("a", [MODEL]), ("b", [MODEL]), ("c", ["another-model"])))
    monkeypatch.setattr(jobs, "MAX_RUNNING_PER_KEY", 1)
    app = create_app(home, log=lambda *a: None, apps=False)
    with TestClient(app, client=("10.1.2.3", 5000), base_url="http://127.0.0.1") as client:
        def get(path: str, key: str) -> httpx.Response:
            return client.get(path, headers={"Authorization": f"Bearer {key}"})

        assert [m["name"] for m in get("/v1/models", elsewhere).json()["models"]] == []
        assert [m["name"] for m in get("/v1/models", mine).json()["models"]] == [MODEL]
        assert MODEL not in str(get("/healthz", elsewhere).json()) and MODEL in str(get("/healthz", mine).json())
        export = {"kind": "export", "params": {"model": MODEL, "target": "onnxruntime", "max_drop": 100}}
        started = client.post("/v1/jobs", json=export, headers={"Authorization": f"Bearer {mine}"})
        assert started.status_code == 202, started.text
        job = started.json()["id"]
        again = client.post("/v1/jobs", json=export, headers={"Authorization": f"Bearer {mine}"})
        assert code(again) == (429, "TOO_MANY_JOBS") and job in again.json()["error"]["fix"]
        for key, status in ((mine, 200), (admin, 200), (other, 404), (elsewhere, 404)):
            assert get(f"/v1/jobs/{job}", key).status_code == status
            assert get(f"/v1/jobs/{job}/events", key).status_code == status
        assert cat.select("SELECT key_id FROM job_owners WHERE job_id = ?", (job,))[0]["key_id"] == mine.split("_")[1]
        deadline = time.time() + 300
        while get(f"/v1/jobs/{job}", mine).json()["status"] in ("queued", "running") and time.time() < deadline:
            time.sleep(0.5)
        assert get(f"/v1/jobs/{job}", mine).json()["status"] == "completed"


def test_the_pool_keeps_deployments_and_drops_the_least_recently_used_extras(monkeypatch):
    """Any client may ask for another version or runtime of a deployed model: those stay loaded only while fewer
    than MAX_EXTRAS others were used after them; the deployment's own artifact stays. Version 0 is refused."""
    import contextlib

    from factory.errors import ConfigError
    from serving import deployments

    monkeypatch.setattr(deployments, "get_deployment", lambda catalog, name: {"version": 3, "target": "openvino",
                                                                              "precision": "int8"})
    monkeypatch.setattr(deployments, "load_predictor", lambda ws, catalog, ref, target, precision: (ref, target))
    monkeypatch.setattr(deployments, "MAX_EXTRAS", 2)
    pool = deployments.ModelPool(None, contextlib.nullcontext)
    assert pool.get("m") == ("m:v3", "openvino")
    for version in (1, 2, 1, 4):  # v1 used again before v4 came: v2 is the least recently used
        pool.get("m", version)
    assert sorted(pool.status()["loaded"]) == ["m:v1 openvino None", "m:v3 openvino int8", "m:v4 openvino None"]
    pool.get("m", 3, "onnxruntime")
    assert "m:v3 openvino int8" in pool.status()["loaded"] and len(pool.status()["loaded"]) == 3
    with pytest.raises(ConfigError, match="version must be 1 or more"):
        pool.get("m", 0)


def test_scratch_folders_live_in_the_workspace_and_a_killed_processes_are_cleaned(tmp_path: Path):
    import subprocess
    import sys

    from factory.workspace import Workspace

    ws = Workspace.open(tmp_path / "ws")
    with ws.scratch("demo-") as tmp:
        assert tmp.parent == ws.home / "tmp" and tmp.is_dir()
    assert not tmp.exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = ws.home / "tmp" / f"{int(dead.stdout)}-demo-0123abcd"  # what a kill -9 during an import leaves
    (left / "digits").mkdir(parents=True)
    elsewhere = ws.home / "tmp" / f"{int(dead.stdout)}.1796000000.gpunode7-export-4567abcd"  # another machine's
    elsewhere.mkdir()
    with ws.scratch() as mine:
        assert Workspace.open(ws.home) and not left.exists() and mine.is_dir()  # the next open cleans; live ones stay
        assert elsewhere.is_dir()  # a shared workspace: that PID means nothing on this machine


def test_a_run_whose_pid_was_reused_or_is_a_zombie_is_interrupted(tmp_path: Path):
    """Orphan detection by PID alone kept a dead run "running" while its PID lived on: in a zombie, or in another
    process the system gave the number to. The start time stored beside the PID tells them apart."""
    import subprocess
    import sys

    from factory import processes
    from factory.catalog import Catalog
    from factory.training.run import mark_orphans
    from factory.workspace import MACHINE, Workspace

    ws = Workspace.open(tmp_path / "ws")
    cat = Catalog(ws.catalog_path)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])  # exits, never reaped until wait() below
    try:
        import time

        while processes.started(zombie.pid) is not None:  # until it has exited (a zombie)
            time.sleep(0.05)
        cat.create_run("mine-alive", "train", {}, other.pid)  # started now, by the live process
        cat.create_run("in-a-zombie", "train", {}, zombie.pid)
        cat.create_run("reused", "train", {}, other.pid)
        cat.update_run("reused", pid_started=processes.started(other.pid) - 3600)  # the PID's earlier owner
        for run_id in ("mine-alive", "in-a-zombie", "reused"):
            cat.update_run(run_id, status="running")
        assert sorted(mark_orphans(cat)) == ["in-a-zombie", "reused"]
        assert cat.run("mine-alive")["status"] == "running" and cat.run("reused")["status"] == "interrupted"
        # a scratch folder of a live PID with another start time was its earlier owner's: cleaned too
        left = ws.home / "tmp" / f"{other.pid}.{int(processes.started(other.pid)) - 3600}-demo-0123abcd"
        kept = ws.home / "tmp" / f"{other.pid}.{int(processes.started(other.pid))}.{MACHINE}-demo-4567abcd"
        left.mkdir(parents=True)
        kept.mkdir()
        Workspace.open(ws.home)
        assert not left.exists() and kept.exists()
    finally:
        other.kill()
        other.wait()
        zombie.wait()


def test_half_sent_requests_time_out_and_double_framing_is_refused(served_home: Path, monkeypatch):
    """500 half-sent requests were still open after 63 s, and a request with both Content-Length and chunked
    encoding was accepted. A head now has a deadline (even one arriving a byte at a time), a body an idle limit."""
    import socket
    import time

    from serving import protocol

    monkeypatch.setattr(protocol, "HEAD_TIMEOUT_S", 1.0)
    monkeypatch.setattr(protocol, "BODY_IDLE_S", 1.0)

    def answer(sock: socket.socket, limit: float = 10) -> tuple[bytes, float]:
        """Everything the server sends until it closes the connection, and how long that took."""
        start, got = time.monotonic(), b""
        sock.settimeout(limit)
        while chunk := sock.recv(65536):
            got += chunk
        return got, time.monotonic() - start

    with running_server(served_home) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as sock:  # a head that never ends
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            got, took = answer(sock)
            assert got.startswith(b"HTTP/1.1 408") and b"REQUEST_TIMEOUT" in got and took < 5
        with socket.create_connection((host, int(port))) as sock:  # a head a byte at a time (slowloris)
            sock.settimeout(10)
            start, closed = time.monotonic(), False
            for byte in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 100:
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    closed = True
                    break
                time.sleep(0.05)
            assert closed or sock.recv(65536).startswith(b"HTTP/1.1 408")
            assert time.monotonic() - start < 6
        with socket.create_connection((host, int(port))) as sock:  # a body that stops half way
            sock.sendall(b"POST /v1/models/x/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{\"image\": ")
            got, took = answer(sock)
            assert b" 408 " in got.split(b"\r\n")[0] and took < 5
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(b"POST /v1/models/x/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
            got, _ = answer(sock)
            assert got.startswith(b"HTTP/1.1 400") and b"INPUT_FORMAT_ERROR" in got
        assert httpx.get(f"{url}/healthz").status_code == 200  # whole requests are served as before


def test_the_chat_takes_only_files_that_came_through_the_upload_route():
    from chat_ui.app import uploaded_only

    uploaded = {"/tmp/gradio/abc/shapes.zip"}
    sent = ["/tmp/gradio/abc/shapes.zip", "/home/user/secret.zip", {"path": "/etc/passwd"},
            {"path": "/tmp/gradio/abc/shapes.zip"}]
    assert uploaded_only(sent, uploaded) == ["/tmp/gradio/abc/shapes.zip", "/tmp/gradio/abc/shapes.zip"]


def test_an_unknown_model_is_404_on_every_route_whatever_its_name(served):
    url, _ = served
    for name in ("数字", "no-such-model", "shapes-tin"):
        r = httpx.get(f"{url}/v1/models/{name}")
        assert code(r) == (404, "NOT_FOUND"), name
        assert code(httpx.post(f"{url}/v1/models/{name}/predict", json={"image": "eA=="})) == (404, "NOT_FOUND"), name
    assert f"Did you mean '{MODEL}'" in httpx.get(f"{url}/v1/models/shapes-tin").json()["error"]["message"]


def test_job_parameters_are_type_checked_and_name_the_field(served):
    """The probe's bodies: a string for a number, a list for a number, 32.5 for a whole number, true for a number,
    10**12 calibration images. Each is refused with the field named, before any job starts."""
    url, _ = served
    cases = [("train", {"dataset": "shapes", "epochs": "5"}, "epochs"), ("train", {"dataset": "shapes", "lr": [0.1]}, "lr"),
             ("train", {"dataset": "shapes", "img_size": 32.5}, "img_size"), ("train", {"dataset": "shapes", "epochs": True}, "epochs"),
             ("export", {"model": MODEL, "target": "onnxruntime", "calibration_size": 10**12}, "calibration_size"),
             ("export", {"model": MODEL, "target": "onnxruntime", "keep_if_slower": "yes"}, "keep_if_slower"),
             ("bench", {"model": MODEL, "report": 1}, "report")]
    for kind, params, field in cases:
        r = httpx.post(f"{url}/v1/jobs", json={"kind": kind, "params": params})
        assert r.status_code == 422 and field in r.json()["error"]["message"], (kind, params, r.text)


def test_a_short_soak_of_mixed_requests_gets_each_its_status_and_no_500(served_home: Path, tmp_path: Path):
    """The soak benchmark's mix, small: good images, the PAI route, undecodable bytes, a 12 MP photo, a 64 MP image
    past the decode cap, JSON nested past the parser, a wrong key and none. Each gets its own status; none a 5xx.
    (Its speed and memory goals are the benchmark's: `python -m benchmarks.perf.soak`.)"""
    import os

    import psutil

    from benchmarks.perf import soak

    home = tmp_path / "ws"
    copy_home(served_home, home)
    key = serving_api.create_key("soak", home=home)["key"]
    with running_server(home) as url:
        result = soak.soak(url, MODEL, key, psutil.Process(os.getpid()), total=120, concurrency=8, settle_s=0)
    expected = {"good": {200}, "pai": {200}, "bad_bytes": {400}, "large_photo": {200}, "past_decode_cap": {400},
                "nested_json": {400}, "wrong_key": {401}, "no_key": {401}}
    assert {kind: set(seen) for kind, seen in result["statuses"].items()} == expected
    assert result["server_errors"] == 0 and result["healthz_samples"] > 0


def error_shape_problem(path: str, response: httpx.Response) -> str | None:
    """Why a response is outside the documented shapes (None: it is inside): any status under 500, and an error
    is {"error": {"code", "message", "fix"}} (the PAI-EAS route: {"success": false, "errorCode", "errorMsg"})."""
    if response.status_code >= 500:
        return f"HTTP {response.status_code}"
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        return "an error that is not JSON"
    if path.startswith("/api/predict/"):
        ok = body.get("success") is False and isinstance(body.get("errorCode"), str) and isinstance(body.get("errorMsg"), str)
    else:
        error = body.get("error") if isinstance(body, dict) else None
        ok = isinstance(error, dict) and all(isinstance(error.get(k), str) for k in ("code", "message", "fix"))
    return None if ok else f"error shape {str(body)[:120]}"


@pytest.mark.slow
def test_fuzzing_every_route_and_method_finds_no_500_and_one_error_shape(served_home: Path, tmp_path: Path):
    """schemathesis over the whole OpenAPI schema: every operation (the PAI-EAS route among them) with valid and
    invalid inputs, at least 1,000 examples, then every method the schema does not list on each path."""
    import math

    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable

    home = tmp_path / "ws"
    copy_home(served_home, home)
    with running_server(home) as url:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert any(op.path == "/api/predict/{service}" for op in operations)
        per_operation = max(math.ceil(2000 / len(operations) / 2), 50)  # some stop early: the space is small
        problems: list[tuple] = []
        sent = 0

        for operation in operations:
            for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
                @settings(max_examples=per_operation, deadline=None, suppress_health_check=list(HealthCheck),
                          database=None, derandomize=True)
                @given(case=operation.as_strategy(generation_mode=mode))
                def fuzz(case):
                    nonlocal sent
                    response = case.call(base_url=url, timeout=60)
                    sent += 1
                    problem = error_shape_problem(case.formatted_path, response)
                    if problem:
                        problems.append((case.method, case.formatted_path, problem))

                try:
                    fuzz()
                except Unsatisfiable:  # no invalid input exists: an operation that takes no parameters
                    assert mode == schemathesis.GenerationMode.NEGATIVE, operation.path
        paths = {op.path: {o.method.upper() for o in operations if o.path == op.path} for op in operations}
        for path, documented in paths.items():
            concrete = path.replace("{name}", MODEL).replace("{service}", MODEL).replace("{version}", "1") \
                .replace("{job_id}", "nope").replace("{token}", "x.y").replace("{item_id}", "1")
            for method in {"GET", "POST", "PUT", "PATCH", "DELETE"} - documented:
                response = httpx.request(method, url + concrete, timeout=60)
                sent += 1
                if problem := error_shape_problem(concrete, response):
                    problems.append((method, concrete, problem))
    assert sent >= 1000
    assert problems == [], sorted(set(problems))[:10]
