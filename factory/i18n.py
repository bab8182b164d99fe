"""The languages the product speaks to people (the chat, the app's tabs, the tasks' sentences): English and
Simplified Chinese.

Gettext's way: the English text is the message id, so code reads in English; `tr(text, **values)` returns it in
the language active in this thread or task (`speaking(lang)`), formatted with the values. Each package registers
its own translations beside its words (`register("zh", {...})`); a text without one stays English, so a missing
translation shows up as English, never as an error.
"""

from __future__ import annotations

import contextvars
import re
from contextlib import contextmanager
from typing import Iterator

from factory.zh import ZH

LANGUAGES = {"en": "English", "zh": "中文"}
DEFAULT = "en"

_ACTIVE: contextvars.ContextVar[str] = contextvars.ContextVar("edgefactory_language", default=DEFAULT)
_CATALOGS: dict[str, dict[str, str]] = {"en": {}, "zh": dict(ZH)}
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"(?<![\w.:/\\-])[A-Za-z]{2,}(?![\w.:/\\-])")


def register(lang: str, entries: dict[str, str]) -> None:
    """Translations of English texts (message ids) into `lang`; the placeholders must be the same."""
    if lang not in _CATALOGS:
        raise ValueError(f"unknown language {lang!r}: one of {', '.join(LANGUAGES)}")
    _CATALOGS[lang].update(entries)


def tr(text: str, /, **values: object) -> str:
    """`text` in the active language, its `{placeholders}` filled from `values` (no values: left as it is)."""
    template = _CATALOGS[_ACTIVE.get()].get(text, text)
    return template.format(**values) if values else template


def active() -> str:
    return _ACTIVE.get()


@contextmanager
def speaking(lang: str | None) -> Iterator[str]:
    """Everything `tr` renders inside the block is in `lang` (unknown or None: English)."""
    token = _ACTIVE.set(lang if lang in LANGUAGES else DEFAULT)
    try:
        yield _ACTIVE.get()
    finally:
        _ACTIVE.reset(token)


def has_han(text: str) -> bool:
    """Whether `text` holds a Han character (CJK unified ideographs, extension A, compatibility ideographs)."""
    return bool(_HAN.search(text))


def language_of(text: str, current: str | None) -> str | None:
    """The language a message is written in: Chinese when it has Han characters, English when it has two English
    words or more, three when the conversation is in Chinese (names such as digits-mobilenet-v3-small, paths and
    units do not count; callers remove device and model names first); else `current` ("yes", "ok", "demo", a
    model name say nothing about the language)."""
    if has_han(text):
        return "zh"
    return "en" if len(_WORD.findall(text)) >= (3 if current == "zh" else 2) else current


def from_accept_language(header: str | None) -> str | None:
    """The first language of an HTTP Accept-Language header (by q-value) that is spoken here; None: none is."""
    ranked = []
    for i, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        q = re.search(r"q=([^;\s]*)", params)
        try:
            weight = float(q.group(1)) if q else 1.0
        except ValueError:
            continue
        ranked.append((-weight, i, tag.strip().lower().split("-")[0]))
    return next((lang for _, _, lang in sorted(ranked) if lang in LANGUAGES), None)
