"""Gallery indexes from the command line and the server: the embedder of a model version on a target
(targets' runner, so an INT8 artifact embeds its own gallery) and the `index` / `search` commands over
retrieval.gallery."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from factory.api import session
from factory.datasets.images import load_rgb
from factory.datasets.splits import DatasetSplits
from factory.errors import ConfigError, NotFoundError
from factory.progress import StageBars
from factory.refs import dataset_row_for
from factory.tasks import task_of
from factory.text import table
from retrieval import gallery
from targets.predictor import Predictor, load_predictor


class PredictorEmbedder:
    """A model version's runner as a gallery `Embedder`: images -> unit vectors."""

    def __init__(self, predictor: Predictor):
        if "embedding" not in task_of(predictor.meta).prediction_keys:
            raise ConfigError(f"{predictor.model}:v{predictor.version} is a {predictor.task} model; a gallery needs "
                              "an embedder.", fix="Train one with `edgefactory train --task retrieval` (a retrieval dataset).")
        self.predictor = predictor
        self.model = f"{predictor.model}:v{predictor.version}"
        self.target, self.precision = predictor.target, predictor.precision

    def __call__(self, images: list[Image.Image]) -> np.ndarray:
        return np.asarray([p[0]["embedding"] for p in self.predictor.predict(images)], dtype=np.float32)


def embedder(ws, catalog, model: str, target: str | None = None, precision: str | None = None) -> PredictorEmbedder:
    return PredictorEmbedder(load_predictor(ws, catalog, model, target or "pytorch", precision or "fp32"))


def _items(ws, catalog, source: str) -> list[gallery.Item]:
    """A gallery folder (or image file), else a dataset NAME[:vN] (every labelled image of it)."""
    if Path(source).exists():
        return gallery.gallery_items(Path(source))
    try:
        row = dataset_row_for(catalog, source)
    except NotFoundError:
        raise NotFoundError(f"{source} is neither a folder nor a dataset.",
                            fix="Give a folder with one folder of photos per identity, or a dataset name.") from None
    data = DatasetSplits.open(ws, row)
    return [gallery.Item(data.root / m["file"], m["label"], m.get("source") or m["file"])
            for m in data.manifest if m.get("label") is not None]


def _bar(quiet: bool) -> Callable[[str, int, int], None] | None:
    return None if quiet else StageBars()


def build(model: str, source: str, name: str, *, target: str | None = None, precision: str | None = None,
          kind: str = "auto", home=None, progress=None) -> dict:
    with session(home) as (ws, catalog):
        embed = embedder(ws, catalog, model, target, precision)
        row = gallery.build_index(ws, catalog, name, embed, _items(ws, catalog, source), kind=kind, progress=progress)
    return summary(row)


def add(ref: str, source: str, *, label: str | None = None, home=None, progress=None) -> dict:
    """Add the images of `source` to index `ref` (every one labelled `label` when given)."""
    with session(home) as (ws, catalog):
        row = gallery.resolve_index(catalog, ref)
        embed = embedder(ws, catalog, row["model"], row["target"], row["precision"])
        items = _items(ws, catalog, source)
        if label is not None:
            items = [gallery.Item(it.path, label, it.source) for it in items]
        out = gallery.add_items(ws, catalog, ref, embed, items, progress)
    return summary(out)


def remove(ref: str, *, labels: list[str] | None = None, ids: list[int] | None = None, home=None) -> dict:
    if not labels and not ids:
        raise ConfigError("Nothing to remove was named.", fix="Pass --label LABEL or --ids ID [ID ...].")
    with session(home) as (ws, catalog):
        out = gallery.remove_items(ws, catalog, ref, labels=labels, ids=ids)
    return {**summary(out), "removed": out["removed"]}


def search(ref: str, images: list[Image.Image], k: int = 5, *, home=None) -> list[list[dict]]:
    with session(home) as (ws, catalog):
        row = gallery.resolve_index(catalog, ref)
        embed = embedder(ws, catalog, row["model"], row["target"], row["precision"])
        loaded = gallery.load_gallery(ws, row)
    return loaded.search(embed(images), k)


def summary(row: dict) -> dict:
    return {"index": row["name"], "version": row["version"], "model": row["model"], "target": row["target"],
            "precision": row["precision"], "items": row["items"], "kind": row["kind"], "params": row["params"],
            "recall_at_10_vs_exact": row["recall_at_10_vs_exact"], "build_s": row["build_s"], "bytes": row["bytes"],
            "why": row.get("why"), **({"rebuilt": row["rebuilt"]} if "rebuilt" in row else {})}


