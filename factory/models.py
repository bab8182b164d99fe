"""The model registry: `name:vN` versions holding plain PyTorch weights plus everything needed to use
them anywhere (task, architecture, classes, input size, preprocessing, post-processing, metrics)."""

from __future__ import annotations

import json
import shutil
import time

import torch
from torch import nn

from factory.catalog import Catalog
from factory.errors import ModelFileError
from factory.refs import resolve
from factory.tasks import task_of
from factory.tasks.base import fit_to_state_dict
from factory.workspace import Workspace, atomic_write_json, publish_dir, staging_dir


def resolve_model(catalog: Catalog, ref: str) -> dict:
    names = sorted({r["name"] for r in catalog.model_versions()})
    return resolve(catalog.model_versions, names, ref, "model")


def register_model_version(ws: Workspace, catalog: Catalog, *, name: str, arch: str, classes: list[str],
                           img_size: int, state_dict: dict, dataset: str, run_id: str | None,
                           metrics: dict, task: str, preprocessing: dict, postprocessing: dict,
                           extra: dict | None = None) -> dict:
    """Write weights.pt + metadata.json under a staging name, then publish as the next version."""
    metadata = {"name": name, "task": task, "arch": arch, "classes": classes,
                "num_classes": len(classes), "input_size": [3, img_size, img_size],
                "preprocessing": preprocessing, "postprocessing": postprocessing,
                "dataset": dataset, "run": run_id, "metrics": metrics, "torch_version": torch.__version__,
                "weights": "weights.pt", **(extra or {})}
    with staging_dir(ws.home / "models" / name / "pending") as tmp:
        torch.save(state_dict, tmp / "weights.pt")
        with catalog.transaction():
            version = catalog.next_version("model_versions", name)
            final = ws.model_dir(name, version)
            metadata.update(version=version, created_at=time.time())
            atomic_write_json(tmp / "metadata.json", metadata)
            publish_dir(tmp, final)
            row = {"name": name, "version": version, "task": task, "arch": arch, "dataset": dataset,
                   "path": str(final.relative_to(ws.home)), "metrics": metrics, "created_at": metadata["created_at"],
                   "run_id": run_id}
            catalog.insert("model_versions", row)
    return row


def read_metadata(ws: Workspace, row: dict) -> dict:
    path = ws.home / row["path"] / "metadata.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"The metadata of {row['name']}:v{row['version']} ({path}) cannot be read: {exc}",
                             fix="Restore the model folder from a backup, or delete the version and retrain.") from exc


def build_architecture(meta: dict) -> nn.Module:
    """A freshly initialised network of the metadata's task, architecture and class count."""
    return task_of(meta).build(meta)


def load_model(ws: Workspace, row: dict) -> tuple[nn.Module, dict]:
    """The model of a registry row, in eval mode, with its metadata."""
    meta = read_metadata(ws, row)
    model = build_architecture(meta)
    path = ws.home / row["path"] / meta["weights"]
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if meta.get("pruned"):  # channel-pruned: shrink the fresh architecture to the saved shapes first
            fit_to_state_dict(model, state)
        model.load_state_dict(state)
    except Exception as exc:  # unpickling, truncated zip, shape mismatch: all mean the file is not usable
        raise ModelFileError(f"The weights of {row['name']}:v{row['version']} ({path}) cannot be loaded: "
                             f"{type(exc).__name__}: {str(exc)[:200]}",
                             fix="Restore the file from a backup, or retrain (the catalog and other versions are intact).") from exc
    return model.eval(), meta


def delete_model_version(ws: Workspace, catalog: Catalog, ref: str) -> dict:
    """Remove a version (and its exported artifacts) from the catalog, then their folders
    (catalog first: no row ever points at a missing folder)."""
    row = resolve_model(catalog, ref)
    catalog.delete_model_version(row["name"], row["version"])
    shutil.rmtree(ws.home / row["path"], ignore_errors=True)
    shutil.rmtree(ws.home / "artifacts" / row["name"] / f"v{row['version']}", ignore_errors=True)
    return row
