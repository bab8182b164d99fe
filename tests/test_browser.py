"""The phone preview in a real browser (headless Chromium driven by Playwright): the page loads the
web artifact with the vendored onnxruntime-web (WASM), its JavaScript pre- and post-processing
match the NumPy implementation on the same images, it gets the server's label, and the latency it
sends back becomes a measured browser row of the benchmark report."""

from __future__ import annotations

import base64
import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks import api as bench_api
from serving import api as serving_api
from serving.preview import ORT_DIR
from targets import api as targets_api
from targets.predictor import decode_image, preprocess
from tests.conftest import copy_home
from tests.serving_helpers import running_server

CHROMIUM = Path("/usr/bin/chromium")
MODEL = "shapes-tiny"
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def page_url(trained_home: Path, tmp_path_factory: pytest.TempPathFactory):
    if not CHROMIUM.is_file():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (scripts/setup installs it)")
    if not (ORT_DIR / "ort.wasm.min.js").is_file():
        pytest.skip("needs onnxruntime-web vendored into serving/static/ort (scripts/setup does it)")
    home = tmp_path_factory.mktemp("browser") / "ws"
    copy_home(trained_home, home)
    targets_api.export(f"{MODEL}:v1", "web", home=home)
    targets_api.export(f"{MODEL}:v1", "onnxruntime", home=home)
    with running_server(home) as url:
        link = serving_api.preview_link(MODEL, base_url=url, home=home)
        yield home, url, link["url"]


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module (Playwright's sync API runs one instance per thread)."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.is_file():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (scripts/setup installs it)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


def open_page(browser, url: str):
    tab = browser.new_page()
    tab.goto(url)
    tab.wait_for_function("window.edgefactory !== undefined")
    tab.evaluate("window.edgefactory.ready")
    return tab


@contextlib.contextmanager
def served_page(browser, home: Path, ref: str):
    """The phone page of model `ref` (exported to web, with its ONNX Runtime twin on the server), open in a tab."""
    if not (ORT_DIR / "ort.wasm.min.js").is_file():
        pytest.skip("needs onnxruntime-web vendored into serving/static/ort (scripts/setup does it)")
    targets_api.export(ref, "web", home=home)
    targets_api.export(ref, "onnxruntime", home=home)
    with running_server(home) as url:
        link = serving_api.preview_link(ref.split(":")[0], base_url=url, home=home)
        tab = open_page(browser, link["url"])
        try:
            yield tab
        finally:
            tab.close()


@pytest.fixture(scope="module")
def page(page_url, browser):
    tab = open_page(browser, page_url[2])
    yield tab
    tab.close()


def images(home: Path) -> dict[str, bytes]:
    """A dataset image (64 px, resized down), a non-square photo-like image, and a tiny one (resized up)."""
    out = {"dataset": sorted((home / "datasets").rglob("*.png"))[0].read_bytes()}
    rng = np.random.default_rng(3)
    for name, size in (("odd", (97, 61)), ("tiny", (7, 12))):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8)).save(buf, format="PNG")
        out[name] = buf.getvalue()
    return out


# decode a base64 PNG in the page as the phone page does: `rgba`, `bitmap.width`, `bitmap.height`
JS_PIXELS = """
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const bitmap = await createImageBitmap(new Blob([bytes], {type: "image/png"}), {colorSpaceConversion: "none", premultiplyAlpha: "none"});
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d", {willReadFrequently: true});
  ctx.drawImage(bitmap, 0, 0);
  const rgba = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
"""
JS_RUN = """async ([b64, spec]) => {""" + JS_PIXELS + """
  const r = await window.edgefactory.classifyPixels(rgba, bitmap.width, bitmap.height);
  return {input: Array.from(r.input), logits: r.logits, top: r.top};
}"""


