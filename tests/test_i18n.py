"""The product's languages (factory.i18n): which language a message or a browser asks for, and that every text the
chat, the app and the tasks render through `tr` has a Chinese translation with the same placeholders, read from
the source with `ast` so that a new English sentence without its translation fails here."""

from __future__ import annotations

import ast
import string
from pathlib import Path

import pytest

from chat_ui.words import CAPABILITIES, asked_language  # importing chat_ui.words registers the chat's texts
from factory.datasets.issues import CATALOGUE
from factory.i18n import _CATALOGS, from_accept_language, language_of, speaking, tr
from factory.tasks import all_tasks

REPO = Path(__file__).resolve().parents[1]
ZH = _CATALOGS["zh"]


@pytest.mark.parametrize("text,current,expected", [
    ("我想训练一个图像分类模型", None, "zh"), ("好的", "en", "zh"), ("use the demo data", "zh", "en"),
    ("yes", "zh", "zh"), ("ok", None, None), ("deploy digits-mobilenet-v3-small", "zh", "zh"),
    ("tiny_cls, 30 ms", "zh", "zh"), ("It will run on a Raspberry Pi", None, "en"), ("部署 digits", "en", "zh"),
    ("Jetson Orin", "zh", "zh"), ("yes please", "zh", "zh"), ("use the demo data", "zh", "en"),
    ("C:\\Users\\me\\data.zip", "zh", "zh"),
])
def test_the_language_of_a_message(text: str, current: str | None, expected: str | None):
    assert language_of(text, current) == expected


@pytest.mark.parametrize("text,expected", [
    ("说中文", "zh"), ("请说英语", "en"), ("用英语回答", "en"), ("英文", "en"), ("切换成英文", "en"), ("switch to Chinese", "zh"),
    ("Chinese please", "zh"), ("speak English", "en"), ("reply in english", "en"), ("I want OCR for text in Chinese", None),
    ("train a model to read signs in chinese", None), ("部署到树莓派", None),
])
def test_a_message_that_asks_for_a_language(text: str, expected: str | None):
    assert asked_language(text) == expected


@pytest.mark.parametrize("header,expected", [
    ("zh-CN,zh;q=0.9,en;q=0.8", "zh"), ("en-US,en;q=0.9", "en"), ("fr-FR,fr;q=0.9,zh;q=0.5,en;q=0.4", "zh"),
    ("en;q=0.2, zh-TW;q=0.8", "zh"), ("de", None), ("", None), (None, None), ("zh;q=abc, en", "en"),
])
def test_the_language_a_browser_asks_for(header: str | None, expected: str | None):
    assert from_accept_language(header) == expected


def test_tr_renders_in_the_active_language_and_falls_back_to_english():
    assert tr("Shall I go ahead? (yes / no)") == "Shall I go ahead? (yes / no)" and tr(CAPABILITIES) == CAPABILITIES
    with speaking("zh"):
        assert tr("Shall I go ahead? (yes / no)") == "要我开始吗？（好的 / 不要）"
        assert tr("{minutes:g} minutes", minutes=2.0) == "2 分钟"
        assert tr("a sentence nobody translated") == "a sentence nobody translated"
        with speaking("en"):
            assert tr("{minutes:g} minutes", minutes=2.0) == "2 minutes"
    with speaking("xx"):  # unknown: English
        assert tr("{epochs} epochs", epochs=3) == "3 epochs"


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def _literals(node: ast.AST, names: dict[str, ast.AST]) -> list[str]:
    """The English texts a `tr(...)` first argument can be: a literal, a module constant, a dict's values."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Dict):
        return [v.value for v in node.values if isinstance(v, ast.Constant)]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
        return _literals(node.func.value, names)
    if isinstance(node, ast.Name) and node.id in names:
        return _literals(names[node.id], names)
    return []


def rendered_texts() -> list[tuple[str, str]]:
    found = []
    for path in sorted([*REPO.joinpath("chat_ui").glob("*.py"), *REPO.joinpath("factory").rglob("*.py")]):
        tree = ast.parse(path.read_text())
        names = {t.id: n.value for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "tr" and node.args:
                found += [(path.relative_to(REPO).as_posix(), text) for text in _literals(node.args[0], names) if text]
    return found


def test_every_rendered_text_has_a_chinese_translation_with_the_same_placeholders():
    tasks = all_tasks()  # their modules register their texts
    texts = rendered_texts()
    assert len(texts) > 150  # the scan sees the guide, the app and the tasks
    statics = [(t.name, text) for t in tasks for text in (t.name, t.metric_label, t.unit, t.class_word,
                                                            t.class_word.capitalize(), t.described,
                                                            t.upload_hint, (t.demo or {}).get("summary", "")) if text]
    issues = [("issue " + code, text) for code, (_, what, fix) in CATALOGUE.items() for text in (what, fix)]
    missing = [(where, text) for where, text in texts + statics + issues if text not in ZH and not _untranslatable(text)]
    assert not missing, "no Chinese for:\n" + "\n".join(f"{w}: {t!r}" for w, t in missing)
    wrong = [(text, ZH[text]) for _, text in texts if text in ZH and _fields(text) != _fields(ZH[text])]
    assert not wrong, wrong


def _untranslatable(text: str) -> bool:
    """Names that read the same in both languages (mAP@0.5, Recall@1)."""
    return text in {"mAP@0.5", "Recall@1"}
