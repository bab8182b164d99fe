"""How the guide and the app's tabs put the factory's results in words, in the user's language (`factory.i18n`):
a dataset's summary and issues, errors with their fix, the task's metric name, the training options the
resolver chose, training progress, the exports table. The Chinese texts are in chat_ui/zh.py."""

from __future__ import annotations

import re

from chat_ui import zh
from factory.datasets.issues import CATALOGUE
from factory.errors import FactoryError
from factory.i18n import DEFAULT, active, register, tr
from factory.tasks import DEFAULT_TASK, TASKS, task_of

CAPABILITIES = (
    "I can take you from images to a model on your device, offline:\n"
    "1. **Data**: upload a .zip (one folder per class, train/val/test folders, a Ku+ `txfl-result.json` or a CSV), "
    "name a dataset you imported, or say *demo* for handwritten digits. I check it and explain every problem.\n"
    "2. **Where it runs**: e.g. *a Raspberry Pi 4 under 30 ms*, *Android phones*, *an Intel NUC*, *a Jetson*, "
    "and how much accuracy compression may cost (*at most 1 point worse*).\n"
    "3. **A recipe** (model, input size, time budget) for you to confirm, then **training** with live progress "
    "(ask *how is it going?* or say *stop*).\n"
    "4. **Evaluation**, then **compression and export** per target, a **benchmark report**, and **deployment**: "
    "endpoint, curl example, API key and a QR code that opens the model on your phone.\n"
    "Any time: *go back*, *start over*, or ask *what is INT8?*, *which formats can I upload?*")
register("zh", {**zh.ZH, CAPABILITIES: zh.CAPABILITIES})
GALLERY_PROMPT = ("Last, the gallery it searches: upload a .zip of the photos to recognise (one folder per product, part "
                  "or person), or say **use the dataset** to index the photos of **{dataset}**.")
# what kind of failure each error is, for a reply in a language the factory's own messages are not written in
ERROR_KINDS = {"DATASET_ERROR": "The data has a problem.", "CONFIG_ERROR": "A setting is not valid.",
               "NOT_FOUND": "Something named here does not exist.", "UNSUPPORTED_SPEC": "That is not supported.",
               "MISSING_DEPENDENCY": "A package this step needs is not installed.", "TRAINING_ERROR": "Training failed.",
               "EXPORT_ERROR": "The export failed.", "PARITY_ERROR": "The exported model does not match the trained one.",
               "BUDGET_ERROR": "The accuracy budget cannot be met."}
_ASKED = {lang: rf"(说|讲|用|切换(到|成)?)\s*({zh})|^\s*({zh})\s*$|\b(speak|reply|answer|talk|respond|write)( to me)? "
                rf"(in )?{en}\b|\bswitch (to )?{en}\b|^\s*(in )?{en}( please)?\s*$"
          for lang, zh, en in (("zh", "中文|汉语|普通话", "chinese"), ("en", "英文|英语", "english"))}


def asked_language(text: str) -> str | None:
    """The language a message asks the chat to switch to ("说中文", "speak English"), if any."""
    low = text.lower()
    return next((lang for lang, pattern in _ASKED.items() if re.search(pattern, low)), None)


def without_names(text: str, names: list[str]) -> str:
    """`text` without the `names` in it (longest first, any case): what is left tells the language it is in."""
    for name in names:
        text = re.sub(re.escape(name), " ", text, flags=re.IGNORECASE)
    return text


def joined(items: list[str]) -> str:
    """'a, b and c' ('a、b 和 c')."""
    if len(items) < 2:
        return "".join(items)
    return tr("{first} and {last}", first=tr(", ").join(items[:-1]), last=items[-1])


def device_name(profile) -> str:
    return tr(profile.short_name)


def issue_message(issue: dict) -> str:
    """A dataset issue in words: the catalogue's (translated) what and fix around its specifics."""
    entry = CATALOGUE.get(issue.get("code", ""))
    if entry is None or "detail" not in issue and active() == DEFAULT:
        return issue["message"]  # an issue stored before details were kept, in English
    detail = issue.get("detail") or ""
    return tr(entry[1]) + (f" {detail}" if detail else "") + " " + tr("Fix: {fix}", fix=tr(entry[2]))


def explain_error(exc: FactoryError) -> str:
    """A FactoryError in plain words with its fix; in another language than English, the catalogue's words for a
    dataset issue, else the kind of failure in that language with the factory's own message beside it."""
    message, fix = exc.message, exc.fix
    if active() != DEFAULT:  # the factory's own messages are in English
        issue = next((d for d in exc.details or [] if isinstance(d, dict) and d.get("code") == exc.code), None)
        entry = CATALOGUE.get(exc.code)
        if issue is not None and entry is not None:
            message = tr(entry[1]) + (f" {issue['detail']}" if issue.get("detail") else "") + \
                (f" ({', '.join(issue.get('files', [])[:5])})" if issue.get("files") else "")
            fix = tr(entry[2])
        else:
            message = tr(ERROR_KINDS.get(exc.code, "That did not work.")) + f" ({exc.message})"
    return tr("That did not work: {message}\n\n**How to fix it:** {fix}", message=message, fix=fix)