def test_js_preprocessing_and_outputs_match_numpy(page, page_url):
    import onnxruntime as ort

    home, _, _ = page_url
    meta = page.evaluate("window.edgefactory.meta")
    web = next((home / "artifacts").rglob("web/fp32/model.onnx"))
    session = ort.InferenceSession(str(web), providers=["CPUExecutionProvider"])
    for name, data in images(home).items():
        js = page.evaluate(JS_RUN, [base64.b64encode(data).decode(), meta["preprocessing"]])
        x = preprocess([decode_image(data)], meta["preprocessing"])
        assert np.abs(np.asarray(js["input"], np.float32) - x.ravel()).max() < 1e-5, name  # pixel-exact resize
        logits = session.run(None, {"input": x})[0][0]
        assert np.abs(np.asarray(js["logits"]) - logits).max() < 1e-3, name
        z = np.exp(logits - logits.max())
        probs = z / z.sum()
        assert [t["index"] for t in js["top"]] == list(np.argsort(-probs)[:len(js["top"])]), name
        assert [t["score"] for t in js["top"]] == pytest.approx(sorted(probs, reverse=True)[:len(js["top"])], abs=1e-4)


def test_the_page_classifies_a_photo_like_the_server_and_reports_latency(page, page_url, tmp_path: Path):
    home, server, _ = page_url
    photo = tmp_path / "photo.png"
    photo.write_bytes(images(home)["dataset"])
    page.set_input_files("#file", str(photo))
    page.wait_for_selector("#result[data-label]", timeout=60000)
    label = page.get_attribute("#result", "data-label")
    page.check("#compare")
    page.wait_for_selector("#server[data-label]", timeout=60000)
    assert page.get_attribute("#server", "data-label") == label
    assert "ms" in page.text_content("#latency") and page.text_content("#backend").startswith("wasm")
    for _ in range(4):  # a few more runs for the percentiles
        page.set_input_files("#file", str(photo))
    assert page.evaluate("window.edgefactory.report()") is True
    report = bench_api.report(f"{MODEL}:v1", home=home, measure=False)
    rows = json.loads(Path(report["json"]).read_text())["results"]
    browser = [r for r in rows if r["device"].startswith("browser-")]
    assert len(browser) == 1 and browser[0]["measured"] and browser[0]["target"] == "web"
    assert browser[0]["latency_ms"]["p50"] > 0 and "HeadlessChrome" in browser[0]["device_name"]


def test_js_letterbox_and_fcos_decoding_match_numpy(page):
    """The phone page's detection half: letterbox preprocessing and FCOS decode + class-wise NMS in
    JavaScript give the NumPy results on the same inputs."""
    from factory.tasks.detection import decode, letterbox, postprocessing_spec
    from factory.tasks.detection.training import detection_preprocessing

    spec, pre = postprocessing_spec(["cat", "dog", "bird"], 96), detection_preprocessing(96)
    rng = np.random.default_rng(7)
    n = sum(h * w for h, w in spec["feature_sizes"])
    raw = rng.normal(-4, 1.5, (n, 3 + 5)).astype(np.float32)
    hot = rng.choice(n, 40, replace=False)
    raw[hot, :3] += rng.normal(6, 2, (40, 3)).astype(np.float32)  # confident locations, overlapping boxes
    raw[:, 3:7] = rng.normal(0.8, 0.5, (n, 4)).astype(np.float32)
    js = page.evaluate("async ([raw, spec]) => (await window.edgefactory.task('detection')).decodeFcos(new Float32Array(raw), spec)",
                       [raw.ravel().tolist(), spec])
    ref = decode(raw, spec)
    assert len(js) == len(ref) > 5
    for a, b in zip(js, ref):
        assert a["label"] == b["label"] and a["score"] == pytest.approx(b["score"], abs=1e-5)
        assert a["box"] == pytest.approx(b["box"], abs=1e-3)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (57, 83, 3), dtype=np.uint8)).save(buf, format="PNG")
    js_in = page.evaluate(JS_LETTERBOX, [base64.b64encode(buf.getvalue()).decode(), pre])
    img, scale, _ = letterbox(decode_image(buf.getvalue()), 96)
    x = (np.asarray(img, np.float32) * pre["scale"] - np.asarray(pre["mean"], np.float32)) / np.asarray(pre["std"], np.float32)
    assert js_in["scale"] == pytest.approx(scale)
    assert np.abs(np.asarray(js_in["input"], np.float32) - x.transpose(2, 0, 1).ravel()).max() < 1e-5


