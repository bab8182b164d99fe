"""Serving against a real server on loopback: health and metrics, models, predict (multipart, JSON,
batch), the PAI-EAS route and its error codes, bad input (size limit, decompression bomb, non-image,
unknown model), API keys (missing, wrong, revoked, out of scope), loopback-only without keys, jobs
with server-sent events, preview links and QR codes (decoded with zxing-cpp), HTTPS, offline batch
prediction, and a schemathesis fuzz of the OpenAPI schema that must never get a 500."""

from __future__ import annotations

import base64
import io
import json
import shutil
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from serving import api as serving_api
from serving import qr
from serving.access import create_link
from tests.conftest import copy_home, run_cli
from tests.serving_helpers import deployed_copy, running_server

MODEL = "shapes-tiny"


@pytest.fixture(scope="module")
def serve_home(trained_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("serve") / "ws"
    return deployed_copy(trained_home, home, MODEL, ("onnxruntime", "web"))


@pytest.fixture(scope="module")
def server(serve_home: Path):
    with running_server(serve_home) as url:
        yield url


def png_bytes(path: Path | None = None, size=(64, 64), color=(200, 30, 30)) -> bytes:
    img = Image.open(path).convert("RGB") if path else Image.new("RGB", size, color)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def sample_images(home: Path, n: int = 3) -> list[Path]:
    return sorted((home / "datasets").rglob("*.png"))[:n]


def test_health_models_and_predict_three_ways(server: str, serve_home: Path):
    health = httpx.get(f"{server}/healthz").json()
    assert health["status"] == "ok" and health["loaded"] == [f"{MODEL}:v1 onnxruntime fp32"]
    models = httpx.get(f"{server}/v1/models").json()["models"]
    assert models[0]["name"] == MODEL and models[0]["deployment"]["target"] == "onnxruntime"
    detail = httpx.get(f"{server}/v1/models/{MODEL}").json()
    assert {(a["target"], a["precision"]) for a in detail["versions"][0]["artifacts"]} == {("onnxruntime", "fp32"), ("web", "fp32")}
    assert "accuracy" in detail["versions"][0]["metrics"]

    data = png_bytes(sample_images(serve_home)[0])
    multipart = httpx.post(f"{server}/v1/models/{MODEL}/predict", files={"image": ("a.png", data, "image/png")},
                           params={"top_k": 2}).json()
    as_json = httpx.post(f"{server}/v1/models/{MODEL}/predict", json={"image": base64.b64encode(data).decode(), "top_k": 2}).json()
    assert multipart["predictions"] == as_json["predictions"] and len(multipart["predictions"]) == 2
    assert multipart["image"] == {"width": 64, "height": 64} and multipart["timing_ms"]["inference_ms"] > 0
    assert sum(p["score"] for p in httpx.post(f"{server}/v1/models/{MODEL}/predict",
                                              json={"image": base64.b64encode(data).decode(), "top_k": 10}).json()["predictions"]) \
        == pytest.approx(1.0, abs=1e-5)
    eager = httpx.post(f"{server}/v1/models/{MODEL}/predict", json={"image": base64.b64encode(data).decode()},
                       params={"target": "pytorch"}).json()
    assert eager["target"] == "pytorch" and eager["predictions"][0]["label"] == as_json["predictions"][0]["label"]

    images = [png_bytes(p) for p in sample_images(serve_home, 3)]
    batch = httpx.post(f"{server}/v1/models/{MODEL}/predict:batch",
                       files=[("images", (f"{i}.png", d, "image/png")) for i, d in enumerate(images)]).json()
    singles = [httpx.post(f"{server}/v1/models/{MODEL}/predict", json={"image": base64.b64encode(d).decode()}).json()
               for d in images]
    assert [r["predictions"][0]["label"] for r in batch["results"]] == [s["predictions"][0]["label"] for s in singles]


def test_pai_eas_route_and_its_error_codes(server: str, serve_home: Path):
    data = png_bytes(sample_images(serve_home)[0])
    body = {"dataArray": [{"name": "image", "type": "stream", "body": base64.b64encode(data).decode()}]}
    out = httpx.post(f"{server}/api/predict/{MODEL}", json=body).json()
    assert out["success"] is True and out["result"]["meta"] == {"height": 64, "width": 64}
    first = out["result"]["output"][0]
    assert first["type"] == "cv_common" and {"label", "conf"} == set(first["body"][0])
    cases = [({"data": []}, "1001", "INPUT_FORMAT_ERROR"),
             ({"dataArray": [{"body": base64.b64encode(b"not an image").decode()}]}, "1002", "IMAGE_DECODE_ERROR"),
             ({"dataArray": [{"body": "%%% not base64"}]}, "1001", "INPUT_FORMAT_ERROR")]
    for payload, code, msg in cases:
        r = httpx.post(f"{server}/api/predict/{MODEL}", json=payload)
        assert r.status_code == 400 and r.json()["errorCode"] == code and r.json()["errorMsg"] == msg
        assert r.json()["success"] is False and isinstance(r.json()["errorCode"], str)
    r = httpx.post(f"{server}/api/predict/nope", json=body)
    assert r.status_code == 404 and r.json()["errorCode"] == "2002" and r.json()["errorMsg"] == "GET_INSTANCE_ERROR"


def bomb() -> bytes:
    buf = io.BytesIO()
    Image.new("1", (12000, 12000)).save(buf, format="PNG")  # 144 M pixels in a few kB
    return buf.getvalue()


def test_bad_input_gets_one_error_shape(server: str):
    def err(r: httpx.Response) -> tuple[int, str]:
        body = r.json()["error"]
        assert body["message"] and body["fix"]
        return r.status_code, body["code"]

    url = f"{server}/v1/models/{MODEL}/predict"
    assert err(httpx.post(url, files={"image": ("a.txt", b"hello", "text/plain")})) == (400, "IMAGE_DECODE_ERROR")
    assert err(httpx.post(url, files={"image": ("b.png", bomb(), "image/png")})) == (400, "DECOMPRESSION_BOMB")
    assert err(httpx.post(url, content=b"x" * (21 * 2 ** 20), headers={"content-type": "application/json"})) == \
        (413, "PAYLOAD_TOO_LARGE")
    assert err(httpx.post(url, json={"picture": "x"})) == (400, "INPUT_FORMAT_ERROR")
    assert err(httpx.post(url, content=b"raw", headers={"content-type": "text/plain"})) == (400, "INPUT_FORMAT_ERROR")
    r = httpx.post(f"{server}/v1/models/{MODEL[:-1]}/predict", json={"image": base64.b64encode(png_bytes()).decode()})
    assert err(r) == (404, "NOT_FOUND") and f"Did you mean '{MODEL}'" in r.json()["error"]["message"]
    assert err(httpx.get(f"{server}/v1/nothing-here")) == (404, "NOT_FOUND")
    metrics = httpx.get(f"{server}/metrics").text
    assert 'edgefactory_errors_total{code="DECOMPRESSION_BOMB",model="shapes-tiny"}' in metrics
    assert 'route="/v1/models/{name}/predict"' in metrics and "edgefactory_request_seconds_bucket" in metrics


def test_api_keys_scopes_and_revocation(serve_home: Path, tmp_path: Path):
    home = tmp_path / "ws"
    copy_home(serve_home, home)
    code, key, _ = run_cli("keys", "create", "--name", "app", home=home)
    assert code == 0 and key["key"].startswith("ef_")
    _, other, _ = run_cli("keys", "create", "--name", "other", "--models", "someone-else", home=home)
    _, listed, _ = run_cli("keys", "list", home=home)
    assert {k["name"] for k in listed["keys"]} == {"app", "other"} and key["key"] not in json.dumps(listed)
    body = {"image": base64.b64encode(png_bytes()).decode()}
    with running_server(home) as url:
        predict = f"{url}/v1/models/{MODEL}/predict"
        assert httpx.post(predict, json=body).json()["error"]["code"] == "UNAUTHORIZED"
        assert httpx.post(predict, json=body, headers={"Authorization": "Bearer ef_wrong"}).status_code == 401
        assert httpx.post(predict, json=body, headers={"Authorization": f"Bearer {other['key']}"}).status_code == 403
        assert httpx.post(predict, json=body, headers={"Authorization": f"Bearer {key['key']}"}).status_code == 200
        pai = {"dataArray": [{"body": body["image"]}]}
        assert httpx.post(f"{url}/api/predict/{MODEL}", json=pai, headers={"Authorization": key["key"]}).json()["success"]
        assert httpx.post(f"{url}/api/predict/{MODEL}", json=pai).json()["errorMsg"] == "UNAUTHORIZED"
        assert httpx.get(f"{url}/healthz").status_code == 200  # health needs no key
        run_cli("keys", "revoke", key["id"], home=home)
        assert httpx.post(predict, json=body, headers={"Authorization": f"Bearer {key['key']}"}).status_code == 401


def test_without_keys_only_loopback_clients_are_served(serve_home: Path):
    ip = qr.lan_ip()
    if ip.startswith("127."):
        pytest.skip("this machine has no non-loopback address to call from")
    with running_server(serve_home, host="0.0.0.0") as url:
        port = url.rsplit(":", 1)[1]
        body = {"image": base64.b64encode(png_bytes()).decode()}
        assert httpx.post(f"{url}/v1/models/{MODEL}/predict", json=body).status_code == 200
        r = httpx.post(f"http://{ip}:{port}/v1/models/{MODEL}/predict", json=body)
        assert r.status_code == 403 and r.json()["error"]["code"] == "LOOPBACK_ONLY"
        assert "keys create" in r.json()["error"]["fix"]


def test_jobs_stream_progress_and_persist(server: str, serve_home: Path):
    r = httpx.post(f"{server}/v1/jobs", json={"kind": "export", "params": {"model": f"{MODEL}:v1", "target": "openvino"}})
    assert r.status_code == 202
    job = r.json()["id"]
    events, end = [], None
    with httpx.stream("GET", f"{server}/v1/jobs/{job}/events", timeout=120) as stream:
        kind = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                (events.append if kind is None else lambda d: None)(json.loads(line[6:]))
                if kind == "end":
                    end = json.loads(line[6:])
                    break
    assert end == {"status": "completed", "error": None}
    assert any(e["type"] == "log" and e["message"].startswith("reference") for e in events)
    assert events[-1]["type"] == "finished" and events[-1]["result"]["target"] == "openvino"
    status = httpx.get(f"{server}/v1/jobs/{job}").json()
    assert status["status"] == "completed" and status["kind"] == "export"
    bad = httpx.post(f"{server}/v1/jobs", json={"kind": "export", "params": {"model": MODEL}})
    assert bad.status_code == 422 and "target is missing" in bad.json()["error"]["message"]
    assert httpx.get(f"{server}/v1/jobs/nope").status_code == 404


def test_qr_link_decodes_and_expires_and_revokes(server: str, serve_home: Path, tmp_path: Path):
    import zxingcpp

    out = serving_api.preview_link(MODEL, base_url=server, out_dir=tmp_path, home=serve_home)
    decoded = zxingcpp.read_barcodes(Image.open(out["png"]))
    assert [d.text for d in decoded] == [out["url"]] and out["precision"] == "fp32"
    assert Path(out["svg"]).read_text().startswith("<?xml") and "█" in out["terminal"]
    token = out["url"].rsplit("/", 1)[1]
    meta = httpx.get(f"{server}/p/{token}/meta").json()
    assert meta["model"] == MODEL and meta["preprocessing"]["resize"] == [32, 32]
    assert httpx.get(f"{server}/p/{token}/model.onnx").content[:2] == b"\x08\x07" or len(httpx.get(f"{server}/p/{token}/model.onnx").content) > 1000
    page = httpx.get(f"{server}/p/{token}")
    assert page.status_code == 200 and f"{MODEL}:v1" in page.text and "accuracy" in page.text
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    assert httpx.get(f"{server}/p/{tampered}/meta").json()["error"]["code"] == "LINK_INVALID"
    # `serve` at each start: the live link again (a QR code already printed keeps working), not a new one
    again = serving_api.preview_link(MODEL, base_url=server, out_dir=tmp_path, home=serve_home, reuse=True)
    assert again["url"] == out["url"] and again["link_id"] == out["link_id"]
    assert serving_api.preview_link(MODEL, base_url=server, out_dir=tmp_path, home=serve_home)["url"] != out["url"]
    serving_api.revoke_link(out["link_id"], home=serve_home)
    assert httpx.get(f"{server}/p/{token}/meta").json()["error"]["code"] == "LINK_REVOKED"
    newest = serving_api.preview_link(MODEL, base_url=server, out_dir=tmp_path, home=serve_home, reuse=True)
    assert newest["link_id"] != out["link_id"]  # never a revoked one
    longer = serving_api.preview_link(MODEL, base_url=server, out_dir=tmp_path, home=serve_home, reuse=True, hours=24 * 60)
    assert longer["link_id"] != newest["link_id"]  # a 3-day link is not reused for a 60-day one
    from factory.api import session

    with session(serve_home) as (ws, catalog):
        short = create_link(ws, catalog, MODEL, 1, "web", "fp32", hours=0.5 / 3600)
    time.sleep(0.6)
    r = httpx.get(f"{server}/p/{short['token']}/meta")
    assert r.status_code == 403 and r.json()["error"]["code"] == "LINK_EXPIRED"


def test_https_with_a_self_signed_certificate(serve_home: Path):
    from serving import tls

    cert = tls.ensure_certificate(serve_home / "serving" / "tls", "127.0.0.1")
    assert len(cert["sha256"].split(":")) == 32
    assert tls.ensure_certificate(serve_home / "serving" / "tls", "127.0.0.1") == cert  # reused, not remade
    with running_server(serve_home, ssl_certfile=cert["cert"], ssl_keyfile=cert["key"]) as url:
        assert url.startswith("https://")
        import ssl

        context = ssl.create_default_context(cafile=cert["cert"])
        assert httpx.get(f"{url}/healthz", verify=context).json()["status"] == "ok"


def test_offline_batch_prediction(serve_home: Path, tmp_path: Path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i, p in enumerate(sample_images(serve_home, 4)):
        shutil.copy(p, folder / f"{i}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    code, out, _ = run_cli("predict", f"{MODEL}:v1", str(folder), "--out", str(tmp_path / "r.jsonl"), home=serve_home)
    assert code == 0 and out["images"] == 5 and out["failed"] == 1
    lines = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(lines) == 5 and sum("error" in x for x in lines) == 1
    assert all(len(x["predictions"]) == 3 for x in lines if "predictions" in x)


def test_concurrent_requests_queue_per_model_and_health_stays_up(server: str, serve_home: Path):
    import concurrent.futures

    data = base64.b64encode(png_bytes(sample_images(serve_home)[0])).decode()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(httpx.post, f"{server}/v1/models/{MODEL}/predict", json={"image": data}, timeout=60)
                   for _ in range(32)]
        health = httpx.get(f"{server}/healthz", timeout=10)
        results = [f.result() for f in futures]
    assert health.status_code == 200
    assert {r.status_code for r in results} == {200}
    assert len({json.dumps(r.json()["predictions"]) for r in results}) == 1


def test_openapi_schema_fuzz_never_gets_a_500(server: str):
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_url(f"{server}/openapi.json")
    failures = []

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=schema.as_strategy())
    def fuzz(case):
        response = case.call(base_url=server, timeout=30)
        if response.status_code >= 500:
            failures.append((case.method, case.formatted_path, response.status_code, response.text[:200]))

    fuzz()
    assert failures == [], sorted({f[:3] for f in failures})[:10]


def test_remote_clients_cannot_reach_the_chat_or_workspace_files(serve_home: Path):
    from fastapi.testclient import TestClient

    from serving.app import create_app

    app = create_app(serve_home, log=lambda *a: None)
    remote = TestClient(app, client=("10.1.2.3", 5000), base_url="http://127.0.0.1")
    local = TestClient(app, client=("127.0.0.1", 5000), base_url="http://127.0.0.1")
    assert local.get("/").status_code == 200 and remote.get("/").status_code == 401  # the chat acts as the owner
    for path in ("catalog.sqlite", "serving/link-secret"):
        assert remote.get(f"/gradio_api/file={serve_home / path}").status_code in (401, 403)
        assert local.get(f"/gradio_api/file={serve_home / path}").status_code == 403  # not among the shown folders
    assert remote.post("/gradio_api/call/chat", json={"data": ["hi"]}).status_code == 401


def test_more_bad_requests_get_clear_errors(server: str):
    url = f"{server}/v1/models/{MODEL}/predict"
    r = httpx.post(url, content=b"x", headers={"content-type": "multipart/form-data"})  # no boundary
    assert r.status_code == 400 and r.json()["error"]["code"] == "INPUT_FORMAT_ERROR"
    body = {"image": base64.b64encode(png_bytes()).decode(), "target": ["openvino"]}
    assert httpx.post(url, json=body).json()["error"]["code"] == "INPUT_FORMAT_ERROR"
    for junk in range(3):  # unknown names never become metric labels
        httpx.post(f"{server}/v1/models/junk{junk}/predict", json={"image": body["image"]})
    assert "junk0" not in httpx.get(f"{server}/metrics").text


def test_job_scopes_follow_the_model_named(serve_home: Path, tmp_path: Path):
    home = tmp_path / "ws"
    copy_home(serve_home, home)
    scoped = serving_api.create_key("bench-only", models=[MODEL], home=home)["key"]
    other = serving_api.create_key("other", models=["someone-else"], home=home)["key"]
    with running_server(home) as url:
        def job(body: dict, key: str) -> int:
            return httpx.post(f"{url}/v1/jobs", json=body, headers={"Authorization": f"Bearer {key}"}).status_code

        started = httpx.post(f"{url}/v1/jobs", json={"kind": "bench", "params": {"model": f"{MODEL}:v1", "target": "onnxruntime"}},
                             headers={"Authorization": f"Bearer {scoped}"})
        assert started.status_code == 202
        assert job({"kind": "bench", "params": {"model": f"{MODEL}:v1", "target": "onnxruntime"}}, other) == 403
        assert job({"kind": "train", "params": {"dataset": "shapes", "model": MODEL}}, scoped) == 403  # training needs a full key
        deadline = time.time() + 120  # let the bench job end before the server stops
        while time.time() < deadline and httpx.get(f"{url}/v1/jobs/{started.json()['id']}",
                                                   headers={"Authorization": f"Bearer {scoped}"}).json()["status"] in ("queued", "running"):
            time.sleep(0.5)
