"""Retrieval quality bar (issue 15), measured in one run: the default embedder (EfficientNet-Lite0, ImageNet start,
BN-neck, 256-d, multi-similarity loss: every option at its default, as `edgefactory train --time-budget` runs it)
fine-tuned on this CPU with a time budget on the seeded identity generator,
then scored on identities of a held-out seed (none of them seen in training: every image a query against all the
others, leave-one-out), and on data the generator never made (random views of scikit-image's ten sample photos,
one identity per photo), each beside two baselines measured on the same images:

- raw pixels + PCA: 32x32 RGB pixels, standardised, PCA to 64 dimensions fitted on the training images;
- the pretrained backbone with no training: EfficientNet-Lite0's pooled ImageNet features (1280-d).

Then the embedder is exported to OpenVINO INT8 (budget 1 point of Recall@1 on its own test identities) and its
held-out Recall@1 measured with the OpenVINO runtime, beside FP32. Prints a table; writes
benchmarks/results/retrieval_quality.json.

    .venv/bin/python -m benchmarks.perf.retrieval_quality [--minutes 5] [--identities 80] [--per-identity 10]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.device import identity
from factory import api
from factory.datasets.images import load_rgb
from factory.datasets.synthetic import write_photos
from factory.datasets.splits import DatasetSplits
from factory.models import load_model, resolve_model
from factory.refs import dataset_row_for
from factory.tasks import TASKS
from factory.tasks.classification.models import build_model, load_pretrained, preprocessing_spec
from factory.tasks.retrieval.metrics import retrieval_metrics, unit
from factory.tasks.retrieval.synthetic import write_identities

RESULTS = Path(__file__).parents[1] / "results" / "retrieval_quality.json"
HELD_OUT_SEED = 12345


def pixels(paths: list[Path], side: int = 32) -> np.ndarray:
    return np.stack([np.asarray(load_rgb(p).resize((side, side)), np.float32).ravel() / 255.0 for p in paths])


def pca_baseline(train: list[Path], test: list[Path], dims: int = 64) -> np.ndarray:
    x = pixels(train)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    _, _, vt = np.linalg.svd((x - mean) / std, full_matrices=False)
    return ((pixels(test) - mean) / std) @ vt[:dims].T


@torch.no_grad()
def backbone_baseline(test: list[Path], size: int) -> np.ndarray:
    model = build_model("efficientnet_lite0", 1000)
    load_pretrained(model, "efficientnet_lite0")
    model.classifier = torch.nn.Identity()
    model.eval()
    pre = preprocessing_spec(size)
    mean, std = (torch.tensor(pre[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
    out = []
    for i in range(0, len(test), 64):
        batch = np.stack([np.asarray(load_rgb(p).resize((size, size)), np.float32) for p in test[i:i + 64]])
        x = (torch.from_numpy(batch).permute(0, 3, 1, 2) / 255.0 - mean) / std
        out.append(model(x).numpy())
    return np.concatenate(out)


def held_out_entries(home: Path, name: str) -> tuple[Path, list[dict]]:
    with api.session(home) as (ws, catalog):
        data = DatasetSplits.open(ws, dataset_row_for(catalog, name))
    return data.root, [m for m in data.manifest if m["label"] is not None]


def artifact_embeddings(home: Path, ref: str, target: str, precision: str, files: list[Path]) -> np.ndarray:
    from targets.predictor import load_predictor

    with api.session(home) as (ws, catalog):
        predictor = load_predictor(ws, catalog, ref, target, precision)
    out = []
    for i in range(0, len(files), 32):
        preds = predictor.predict([load_rgb(p) for p in files[i:i + 32]])
        out += [p[0]["embedding"] for p in preds]
    return np.asarray(out, np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--identities", type=int, default=80)
    ap.add_argument("--per-identity", type=int, default=10)
    ap.add_argument("--held-out-identities", type=int, default=60)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--no-export", action="store_true")
    args = ap.parse_args()
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "ws"
        train_dir = write_identities(Path(tmp) / "train", identities=args.identities, per_identity=args.per_identity,
                                     size=args.size, seed=0)
        api.import_dataset(train_dir, "ids", task="retrieval", home=home)
        api.import_dataset(write_identities(Path(tmp) / "heldout", identities=args.held_out_identities,
                                            per_identity=args.per_identity, size=args.size, seed=HELD_OUT_SEED),
                           "heldout", task="retrieval", home=home)
        # not the identity generator at all: random views of scikit-image's photos, one identity per photo
        api.import_dataset(write_photos(Path(tmp) / "photos", per_class=20, size=args.size, seed=HELD_OUT_SEED),
                           "photos", task="retrieval", home=home)
        out = api.train({"dataset": "ids", "time_budget_min": args.minutes}, home=home)  # the CLI's defaults
        ref = f"{out['model']}:v{out['version']}"
        with api.session(home) as (ws, catalog):
            model, meta = load_model(ws, resolve_model(catalog, ref))
        exported = {p: api_export(home, ref, p) for p in ([] if args.no_export else ["fp32", "int8"])}
        scores, sets = {}, {}
        for name in ("heldout", "photos"):
            root, entries = held_out_entries(home, name)
            labels = [e["label"] for e in entries]
            files = [root / e["file"] for e in entries]
            rows = {"trained embedder (PyTorch FP32)": TASKS.get("retrieval").embed(model, meta, root, entries),
                    "pretrained backbone, no training": backbone_baseline(files, meta["preprocessing"]["resize"][0]),
                    "raw pixels + PCA-64": pca_baseline(sorted(train_dir.rglob("*.jpg")), files)}
            for precision in (p for p, art in exported.items() if "error" not in art):
                rows[f"trained embedder (OpenVINO {precision.upper()})"] = artifact_embeddings(
                    home, ref, "openvino", precision, files)
            scores[name] = {row: retrieval_metrics(unit(emb), labels) for row, emb in rows.items()}
            sets[name] = {"identities": len(set(labels)), "images": len(labels)}
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "device": identity(), "minutes": args.minutes,
              "train": {"identities": args.identities, "per_identity": args.per_identity, "seed": 0},
              "held_out": {**sets["heldout"], "per_identity": args.per_identity, "seed": HELD_OUT_SEED},
              "photos": {**sets["photos"], "source": "scikit-image sample photos, random views (write_photos)",
                         "seed": HELD_OUT_SEED},
              "training": out["metrics"], "config": {k: meta["postprocessing"][k] for k in ("embedding_dim", "loss")},
              "arch": meta["arch"], "img_size": meta["preprocessing"]["resize"][0],
              "scores": {n: {k: round(v, 4) for k, v in s.items() if isinstance(v, float)} for n, s in scores["heldout"].items()},
              "scores_photos": {n: {k: round(v, 4) for k, v in s.items() if isinstance(v, float)}
                                for n, s in scores["photos"].items()},
              "exports": exported, "wall_s": round(time.time() - start, 1)}
    print(f"{meta['arch']} @ {result['img_size']} px, {args.minutes:g} min ({out['metrics']['epochs_run']} epochs), "
          "default options; leave-one-out on identities never trained on")
    for name, title in (("heldout", "identity generator, held-out seed"), ("photos", "scikit-image photo views")):
        print(f"  {title}: {sets[name]['identities']} identities, {sets[name]['images']} images")
        print(f"  {'embedding':<42s} {'R@1':>7s} {'R@5':>7s} {'R@10':>7s} {'MAP@R':>7s}")
        for row, s in scores[name].items():
            print(f"  {row:<42s} {s['recall@1']:7.4f} {s['recall@5']:7.4f} {s['recall@10']:7.4f} {s['map@r']:7.4f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


def api_export(home: Path, ref: str, precision: str) -> dict:
    from targets import api as targets_api

    from factory.errors import BudgetError

    try:
        art = targets_api.export(ref, "openvino", precision=precision, max_drop=1.0, home=home)
    except BudgetError as exc:  # a result too: the table says which precision missed its budget and by how much
        print(f"OpenVINO {precision}: {exc.message}")
        return {"error": exc.message}
    return {k: art[k] for k in ("artifact", "size_mb", "accuracy", "reference_accuracy", "accuracy_drop_points")} | {
        "parity": {k: art["parity"].get(k) for k in ("min_cosine", "mean_cosine", "agreement")}}


if __name__ == "__main__":
    main()