JS_LETTERBOX = """async ([b64, spec]) => {""" + JS_PIXELS + """
  const r = window.edgefactory.preprocessLetterbox(rgba, bitmap.width, bitmap.height, spec);
  return {input: Array.from(r.input), scale: r.scale};
}"""


@pytest.fixture(scope="module")
def detector_page(det_home: Path, tmp_path_factory: pytest.TempPathFactory, browser):
    """The phone page of the tiny detector (web fp32), with its ONNX Runtime twin on the server."""
    home = tmp_path_factory.mktemp("browser-det") / "ws"
    copy_home(det_home, home)
    with served_page(browser, home, "scenes-tiny-det:v1") as tab:
        yield home, tab


def js_page_result(field: str) -> str:
    """A page function of [base64 PNG] that runs the page's model on its pixels and returns `r.<field>`."""
    return """async ([b64]) => {""" + JS_PIXELS + f"""
  const r = await window.edgefactory.classifyPixels(rgba, bitmap.width, bitmap.height);
  return r.{field};
}}"""


JS_DETECT = js_page_result("detections")


def test_the_page_draws_the_detectors_boxes_like_python_and_the_server(detector_page, tmp_path: Path):
    from factory.api import session
    from targets.predictor import load_predictor

    home, page = detector_page
    scenes = sorted((home / "datasets").rglob("*.png"))[:3]
    with session(home) as (ws, catalog):
        python = load_predictor(ws, catalog, "scenes-tiny-det:v1", "onnxruntime", "fp32")
    for scene in scenes:  # 160 px scenes into the 128 px letterbox: boxes must come back in the scene's pixels
        js = page.evaluate(JS_DETECT, [base64.b64encode(scene.read_bytes()).decode()])
        (py,) = python.predict([decode_image(scene.read_bytes())])
        assert [d["label"] for d in js] == [d["label"] for d in py], scene.name
        for a, b in zip(js, py):
            assert a["score"] == pytest.approx(b["score"], abs=1e-3)
            assert np.abs(np.asarray(a["box"]) - np.asarray(b["box"])).max() < 0.5, scene.name
    photo = tmp_path / "scene.png"
    photo.write_bytes(scenes[0].read_bytes())
    page.set_input_files("#file", str(photo))
    page.wait_for_selector("#result[data-count]", timeout=60000)
    count = int(page.get_attribute("#result", "data-count"))
    assert count == len(python.predict([decode_image(photo.read_bytes())])[0]) > 0
    assert len(page.query_selector_all("#top li")) == count and "object" in page.text_content("#result")
    page.check("#compare")
    page.wait_for_selector("#server[data-count]", timeout=60000)
    assert int(page.get_attribute("#server", "data-count")) == count


@pytest.fixture(scope="module")
def retrieval_page(tmp_path_factory: pytest.TempPathFactory, browser):
    """The phone page of a tiny embedder with two galleries: `shop` (18 items: the page downloads its vectors)
    and `big` (22 items, over the phone limit set to 20 here: searched on the server)."""
    from factory import api
    from factory.tasks.retrieval.synthetic import write_identities
    from serving import gallery as gallery_api
    from serving import gallery_preview

    if not (ORT_DIR / "ort.wasm.min.js").is_file():
        pytest.skip("needs onnxruntime-web vendored into serving/static/ort (scripts/setup does it)")
    root = tmp_path_factory.mktemp("browser-retrieval")
    home = root / "ws"
    api.import_dataset(write_identities(root / "ids", identities=12, per_identity=4, size=40, seed=11), "ids",
                       task="retrieval", home=home)
    api.train({"dataset": "ids", "model": "tiny_cls", "epochs": 3, "name": "emb", "embedding_dim": 16}, home=home)
    write_identities(root / "gallery", identities=6, per_identity=3, size=40, seed=12)
    write_identities(root / "more", identities=2, per_identity=2, size=40, seed=13)
    gallery_api.build("emb", str(root / "gallery"), "big", home=home)
    gallery_api.add("big", str(root / "more"), home=home)
    gallery_api.build("emb", str(root / "gallery"), "shop", home=home)  # the newest: the page's first choice
    with pytest.MonkeyPatch.context() as mp, running_server(home) as url:
        mp.setattr(gallery_preview, "PHONE_MAX_ITEMS", 20)
        link = serving_api.preview_link("emb", base_url=url, home=home)
        tab = open_page(browser, link["url"])
        yield home, root, url, link, tab
        tab.close()


