"""A phone on the LAN reaches the preview that `edgefactory serve` offers, and nothing else: the test makes a
network namespace with a veth pair (the "phone", its own address on a private subnet made here), starts the real
`edgefactory serve`, and from inside the namespace opens the QR code's URL. Nothing leaves this machine: the
namespace's only route is the veth pair to this host."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from serving import api as serving_api
from factory.workspace import Workspace
from serving import listeners
from targets import api as targets_api
from tests.conftest import copy_home
from tests.serving_helpers import free_port

MODEL = "shapes-tiny"
PHONE_CLIENT = """
import json, sys, httpx
url, image = sys.argv[1], sys.argv[2]
out = {}
with httpx.Client(verify=False, timeout=30) as c:
    page = c.get(url)
    out["page"] = [page.status_code, "<html" in page.text.lower()]
    out["model"] = c.get(url + "/model.onnx").status_code
    out["predict"] = c.post(url + "/predict", json={"image": image}).status_code
    base = url.split("/p/")[0]
    out["api"] = c.post(base + "/v1/models/%s/predict" % sys.argv[3], json={"image": image}).status_code
    out["chat"] = c.get(base + "/").status_code
    try:
        out["api_port"] = c.get(sys.argv[4] + "/v1/models").status_code
    except httpx.HTTPError as exc:
        out["api_port"] = type(exc).__name__
print(json.dumps(out))
"""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


@pytest.fixture()
def phone_namespace():
    """(namespace, phone address, host address): a namespace joined to this host by a veth pair only."""
    if shutil.which("ip") is None:
        pytest.skip("the `ip` command (iproute2) is not installed")
    name, n = f"efphone{os.getpid() % 10000}", os.getpid() % 200 + 20
    made = _ip("netns", "add", name, check=False)
    if made.returncode != 0:
        pytest.skip(f"`ip netns add` is not permitted here: {made.stderr.strip()}")
    host_if, phone_if = f"efh{n}", f"efp{n}"
    host_ip, phone_ip = f"10.213.{n}.1", f"10.213.{n}.2"
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", phone_if)
        _ip("link", "set", phone_if, "netns", name)
        _ip("addr", "add", f"{host_ip}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        for args in (("addr", "add", f"{phone_ip}/30", "dev", phone_if), ("link", "set", phone_if, "up"),
                     ("link", "set", "lo", "up"), ("route", "add", "default", "via", host_ip)):
            _ip("-n", name, *args)
        yield name, phone_ip, host_ip
    finally:
        _ip("link", "del", host_if, check=False)
        _ip("netns", "del", name, check=False)


def test_a_phone_on_the_lan_opens_the_qr_code_and_reaches_nothing_else(trained_home: Path, tmp_path: Path,
                                                                       phone_namespace):
    namespace, phone_ip, host_ip = phone_namespace
    home = tmp_path / "ws"
    copy_home(trained_home, home)
    targets_api.export(f"{MODEL}:v1", "web", home=home)
    serving_api.deploy(MODEL, home=home)
    api_port, phone_port = free_port(), free_port("0.0.0.0")
    server = subprocess.Popen([sys.executable, "-m", "factory.cli", "serve", "--home", str(home), "--port", str(api_port),
                               "--phone-port", str(phone_port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while listeners.running(Workspace.open(home)) is None or not _up(f"http://127.0.0.1:{api_port}/healthz"):
            assert server.poll() is None and time.time() < deadline, "the server did not start"
            time.sleep(0.2)
        link = serving_api.preview_link(MODEL, home=home)
        assert link["warning"] is None and link["url"].startswith("https://") and f":{phone_port}/p/" in link["url"]
        buf = io.BytesIO()
        Image.new("RGB", (64, 64), (200, 30, 30)).save(buf, format="PNG")
        image = base64.b64encode(buf.getvalue()).decode()
        # the phone: inside the namespace, the QR code's URL (the host's LAN address, reached through the veth pair)
        phone = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-c", PHONE_CLIENT, link["url"], image,
                                MODEL, f"http://{link['url'].split('//')[1].split(':')[0]}:{api_port}"],
                               capture_output=True, text=True, timeout=120)
        assert phone.returncode == 0, phone.stderr[-2000:]
        seen = json.loads(phone.stdout)
        assert seen["page"] == [200, True] and seen["model"] == 200 and seen["predict"] == 200, seen
        assert seen["api"] == 404 and seen["chat"] == 404, seen  # the phone listener serves previews only
        assert seen["api_port"] == "ConnectError", seen  # the API listens on loopback only
        local = httpx.post(f"http://127.0.0.1:{api_port}/v1/models/{MODEL}/predict", json={"image": image}, timeout=30)
        assert local.status_code == 200 and local.json()["predictions"]  # this machine: as before
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=30)
    assert "phones: https://" in out and "SHA-256" in out and f"{MODEL}:v1" in out  # the QR printed at start
    assert listeners.running(Workspace.open(home)) is None  # the record goes with the server


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
