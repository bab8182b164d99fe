"""The chat assistant: the guide's intents and slots on a table of phrasings (English and Chinese),
every step of the flow with the real tools, bad input answered in plain words (never a traceback),
confirmations before anything writes, conversations that survive a restart, the docs index, and a
scripted tool-calling model driving the same tools (with fallback when it fails)."""

from __future__ import annotations

import json
import tempfile
import time
import zipfile
from pathlib import Path

import pytest
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from chat_ui.assistant import Assistant
from chat_ui.parse import parse
from factory import api as core_api
from targets.devices import load_profiles
from tests.conftest import copy_home

PROFILES = load_profiles()

PHRASES = [  # text, intents that must be found, slots that must be found
    ("It will run on a Raspberry Pi 4, under 30 ms, at most 1 point worse", set(),
     {"devices": ["raspberry_pi_4"], "latency_ms": 30.0, "max_drop": 1.0}),
    ("部署到安卓手机，延迟小于五十毫秒，精度下降不超过一个点", set(),
     {"devices": ["snapdragon_8_gen3"], "latency_ms": 50.0, "max_drop": 1.0}),
    ("an Intel NUC and a Jetson, model under 5 MB", set(), {"devices": ["intel_nuc_13", "jetson_orin_nano"], "size_mb": 5.0}),
    ("iPhone, 30 fps", set(), {"devices": ["apple_a17_pro"], "latency_ms": 1000 / 30}),
    ("树莓派5，两百毫秒以内", set(), {"devices": ["raspberry_pi_5"]}), ("部署到树莓派4上", set(), {"devices": ["raspberry_pi_4"]}),
    ("我想识别照片里的文字", set(), {"task": "ocr"}), ("read the text on labels", set(), {"task": "ocr"}),
    ("no accuracy loss please, 0.5 s is fine", set(), {"max_drop": 0.0, "latency_ms": 500.0}),
    ("yes", {"confirm"}, {}), ("好的", {"confirm"}, {}), ("确认", {"confirm"}, {}), ("no", {"deny"}, {}), ("取消", {"deny"}, {}),
    ("how is it going?", {"status"}, {}), ("训练进度怎么样了", {"status"}, {}),
    ("stop", {"stop"}, {}), ("停止训练", {"stop"}, {}), ("go back", {"back"}, {}), ("返回上一步", {"back"}, {}),
    ("start over", {"restart"}, {}), ("重新开始", {"restart"}, {}),
    ("what can you do?", {"help"}, {}), ("你能做什么", {"help"}, {}),
    ("what is INT8?", {"question"}, {}), ("什么是剪枝", {"question"}, {}),
    ("use the demo data", {"demo"}, {}), ("用示例数据", {"demo"}, {}),
    ("use tiny_cls for 3 epochs, 2 minutes", set(), {"model": "tiny_cls", "epochs": 3, "minutes": 2.0}),
    ("train a detector", set(), {"task": "detection"}), ("图像分类", set(), {"task": "classification"}),
    ("find objects with bounding boxes", set(), {"task": "detection"}), ("目标检测", set(), {"task": "detection"}),
    ("use tiny_det at 128 px", set(), {"model": "tiny_det", "img_size": 128}),
]


@pytest.mark.parametrize("text,intents,slots", PHRASES)
def test_intents_and_slots(text: str, intents: set, slots: dict):
    p = parse(text, PROFILES)
    assert intents <= p.intents, (text, p.intents)
    if "confirm" not in intents:
        assert "confirm" not in p.intents, text
    for key, value in slots.items():
        got = getattr(p, key)
        assert got == (pytest.approx(value) if isinstance(value, float) else value), (text, key, got)