def test_the_page_finds_a_photos_gallery_neighbours_on_the_phone_and_on_the_server(retrieval_page, tmp_path: Path):
    import httpx

    from serving import gallery as gallery_api

    home, root, url, link, page = retrieval_page
    photo = root / "gallery" / "item_12_003" / "001.jpg"
    info = page.text_content("#gallery-info")
    assert "shop:v1" in info and "on this phone" in info
    page.set_input_files("#file", str(photo))
    page.wait_for_selector("#result[data-where=phone]", timeout=60000)
    expected = gallery_api.search("shop", [decode_image(photo.read_bytes())], 5, home=home)[0]
    assert page.get_attribute("#result", "data-label") == expected[0]["label"] == "item_12_003"
    assert float(page.get_attribute("#result", "data-score")) == pytest.approx(expected[0]["score"], abs=0.02)
    thumbs = page.query_selector_all("#neighbours img")
    assert len(thumbs) == 5
    page.wait_for_function("[...document.querySelectorAll('#neighbours img')].every((i) => i.complete && i.naturalWidth > 0)")
    assert [t.get_attribute("alt") for t in thumbs][:1] == [expected[0]["label"]]

    page.select_option("#gallery", "big")  # 22 items: over the (test's) phone limit, so the server searches
    page.wait_for_selector("#gallery-info[data-where=server]", timeout=30000)
    page.set_input_files("#file", str(root / "more" / "item_13_001" / "000.jpg"))
    page.wait_for_selector("#result[data-where=server]", timeout=60000)
    assert page.get_attribute("#result", "data-label") == "item_13_001"
    page.wait_for_function("[...document.querySelectorAll('#neighbours img')].every((i) => i.complete && i.naturalWidth > 0)")
    assert "big:v2" in page.text_content("#gallery-info")

    token = link["url"].rsplit("/", 1)[1]
    listed = httpx.get(f"{url}/p/{token}/indexes").json()["indexes"]
    assert [(g["index"], g["search_on"]) for g in listed] == [("shop", "phone"), ("big", "server")]
    bad = httpx.post(f"{url}/p/{token}/indexes/shop/search", json={"embedding": [1.0, 2.0], "k": 3})
    assert bad.status_code == 400 and "16-d" in bad.json()["error"]["message"]
    assert httpx.get(f"{url}/p/{token}/indexes/big/vectors", params={"version": 2}).status_code == 400  # too big
    assert httpx.get(f"{url}/p/{token}/indexes/shop/vectors", params={"version": 9}).json()["error"]["code"] == "INDEX_CHANGED"
    int8 = httpx.get(f"{url}/p/{token}/indexes/shop/vectors", params={"version": 1, "dtype": "int8"})
    assert int8.headers["x-vectors-shape"] == "18,16" and len(int8.content) == 18 * 16
    assert httpx.get(f"{url}/p/not.valid/indexes").json()["error"]["code"] == "LINK_INVALID"


