"""Free text -> intents and slots for the offline guide, in English and Chinese: the task, the
dataset, target devices (through the device profiles' aliases), budgets with units (latency, size,
accuracy drop, training time), a model architecture, and the conversational intents."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from factory.tasks import all_tasks
from targets.devices import DeviceProfile

NUM = r"(\d+(?:\.\d+)?)"
CN_DIGITS = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}

INTENTS: dict[str, list[str]] = {
    "help": [r"\bwhat can you do\b", r"^\s*help\b", r"\bhelp me\b", r"你能做什么", r"帮助", r"能做什么"],
    "demo": [r"\bdemo\b", r"\bsample data\b", r"\bexample data\b", r"\bdigits\b", r"示例", r"演示", r"样例"],
    "confirm": [r"^\s*(yes|y|yeah|yep|ok|okay|sure|go(?! back)|go ahead|do it|proceed|confirm|start(?! over)|please do|sounds good|let.s go)\b",
                r"^\s*(好|好的|是|是的|确认|开始|可以|行|没问题)"],
    "deny": [r"^\s*(no|nope|n|don't|do not|not now|cancel)\b", r"^\s*(不|不要|取消|算了)"],
    "stop": [r"\bstop\b", r"\babort\b", r"\bhalt\b", r"停止", r"停下", r"终止"],
    "status": [r"how is it going", r"how's it going", r"\bstatus\b", r"\bprogress\b", r"how far", r"进度", r"怎么样了", r"训练得?怎么样"],
    "back": [r"\bgo back\b", r"^\s*back\b", r"\bprevious step\b", r"返回", r"上一步", r"退回"],
    "restart": [r"\bstart over\b", r"\brestart\b", r"\breset\b", r"\bfrom scratch\b", r"重新开始", r"重来"],
    "continue": [r"\bcontinue\b", r"\bkeep training\b", r"\btrain (it )?(for )?[\d.]+ more\b", r"继续训练", r"再训练"],
    "deploy": [r"\bdeploy\b", r"\bserve\b", r"部署", r"上线"],
    "report": [r"\breport\b", r"\bbenchmarks?\b", r"报告"],
    "question": [r"^\s*(how do i|how to|how can i|what is|what are|what's|what does|why|which|can i|explain|tell me about)\b",
                 r"什么是", r"怎么", r"如何", r"为什么", r"是什么", r"\?\s*$", r"？\s*$"],
}
# tasks people ask for that are not installed here: (how to name them, the words that ask for them)
NOT_INSTALLED = {"segmentation": ("Segmentation", [r"\bsegment", r"分割"])}


def task_words() -> dict[str, list[str]]:
    """Task name -> the patterns that ask for it: each installed task's own words, then the ones not installed."""
    words = {t.name: list(t.chat_patterns) for t in all_tasks()}  # the most specific first: "detect the text" is OCR
    return words | {name: patterns for name, (_, patterns) in NOT_INSTALLED.items() if name not in words}


@dataclass
class Parsed:
    text: str
    intents: set[str] = field(default_factory=set)
    task: str | None = None
    devices: list[str] = field(default_factory=list)
    latency_ms: float | None = None
    size_mb: float | None = None
    max_drop: float | None = None
    minutes: float | None = None
    epochs: int | None = None
    model: str | None = None
    img_size: int | None = None
    hflip: float | None = None  # "flips off" / "no mirroring" / "不要镜像": 0; "flips on" / "mirror": 0.5
    dataset: str | None = None
    model_ref: str | None = None  # a model of the workspace named in the message: NAME or NAME:vN


def _cn_number(text: str) -> str:
    """'两' / '十五' style numbers before a unit -> digits ('一个点' -> '1个点')."""
    def convert(m: re.Match) -> str:
        s = m.group(0)
        if s == "十":
            return "10"
        if s.startswith("十"):
            return str(10 + CN_DIGITS[s[1]])
        if s.endswith("十"):
            return str(CN_DIGITS[s[0]] * 10)
        if "十" in s:
            return str(CN_DIGITS[s[0]] * 10 + CN_DIGITS[s[2]])
        return str(CN_DIGITS[s])
    return re.sub(r"[一二两三四五六七八九十]{1,3}(?=\s*(个|毫秒|秒|分钟|兆|点|百分点|mb|ms))", convert, text)


