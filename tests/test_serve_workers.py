"""`edgefactory serve --workers 2` as a user starts it: two server processes on one port and one workspace (its
catalog.sqlite, then a PostgreSQL catalog). A key made and revoked with the CLI is honoured by both at once (each
request on a fresh connection, which the kernel gives to either worker; /metrics shows that both served), and a
bounded load run (2,000 predictions, 16 at a time) completes with no error and no lost request, counted by the
workers' summed Prometheus metrics."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from factory import api as core_api
from tests.conftest import REPO, run_cli
from tests.serving_helpers import deployed_copy, free_port
from tests.test_serving import png_bytes

pytestmark = pytest.mark.slow
MODEL = "shapes-tiny"
WORKER_SERIES = re.compile(r'^edgefactory_worker_requests\{pid="(\d+)"\} ([0-9.e+]+)$', re.M)


def worker_requests(url: str, headers: dict | None = None) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", headers=headers, timeout=10).text
    return {pid: float(v) for pid, v in WORKER_SERIES.findall(text)}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def two_workers(request: pytest.FixtureRequest, trained_home: Path, tmp_path_factory: pytest.TempPathFactory):
    """The workers share the workspace's catalog.sqlite, or a PostgreSQL database the catalog was copied into."""
    home = tmp_path_factory.mktemp("workers") / "ws"
    deployed_copy(trained_home, home, MODEL, ("onnxruntime",))
    with pytest.MonkeyPatch.context() as patch:
        if request.param == "postgresql":
            url = request.getfixturevalue("postgres_server").new_database()
            core_api.copy_catalog(url, home=home)
            patch.setenv("EDGEFACTORY_CATALOG", url)  # the server and every CLI call below
        yield from _serving(home)


def _serving(home: Path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "EDGEFACTORY_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "factory.cli", "serve", "--workers", "2", "--port", str(port),
                             "--phone-port", "0"], env=env, cwd=REPO, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    try:
        while not _both_serving(url):
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise AssertionError(f"the server did not start: {proc.communicate(timeout=30)[0]}")
            time.sleep(0.5)
        yield url, home, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(60)


def _both_serving(url: str) -> bool:
    """Whether both workers have answered requests (each call opens new connections, which either may take)."""
    try:
        served = worker_requests(url)
    except httpx.TransportError:
        return False
    return len(served) == 2 and all(n > 0 for n in served.values())


def fresh(method: str, url: str, **kwargs) -> httpx.Response:
    """One request on a new connection (the kernel gives each new connection to either worker)."""
    with httpx.Client(timeout=30) as client:
        return client.request(method, url, **kwargs)


def test_a_key_and_its_revocation_are_seen_by_both_workers(two_workers):
    url, home, _ = two_workers
    chat = fresh("GET", f"{url}/")
    assert chat.status_code == 404 and "--workers" in chat.json()["error"]["message"]  # said, not a bare 404
    before = worker_requests(url)
    _, stays, _ = run_cli("keys", "create", "--name", "stays", home=home)  # with no key left, loopback needs none
    _, key, _ = run_cli("keys", "create", "--name", "replicas", home=home)
    auth = {"Authorization": f"Bearer {key['key']}"}
    used = [fresh("GET", f"{url}/v1/models", headers=auth) for _ in range(30)]
    assert [r.status_code for r in used] == [200] * 30
    assert {r.json()["models"][0]["name"] for r in used} == {MODEL}
    assert {fresh("GET", f"{url}/v1/models").status_code for _ in range(10)} == {401}  # keys exist: no key, no entry
    run_cli("keys", "revoke", key["id"], home=home)
    revoked = [fresh("GET", f"{url}/v1/models", headers=auth) for _ in range(30)]
    assert {r.status_code for r in revoked} == {401}
    assert {r.json()["error"]["code"] for r in revoked} == {"UNAUTHORIZED"}
    after = worker_requests(url, {"Authorization": f"Bearer {stays['key']}"})
    served = {pid: after[pid] - before.get(pid, 0) for pid in after}
    assert len(served) == 2 and all(n > 0 for n in served.values()), served  # both workers answered some of them


def sse(url: str, headers: dict) -> tuple[list[dict], dict]:
    """A job's server-sent events read to the end on a new connection: (events, the `end` event's data)."""
    events, end = [], None
    with httpx.Client(timeout=120) as client, client.stream("GET", url, headers=headers) as stream:
        kind = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                if kind == "end":
                    end = data
                else:
                    events.append(data)
    return events, end


def test_a_job_started_on_one_worker_streams_from_every_worker(two_workers):
    url, home, _ = two_workers
    _, key, _ = run_cli("keys", "create", "--name", "jobs", home=home)
    auth = {"Authorization": f"Bearer {key['key']}"}
    job = fresh("POST", f"{url}/v1/jobs", json={"kind": "export", "params": {"model": MODEL, "target": "onnxruntime"}},
                headers=auth).json()
    streams = [sse(f"{url}/v1/jobs/{job['id']}/events", auth) for _ in range(6)]  # fresh connections: both workers
    assert {end["status"] for _, end in streams} == {"completed"}, streams
    assert all(events == streams[0][0] and events for events, _ in streams)  # the same events, whichever worker
    assert streams[0][0][-1]["type"] == "finished"
    statuses = {fresh("GET", f"{url}/v1/jobs/{job['id']}", headers=auth).json()["status"] for _ in range(6)}
    assert statuses == {"completed"}


def test_load_run_over_two_workers_loses_nothing(two_workers):
    url, home, proc = two_workers
    _, key, _ = run_cli("keys", "create", "--name", "load", home=home)
    auth = {"Authorization": f"Bearer {key['key']}"}
    body = {"image": base64.b64encode(png_bytes()).decode()}
    wanted = {"model": MODEL, "route": "/v1/models/{name}/predict", "status": "200"}

    def counted() -> float:
        text = httpx.get(f"{url}/metrics", headers=auth, timeout=10).text
        return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
                   if s.name == "edgefactory_requests_total" and s.labels == wanted)

    start = counted()
    with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=16)) as client:
        def one(_: int) -> tuple[int, str]:
            r = client.post(f"{url}/v1/models/{MODEL}/predict", json=body, headers=auth)
            return r.status_code, r.json()["predictions"][0]["label"] if r.status_code == 200 else r.text

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(one, range(2000)))
    assert [status for status, _ in results] == [200] * 2000, [r for r in results if r[0] != 200][:3]
    assert len({label for _, label in results}) == 1  # one picture, one answer, whichever worker gave it
    assert counted() - start == 2000
    proc.send_signal(signal.SIGINT)  # Ctrl-C stops the workers with the server
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode is not None and "Traceback" not in out, out