def test_the_page_speaks_the_phones_language_and_switches(page_url, browser, tmp_path: Path):
    """A phone set to Chinese gets the page in Chinese (its words and the model's facts) and classifies as in
    English; the switch turns it to English and the choice is kept for the next visit."""
    home, _, url = page_url
    context = browser.new_context(locale="zh-CN", viewport={"width": 390, "height": 844})
    tab = context.new_page()
    tab.goto(url)
    tab.wait_for_function("window.edgefactory !== undefined")
    tab.evaluate("window.edgefactory.ready")
    assert tab.evaluate("document.documentElement.lang") == "zh-CN"
    assert tab.locator("#status").inner_text() == "准备就绪：拍一张照片或打开相机。"
    facts = tab.locator("dl").inner_text()
    assert "模型" in facts and "图像分类" in facts and "准确率" in facts and "shapes-tiny:v1" in facts
    assert tab.locator("#camera").inner_text() == "打开相机" and "加载用时" in tab.locator("#backend").inner_text()
    picture = base64.b64encode(images(home)["dataset"]).decode()
    label = tab.evaluate("""async (b64) => {
        const blob = await (await fetch(`data:image/png;base64,${b64}`)).blob();
        return (await window.edgefactory.classifyBlob(blob)).top[0].label; }""", picture)
    assert tab.locator("#result").get_attribute("data-label") == label
    assert "毫秒（1 次的中位数" in tab.locator("#latency").inner_text()
    tab.screenshot(path=str(tmp_path / "phone-zh.png"))
    tab.locator("#lang").click()  # -> English, remembered
    tab.wait_for_function("document.documentElement.lang === 'en'")
    tab.evaluate("window.edgefactory.ready")
    assert tab.locator("#camera").inner_text() == "Start camera" and "task" in tab.locator("dl").inner_text()
    tab.goto(url)
    tab.wait_for_function("window.edgefactory !== undefined")
    assert tab.evaluate("document.documentElement.lang") == "en" and tab.locator("#lang").inner_text() == "中文"
    context.close()


def test_js_ocr_post_processing_matches_numpy(page):
    """serving/web/ocr_post.js against factory/tasks/ocr/postprocess.py on the same probability maps and CTC
    outputs: the same boxes to the pixel, the same scores, texts and reading order."""
    from PIL import Image, ImageDraw

    from factory.tasks.ocr.postprocess import ctc_decode, db_boxes, reading_order

    rng = np.random.default_rng(11)
    boxes = 0
    for case in range(4):
        canvas = Image.new("F", (96, 72), 0.0)
        draw = ImageDraw.Draw(canvas)
        for _ in range(int(rng.integers(3, 7))):
            cx, cy, w, h, angle = rng.uniform(10, 86), rng.uniform(8, 64), rng.uniform(6, 40), rng.uniform(2, 12), rng.uniform(-40, 40)
            t = np.radians(angle)
            corners = (np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2) @ np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
            draw.polygon([tuple(p) for p in corners + [cx, cy]], fill=float(rng.uniform(0.45, 0.98)))
        prob = np.clip(np.asarray(canvas) + rng.normal(0, 0.04, (72, 96)), 0, 1).astype(np.float32)
        ours = db_boxes(prob, 384, 288)
        boxes += len(ours)
        theirs = page.evaluate("""async ([prob, h, w]) => {
            const m = await import("/static/preview/ocr_post.js");
            return m.dbBoxes(Float32Array.from(prob), h, w, 384, 288); }""", [prob.ravel().tolist(), 72, 96])
        assert [b["points"] for b in theirs] == [b["points"] for b in ours], case
        assert [b["score"] for b in theirs] == pytest.approx([b["score"] for b in ours], abs=1e-5)
        ordered = page.evaluate("""async (lines) => (await import("/static/preview/ocr_post.js")).readingOrder(lines)""",
                                [{"points": b["points"], "text": str(i)} for i, b in enumerate(ours)])
        assert [x["text"] for x in ordered] == [x["text"] for x in reading_order(
            [{"points": b["points"], "text": str(i)} for i, b in enumerate(ours)])]
    assert boxes >= 6  # turned, thin, faint and touching kernels among them
    probs = rng.dirichlet(np.ones(6) * 0.3, (1, 30)).astype(np.float32)
    alphabet = ["a", "b", "价", "7", "-"]
    (line,) = ctc_decode(probs, alphabet)
    theirs = page.evaluate("""async ([p, t, c, alphabet]) => (await import("/static/preview/ocr_post.js"))
        .ctcDecode(Float32Array.from(p), t, c, alphabet)""", [probs.ravel().tolist(), 30, 6, alphabet])
    assert theirs["text"] == line["text"] and theirs["score"] == pytest.approx(line["score"], abs=1e-6)


@pytest.fixture(scope="module")
def ocr_page(tmp_path_factory: pytest.TempPathFactory, browser):
    """The phone page of an OCR model that reads "A" over each picture (tests/ocr_helpers.py): both networks as web
    ONNX files, with their ONNX Runtime twin on the server."""
    from tests.ocr_helpers import reading_ocr_model

    root = tmp_path_factory.mktemp("browser-ocr")
    home = root / "ws"
    reading_ocr_model(root, home)
    with served_page(browser, home, "reader") as tab:
        yield home, tab


