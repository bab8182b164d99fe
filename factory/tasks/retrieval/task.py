"""Image retrieval as a Task: an embedder trained on some identities, measured by Recall@K and MAP@R on
identities it never saw, whose embeddings a gallery index (retrieval/) searches."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
from torch import nn

from factory.errors import ConfigError, DatasetError, UnsupportedSpecError
from factory.i18n import register, tr
from factory.tasks.base import EvalSet, Task, normalized
from factory.tasks.classification.models import (MODELS, imagenet_weights_available, load_matching, load_pretrained,
                                                 preprocessing_spec)
from factory.tasks.retrieval.datasets import import_retrieval
from factory.tasks.retrieval.formats import DETECTION_ORDER, RETRIEVAL_FORMATS, detect_format, reader
from factory.tasks.retrieval.metrics import KS, drop_self, knn, retrieval_metrics, unit
from factory.tasks.retrieval.models import DEFAULT_ARCH, DEFAULT_DIM, DEFAULT_LOSS, LOSSES, PER_IDENTITY, build_embedder
from factory.tasks.retrieval.synthetic import write_identities
from factory.tasks.retrieval.training import RetrievalTrainer
from factory.tasks.retrieval.zh import ZH
from factory.text import table
from factory.training import defaults
from factory.training.data import ImageTensors
from factory.training.engine import predict_logits

# per precision: the lowest cosine similarity of any image's embedding to PyTorch's, and the least share of the
# top-10 neighbours (on the evaluation images as their own gallery) that must stay the same
PARITY_TOLERANCE = {"fp32": (0.999, 0.95), "fp16": (0.99, 0.8), "int8": (0.9, 0.5)}
NEIGHBOURS = 10
register("zh", ZH)
SPECIFIC_LAYOUTS = ("tao", "ppshitu_list")  # what `--task auto` gives to retrieval (folders stay classification's)


def embedding_dim(meta: dict) -> int:
    return int(meta["postprocessing"]["embedding_dim"])


class Retrieval(Task):
    name = "retrieval"
    metric, metric_label, unit = "recall@1", "Recall@1", "images"
    class_word = "identities"
    default_arch = DEFAULT_ARCH
    sniff_priority = 5
    options = ("embedding_dim", "loss")
    uses_gallery = True
    prediction_keys = ("embedding",)
    chat_patterns = (r"retriev", r"which (product|part|item)", r"find (the )?(same|similar)", r"look[- ]?alike",
                     r"gallery", r"检索", r"以图搜图", r"相似", r"哪个商品", r"识别.*(商品|零件)")
    described = "image retrieval (an embedder and a gallery you can grow without retraining)"
    upload_hint = " (a folder of photos per identity: product, part or person)"
    demo = {"name": "products", "kind": "products",
            "summary": "I will import the retrieval demo data: 40 seeded synthetic products x 8 photos each (96 px; "
                       "pasted on photos, gradients and noise, turned, blurred) as dataset **products**."}

    def write_demo(self, dest: Path) -> Path:
        return write_identities(dest, identities=40, per_identity=8, size=96, seed=0)

    def upload_prompt(self, imported: str) -> str | None:
        return tr("Image retrieval, then: the model learns what makes a product, part or person look like itself, and "
                  "a gallery you can grow later finds the nearest ones. Upload a .zip with one folder of photos per "
                  "identity (several photos each: other angles, light, backgrounds), a PP-ShiTu path<TAB>label list or "
                  "TAO's train/ reference/ query/ folders; say **demo** for synthetic products; or name an imported "
                  "dataset (imported: {imported}).", imported=imported)

    # -- datasets ------------------------------------------------------------------------------------
    def detect_format(self, root: Path) -> str:
        return detect_format(root)

    def claims(self, root: Path) -> bool:
        return any(reader(name).detect(root) for name in SPECIFIC_LAYOUTS)

    def format_names(self) -> list[str]:
        return [n for n in RETRIEVAL_FORMATS.names() if n in DETECTION_ORDER or n == "folder_per_identity"]

    def import_dataset(self, ws, catalog, root: Path, name: str, *, fmt: str, seed: int, progress) -> dict:
        return import_retrieval(ws, catalog, root, name, fmt=fmt, seed=seed, progress=progress)

    def samples(self) -> dict[str, Callable[..., Path]]:
        def identities(dest: Path, *, classes: int = 40, per_class: int = 8, seed: int = 0,
                       layout: str = "folder_per_identity", **_: Any) -> Path:
            return write_identities(dest, identities=classes, per_identity=per_class, seed=seed, layout=layout)

        return {"identities": identities}

    def stats_lines(self, stats: dict) -> list[str]:
        per = stats.get("images_per_identity") or {}
        split = stats.get("identities_per_split") or {}
        return [f"  identities {stats['num_classes']} (train {split.get('train', 0)}, val {split.get('val', 0)}, "
                f"test {split.get('test', 0)}: split by identity); images per identity min {per.get('min', 0):g}, "
                f"median {per.get('median', 0):g}, max {per.get('max', 0):g}"]

    def dataset_lines(self, stats: dict) -> list[str]:
        per = stats.get("images_per_identity") or {}
        return [tr("Each identity has {low:g} to {high:g} photos (median {median:g}); validation and test hold "
                   "identities the model never trains on.", low=per.get("min", 0), high=per.get("max", 0),
                   median=per.get("median", 0))]

    # -- models and training -------------------------------------------------------------------------
    def architectures(self) -> list[str]:
        return MODELS.names()

    def build(self, meta: dict) -> nn.Module:
        return build_embedder(meta["arch"], embedding_dim(meta))

    def output_layers(self, meta: dict) -> list[str]:
        return [f"body.{MODELS.get(meta['arch']).head}", "neck"]

    def resolve(self, ws, ds: dict, arch: str, res: defaults.Resolution, entries: list[dict], root: Path) -> dict:
        spec = MODELS.get(arch)
        ids = {e["label"] for e in entries}
        if len(ids) < 2:
            raise DatasetError(f"The training split of {ds['name']}:v{ds['version']} holds {len(ids)} identity.",
                               fix="Import more identities (one folder of photos each); retrieval learns from pairs.")
        stats = ds["stats"]
        side = math.sqrt((stats.get("width") or {}).get("median", spec.default_img_size) *
                         (stats.get("height") or {}).get("median", spec.default_img_size))
        p = max(2, min(16, len(ids)))
        res.pick("batch_size", lambda: (p * PER_IDENTITY, f"{p} identities x {PER_IDENTITY} images a batch "
                                                           "(P x K sampling for the metric-learning loss)"))
        defaults.resolve_common(res, n_train=len(entries), image_side=side, default_size=spec.default_img_size,
                                weights_available=imagenet_weights_available(arch),
                                min_size=min(spec.min_img_size, spec.default_img_size))
        defaults.resolve_flip(res, lambda: defaults.class_samples(root, entries))
        defaults.resolve_crop(res, side)
        res.pick("embedding_dim", lambda: (DEFAULT_DIM, f"{DEFAULT_DIM} dimensions: 1 KB a gallery item in float32"))
        loss = res.pick("loss", lambda: (DEFAULT_LOSS, "multi-similarity with mining: works with few photos per "
                                                       "identity, where margin softmax losses fall behind"))
        LOSSES.get(str(loss))  # an unknown name fails here, before the run starts, with the names it knows
        return {}

    def preprocessing(self, resolved: dict) -> dict:
        return preprocessing_spec(resolved["img_size"])

    def postprocessing(self, resolved: dict) -> dict:
        return {"type": "embedding", "embedding_dim": int(resolved["embedding_dim"]), "metric": "cosine",
                "loss": resolved["loss"]}

    def training_data(self, root: Path, entries: list[dict], resolved: dict) -> ImageTensors:
        return ImageTensors(root, entries, resolved["classes"], resolved["img_size"])

    def initial_model(self, resolved: dict, parent, sink) -> nn.Module:
        model = build_embedder(resolved["model"], int(resolved["embedding_dim"]))
        if resolved["pretrained"] == "imagenet":
            info = load_pretrained(model.body, resolved["model"])
            sink({"type": "init", "source": "imagenet", "loaded_tensors": info["loaded"]})
        elif parent is not None:
            info = load_matching(model, parent[0].state_dict())
            sink({"type": "init", "source": resolved["from_model"], "loaded_tensors": info["loaded"]})
        return model

    def trainer(self, cfg, model: nn.Module, train, val, preprocessing: dict, run_dir: Path, resolved: dict,
                **kwargs) -> RetrievalTrainer:
        return RetrievalTrainer(cfg, model, train, val, preprocessing, run_dir, loss=resolved["loss"],
                                embedding_dim=int(resolved["embedding_dim"]), **kwargs)

    # -- evaluation ----------------------------------------------------------------------------------
    def embed(self, model: nn.Module, meta: dict, root: Path, entries: list[dict]) -> np.ndarray:
        import torch

        data = ImageTensors(root, entries, sorted({e["label"] for e in entries}), meta["preprocessing"]["resize"][0])
        pre = meta["preprocessing"]
        mean, std = (torch.tensor(pre[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
        return predict_logits(model.cpu().eval(), data, mean, std).numpy()

    def evaluate(self, model: nn.Module, meta: dict, root: Path, entries: list[dict]) -> dict:
        emb = self.embed(model, meta, root, entries)
        return {**self.score(emb, truth_of(entries), meta), "images": len(entries)}

    def version_metrics(self, full: dict) -> dict:
        return {k: full[k] for k in (*(f"recall@{k}" for k in KS), "map@r")}

    def evaluation(self, ws, row: dict, model: nn.Module, meta: dict, root: Path, entries: list[dict], split: str,
                   save_predictions) -> dict:
        emb = self.embed(model, meta, root, entries)
        truth = truth_of(entries)
        metrics = {**self.score(emb, truth, meta), "images": len(entries)}
        out: dict = {"metrics": metrics, "files": {}}
        if save_predictions:
            out["files"]["predictions"] = str(write_rankings(Path(save_predictions), emb, entries, truth))
        return out

    def evaluation_on_folders(self, model: nn.Module, meta: dict, gallery: Path, queries: Path,
                              save_predictions) -> dict:
        refs, qs = folder_entries(gallery), folder_entries(queries)
        ref_emb = self.embed(model, meta, gallery, refs)
        q_emb = self.embed(model, meta, queries, qs)
        metrics = retrieval_metrics(q_emb, [e["label"] for e in qs], ref_emb, [e["label"] for e in refs])
        out: dict = {"metrics": {**metrics, "images": len(refs) + len(qs)}, "files": {}}
        if save_predictions:
            both = [{**e, "role": "reference"} for e in refs] + [{**e, "role": "query"} for e in qs]
            out["files"]["predictions"] = str(write_rankings(Path(save_predictions), np.concatenate([ref_emb, q_emb]),
                                                             both, truth_of(both)))
        return out

    def score_text(self, metrics: dict) -> str:
        r1, mapr = metrics.get("recall@1"), metrics.get("map@r")
        if not isinstance(r1, (int, float)):
            return "Recall@1 –"
        return f"Recall@1 {r1:.4f}" + (f", MAP@R {mapr:.4f}" if isinstance(mapr, (int, float)) else "")

    def eval_lines(self, out: dict) -> list[str]:
        m = out["metrics"]
        where = (f"queries {out['queries']} against gallery {out['gallery']}" if out.get("gallery") else
                 f"{out['dataset']} {out['split']}")
        return [f"{out['model']}:v{out['version']} on {where} ({m['queries']} queries against {m['references']} "
                "references):",
                *table([{"metric": k, "value": round(m[k], 4)} for k in (*(f"recall@{k}" for k in KS), "map@r",
                                                                       "r_precision")], ["metric", "value"]),
                *(f"{key}: {path}" for key, path in out["files"].items())]

    def evaluation_sentence(self, model: str, out: dict) -> str:
        m = out["metrics"]
        return tr("Training finished: on {queries} photos of identities it never saw, **{model}** finds the same "
                  "identity first **{r1:.0%}** of the time (Recall@1; within the top 5: {r5:.0%}).",
                  queries=m["queries"], model=model, r1=m["recall@1"], r5=m["recall@5"])

    # -- export, benchmarks, prediction --------------------------------------------------------------
    def eval_set(self, root: Path, entries: list[dict], meta: dict) -> EvalSet:
        labels = sorted({e["label"] for e in entries})
        data = ImageTensors(root, entries, labels, meta["preprocessing"]["resize"][0])
        return EvalSet(normalized(data.images, meta["preprocessing"]), truth_of(entries))

    def output_shape(self, meta: dict) -> tuple[int, ...]:
        return (embedding_dim(meta),)

    def score(self, outputs: np.ndarray, truth: Any, meta: dict) -> dict:
        emb = unit(outputs)
        labels, roles = [t["label"] for t in truth], [t["role"] for t in truth]
        if roles and "reference" in roles and "query" in roles:
            q = [i for i, r in enumerate(roles) if r == "query"]
            g = [i for i, r in enumerate(roles) if r != "query"]
            metrics = retrieval_metrics(emb[q], [labels[i] for i in q], emb[g], [labels[i] for i in g])
        else:
            metrics = retrieval_metrics(emb, labels)
        return {**metrics, "recall_by_class": {}}

    def parity(self, outputs: np.ndarray, reference: np.ndarray, precision: str, meta: dict) -> dict:
        a, b = unit(outputs.astype(np.float64)), unit(reference.astype(np.float64))
        cosine = (a * b).sum(axis=1)
        k = min(NEIGHBOURS, len(b) - 1)
        agreement = neighbour_agreement(a, b, k) if k > 0 else 1.0
        min_cos, min_agree = PARITY_TOLERANCE[precision]
        ok = float(cosine.min()) >= min_cos and agreement >= min_agree
        return {"checked": True, "passed": bool(ok), "min_cosine": float(cosine.min()),
                "max_abs_diff": float(np.abs(a - b).max()),
                "mean_cosine": float(cosine.mean()), "agreement": agreement,
                "agreement_kind": f"top-{k} neighbours", "images": int(len(b)),
                "tolerance": {"min_cosine": min_cos, "min_neighbour_agreement": min_agree, "max_abs_diff": None}}

    def postprocess(self, raw: np.ndarray, meta: dict, sizes, top_k: int | None, min_score: float | None) -> list[list[dict]]:
        emb = unit(raw.reshape(len(raw), -1))
        return [[{"embedding": [round(float(v), 6) for v in row]}] for row in emb]

    def pai_item(self, p: dict, width: int, height: int) -> dict:
        raise UnsupportedSpecError("An embedder's PAI-EAS answer is the best label of its gallery, not an embedding.",
                                   fix="Call /api/predict/<index name> (an index built with `edgefactory index build`).")

    def report_scores(self, metrics: dict) -> dict:
        return {k: metrics[k] for k in ("recall@5", "map@r") if k in metrics}


def folder_entries(root: Path) -> list[dict]:
    """Labelled images of a folder in any retrieval layout (folder per identity, PP-ShiTu list), as entries."""
    from factory.datasets.issues import IssueLog

    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder.", fix="Give a folder with one folder of images per identity.")
    records = [r for r in reader(detect_format(root)).read(root, IssueLog()) if r.label is not None]
    if not records:
        raise DatasetError(f"No labelled images in {root}.", fix="Put each identity's images in a folder of its own.")
    return [{"file": r.path, "label": r.label} for r in records]


def truth_of(entries: list[dict]) -> list[dict]:
    """Per image (indexable like every task's ground truth: INT8 accuracy control scores subsets of it): its label,
    its role (reference or query, where the data has a gallery of its own) and its file."""
    return [{"label": e["label"], "role": e.get("role"), "file": e.get("source") or e["file"]} for e in entries]


def neighbour_agreement(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Mean share of each image's k nearest others under `b` that are also among them under `a`."""
    na = drop_self(knn(a.astype(np.float32), a.astype(np.float32), k + 1)[1])
    nb = drop_self(knn(b.astype(np.float32), b.astype(np.float32), k + 1)[1])
    same = [len(set(x) & set(y)) / k for x, y in zip(na.tolist(), nb.tolist())]
    return float(np.mean(same))


def write_rankings(path: Path, emb: np.ndarray, entries: list[dict], truth: list[dict], k: int = NEIGHBOURS) -> Path:
    """{"<query file>": ["<label>", ... ranked]} (query against the references, or leave-one-out)."""
    roles = [t["role"] for t in truth]
    q = [i for i, r in enumerate(roles) if r == "query"] or list(range(len(entries)))
    g = [i for i, r in enumerate(roles) if r != "query"] if len(q) < len(entries) else list(range(len(entries)))
    _, idx = knn(emb[q], emb[g], k + (0 if len(q) < len(entries) else 1))
    out = {}
    for qi, row in zip(q, idx.tolist()):
        ranked = [g[j] for j in row if j >= 0 and g[j] != qi][:k]
        out[truth[qi]["file"]] = [entries[j]["label"] for j in ranked]
    if not out:
        raise ConfigError("No query to rank.", fix="Evaluate on a split that has images.")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, ensure_ascii=False, indent=1))
    return path
