"""Retrieval as a task: metrics against hand-worked cases and pytorch-metric-learning, the layouts (folder per
identity, PP-ShiTu list with spaces in labels, TAO reference/query), the split by identity, the issue codes, and a
tiny embedder through train -> eval -> saved rankings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from factory import api
from factory.errors import ConfigError, DatasetError, FactoryError
from factory.tasks.retrieval.metrics import retrieval_metrics
from factory.tasks.retrieval.synthetic import write_identities
from tests.conftest import run_cli
from tests.dataset_helpers import image_bytes, put


def unit(rows: list[list[float]]) -> np.ndarray:
    x = np.asarray(rows, np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# -- metrics -------------------------------------------------------------------------------------
def test_recall_and_map_at_r_by_hand():
    # four images on a circle: a and a' close together, b and b' close together but b' nearer to a than to b
    angles = np.radians([0, 10, 90, 40])
    emb = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    labels = ["a", "a", "b", "b"]
    m = retrieval_metrics(emb, labels, ks=(1, 2, 3))
    # neighbours (self left out): a0 -> a1, b3, b2; a1 -> a0, b3, b2; b2 -> b3, a1, a0; b3 -> a1, a0, b2
    assert m["recall@1"] == pytest.approx(3 / 4)
    assert m["recall@2"] == pytest.approx(3 / 4) and m["recall@3"] == 1.0
    # R = 1 for every query: MAP@R = precision@1 where the first is relevant
    assert m["map@r"] == pytest.approx(3 / 4) and m["r_precision"] == pytest.approx(3 / 4)
    assert m["queries"] == 4 and m["lone_queries"] == 0


def test_lone_queries_are_left_out_and_gallery_mode():
    emb = unit([[1, 0], [0.9, 0.1], [0, 1]])
    m = retrieval_metrics(emb, ["a", "a", "c"])  # "c" has no other image: lone
    assert m["queries"] == 2 and m["lone_queries"] == 1 and m["recall@1"] == 1.0
    refs = unit([[1, 0], [0, 1], [0.7, 0.7]])
    q = unit([[0.1, 1], [1, 0.2]])
    m = retrieval_metrics(q, ["x", "x"], refs, ["x", "y", "x"], ks=(1, 2))
    # q0: nearest y, then x (0.7,0.7): R=2, hits [0,1] -> recall@1 0, recall@2 1, MAP@R (0 + 1/2)/2
    # q1: nearest x (1,0), then x: hits [1,1] -> MAP@R 1
    assert m["recall@1"] == 0.5 and m["recall@2"] == 1.0
    assert m["map@r"] == pytest.approx((0.25 + 1.0) / 2)


def test_metrics_match_pytorch_metric_learning():
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 12, 200)
    centres = rng.normal(size=(12, 16))
    emb = centres[labels] + rng.normal(scale=1.2, size=(200, 16))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    ours = retrieval_metrics(emb, labels.tolist())
    import torch

    calc = AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r", "r_precision"),
                              k="max_bin_count", device=torch.device("cpu"))
    theirs = calc.get_accuracy(torch.from_numpy(emb), torch.from_numpy(labels))
    assert ours["recall@1"] == pytest.approx(theirs["precision_at_1"], abs=1e-6)
    assert ours["map@r"] == pytest.approx(theirs["mean_average_precision_at_r"], abs=1e-6)
    assert ours["r_precision"] == pytest.approx(theirs["r_precision"], abs=1e-6)


# -- datasets ------------------------------------------------------------------------------------
def test_folder_per_identity_splits_by_identity(tmp_path: Path, home: Path):
    write_identities(tmp_path / "ids", identities=20, per_identity=4, size=48, seed=3)
    row = api.import_dataset(tmp_path / "ids", "ids", task="retrieval", home=home)
    assert row["task"] == "retrieval" and row["format"] == "folder_per_identity"
    manifest = json.loads((home / row["path"] / "manifest.json").read_text())
    by_split = {s: {m["label"] for m in manifest if m["split"] == s} for s in ("train", "val", "test")}
    assert by_split["train"] and by_split["val"] and by_split["test"]
    assert not (by_split["train"] & by_split["val"]) and not (by_split["train"] & by_split["test"])
    assert row["stats"]["images_per_identity"]["median"] == 4
    assert row["stats"]["identities_per_split"]["train"] == len(by_split["train"])


def test_ppshitu_list_keeps_labels_with_spaces(tmp_path: Path, home: Path):
    write_identities(tmp_path / "list", identities=8, per_identity=3, size=48, seed=4, layout="ppshitu_list")
    row = api.import_dataset(tmp_path / "list", "lst", task="retrieval", home=home)
    assert row["format"] == "ppshitu_list"
    assert "item 4-000" in row["classes"] and len(row["classes"]) == 8


def test_tao_layout_keeps_reference_and_query(tmp_path: Path, home: Path):
    write_identities(tmp_path / "tao", identities=9, per_identity=4, size=48, seed=5, layout="tao")
    row = api.import_dataset(tmp_path / "tao", "tao", task="auto", home=home)  # TAO's folders are retrieval's own
    assert row["task"] == "retrieval" and row["format"] == "tao"
    manifest = json.loads((home / row["path"] / "manifest.json").read_text())
    test = [m for m in manifest if m["split"] == "test"]
    assert {m["role"] for m in test} == {"reference", "query"}
    assert not {m["label"] for m in test} & {m["label"] for m in manifest if m["split"] == "train"}


def test_issue_codes_single_images_and_cross_identity_duplicates(tmp_path: Path, home: Path):
    root = tmp_path / "ids"
    for ident in ("a", "b", "c", "d", "e"):
        for i in range(3):
            put(root / ident / f"{i}.png", image_bytes(f"{ident}{i}"))
    put(root / "lonely" / "0.png", image_bytes("lonely"))
    put(root / "e" / "copy.png", image_bytes("a0"))  # a's image again, under e
    row = api.import_dataset(root, "ids", task="retrieval", home=home)
    codes = {i["code"]: i for i in row["issues"]}
    assert codes["SINGLE_IMAGE_IDENTITY"]["files"] == ["lonely"]
    assert set(codes["DUPLICATE_ACROSS_IDENTITIES"]["files"]) == {"a/0.png", "e/copy.png"}
    manifest = json.loads((home / row["path"] / "manifest.json").read_text())
    assert [m["split"] for m in manifest if m["label"] == "lonely"] == ["test"]  # a gallery distractor


def test_identities_in_train_and_test_splits_are_named(tmp_path: Path, home: Path):
    root = tmp_path / "split"
    for split, idents in (("train", "abcde"), ("test", "ea")):
        for ident in idents:
            for i in range(2):
                put(root / split / ident / f"{i}.png", image_bytes(f"{split}{ident}{i}"))
    row = api.import_dataset(root, "split", task="retrieval", home=home)
    codes = {i["code"]: i for i in row["issues"]}
    assert row["format"] == "split_folders" and codes["OVERLAPPING_IDENTITIES"]["files"] == ["a", "e"]


def test_every_retrieval_code_has_a_test():
    from factory.tasks.retrieval.formats import RETRIEVAL_CODES

    tested = {"SINGLE_IMAGE_IDENTITY", "DUPLICATE_ACROSS_IDENTITIES", "TOO_FEW_IDENTITIES", "OVERLAPPING_IDENTITIES"}
    assert RETRIEVAL_CODES == tested


def test_too_few_identities_fails_and_changes_nothing(tmp_path: Path, home: Path):
    root = tmp_path / "few"
    for ident in ("a", "b", "c"):
        for i in range(3):
            put(root / ident / f"{i}.png", image_bytes(f"few{ident}{i}"))
    with pytest.raises(DatasetError) as err:
        api.import_dataset(root, "few", task="retrieval", home=home)
    assert err.value.code == "TOO_FEW_IDENTITIES"
    assert api.list_datasets(home=home) == []


# -- training and evaluation ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def retrieval_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("retrieval")
    home = root / "ws"
    api.import_dataset(write_identities(root / "ids", identities=24, per_identity=5, size=48, seed=7), "ids",
                       task="retrieval", home=home)
    api.train({"dataset": "ids", "model": "tiny_cls", "epochs": 6, "name": "ids-tiny", "embedding_dim": 32}, home=home)
    return home


def test_train_registers_an_embedder_with_retrieval_metrics(retrieval_home: Path):
    row = api.show_model("ids-tiny", home=retrieval_home)
    assert row["task"] == "retrieval"
    assert set(row["metrics"]) >= {"recall@1", "recall@5", "recall@10", "map@r", "val_recall@1"}
    assert row["postprocessing"] == {"type": "embedding", "embedding_dim": 32, "metric": "cosine",
                                     "loss": "multi_similarity"}
    from factory.models import load_model, resolve_model
    import torch

    with api.session(retrieval_home) as (ws, catalog):
        model, meta = load_model(ws, resolve_model(catalog, "ids-tiny"))
    out = model(torch.randn(3, 3, 48, 48))
    assert out.shape == (3, 32) and torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-5)


def test_eval_saves_rankings_cli(retrieval_home: Path, tmp_path: Path):
    _, out, _ = run_cli("eval", "ids-tiny", "--save-predictions", str(tmp_path / "ranks.json"), home=retrieval_home)
    assert 0 <= out["metrics"]["recall@1"] <= 1 and out["metrics"]["queries"] > 0
    ranks = json.loads((tmp_path / "ranks.json").read_text())
    assert len(ranks) == out["metrics"]["images"]
    assert all(isinstance(v, list) and len(v) == min(10, len(ranks) - 1) for v in ranks.values())


def test_arcface_loss_trains_and_resumes(tmp_path: Path):
    home = tmp_path / "ws"
    api.import_dataset(write_identities(tmp_path / "ids", identities=12, per_identity=4, size=40, seed=8), "ids",
                       task="retrieval", home=home)
    out = api.train({"dataset": "ids", "model": "tiny_cls", "epochs": 2, "loss": "arcface", "embedding_dim": 16},
                    home=home)
    assert out["task"] == "retrieval" and out["metrics"]["epochs_run"] == 2
    with api.session(home) as (ws, catalog):
        run_dir = ws.run_dir(out["run"])
    import torch

    ckpt = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=False)
    assert ckpt["loss"]["W"].shape == (16, 8)  # ArcFace's own weights (dim x training identities) are kept


def test_task_options_are_checked(retrieval_home: Path, shapes_dir: Path, tmp_path: Path):
    with pytest.raises(FactoryError, match="Unknown retrieval loss 'triplet_typo'"):
        api.resolve_training({"dataset": "ids", "model": "tiny_cls", "loss": "triplet_typo"}, home=retrieval_home)
    home = tmp_path / "ws"
    api.import_dataset(shapes_dir, "shapes", home=home)
    with pytest.raises(ConfigError, match="does not apply to classification"):
        api.resolve_training({"dataset": "shapes", "loss": "arcface"}, home=home)
    with pytest.raises(ConfigError, match="embedding_dim"):
        api.resolve_training({"dataset": "shapes", "embedding_dim": 4}, home=home)


def test_eval_on_gallery_and_query_folders(retrieval_home: Path, tmp_path: Path):
    write_identities(tmp_path / "tao", identities=6, per_identity=4, size=48, seed=21, layout="tao")
    _, out, _ = run_cli("eval", "ids-tiny", "--gallery", str(tmp_path / "tao" / "reference"), "--queries",
                        str(tmp_path / "tao" / "query"), "--save-predictions", str(tmp_path / "r.json"),
                        home=retrieval_home)
    m = out["metrics"]
    assert m["references"] == 2 and m["queries"] == 6 and set(m) >= {"recall@1", "recall@5", "recall@10", "map@r"}
    ranks = json.loads((tmp_path / "r.json").read_text())
    assert set(ranks) == {f"item_21_{i:03d}/{j:03d}.jpg" for i in (4, 5) for j in (1, 2, 3)}
    assert all(sorted(v) == ["item_21_004", "item_21_005"] for v in ranks.values())
    code, out, _ = run_cli("eval", "ids-tiny", "--gallery", str(tmp_path / "tao" / "reference"), home=retrieval_home,
                           check=False)
    assert code == 1 and "go together" in out["error"]["message"]


@pytest.mark.slow
def test_int8_accuracy_control_scores_subsets_of_the_ground_truth(retrieval_home: Path, tmp_path: Path):
    """NNCF's accuracy control validates image by image: the retrieval ground truth must be indexable per image (it
    failed with KeyError: 0 when the truth was one dict of lists)."""
    from targets import api as targets_api
    from tests.conftest import copy_home

    home = tmp_path / "ws"
    copy_home(retrieval_home, home)
    out = targets_api.export("ids-tiny", "openvino", precision="int8", strategies=("accuracy_control",), max_drop=100,
                             keep_if_slower=True, home=home)
    assert out["compression"]["strategy"] == "accuracy_control" and out["parity"]["checked"]
    assert 0 <= out["accuracy"] <= 1
