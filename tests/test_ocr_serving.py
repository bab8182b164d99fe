"""An OCR model behind the real server and in `predict`: text lines in reading order with four-point polygons in the
pixels of the image sent, the same as the Python predictor on the same artifact; PAI-EAS's cv_common body with the
text as label and `pos` in pixels, as PAI's OCR service returns; JSON Lines from a folder.

The model's weights are set by the test so that it reads for certain (tests/ocr_helpers.py): one box over the whole
picture, read as "A"."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import httpx
import pytest
from PIL import Image

from factory.api import session
from serving import api as serving_api
from targets import api as targets_api
from targets.predictor import decode_image, load_predictor
from tests.conftest import run_cli
from tests.ocr_helpers import reading_ocr_model
from tests.serving_helpers import running_server


pytestmark = pytest.mark.slow  # a server, a trained model and its export: the slow job runs them


@pytest.fixture(scope="module")
def ocr_server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("ocr-serve")
    home = root / "ws"
    reading_ocr_model(root, home)
    targets_api.export("reader", "openvino", home=home, in_process=True)
    serving_api.deploy("reader", home=home)
    with running_server(home) as url:
        yield home, url


def picture(size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 180, 90)).save(buf, format="PNG")
    return buf.getvalue()


def test_predict_returns_text_lines_with_polygons_in_the_pixels_sent(ocr_server):
    home, url = ocr_server
    with session(home) as (ws, catalog):
        python = load_predictor(ws, catalog, "reader", "openvino", "fp32")
    for size in ((320, 240), (500, 180)):
        data = picture(size)
        out = httpx.post(f"{url}/v1/models/reader/predict", files={"image": ("p.png", data, "image/png")}).json()
        assert out["task"] == "ocr" and out["target"] == "openvino"
        assert out["image"] == {"width": size[0], "height": size[1]}
        assert out["predictions"] == [{k: p[k] for k in ("text", "score", "points")}
                                      for p in python.predict([decode_image(data)])[0]]
        (line,) = out["predictions"]
        assert line["text"] == "A" and 0 < line["score"] <= 1 and len(line["points"]) == 4
        xs, ys = [x for x, _ in line["points"]], [y for _, y in line["points"]]
        assert min(xs) >= 0 and max(xs) <= size[0] and min(ys) >= 0 and max(ys) <= size[1]
        assert max(xs) - min(xs) > 0.8 * size[0] and max(ys) - min(ys) > 0.8 * size[1]  # the whole picture


def test_pai_route_returns_the_text_as_label_and_corners_in_pixels(ocr_server):
    home, url = ocr_server
    data = picture((400, 300))
    mine = httpx.post(f"{url}/v1/models/reader/predict", files={"image": ("p.png", data, "image/png")}).json()["predictions"]
    body = {"dataArray": [{"name": "image", "type": "stream", "body": base64.b64encode(data).decode()}]}
    out = httpx.post(f"{url}/api/predict/reader", json=body).json()
    assert out["success"] and out["result"]["meta"] == {"height": 300, "width": 400}
    (item,) = out["result"]["output"][0]["body"]
    assert item["label"] == mine[0]["text"] == "A" and item["conf"] == mine[0]["score"]
    assert item["pos"] == [[round(x), round(y)] for x, y in mine[0]["points"]] and all(isinstance(v, int)
                                                                                      for pt in item["pos"] for v in pt)


def test_predict_over_a_folder_writes_json_lines_of_text(ocr_server, tmp_path: Path):
    home, _ = ocr_server
    folder = tmp_path / "in"
    folder.mkdir()
    for i, size in enumerate(((320, 240), (200, 100))):
        (folder / f"{i}.png").write_bytes(picture(size))
    code, out, _ = run_cli("predict", "reader", str(folder), "--out", str(tmp_path / "r.jsonl"), home=home)
    assert code == 0 and out["images"] == 2 and out["target"] == "openvino"
    lines = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [line["file"] for line in lines] == ["0.png", "1.png"]
    assert all([p["text"] for p in line["predictions"]] == ["A"] for line in lines)