@pytest.fixture(scope="module")
def assistant_home(trained_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("chat") / "ws"
    copy_home(trained_home, home)
    return home


def zipped(folder: Path, archive: Path, pattern: str = "*") -> Path:
    """The files under `folder` matching `pattern` in the .zip `archive`, at their paths relative to it."""
    with zipfile.ZipFile(archive, "w") as z:
        for f in folder.rglob(pattern):
            z.write(f, f.relative_to(folder))
    return archive


def wait_until(assistant: Assistant, conv: str, step: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assistant.poll(conv)
        if assistant.load(conv)[0].step == step:
            return
        time.sleep(0.5)
    raise AssertionError(f"conversation did not reach {step}: {assistant.load(conv)[0].step}")


def test_the_whole_flow_with_confirmations_and_a_restart(assistant_home: Path):
    a = Assistant(assistant_home, base_url="http://127.0.0.1:9")
    conv = "flow"
    assert "nothing to stop" in a.chat(conv, "stop").text  # stop when nothing runs
    r = a.chat(conv, "use dataset shapes")
    assert "shapes:v1" in r.text and "Where will the model run?" in r.text
    r = a.chat(conv, "on my toaster")
    assert "did not recognise a device" in r.text and "Raspberry Pi 4" in r.text
    r = a.chat(conv, "an Intel NUC, under 0.01 ms")
    assert "below what any runtime can do" in r.text
    r = a.chat(conv, "an Intel NUC, under 50 ms, at most 40 points worse")
    assert "at most 20 points" in r.text
    r = a.chat(conv, "an Intel NUC, under 50 ms, at most 10 points worse, use tiny_cls for 3 epochs")
    assert "tiny_cls" in r.text and "Shall I go ahead?" in r.text
    runs_before = len(core_api.list_runs(home=assistant_home))
    assert "nothing was changed" in a.chat(conv, "no").text.lower()
    assert len(core_api.list_runs(home=assistant_home)) == runs_before  # nothing ran without a yes
    a.chat(conv, "use tiny_cls for 3 epochs")
    assert "Training started" in a.chat(conv, "yes").text
    assert "Training" in a.chat(conv, "how is it going?").text

    restarted = Assistant(assistant_home, base_url="http://127.0.0.1:9")  # a server restart keeps the conversation
    assert restarted.load(conv)[0].step == "training"
    wait_until(a, conv, "export")
    state, messages = a.load(conv)
    assert state.model == "shapes-tiny-cls:v1" and "Training finished" in messages[-1]["content"]
    assert any(p.endswith("confusion_matrix.png") for p in messages[-1]["images"])
    assert "Exporting" in a.chat(conv, "yes").text
    wait_until(a, conv, "deploy")
    state, messages = a.load(conv)
    assert {e["target"] for e in state.exports} == {"openvino", "web"} and "Benchmark report" in messages[-1]["content"]
    assert Path(state.report["html"]).is_file()
    r = a.chat(conv, "yes")
    assert "API key" in r.text and "curl" in r.text and r.images and Path(r.images[0]).is_file()
    key = next(w.strip("`") for w in r.text.split() if w.strip("`").startswith("ef_"))
    assert key not in json.dumps(a.load(conv)[1]) and key in json.dumps(a.messages(conv))  # shown, never stored
    assert a.load(conv)[0].step == "done"
    assert "Starting over" in a.chat(conv, "start over").text and a.load(conv)[0].step == "data"


def test_bad_input_gets_a_helpful_reply(assistant_home: Path, tmp_path: Path):
    a = Assistant(assistant_home)
    corrupt = tmp_path / "photos.zip"
    corrupt.write_bytes(b"PK\x03\x04 this is not really a zip")
    r = a.chat("bad", "here are my photos", [str(corrupt)])
    assert "Shall I go ahead?" in r.text
    r = a.chat("bad", "yes")
    assert r.text.startswith("That did not work:") and "How to fix it" in r.text and "Traceback" not in r.text
    text_zip = tmp_path / "notes.zip"
    with zipfile.ZipFile(text_zip, "w") as z:
        z.writestr("readme.txt", "no images here")
    a.chat("bad", "", [str(text_zip)])
    r = a.chat("bad", "yes")
    assert "did not work" in r.text and "How to fix it" in r.text
    assert "not supported yet" in a.chat("bad", "I want to train a segmentation model").text
    assert "first step" in a.chat("bad", "go back").text  # "go back" at the start: says where we are


def test_docs_questions_are_answered_from_the_index(assistant_home: Path):
    a = Assistant(assistant_home)
    assert "INT8" in a.chat("docs", "what is INT8 quantization?").text
    assert "folder" in a.chat("docs", "which dataset formats can I upload?").text.lower()
    assert "量化" in a.chat("docs", "什么是量化和剪枝？").text


class ScriptedChatModel(BaseChatModel):
    """Replies from a script: each entry is an AIMessage (possibly with tool calls) or an exception to raise."""

    script: list

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools, **kwargs):
        return self

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return ChatResult(generations=[ChatGeneration(message=step)])


def test_a_tool_calling_model_drives_the_same_tools_with_confirmations(assistant_home: Path):
    script = [AIMessage("", tool_calls=[{"name": "list_datasets", "args": {}, "id": "c1"}]),
              AIMessage("You have the dataset shapes."),
              AIMessage("", tool_calls=[{"name": "import_demo_data", "args": {"name": "digits-llm"}, "id": "c2"}]),
              ConnectionError("model server unreachable"),
              AIMessage("", tool_calls=[{"name": "no_such_tool", "args": {}, "id": "c3"}])]
    a = Assistant(assistant_home, chat_model=ScriptedChatModel(script=script))
    assert a.chat("llm", "which datasets do I have?").text == "You have the dataset shapes."
    r = a.chat("llm", "import the digits as digits-llm")
    assert "import_demo_data" in r.text and "Shall I go ahead?" in r.text
    assert "digits-llm" not in {d["dataset"] for d in core_api.list_datasets(home=assistant_home)}  # not before the yes
    assert "Done" in a.chat("llm", "yes").text
    assert "digits-llm" in {d["dataset"] for d in core_api.list_datasets(home=assistant_home)}
    r = a.chat("llm", "what should I do next?")
    assert "language model failed" in r.text and "unreachable" in r.text  # the guide answers instead
    assert "unknown tool" in a.chat("llm", "next").text


@pytest.mark.slow  # the detection flow's steps are the classification flow's; its own words are tested here too
def test_the_flow_for_a_detection_dataset(assistant_home: Path, tmp_path: Path):
    """A .zip in the YOLO layout is recognised as detection data; the recipe, the training summary, the
    exports table and the report speak mAP@0.5, and the deployed detector's phone link is made."""
    from factory.tasks.detection.datasets import write_detection

    folder = write_detection(tmp_path / "yolo", images=48, size=128, seed=3, layout="yolo")
    archive = zipped(folder, tmp_path / "street.zip")
    a = Assistant(assistant_home, base_url="http://127.0.0.1:9")
    conv = "detect"
    assert "boxes" in a.chat(conv, "I want to detect objects").text
    assert "synthetic 320 px scenes" in a.chat(conv, "demo").text  # the detection demo data is offered, then declined
    a.chat(conv, "no")
    r = a.chat(conv, "", [str(archive)])
    assert "street.zip" in r.text and "boxes for object detection" in r.text
    r = a.chat(conv, "yes")
    assert "Dataset **street:v1** (yolo)" in r.text and "boxes (" in r.text and "By size:" in r.text
    assert "how much mAP@0.5" in r.text
    r = a.chat(conv, "an Intel NUC, at most 20 points worse, use tiny_det at 128 px for 3 epochs")
    assert "FCOS" in r.text and "tiny_det" in r.text and "128 px" in r.text and "mAP@0.5 at most 20" in r.text
    assert "Training started" in a.chat(conv, "yes").text
    wait_until(a, conv, "export")
    state, messages = a.load(conv)
    assert state.task == "detection" and state.model == "street-tiny-det:v1"
    assert "mAP@0.5" in messages[-1]["content"] and "by size" in messages[-1]["content"]
    a.chat(conv, "yes")
    wait_until(a, conv, "deploy")
    state, messages = a.load(conv)
    assert "| target | precision | mAP@0.5 |" in messages[-1]["content"] and state.exports
    r = a.chat(conv, "yes")
    assert "API key" in r.text and r.images and Path(r.images[0]).is_file()


def test_the_detection_demo_data_imports_as_boxes(tmp_path: Path):
    from chat_ui.tools import build_tools
    from factory.jobs import JobManager

    tools = build_tools(tmp_path / "ws", JobManager(), lambda query: [])
    out = tools["import_demo_data"].invoke({"name": "scenes", "kind": "scenes"})
    assert out["task"] == "detection" and out["format"] == "voc" and out["num_images"] == 300
    assert out["stats"]["num_boxes"] > 300 and set(out["classes"]) == {"circle", "square", "triangle"}
    assert not list(Path(tempfile.gettempdir()).glob("edgefactory-demo-*/scenes"))  # the scratch copy is gone


def test_the_recipe_uses_the_factorys_resolver_and_the_users_word_on_flips(assistant_home: Path):
    """The chat proposes what `edgefactory train` would resolve (size, start, flips, each with its reason), and
    "flips off" / "不要镜像" changes the recipe instead of answering its yes/no question."""
    a = Assistant(assistant_home, base_url="http://127.0.0.1:9")
    conv = "recipe"
    a.chat(conv, "use dataset shapes")
    r = a.chat(conv, "an Intel NUC, under 50 ms, use tiny_cls for 2 epochs")
    resolved = core_api.resolve_training({"dataset": "shapes", "model": "tiny_cls", "epochs": 2}, home=assistant_home)
    assert f"at **{resolved['img_size']} px**" in r.text and resolved["why"]["img_size"] in r.text
    assert "with mirrored copies" in r.text and "flips off" in r.text  # symmetric shapes: flips on, and the question
    r = a.chat(conv, "no flips please, orientation matters")
    assert "with no mirrored copies (as you asked)" in r.text and "Shall I go ahead?" in r.text
    assert a.load(conv)[0].pending["args"]["hflip"] == 0.0
    assert parse("不要镜像", PROFILES).hflip == 0.0 and parse("flips on", PROFILES).hflip == 0.5
    assert not parse("no flips", PROFILES).intents & {"deny", "confirm"}


@pytest.mark.slow
def test_the_flow_for_reading_text_from_data_to_the_phone(tmp_path: Path):
    """"Read the text in photos of signs": ICDAR scenes in a .zip, the data in plain words (texts, characters,
    languages, text height), a recipe, training, the lines read worst, both networks exported and measured, deployed
    with the phone's QR code."""
    from factory.tasks.ocr.formats import write_ocr

    folder = write_ocr(tmp_path / "signs", "icdar2015", count=30, seed=4, languages=("en", "zh"))
    archive = zipped(folder, tmp_path / "signs.zip")
    a = Assistant(tmp_path / "ws", base_url="http://127.0.0.1:9")
    conv = "signs"
    assert "text reader (OCR)" in a.chat(conv, "I want to read the text in photos of signs").text
    assert "text regions with their transcriptions" in a.chat(conv, "", [str(archive)]).text
    r = a.chat(conv, "yes")
    assert "Dataset **signs:v1** (icdar2015): 30 images; split" in r.text and "distinct characters (Latin letters and " \
        "digits, Chinese)" in r.text and "px high" in r.text and "end-to-end Hmean" in r.text
    r = a.chat(conv, "an Intel NUC, at most 20 points worse, use tiny_ocr for 2 epochs")
    assert "tiny_ocr" in r.text and "no mirrored copies" in r.text
    assert "Training started" in a.chat(conv, "yes").text
    wait_until(a, conv, "export")
    state, messages = a.load(conv)
    assert state.task == "ocr" and "end-to-end Hmean" in messages[-1]["content"]
    assert "Lines read worst" in messages[-1]["content"]
    a.chat(conv, "yes")
    wait_until(a, conv, "deploy")
    state, messages = a.load(conv)
    assert "| target | precision | end-to-end Hmean |" in messages[-1]["content"]
    assert {e["target"] for e in state.exports} >= {"openvino", "web"}
    r = a.chat(conv, "yes")
    assert "API key" in r.text and "/api/predict/signs-tiny-ocr" in r.text and Path(r.images[0]).is_file()


@pytest.mark.slow
def test_the_flow_for_retrieval_with_a_gallery(tmp_path: Path):
    """"Find which product this is": identity folders train an embedder (Recall@1 in the words), it is exported and
    deployed, then the gallery is built from the dataset and grown from an uploaded .zip without retraining."""
    from factory.tasks.retrieval.synthetic import write_identities

    folder = write_identities(tmp_path / "products", identities=16, per_identity=5, size=48, seed=5)
    extra = write_identities(tmp_path / "extra", identities=2, per_identity=3, size=48, seed=77)
    archive = zipped(extra, tmp_path / "new.zip", "*.jpg")
    a = Assistant(tmp_path / "ws", base_url="http://127.0.0.1:9")
    conv = "products"
    assert "one folder of photos per identity" in a.chat(conv, "I want to find which product is in a photo").text
    r = a.chat(conv, "", [str(folder)])
    assert "a folder of photos per identity" in r.text
    r = a.chat(conv, "yes")
    assert "validation and test hold identities the model never trains on" in r.text and "Recall@1" in r.text
    a.chat(conv, "an Intel NUC, at most 20 points worse, use tiny_cls for 3 epochs")
    assert "Training started" in a.chat(conv, "yes").text
    wait_until(a, conv, "export")
    state, messages = a.load(conv)
    assert state.task == "retrieval" and "identities it never saw" in messages[-1]["content"]
    a.chat(conv, "yes")
    wait_until(a, conv, "deploy")
    r = a.chat(conv, "yes")
    assert "the gallery it searches" in r.text and a.load(conv)[0].step == "gallery"
    assert "index them as gallery" in a.chat(conv, "use the dataset").text
    r = a.chat(conv, "yes")
    assert "80 photos, flat index" in r.text and "/v1/indexes/products-tiny-cls-gallery/search" in r.text and r.secrets
    assert "not retrained" in a.chat(conv, "", [str(archive)]).text
    r = a.chat(conv, "yes")
    assert "products-tiny-cls-gallery:v2**: 86 photos" in r.text


def test_the_whole_flow_in_chinese_keeps_what_was_said_and_answers_in_chinese(tmp_path: Path):
    """The issue's conversation, in Chinese from the demo data to the QR code: the device and the latency said in the
    first message are kept (the next step was "Where will the model run?" as if they had not been said), every reply
    is in Chinese with the facts in it, "我想识别照片里的文字" asks for OCR data, and "我想做图像分割" is a task not
    offered yet, not a device name."""
    home = tmp_path / "ws"
    a = Assistant(home, base_url="http://127.0.0.1:9")
    r = a.chat("zh", "我想用演示数据训练一个图像分类模型，部署到树莓派上，延迟小于30毫秒")
    assert "我将导入演示数据" in r.text and "**digits**" in r.text and "要我开始吗？" in r.text
    r = a.chat("zh", "好的")
    assert "数据集 **digits:v1**" in r.text and "1797 张图片" in r.text and "10 个类别" in r.text
    assert "模型要在哪里运行" not in r.text
    assert "针对 **树莓派 5**" in r.text and "每张图小于 30 毫秒" in r.text and "mobilenet_v3_small" in r.text
    assert "*理由：*" in r.text and "不加镜像副本" in r.text  # the resolver's reasons, in Chinese: digits are not mirrored
    r = a.chat("zh", "还是改成英特尔 NUC 吧")  # a change of device, in Chinese, keeps the latency budget
    assert "针对 **英特尔 NUC 13 Pro**" in r.text and "每张图小于 30 毫秒" in r.text
    r = a.chat("zh", "用 tiny_cls 训练 3 轮")
    assert "**tiny_cls**" in r.text and "3 轮" in r.text and "要我开始吗？" in r.text
    assert "训练已开始" in a.chat("zh", "好的").text
    assert "训练" in a.chat("zh", "进度怎么样了").text
    wait_until(a, "zh", "export")
    state, messages = a.load("zh")
    assert state.model == "digits-tiny-cls:v1" and state.lang == "zh"
    done = messages[-1]["content"]
    assert f"训练完成：**digits-tiny-cls:v1** 在测试集上的准确率为 **{state.evaluation['accuracy']:.2%}**" in done
    assert "接下来我会为 openvino, web 压缩并导出它（精度损失在 1 个点以内就用 INT8" in done
    assert "正在导出到" in a.chat("zh", "好的").text
    wait_until(a, "zh", "deploy")
    state, messages = a.load("zh")
    report = messages[-1]["content"]
    assert "导出完成：" in report and "| 目标 | 精度 | 准确率 |" in report and "**基准测试报告：**" in report
    assert "要我在这里部署它" in report and {e["target"] for e in state.exports} == {"web", "openvino"}
    r = a.chat("zh", "好的")
    assert "已部署 **digits-tiny-cls:v1**" in r.text and "API 密钥（只显示这一次" in r.text
    assert "用手机扫描二维码" in r.text and r.images and Path(r.images[0]).is_file()
    assert "我可以离线带你" in a.chat("zh", "你能做什么？").text
    r = a.chat("ocr", "我想识别照片里的文字")
    assert "那就训练文字识别（OCR）模型" in r.text and "没有从" not in r.text
    r = a.chat("seg", "我想做图像分割")
    assert "暂时还不支持图像分割" in r.text and "没有从" not in r.text
    assert "Segmentation is not supported yet" in a.chat("seg", "I want to segment the parts").text  # back in English


def test_a_language_is_asked_for_and_errors_are_explained_in_it(tmp_path: Path):
    a = Assistant(tmp_path / "ws", base_url="http://127.0.0.1:9")
    r = a.chat("lang", "说中文")
    assert r.text.startswith("好的，接下来我用中文回答。") and "说 *演示*" in r.text and a.load("lang")[0].lang == "zh"
    assert a.chat("lang", "Jetson Orin").text and a.load("lang")[0].lang == "zh"  # a device's name is not English
    bad = tmp_path / "empty.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("readme.txt", "no images here")
    a.chat("lang", "", [str(bad)])
    r = a.chat("lang", "好的")
    assert "这一步没有成功：" in r.text and "**怎么解决：**" in r.text, r.text
    assert a.chat("lang", "请说英语").text.startswith("OK, I will answer in English.") and a.load("lang")[0].lang == "en"
    assert "Shall I go ahead?" in a.chat("lang", "", [str(bad)]).text


def test_the_chat_takes_up_any_model_of_the_workspace(assistant_home: Path, tmp_path: Path):
    """A model the CLI (or the demo, or another conversation) made: "show me the report of ...", "deploy ..."."""
    home = tmp_path / "ws"
    copy_home(assistant_home, home)
    a = Assistant(home, base_url="http://127.0.0.1:9")
    r = a.chat("pick", "show me the report of shapes-tiny")
    assert "shapes-tiny:v1" in r.text and "no benchmark report yet" in r.text and "Shall I go ahead?" in r.text
    r = a.chat("pick", "yes")
    assert "/v1/models/shapes-tiny/versions/1/report" in r.text
    assert "/v1/models/shapes-tiny/versions/1/report" in a.chat("pick", "报告 shapes-tiny:v1").text  # now it exists
    r = a.chat("pick", "部署 shapes-tiny")  # in Chinese from here on
    assert "我将在这里部署 **shapes-tiny:v1**" in r.text and "要我开始吗？" in r.text
    r = a.chat("pick", "好的")
    assert "已部署 **shapes-tiny:v1**" in r.text and "API 密钥" in r.text and r.images


def test_continue_training_a_model_for_a_few_more_minutes(assistant_home: Path, tmp_path: Path):
    home = tmp_path / "ws"
    copy_home(assistant_home, home)
    a = Assistant(home, base_url="http://127.0.0.1:9")
    r = a.chat("more", "continue training shapes-tiny for 0.2 more minutes")
    assert "continue training **shapes-tiny:v1**" in r.text and "0.2 more minutes" in r.text and "Shall I go ahead?" in r.text
    assert "Training started" in a.chat("more", "yes").text
    wait_until(a, "more", "export")
    state, _ = a.load("more")
    assert state.model == "shapes-tiny:v2"
    assert core_api.show_model("shapes-tiny:v2", home=home).get("parent") == "shapes-tiny:v1"
