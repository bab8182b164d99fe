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
def served(trained_home: Path, tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("hardening") / "ws"
    copy_home(trained_home, home)
    targets_api.export(f"{MODEL}:v1", "web", home=home)
    serving_api.deploy(MODEL, home=home)
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
