"""Evaluating a classifier on a dataset split: metrics, confusion matrix (JSON + PNG) and a gallery of the worst
misclassified images, written under reports/<model>/v<N>/eval-<split>/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from factory.datasets.images import load_rgb
from factory.errors import DatasetError
from factory.tasks.classification.metrics import classification_metrics
from factory.training.data import ImageTensors
from factory.training.engine import predict_logits
from factory.workspace import Workspace, atomic_write_bytes, atomic_write_json

WORST_SHOWN = 16


def evaluate_split(model: torch.nn.Module, meta: dict, root: Path, entries: list[dict], batch_size: int = 128) -> dict:
    """Metrics of `model` on `entries`, plus per-image predictions (index, predicted, confidence)."""
    if not entries:
        raise DatasetError("The split to evaluate is empty.", fix="Pick another split (train, val or test).")
    classes = meta["classes"]
    unknown = sorted({e["label"] for e in entries} - set(classes))
    if unknown:
        raise DatasetError(f"The data has classes the model does not know: {', '.join(unknown)}.",
                           fix="Evaluate on the dataset the model was trained on, or retrain with these classes.")
    size = meta["input_size"][-1]
    data = ImageTensors(root, entries, classes, size)
    pre = meta["preprocessing"]
    mean = torch.tensor(pre["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(pre["std"]).view(1, 3, 1, 1)
    probs = torch.softmax(predict_logits(model, data, mean, std, batch_size), dim=1).numpy()
    y_true, y_pred = data.labels.numpy(), probs.argmax(1)
    metrics = classification_metrics(y_true, y_pred, classes)
    wrong = np.flatnonzero(y_true != y_pred)
    worst = wrong[np.argsort(-probs[wrong, y_pred[wrong]])][:WORST_SHOWN]
    metrics["worst"] = [{"file": entries[i]["file"], "source": entries[i].get("source"),
                         "label": classes[y_true[i]], "predicted": classes[y_pred[i]],
                         "confidence": round(float(probs[i, y_pred[i]]), 4)} for i in worst]
    return metrics


def plot_confusion(cm: list[list[int]], classes: list[str], title: str) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arr = np.asarray(cm)
    size = max(4.0, 0.45 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(arr, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if len(classes) <= 30:
        for (i, j), v in np.ndenumerate(arr):
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > arr.max() / 2 else "black", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def worst_gallery(root: Path, worst: list[dict], tile: int = 96) -> bytes:
    """A grid of the worst misclassified images, each captioned 'true -> predicted (confidence)'."""
    import io

    from PIL import Image, ImageDraw

    cols = 4
    rows = max(1, (len(worst) + cols - 1) // cols)
    sheet = Image.new("RGB", (cols * tile, rows * (tile + 14)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, w in enumerate(worst):
        x, y = (k % cols) * tile, (k // cols) * (tile + 14)
        sheet.paste(load_rgb(root / w["file"]).resize((tile, tile)), (x, y))
        draw.text((x + 2, y + tile), f"{w['label'][:6]}>{w['predicted'][:6]} {w['confidence']:.2f}", fill="black")
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()


def write_eval_report(ws: Workspace, model_row: dict, split: str, metrics: dict, root: Path, classes: list[str]) -> dict:
    out = ws.home / "reports" / model_row["name"] / f"v{model_row['version']}" / f"eval-{split}"
    paths = {"metrics_json": out / "metrics.json", "confusion_matrix_png": out / "confusion_matrix.png",
             "worst_png": out / "worst.png"}
    atomic_write_json(paths["metrics_json"], metrics)
    title = f"{model_row['name']}:v{model_row['version']} {split} (acc {metrics['accuracy']:.3f})"
    atomic_write_bytes(paths["confusion_matrix_png"], plot_confusion(metrics["confusion_matrix"], classes, title))
    atomic_write_bytes(paths["worst_png"], worst_gallery(root, metrics["worst"]))
    return {k: str(v) for k, v in paths.items()}
