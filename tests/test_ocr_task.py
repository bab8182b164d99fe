"""OCR as a registered task, end to end through the API the CLI calls: import (also with --task auto), train both
networks as one model version (tiny_ocr, 2 epochs), evaluate with the issue's JSON shape and predictions in original
pixels, a recognizer-only version from crops, --from with a grown dictionary (export: tests/test_ocr_export.py;
serving and predict: tests/test_ocr_serving.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from factory import api
from factory.tasks import TASKS
from factory.tasks.ocr.architectures import build_ocr
from factory.tasks.ocr.formats import write_ocr
from factory.tasks.ocr.task import continue_from
from factory.tasks.ocr.training import MIN_SEEN, rendered_texts


@pytest.fixture(scope="module")
def ocr_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("ocr")
    home = root / "ws"
    api.import_dataset(write_ocr(root / "scenes", "icdar2015", count=40, seed=0, languages=("en", "zh")), "signs",
                       task="auto", home=home)
    events: list[dict] = []
    api.train({"dataset": "signs", "model": "tiny_ocr", "epochs": 2, "name": "reader"}, home=home, on_event=events.append)
    return home, events


def test_an_icdar_folder_is_found_to_be_ocr_and_trains_one_version_of_two_networks(ocr_home):
    home, events = ocr_home
    ds = api.inspect_dataset("signs", home=home)
    assert ds["task"] == "ocr" and ds["format"] == "icdar2015"
    (model,) = api.list_models(home=home)
    assert model["task"] == "ocr" and model["arch"] == "tiny_ocr"
    shown = api.show_model("reader", home=home)
    assert shown["postprocessing"]["alphabet"] == ds["classes"] and shown["postprocessing"]["detector"] is True
    assert TASKS.get("ocr").networks(shown) == ("detector", "recognizer")
    assert {"e2e_hmean", "det", "rec", "e2e"} <= set(model["metrics"]) and 0 <= model["metrics"]["e2e_hmean"] <= 1
    (crops,) = [e for e in events if e.get("stage") == "recognizer crops"]
    # every labelled region twice (exact and with moved corners) plus the rendered text covering the dictionary
    assert crops["scenes"] == ds["splits"]["train"] and crops["crops"] > crops["rendered"] > 0
    run = api.run_status(shown["run"], home=home)
    assert run["config"]["rendered_crops"] == crops["rendered"] and "12 times" in run["config"]["why"]["rendered_crops"]
    assert run["config"]["hflip"] == 0.0 and run["config"]["img_size"] == 320


def test_rendered_text_shows_every_character_at_least_min_seen_times():
    alphabet = list("abc营业")
    texts = ["aaab", "ab"] * 3
    extra = rendered_texts(texts, alphabet, seed=0)
    seen = {c: sum(t.count(c) for t in texts + extra) for c in alphabet}
    assert min(seen.values()) >= MIN_SEEN and all(2 <= len(t) <= 8 for t in extra)


def test_eval_reports_det_rec_e2e_and_saves_predictions_in_original_pixels(ocr_home, tmp_path: Path):
    home, _ = ocr_home
    out_file = tmp_path / "predictions.json"
    out = api.evaluate("reader", split="test", save_predictions=out_file, home=home)
    m = out["metrics"]
    assert set(m) == {"det", "rec", "e2e", "e2e_hmean"} and set(m["det"]) == {"precision", "recall", "hmean"}
    assert set(m["rec"]) == {"word_accuracy", "word_accuracy_caseless", "one_minus_ned", "cer"}
    assert set(m["e2e"]) == {"hmean", "hmean_caseless"} and m["e2e_hmean"] == m["e2e"]["hmean"]
    predictions = json.loads(out_file.read_text())
    assert out["images"] == len(predictions) > 0 and all(name.startswith("img_") for name in predictions)
    for lines in predictions.values():
        for line in lines:
            assert len(line["points"]) == 4 and {"points", "text", "score"} == set(line)
            assert all(0 <= x <= 320 and 0 <= y <= 240 for x, y in line["points"])


def test_a_crop_dataset_trains_a_recognizer_only_version(tmp_path: Path):
    home = tmp_path / "ws"
    api.import_dataset(write_ocr(tmp_path / "words", "labels_csv", count=60, seed=1), "words", task="ocr", home=home)
    result = api.train({"dataset": "words", "model": "tiny_ocr", "epochs": 1}, home=home)
    shown = api.show_model(result["model"], home=home)
    assert TASKS.get("ocr").networks(shown) == ("recognizer",) and shown["postprocessing"]["detector"] is False
    out = api.evaluate(result["model"], split="test", save_predictions=tmp_path / "read.json", home=home)
    assert set(out["metrics"]) == {"rec", "e2e_hmean"}
    read = json.loads((tmp_path / "read.json").read_text())
    assert read and all(name.startswith("word_") and isinstance(text, str) for name, text in read.items())


def test_from_keeps_the_parents_weights_and_each_known_characters_row():
    torch.manual_seed(0)
    parent = build_ocr("tiny_ocr", 3)
    meta = {"postprocessing": {"alphabet": ["a", "b", "c"]}}
    child = build_ocr("tiny_ocr", 4)
    continue_from(child, ["b", "c", "d", "a"], parent, meta)
    old, new = parent.recognizer.head.weight, child.recognizer.head.weight
    assert torch.equal(new[0], old[0]) and torch.equal(new[1], old[2]) and torch.equal(new[4], old[1])
    assert torch.equal(child.detector.backbone.stem[0][0].weight, parent.detector.backbone.stem[0][0].weight)
    with pytest.raises(Exception, match="same kind"):
        continue_from(build_ocr("tiny_ocr", 3, with_detector=False), ["a"], parent, meta)


def test_auto_detection_leaves_label_lists_to_the_tasks_they_belong_to(tmp_path: Path):
    from PIL import Image

    ocr = TASKS.get("ocr")
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        Image.new("RGB", (40, 20)).save(tmp_path / name)
    (tmp_path / "list.txt").write_text("a.jpg\tshoe\nb.jpg\tshoe\nc.jpg\tbag\nd.jpg\tbag\n")  # PP-ShiTu: identities
    assert not ocr.claims(tmp_path)
    (tmp_path / "list.txt").write_text("a.jpg\tEXIT 3\nb.jpg\t出口\nc.jpg\t12:30\nd.jpg\tOPEN\n")  # crops and their text
    assert ocr.claims(tmp_path)
    (tmp_path / "list.txt").unlink()
    (tmp_path / "labels.csv").write_text("filename,label\na.jpg,cat\nb.jpg,dog\n")
    assert not ocr.claims(tmp_path)
    (tmp_path / "labels.csv").write_text("filename,words\na.jpg,Cash\nb.jpg,Total\n")
    assert ocr.claims(tmp_path)


def test_a_stopped_ocr_run_resumes_without_repeating_an_epoch(ocr_home):
    import threading

    from factory.training.engine import StopRequested

    home, _ = ocr_home
    stop = threading.Event()
    with pytest.raises(StopRequested):
        api.train({"dataset": "signs", "model": "tiny_ocr", "epochs": 3, "name": "paused"}, home=home, stop=stop,
                  on_event=lambda e: stop.set() if e["type"] == "epoch" else None)
    run = next(r for r in api.list_runs(home=home) if r["name"] == "paused")
    assert run["status"] == "stopped"
    out = api.resume_training(run["run"], home=home)
    assert out["metrics"]["epochs_run"] == 3
    history = api.run_status(run["run"], home=home)["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3] and history[0]["metric_label"] == "OCR validation score"


def test_a_dictionary_file_adds_its_characters_and_rendered_text_teaches_them(ocr_home, tmp_path: Path):
    from factory.errors import ConfigError

    home, _ = ocr_home
    keys = tmp_path / "keys.txt"
    keys.write_text("A\n€\n¥\n\n€\n", encoding="utf-8")  # PaddleOCR's ppocr_keys: one per line; repeats and blanks skipped
    plain = api.resolve_training({"dataset": "signs", "model": "tiny_ocr"}, home=home)
    grown = api.resolve_training({"dataset": "signs", "model": "tiny_ocr", "dict_file": str(keys)}, home=home)
    added = [c for c in grown["classes"] if c not in plain["classes"]]
    assert grown["classes"][:len(plain["classes"])] == plain["classes"] and set(added) == {"€", "¥"} - set(plain["classes"])
    assert "keys.txt" in grown["why"]["classes"] and grown["rendered_crops"] > plain["rendered_crops"]
    keys.write_text("AB\nC\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="one character per line; line 1 is 'AB'"):
        api.resolve_training({"dataset": "signs", "model": "tiny_ocr", "dict_file": str(keys)}, home=home)
    with pytest.raises(ConfigError, match="cannot be read"):
        api.resolve_training({"dataset": "signs", "model": "tiny_ocr", "dict_file": str(tmp_path / "nope.txt")}, home=home)
