"""A detector behind the real server: predict returns boxes in the pixels of the image sent (letterbox
undone), the same as the Python predictor on the same artifact; min_score and top_k filter them; the
PAI-EAS route returns `pos` as the four corners relative to the image; batch prediction over a folder
writes boxes too."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import httpx
import pytest
from PIL import Image

from factory.api import session
from targets.predictor import decode_image, load_predictor
from tests.conftest import run_cli
from tests.serving_helpers import deployed_copy, running_server

MODEL = "scenes-tiny-det"


@pytest.fixture(scope="module")
def det_server(det_home: Path, tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("serve-det") / "ws"
    deployed_copy(det_home, home, MODEL, ("openvino",))
    with running_server(home) as url:
        yield home, url


def scene(home: Path, index: int = 0, size: tuple[int, int] | None = None) -> bytes:
    img = Image.open(sorted((home / "datasets").rglob("*.png"))[index]).convert("RGB")
    if size:
        img = img.resize(size, Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_predict_returns_boxes_in_the_pixels_sent(det_server):
    home, url = det_server
    with session(home) as (ws, catalog):
        python = load_predictor(ws, catalog, f"{MODEL}:v1", "openvino", "fp32")
    for data in (scene(home, 0), scene(home, 1, size=(240, 160))):  # square, and wide (letterbox pads the bottom)
        out = httpx.post(f"{url}/v1/models/{MODEL}/predict", files={"image": ("s.png", data, "image/png")}).json()
        width, height = out["image"]["width"], out["image"]["height"]
        assert out["task"] == "detection" and out["target"] == "openvino"
        assert out["predictions"] == python.predict([decode_image(data)])[0]
        assert out["predictions"], "the tiny detector finds something in a training scene"
        scores = [p["score"] for p in out["predictions"]]
        assert scores == sorted(scores, reverse=True) and min(scores) >= 0.25
        for p in out["predictions"]:
            x1, y1, x2, y2 = p["box"]
            assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height and p["label"] in ("circle", "square", "triangle")
    def ask(**options) -> list[dict]:
        body = {"image": base64.b64encode(data).decode(), **options}
        return httpx.post(f"{url}/v1/models/{MODEL}/predict", json=body).json()["predictions"]
    loose = ask(min_score=0.05)
    assert len(loose) > len(out["predictions"]) and min(p["score"] for p in loose) >= 0.05  # an untrained-ish tiny model
    assert ask(min_score=0.05, top_k=2) == loose[:2]
    bad = httpx.post(f"{url}/v1/models/{MODEL}/predict", json={"image": base64.b64encode(data).decode(), "min_score": 2})
    assert bad.status_code == 400 and "min_score" in bad.json()["error"]["message"]


def test_pai_route_returns_relative_corner_points(det_server):
    home, url = det_server
    data = scene(home, 1, size=(240, 160))
    mine = httpx.post(f"{url}/v1/models/{MODEL}/predict", files={"image": ("s.png", data, "image/png")}).json()["predictions"]
    body = {"dataArray": [{"name": "image", "type": "stream", "body": base64.b64encode(data).decode()}]}
    out = httpx.post(f"{url}/api/predict/{MODEL}", json=body).json()
    assert out["success"] and out["result"]["meta"] == {"height": 160, "width": 240}
    items = out["result"]["output"][0]["body"]
    assert [i["label"] for i in items] == [p["label"] for p in mine]
    for item, p in zip(items, mine):
        (tlx, tly), (trx, try_), (brx, bry), (blx, bly) = item["pos"]  # top-left, top-right, bottom-right, bottom-left
        assert tly == try_ and bry == bly and tlx == blx and trx == brx and tlx < trx and tly < bry
        assert [tlx * 240, tly * 160, brx * 240, bry * 160] == pytest.approx(p["box"], abs=1e-3)
        assert all(0 <= v <= 1 for pt in item["pos"] for v in pt)


def test_batch_prediction_over_a_folder_writes_boxes(det_server, tmp_path: Path):
    home, _ = det_server
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.png").write_bytes(scene(home, i))
    code, out, _ = run_cli("predict", f"{MODEL}:v1", str(folder), "--out", str(tmp_path / "r.jsonl"), "--min-score", "0.3",
                           home=home)
    assert code == 0 and out["images"] == 3 and out["target"] == "openvino"
    lines = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert all("box" in p and p["score"] >= 0.3 for line in lines for p in line["predictions"])