def describe_dataset(s: dict) -> str:
    task = task_of(s)
    stats = s.get("stats", {})
    splits = tr(", ").join(f"{tr(k)} {v}" for k, v in s["splits"].items())
    head = (tr("Dataset **{ref}** ({format}): {images} images in {classes} {class_word}; split {splits}.",
               ref=f"{s['dataset']}:v{s['version']}", format=s.get("format", ""), images=s["num_images"],
               classes=len(s["classes"]), class_word=tr(task.class_word), splits=splits) if task.classes_are_groups else
            tr("Dataset **{ref}** ({format}): {images} images; split {splits}.", ref=f"{s['dataset']}:v{s['version']}",
               format=s.get("format", ""), images=s["num_images"], splits=splits))
    lines = [head, *task.dataset_lines(stats)]
    counts = task.class_counts(stats)
    if counts:
        lo, hi = min(counts.values()), max(counts.values())
        balance = tr("balanced") if hi <= 1.5 * lo else tr(
            "unbalanced: {hi} vs {lo} {unit} between the largest and smallest class", hi=hi, lo=lo, unit=tr(task.unit))
        lines.append(tr("{heading} ({balance}): {counts}", heading=tr(task.class_word.capitalize()), balance=balance,
                        counts=tr(", ").join(f"{c} {n}" for c, n in list(counts.items())[:12]))
                     + (" ..." if len(counts) > 12 else ""))
    for issue in s.get("issues", [])[:8]:
        n = len(issue.get("files", [])) or issue.get("count", "")
        lines.append(tr("- {severity}: {message}", severity=tr(issue["severity"]), message=issue_message(issue))
                     + (" " + tr("({n} files)", n=n) if n else ""))
    if not s.get("issues"):
        lines.append(tr("No problems found."))
    return "\n".join(lines)


def metric_name(task: str | None) -> str:
    return tr(TASKS.get(task or DEFAULT_TASK).metric_label)


def defaults_sentence(resolved: dict) -> str:
    """The resolver's choices a person cares about, in words (its reasons, from the run's `why`)."""
    why = {k: tr("as you asked") if v == "given" else tr(v) for k, v in resolved.get("why", {}).items()}
    flips = tr("no mirrored copies") if not resolved.get("hflip") else tr("mirrored copies")
    sources = TASKS.get(resolved.get("task") or DEFAULT_TASK).pretrained_sources
    start = tr(sources.get(resolved.get("pretrained") or "none", "scratch"))
    return tr("Input {size} px ({size_why}); training starts from {start} ({start_why}) with {flips} ({flips_why}).",
              size=resolved["img_size"], size_why=why.get("img_size", tr("as you asked")), start=start,
              start_why=why.get("pretrained", tr("as you asked")), flips=flips,
              flips_why=why.get("hflip", tr("as you asked")))


def progress_text(run: dict) -> str:
    prog, history = run.get("progress") or {}, run.get("history") or []
    if not prog or "epoch" not in prog:
        return tr("Training is {status}: starting up (loading the images).", status=tr(run["status"]))
    parts = [tr("epoch {epoch} of at most {epochs}", epoch=prog["epoch"], epochs=prog["epochs"]) if prog.get("epochs")
             else tr("epoch {epoch}", epoch=prog["epoch"])]
    if history:
        last = history[-1]
        name = tr(last.get("metric_label") or TASKS.get(run.get("config", {}).get("task") or DEFAULT_TASK).metric_label)
        parts.append(tr("validation {metric} {value:.1%} after epoch {epoch}", metric=name,
                        value=last.get("val_metric", last.get("val_accuracy", 0)), epoch=last["epoch"]))
    loss = prog.get("train_loss", prog.get("loss"))
    if loss is not None:
        parts.append(tr("loss {loss:.3f}", loss=loss))
    if prog.get("eta_s") is not None:
        parts.append(tr("about {minutes:.1f} min left", minutes=max(0, prog["eta_s"]) / 60))
    return tr("Training is running: {parts}. Say *stop* to end it early.", parts=tr(", ").join(parts))


def exports_table(exports: list[dict], results: list[dict], metric: str = "accuracy") -> str:
    lat = {(r["target"], r["precision"]): r["latency_ms"]["p50"] for r in results if r["measured"]}
    rows = [tr("| target | precision | {metric} | change | size MB | latency here |", metric=tr(metric)),
            "|---|---|---|---|---|---|"]
    for e in exports:
        acc = tr("runs on its device") if e["accuracy"] is None else f"{e['accuracy']:.2%}"
        drop = "–" if e["drop"] is None else tr("{points:+.2f} pts", points=-e["drop"])
        ms = lat.get((e["target"], e["precision"]))
        rows.append(f"| {e['target']} | {e['precision']} | {acc} | {drop} | {e['size_mb']:.2f} | "
                    f"{'–' if ms is None else f'{ms:.2f} ms'} |")
    return "\n".join(rows)