def parse(text: str, profiles: dict[str, DeviceProfile], datasets: list[str] = (), models: list[str] = ()) -> Parsed:
    raw = text.strip()
    low = _cn_number(raw.lower())
    p = Parsed(raw)
    for intent, patterns in INTENTS.items():
        if any(re.search(pat, low) for pat in patterns):
            p.intents.add(intent)
    for task, patterns in task_words().items():
        if any(re.search(pat, low) for pat in patterns):
            p.task = task
            break
    p.devices = find_devices(low, profiles)
    p.latency_ms = _latency(low)
    p.size_mb = _size(low)
    p.max_drop = _drop(low)
    m = re.search(NUM + r"\s*(?:more\s+)?(?:min|minutes?|分钟)", low)
    p.minutes = float(m.group(1)) if m else None
    m = re.search(NUM + r"\s*(?:epochs?|轮)", low) or re.search(r"(?:epochs?|轮数)\s*[:=]?\s*" + NUM, low)
    p.epochs = int(float(m.group(1))) if m else None
    m = re.search(r"(\d{2,4})\s*(?:px|pixels?|像素)", low)
    p.img_size = int(m.group(1)) if m else None
    p.hflip = _flips(low)
    if p.hflip is not None:
        p.intents -= {"confirm", "deny"}  # "no flips" / "不要镜像" change the recipe; they do not answer its question
    p.model = next((name for name in sorted({a for t in all_tasks() for a in t.architectures()}, key=len, reverse=True)
                    if re.search(rf"\b{re.escape(name)}\b|{re.escape(name.replace('_', ' '))}|{re.escape(name.replace('_', '-'))}", low)),
                   None)
    p.dataset = next((d for d in sorted(datasets, key=len, reverse=True) if re.search(rf"(?<![\w-]){re.escape(d.lower())}(?![\w-])", low)),
                     None)
    found = next((m for m in (re.search(rf"(?<![\w-]){re.escape(name.lower())}(:v\d+)?(?![\w-])", low)
                              for name in sorted(models, key=len, reverse=True)) if m), None)
    p.model_ref = found.group(0) if found else None
    if p.latency_ms or p.size_mb or p.max_drop is not None:
        p.intents.discard("question")  # "under 30 ms?" is a budget, not a docs question
    return p


def _flips(low: str) -> float | None:
    """Whether the user turned mirrored training copies off (orientation matters: text, digits) or on."""
    if re.search(r"(no|without|don'?t|do not|never)\s+(horizontal\s+)?(flip|mirror)|flips?\s*(off|=\s*0)|不要?(翻转|镜像)|"
                 r"(翻转|镜像)\s*(关|关闭)|方向(很)?重要|orientation matters", low):
        return 0.0
    if re.search(r"(flips?|mirror(ing)?)\s*(on|yes)|(with|use)\s+(horizontal\s+)?(flips?|mirroring)|(打开|开启|要)(翻转|镜像)", low):
        return 0.5
    return None


def find_devices(low: str, profiles: dict[str, DeviceProfile]) -> list[str]:
    """Profile ids named in the text (longest alias wins where two overlap, e.g. 'pi 4' in 'raspberry pi 4')."""
    hits: list[tuple[int, int, str]] = []
    for pid, prof in profiles.items():
        for alias in (pid, pid.replace("_", " "), *prof.aliases):
            for m in re.finditer(rf"(?<![a-z0-9]){re.escape(alias)}(?![a-z0-9])", low):
                hits.append((m.start(), m.end(), pid))
    hits.sort(key=lambda h: (h[0], -(h[1] - h[0])))
    found, end = [], -1
    for start, stop, pid in hits:
        if start >= end or stop > end and start == hits[0][0]:
            if pid not in found:
                found.append(pid)
            end = max(end, stop)
    return found


def _latency(low: str) -> float | None:
    m = re.search(NUM + r"\s*(?:ms|msec|milliseconds?|毫秒)", low)
    if m:
        return float(m.group(1))
    m = re.search(NUM + r"\s*(?:fps|frames? per second|帧)", low)
    if m and float(m.group(1)) > 0:
        return 1000.0 / float(m.group(1))
    m = re.search(NUM + r"\s*(?:s|sec|seconds?|秒)(?![a-z])", low)
    return float(m.group(1)) * 1000 if m and not re.search(r"分钟|minute", low[m.start():m.end() + 3]) else None


def _size(low: str) -> float | None:
    m = re.search(NUM + r"\s*(mb|mib|megabytes?|兆|m(?![a-z]))", low)
    if m:
        return float(m.group(1))
    m = re.search(NUM + r"\s*(kb|kib|kilobytes?)", low)
    return float(m.group(1)) / 1024 if m else None


def _drop(low: str) -> float | None:
    if re.search(r"no (accuracy )?(loss|drop)|without losing|不能(掉|降)|不损失", low):
        return 0.0
    m = re.search(NUM + r"\s*(?:points?|pts?|percentage points?|pp|个点|个百分点|点)", low)
    if m:
        return float(m.group(1))
    m = re.search(NUM + r"\s*%", low)
    if m and re.search(r"worse|drop|lose|loss|less accura|accuracy|下降|损失|降低|精度", low):
        return float(m.group(1))
    return None
