"""Evaluating an OCR model version on a dataset split: the PyTorch networks read every original picture (or crop)
as served, and the ICDAR 2015 protocol scores what they found (factory.tasks.ocr.metrics).

The `eval` payload's `metrics` hold `det` {precision, recall, hmean}, `rec` {word_accuracy, word_accuracy_caseless,
one_minus_ned, cer} and `e2e` {hmean, hmean_caseless}, only those that apply (a crop dataset has `rec` only), plus
`e2e_hmean`, the primary score (a crop's word accuracy when there are no scenes: the crop is the region). The lines
read worst (largest edit distance) come with them, for the chat and the CLI.
"""

from __future__ import annotations

from pathlib import Path

from factory.datasets.images import load_rgb
from factory.errors import DatasetError
from factory.tasks.ocr.metrics import DONT_CARE, edit_distance, recognition_scores
from factory.tasks.ocr.pipeline import Reader, score_scenes
from factory.tasks.ocr.postprocess import rectify
from factory.tasks.ocr.training import model_reader
from factory.workspace import atomic_write_json

WORST_SHOWN = 5


def entry_name(entry: dict) -> str:
    """An image's name in scores and predictions: its path as imported (unique, unlike a bare file name)."""
    return entry.get("source") or entry["file"]


def worst_lines(pairs: list[tuple[str, str]], count: int = WORST_SHOWN) -> list[dict]:
    """The `count` lines read worst: {truth, read, edits}, most edits (relative to the length) first."""
    scored = [(edit_distance(t, r) / max(len(t), 1), t, r) for t, r in pairs if t != r]
    return [{"truth": t, "read": r, "edits": edit_distance(t, r)} for _, t, r in sorted(scored, key=lambda x: -x[0])[:count]]


def evaluate_ocr(model, meta: dict, root: Path, entries: list[dict]) -> dict:
    """Full metrics of the OCR `model` on `entries`, with what it read (`predictions`, by file name)."""
    return evaluate_reader(model_reader(model, meta), root, entries)


def evaluate_reader(reader: Reader, root: Path, entries: list[dict]) -> dict:
    """Full metrics of `reader` (PyTorch's networks or exported ones; no detector: a recognizer-only model) on
    `entries`, with what it read (`predictions`, by file name)."""
    if not entries:
        raise DatasetError("The split to evaluate has no images.", fix="Pick another split (train, val or test).")
    scenes = [e for e in entries if "regions" in e]
    if scenes and reader.detector is not None:
        images = {entry_name(e): load_rgb(root / e["file"]) for e in scenes}
        out = score_scenes(reader, images, {entry_name(e): e["regions"] for e in scenes})
        predictions = {name: [{"points": line["points"], "text": line["text"], "score": round(line["score"], 6)}
                              for line in lines] for name, lines in out["found"].items()}
        return {"det": out["det"], "rec": out["rec"], "e2e": out["e2e"], "e2e_hmean": out["e2e"]["hmean"],
                "images": len(scenes), "ms_per_image": out["ms_per_image"], "worst": worst_lines(out["read"]),
                "predictions": predictions}
    crops = [(e, load_rgb(root / e["file"])) for e in entries if "text" in e]
    if scenes:  # a recognizer-only model on scenes: read the labelled regions
        crops = [({"text": r["text"], "source": f"{entry_name(e)}#{i}"}, rectify(image, r["points"]))
                 for e, image in ((e, load_rgb(root / e["file"])) for e in scenes)
                 for i, r in enumerate(e["regions"]) if r["text"] != DONT_CARE]
    read = [t["text"] for t in reader.recognize([image for _, image in crops])]
    truth = [e["text"] for e, _ in crops]
    rec = recognition_scores(truth, read)
    return {"rec": rec, "e2e_hmean": rec["word_accuracy"], "images": len(crops),
            "worst": worst_lines(list(zip(truth, read))), "predictions": {entry_name(e): r for (e, _), r in zip(crops, read)}}


def ocr_payload(model, meta: dict, root: Path, entries: list[dict], save_predictions: str | Path | None) -> dict:
    """The `eval` command's payload; `--save-predictions` writes the predictions (in original pixels) as JSON."""
    full = evaluate_ocr(model, meta, root, entries)
    predictions = full.pop("predictions")
    if save_predictions:
        atomic_write_json(Path(save_predictions), predictions)
    metrics = {k: full[k] for k in ("det", "rec", "e2e", "e2e_hmean") if k in full}
    return {"metrics": metrics, "images": full["images"], "worst": full["worst"],
            "ms_per_image": full.get("ms_per_image"), "predictions_file": str(save_predictions) if save_predictions else None}
