"""Image classification as a Task: one label per image, softmax top-k, top-1 accuracy."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
from torch import nn

from factory.datasets.synthetic import write_digits, write_shapes
from factory.errors import ConfigError
from factory.i18n import register, tr
from factory.tasks.base import EvalSet, Task, normalized
from factory.tasks.classification import evaluation as evaluating
from factory.tasks.classification.datasets import import_classification
from factory.tasks.classification.formats import DATASET_FORMATS, detect_format
from factory.tasks.classification.metrics import classification_metrics
from factory.tasks.classification.models import (MODELS, build_model, imagenet_weights_available, load_matching,
                                                 load_pretrained, postprocessing_spec, preprocessing_spec, softmax_topk)
from factory.tasks.classification.zh import ZH
from factory.text import table
from factory.training import defaults
from factory.training.data import ImageTensors
from factory.training.engine import Trainer

# per precision: (max abs logit difference relative to the logit scale, minimum top-1 agreement)
PARITY_TOLERANCE = {"fp32": (1e-3, 1.0), "fp16": (2e-2, 0.95), "int8": (None, 0.9)}
DEFAULT_TOP_K = 5
register("zh", ZH)


class Classification(Task):
    name = "classification"
    metric, metric_label, unit = "accuracy", "accuracy", "images"
    default_arch = "mobilenet_v3_small"
    unsupported_strategies: dict[str, str] = {}  # structured pruning and QAT fine-tune with its own trainer
    chat_patterns = (r"classif", r"categor", r"分类")

    # -- datasets ------------------------------------------------------------------------------------
    def detect_format(self, root: Path) -> str:
        return detect_format(root)

    def format_names(self) -> list[str]:
        return DATASET_FORMATS.names()

    def import_dataset(self, ws, catalog, root: Path, name: str, *, fmt: str, seed: int, progress) -> dict:
        return import_classification(ws, catalog, root, name, fmt=fmt, seed=seed, progress=progress)

    def samples(self) -> dict[str, Callable[..., Path]]:
        def digits(dest: Path, **_: Any) -> Path:
            return write_digits(dest)

        def shapes(dest: Path, *, classes: int = 3, per_class: int = 30, seed: int = 0,
                   layout: str = "folder_per_class", **_: Any) -> Path:
            return write_shapes(dest, classes=classes, per_class=per_class, seed=seed, layout=layout)

        return {"digits": digits, "shapes": shapes}

    # -- the chat's words ------------------------------------------------------------------------------
    upload_hint = " (a label per image)"
    described = "image classifiers (one label per image)"
    demo = {"name": "digits", "kind": "digits",
            "summary": "I will import the demo data: scikit-learn's 1797 handwritten digits (10 classes, 8x8 grey "
                       "images) as dataset **digits**."}

    def write_demo(self, dest: Path) -> Path:
        return write_digits(dest)

    def propose(self, stats: dict, devices: list, latency_ms: float | None, size_mb: float | None) -> dict:
        slowest = min(devices, key=lambda d: d.fp32_gflops) if devices else None
        small = slowest is None or slowest.fp32_gflops < 100 or (latency_ms is not None and latency_ms < 20) or \
            (size_mb is not None and size_mb < 8)
        model = "mobilenet_v3_small" if small else "mobilenet_v3_large"
        n = stats.get("num_images") or 0
        minutes = 2.0 if n < 300 else 4.0 if n < 3000 else 10.0
        why = ((tr("the slowest device ({device}) has about {gflops:g} GFLOPS, so ", device=tr(slowest.short_name),
                   gflops=slowest.fp32_gflops) if slowest else "")
               + (tr("{model} fits the latency budget", model=model) if latency_ms else tr("{model} fits", model=model))
               + tr("; {n} images train in about {minutes:g} minutes here.", n=n, minutes=minutes))
        return {"model": model, "time_budget_min": minutes, "epochs": None, "reason": why}

    def evaluation_sentence(self, model: str, out: dict) -> str:
        m = out["metrics"]
        worst = sorted(m.get("per_class", {}).items(), key=lambda kv: kv[1]["recall"])[:3]
        text = tr("Training finished: **{model}** reaches **{accuracy:.2%}** accuracy on the test split (macro F1 "
                  "{f1:.3f}).", model=model, accuracy=m["accuracy"], f1=m.get("f1_macro", 0))
        if worst and worst[0][1]["recall"] < 1:
            text += " " + tr("Hardest classes: {classes}.", classes=tr(", ").join(
                tr("{label} ({recall:.0%} found)", label=c, recall=v["recall"]) for c, v in worst))
        return text + " " + tr("The confusion matrix and the worst-classified images are below.")

    def stats_lines(self, stats: dict) -> list[str]:
        return [f"  size (w x h) median {stats['width'].get('median')} x {stats['height'].get('median')}, "
                f"aspect median {stats['aspect_ratio'].get('median')}, imbalance ratio {stats['imbalance_ratio']}",
                *table([{"class": c, "images": n} for c, n in stats["images_per_class"].items()], ["class", "images"])]

    # -- models and training -------------------------------------------------------------------------
    def architectures(self) -> list[str]:
        return MODELS.names()

    def build(self, meta: dict) -> nn.Module:
        return build_model(meta["arch"], meta["num_classes"])

    def output_layers(self, meta: dict) -> list[str]:
        return [MODELS.get(meta["arch"]).head]

    def resolve(self, ws, ds: dict, arch: str, res: defaults.Resolution, entries: list[dict], root: Path) -> dict:
        spec = MODELS.get(arch)
        stats = ds["stats"]
        side = math.sqrt((stats.get("width") or {}).get("median", spec.default_img_size) *
                         (stats.get("height") or {}).get("median", spec.default_img_size))
        defaults.resolve_common(res, n_train=len(entries), image_side=side, default_size=spec.default_img_size,
                                weights_available=imagenet_weights_available(arch),
                                min_size=min(spec.min_img_size, spec.default_img_size))
        defaults.resolve_flip(res, lambda: defaults.class_samples(root, entries))
        defaults.resolve_crop(res, side)
        return {}

    def preprocessing(self, resolved: dict) -> dict:
        return preprocessing_spec(resolved["img_size"])

    def postprocessing(self, resolved: dict) -> dict:
        return postprocessing_spec(resolved["classes"])

    def training_data(self, root: Path, entries: list[dict], resolved: dict) -> ImageTensors:
        return ImageTensors(root, entries, resolved["classes"], resolved["img_size"])

    def initial_model(self, resolved: dict, parent: tuple[nn.Module, dict] | None, sink) -> nn.Module:
        model = build_model(resolved["model"], len(resolved["classes"]))
        if resolved["pretrained"] == "imagenet":
            info = load_pretrained(model, resolved["model"])
            sink({"type": "init", "source": "imagenet", "loaded_tensors": info["loaded"]})
        elif parent is not None:
            parent_model, parent_meta = parent
            same_head = parent_meta["classes"] == resolved["classes"]
            info = load_matching(model, parent_model.state_dict(),
                                 skip_prefix="" if same_head else MODELS.get(resolved["model"]).head)
            sink({"type": "init", "source": resolved["from_model"], "loaded_tensors": info["loaded"]})
        return model

    def trainer(self, cfg, model: nn.Module, train, val, preprocessing: dict, run_dir: Path, resolved: dict,
                **kwargs) -> Trainer:
        return Trainer(cfg, model, train, val, preprocessing, run_dir, **kwargs)

    # -- evaluation ----------------------------------------------------------------------------------
    def evaluate(self, model: nn.Module, meta: dict, root: Path, entries: list[dict]) -> dict:
        return evaluating.evaluate_split(model, meta, root, entries)

    def version_metrics(self, full: dict) -> dict:
        return {k: full[k] for k in ("accuracy", "f1_macro", "precision_macro", "recall_macro")}

    def write_report(self, ws, row: dict, split: str, full: dict, root: Path, meta: dict) -> dict:
        return evaluating.write_eval_report(ws, row, split, full, root, meta["classes"])

    def evaluation(self, ws, row: dict, model: nn.Module, meta: dict, root: Path, entries: list[dict], split: str,
                   save_predictions) -> dict:
        if save_predictions:
            raise ConfigError("--save-predictions writes COCO detection results; this is a classification model.",
                              fix="Leave it out; `eval --json` prints the classification metrics.")
        result = evaluating.evaluate_split(model, meta, root, entries)
        files = evaluating.write_eval_report(ws, row, split, result, root, meta["classes"])
        cm, worst = result.pop("confusion_matrix"), result.pop("worst")
        return {"metrics": result, "confusion_matrix": {"classes": meta["classes"], "matrix": cm}, "worst": worst,
                "files": files}

    def score_text(self, metrics: dict) -> str:
        return f"accuracy {metrics['accuracy']:.4f}, macro F1 {metrics['f1_macro']:.4f}"

    def eval_lines(self, out: dict) -> list[str]:
        m = out["metrics"]
        return [f"{out['model']}:v{out['version']} on {out['dataset']} {out['split']} ({m['num_samples']} images): "
                f"accuracy {m['accuracy']:.4f}, macro precision {m['precision_macro']:.4f}, "
                f"recall {m['recall_macro']:.4f}, F1 {m['f1_macro']:.4f}",
                *table([{"class": c, **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in pc.items()}}
                        for c, pc in m["per_class"].items()], ["class", "precision", "recall", "f1", "support"]),
                *(f"{key}: {path}" for key, path in out["files"].items())]

    # -- export, benchmarks, prediction --------------------------------------------------------------
    def eval_set(self, root: Path, entries: list[dict], meta: dict) -> EvalSet:
        data = ImageTensors(root, entries, meta["classes"], meta["preprocessing"]["resize"][0])
        return EvalSet(normalized(data.images, meta["preprocessing"]), data.labels.numpy())

    def output_shape(self, meta: dict) -> tuple[int, ...]:
        return (meta["num_classes"],)

    def score(self, outputs: np.ndarray, truth: Any, meta: dict) -> dict:
        metrics = classification_metrics(np.asarray(truth), outputs.argmax(1), meta["classes"])
        return {**metrics, "recall_by_class": {c: m["recall"] for c, m in metrics["per_class"].items()}}

    def parity(self, outputs: np.ndarray, reference: np.ndarray, precision: str, meta: dict) -> dict:
        diff = float(np.abs(outputs.astype(np.float64) - reference).max())
        scale = float(max(1.0, np.abs(reference).max()))
        agreement = float((outputs.argmax(1) == reference.argmax(1)).mean())
        tol_rel, min_agree = PARITY_TOLERANCE[precision]
        ok = agreement >= min_agree and (tol_rel is None or diff <= tol_rel * scale)
        return {"checked": True, "passed": bool(ok), "max_abs_diff": diff, "logit_scale": scale,
                "top1_agreement": agreement, "agreement": agreement, "agreement_kind": "top-1",
                "images": int(len(reference)),
                "tolerance": {"max_abs_diff": None if tol_rel is None else tol_rel * scale, "min_top1_agreement": min_agree}}

    def predictions(self, outputs: np.ndarray) -> list | None:
        return outputs.argmax(1).tolist()

    def postprocess(self, raw: np.ndarray, meta: dict, sizes, top_k: int | None, min_score: float | None) -> list[list[dict]]:
        classes = meta["classes"]
        return softmax_topk(raw.reshape(len(raw), -1), classes, max(1, min(top_k or DEFAULT_TOP_K, len(classes))))