JS_READ = js_page_result("lines")


@pytest.mark.slow
def test_the_page_reads_text_with_both_networks_draws_it_and_copies_it(ocr_page, tmp_path: Path):
    from factory.api import session
    from targets.predictor import load_predictor

    home, page = ocr_page
    with session(home) as (ws, catalog):
        python = load_predictor(ws, catalog, "reader", "onnxruntime", "fp32")
    photo = tmp_path / "sign.png"
    Image.new("RGB", (400, 240), (210, 190, 120)).save(photo)
    (py,) = python.predict([decode_image(photo.read_bytes())])
    js = page.evaluate(JS_READ, [base64.b64encode(photo.read_bytes()).decode()])
    assert [x["text"] for x in js] == [x["text"] for x in py] == ["A"]
    assert np.abs(np.asarray(js[0]["points"]) - np.asarray(py[0]["points"])).max() <= 2  # the same box, in picture pixels
    page.set_input_files("#file", str(photo))
    page.wait_for_selector("#result[data-count='1']", timeout=60000)
    assert page.get_attribute("#result", "data-text") == "A" and "line" in page.text_content("#result")
    assert page.text_content("#top li").startswith("A:")
    page.click("#copy")
    page.wait_for_function("document.getElementById('copy').textContent === 'Copied'")
    page.check("#compare")
    page.wait_for_selector("#server[data-count]", timeout=60000)
    assert page.get_attribute("#server", "data-count") == "1" and "“A”" in page.text_content("#server")


@pytest.mark.slow
def test_the_page_runs_pp_ocrv4_s_networks_and_reads_what_python_reads(browser, tmp_path: Path):
    """The default OCR architecture (PP-OCRv4 mobile's detector and recognizer, fine-tuned one epoch) in
    onnxruntime-web: a rendered page in English and Chinese read on the phone page as the server's ONNX Runtime
    twin reads it (the same lines and boxes, the texts within a character), and mostly right."""
    import random

    from factory import api
    from factory.api import session
    from factory.tasks.ocr import ppocr
    from factory.tasks.ocr.formats import write_ocr
    from factory.tasks.ocr.metrics import edit_distance, end_to_end_scores
    from factory.tasks.ocr.synthetic import scene
    from targets.predictor import load_predictor

    if not ppocr.available():
        pytest.skip("rapidocr-onnxruntime or onnx2torch is not installed (scripts/setup installs both)")
    home = tmp_path / "ws"
    api.import_dataset(write_ocr(tmp_path / "scenes", "icdar2015", count=16, seed=5, languages=("en", "zh")), "signs",
                       task="ocr", home=home)
    api.train({"dataset": "signs", "epochs": 1, "img_size": 320, "name": "pp"}, home=home)
    assert api.list_models(home=home)[0]["arch"] == "ppocrv4_mobile"
    truth = scene(random.Random(21), 320, 240, languages=("en", "zh"), max_regions=4)
    photo = tmp_path / "sign.png"
    truth.image.save(photo)
    with served_page(browser, home, "pp") as tab:
        with session(home) as (ws, catalog):
            python = load_predictor(ws, catalog, "pp", "onnxruntime", "fp32")
        (py,) = python.predict([decode_image(photo.read_bytes())])
        js = tab.evaluate(JS_READ, [base64.b64encode(photo.read_bytes()).decode()])
    # the same lines and boxes; the crops are cut by each side's own perspective warp, so a character the model is
    # unsure of after one epoch may read differently, never more than one per line
    assert py and len(js) == len(py)
    assert max(np.abs(np.asarray(a["points"]) - np.asarray(b["points"])).max() for a, b in zip(js, py)) <= 2
    assert all(edit_distance(a["text"], b["text"]) <= 1 for a, b in zip(js, py))
    assert sum(a["text"] == b["text"] for a, b in zip(js, py)) >= len(py) - 1
    assert end_to_end_scores({"page": truth.regions}, {"page": js})["hmean"] >= 0.5