# -- command line --------------------------------------------------------------------------------
def _print(out: dict) -> None:
    params = ", ".join(f"{k} {v}" for k, v in (out["params"] or {}).items()) or "exact"
    print(f"index {out['index']}:v{out['version']}: {out['items']} items, {out['kind']} ({params}), Recall@10 vs "
          f"exact {out['recall_at_10_vs_exact']:.3f}, {out['bytes'] / 1e6:.2f} MB, {out['build_s']:.2f} s; embedder "
          f"{out['model']} ({out['target']} {out['precision']})")


def cmd_build(a: argparse.Namespace) -> dict:
    out = build(a.model, a.gallery, a.name, target=a.target, precision=a.precision, kind=a.kind, home=a.home,
                progress=_bar(a.quiet or a.json))
    if not a.json:
        _print(out)
        print(f"  kind: {out['why']}")
    return out


def cmd_add(a: argparse.Namespace) -> dict:
    out = add(a.index, a.path, label=a.label, home=a.home, progress=_bar(a.quiet or a.json))
    if not a.json:
        _print(out)
    return out


def cmd_remove(a: argparse.Namespace) -> dict:
    out = remove(a.index, labels=a.label, ids=a.ids, home=a.home)
    if not a.json:
        print(f"removed {out['removed']} items ({'rebuilt' if out['rebuilt'] else 'in place'})")
        _print(out)
    return out


def cmd_list(a: argparse.Namespace) -> dict:
    with session(a.home) as (_, catalog):
        rows = [summary(r) for r in gallery.index_rows(catalog)]
    if not a.json:
        print("\n".join(table([{**r, "ref": f"{r['index']}:v{r['version']}"} for r in rows],
                              ["ref", "items", "kind", "model", "target", "precision", "recall_at_10_vs_exact"])))
    return {"indexes": rows}


def cmd_show(a: argparse.Namespace) -> dict:
    with session(a.home) as (ws, catalog):
        row = gallery.resolve_index(catalog, a.index)
        items = gallery.load_gallery(ws, row).items
    labels: dict[str, int] = {}
    for it in items:
        labels[it["label"]] = labels.get(it["label"], 0) + 1
    out = {**summary(row), "labels": labels}
    if not a.json:
        _print(out)
        print("\n".join(table([{"label": k, "items": v} for k, v in sorted(labels.items())], ["label", "items"])))
    return out


def cmd_search(a: argparse.Namespace) -> dict:
    path = Path(a.image)
    if not path.is_file():
        raise NotFoundError(f"No image {path}.", fix="Give the path of an image file.")
    results = search(a.index, [load_rgb(path)], a.k, home=a.home)[0]
    if not a.json:
        print("\n".join(table([{k: r[k] for k in ("label", "score", "id", "path")} for r in results],
                              ["label", "score", "id", "path"])))
    return {"index": a.index, "image": str(path), "results": [{k: r[k] for k in ("label", "score", "id", "path")}
                                                               for r in results]}


def register(sub, add_command) -> None:
    ix = sub.add_parser("index", help="gallery indexes of an embedder (retrieval)").add_subparsers(dest="action",
                                                                                                 required=True)
    sp = add_command(ix, "build", cmd_build, "embed a gallery with a retrieval model and index it (faiss)")
    sp.add_argument("model", help="the embedder NAME[:vN]")
    sp.add_argument("--gallery", required=True, help="a folder (one folder of photos per identity, or a "
                                                     "path<TAB>label list) or a dataset NAME[:vN]")
    sp.add_argument("--name", required=True, help="the index name")
    sp.add_argument("--target", help="embed with this exported artifact (default pytorch)")
    sp.add_argument("--precision", help="fp32, fp16 or int8 (default fp32)")
    sp.add_argument("--kind", default="auto", choices=list(gallery.faiss_index.KINDS),
                    help="auto: exact under 50k items, inverted lists above, product quantisation when memory says so")
    sp = add_command(ix, "add", cmd_add, "add images to a gallery (its next version), without retraining")
    sp.add_argument("index")
    sp.add_argument("path", help="a folder (one folder per identity) or an image file (labelled by its name)")
    sp.add_argument("--label", help="label every image added with this (photos of one new identity)")
    sp = add_command(ix, "remove", cmd_remove, "remove items by label or id (its next version)")
    sp.add_argument("index")
    sp.add_argument("--label", action="append", help="every item of this label (repeatable)")
    sp.add_argument("--ids", type=int, nargs="+")
    add_command(ix, "list", cmd_list, "every index version")
    add_command(ix, "show", cmd_show, "an index version and its labels").add_argument("index")
    sp = add_command(sub, "search", cmd_search, "the nearest gallery items to an image")
    sp.add_argument("index")
    sp.add_argument("image")
    sp.add_argument("--k", type=int, default=5)
