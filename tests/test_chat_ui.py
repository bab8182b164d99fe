"""The chat app as users and scripts meet it: a real server on loopback (the chat mounted at / of
the REST app), driven through Gradio's /chat API with gradio_client, and through the page itself
in headless Chromium for the whole flow on the demo data with a tiny model: upload -> validate ->
device + budget -> confirm -> train -> export web + openvino -> report -> QR code shown."""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import httpx
import pytest

from factory.datasets.synthetic import write_digits
from tests.conftest import copy_home
from tests.serving_helpers import running_server

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def chat_server(trained_home: Path, tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("chatui") / "ws"
    copy_home(trained_home, home)
    with running_server(home) as url:
        yield home, url


def test_chat_api_drives_the_flow(chat_server):
    from gradio_client import Client

    home, url = chat_server
    assert httpx.get(f"{url}/healthz").json()["status"] == "ok"  # the REST API lives beside the chat
    client = Client(f"{url}/", verbose=False)
    say = lambda text: client.predict(text, api_name="/chat")  # noqa: E731
    assert "Data" in say("what can you do?")
    assert "shapes:v1" in say("use dataset shapes")
    assert "tiny_cls" in say("an Intel NUC, at most 10 points worse, use tiny_cls for 2 epochs")
    assert "Training started" in say("yes")
    deadline = time.time() + 300
    reply = ""
    while "Training finished" not in reply and time.time() < deadline:
        time.sleep(1)
        reply = say("how is it going?")
    assert "Training finished" in reply and "[image:" in reply and "Shall I go ahead?" in reply


def catalog_score(home: Path, model: str) -> float:
    from factory import api

    return api.show_model(model, home=home)["metrics"]["accuracy"]


def demo_zip(folder: Path) -> Path:
    """The demo data (scikit-learn's digits) as a user would upload it: a .zip, one folder per class."""
    data = write_digits(folder / "handwriting")
    archive = folder / "handwriting.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for p in sorted(data.rglob("*.png")):
            z.write(p, p.relative_to(data))
    return archive


@pytest.mark.browser
def test_the_whole_flow_in_a_browser(chat_server, tmp_path: Path):
    if not CHROMIUM.is_file():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (scripts/setup installs it)")
    from playwright.sync_api import sync_playwright

    home, url = chat_server
    archive = demo_zip(tmp_path)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        page.goto(f"{url}/")
        page.wait_for_selector("#message textarea", timeout=60000)

        def bot_text() -> str:
            return page.locator("#chat").inner_text()

        def say(text: str, expect: str, timeout: float = 60, files: list[str] | None = None) -> None:
            if files:
                page.set_input_files("#message input[type=file]", files)
                page.wait_for_timeout(500)
            page.fill("#message textarea", text)
            page.keyboard.press("Enter")
            page.wait_for_function("([t]) => document.querySelector('#chat').innerText.includes(t)", arg=[expect],
                                   timeout=timeout * 1000)

        say("here are my photos", "Shall I go ahead?", files=[str(archive)])
        say("yes", "Where will the model run?")
        assert "handwriting:v1" in bot_text() and "1797 images in 10 classes" in bot_text() and "balanced" in bot_text()
        page.get_by_role("tab", name="Datasets").click()
        assert "handwriting:v1" in page.locator("#tab-datasets").inner_text()
        say("an Intel NUC under 50 ms, at most 10 points worse, use tiny_cls for 3 epochs", "tiny_cls")
        say("yes", "Training started")
        page.get_by_role("tab", name="Training").click()
        page.wait_for_function("document.querySelector('#chat').innerText.includes('Training finished')", timeout=300000)
        say("yes", "Exporting")
        page.wait_for_function("document.querySelector('#chat').innerText.includes('Benchmark report')", timeout=600000)
        cells = page.locator("#chat table td").all_inner_texts()  # the results table, rendered from Markdown
        assert "openvino" in cells and "web" in cells
        say("yes", "API key")
        page.get_by_role("tab", name="Deployments").click()
        page.wait_for_selector("#qr img", timeout=30000)
        assert "handwriting-tiny-cls:v1" in page.locator("#tab-deployments").inner_text()
        report = page.locator("#chat a", has_text="/report").first.get_attribute("href")
        assert httpx.get(report).status_code == 200
        browser.close()


@pytest.mark.browser
def test_the_tabs_show_what_the_workspace_holds_whoever_made_it(trained_home: Path, tmp_path: Path):
    """The demo (or the CLI) made a model, its report and a deployment: a fresh browser with no conversation sees
    them in the tabs: the model with its confusion matrix and report link, the deployment with its QR code."""
    if not CHROMIUM.is_file():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (scripts/setup installs it)")
    from playwright.sync_api import sync_playwright

    from benchmarks import api as bench_api
    from serving import api as serving_api

    home = tmp_path / "ws"
    copy_home(trained_home, home)
    serving_api.deploy("shapes-tiny", home=home)
    bench_api.report("shapes-tiny", measure=False, home=home)
    serving_api.preview_link("shapes-tiny", home=home)  # what `edgefactory serve` does at start
    with running_server(home) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        page.goto(f"{url}/")
        page.wait_for_selector("#message textarea", timeout=60000)
        page.wait_for_function("document.querySelector('#tab-datasets').innerText.includes('shapes:v1')", timeout=30000)
        page.get_by_role("tab", name="Models & Reports").click()
        page.wait_for_function("document.querySelector('#tab-models').innerText.includes('shapes-tiny:v1')", timeout=30000)
        link = page.locator("#tab-models a", has_text="report").first.get_attribute("href")
        assert httpx.get(url + link).status_code == 200
        page.wait_for_selector("#confusion img", timeout=30000)
        page.get_by_role("tab", name="Deployments").click()
        page.wait_for_selector("#qr img", timeout=30000)
        assert "shapes-tiny:v1" in page.locator("#tab-deployments").inner_text()
        page.screenshot(path=str(tmp_path / "deployments.png"))
        # a browser set to Chinese gets the page in Chinese; the switch turns it to English
        zh = browser.new_page(viewport={"width": 1300, "height": 1000}, locale="zh-CN")
        zh.goto(f"{url}/")
        zh.wait_for_selector("#message textarea", timeout=60000)
        zh.wait_for_function("document.querySelector('#tab-datasets').innerText.includes('shapes:v1')", timeout=30000)
        assert zh.get_by_role("tab").all_inner_texts() == ["数据集", "训练", "模型与报告", "部署"]
        assert "| 数据集 | 任务 |" not in zh.locator("#tab-datasets").inner_text()  # rendered as a table
        assert "图像分类" in zh.locator("#tab-datasets").inner_text() and "你好！" in zh.locator("#chat").inner_text()
        zh.fill("#message textarea", "部署 shapes-tiny")
        zh.keyboard.press("Enter")
        zh.wait_for_function("document.querySelector('#chat').innerText.includes('要我开始吗')", timeout=30000)
        zh.get_by_role("tab", name="模型与报告").click()  # the model taken up, with its own score (not 0.00 %)
        zh.wait_for_function("document.querySelector('#tab-models').innerText.includes('测试集准确率')", timeout=30000)
        score = catalog_score(home, "shapes-tiny")
        assert f"**shapes-tiny:v1**：测试集准确率 {score:.2%}".replace("**", "") in zh.locator("#tab-models").inner_text()
        zh.screenshot(path=str(tmp_path / "zh.png"))
        zh.get_by_label("English").check()
        zh.wait_for_function("document.querySelector('[role=tab]').innerText.includes('Datasets')", timeout=30000)
        assert "In this workspace" in zh.locator("#tab-datasets").inner_text()
        browser.close()
