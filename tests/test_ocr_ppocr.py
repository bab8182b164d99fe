"""PP-OCRv4's recognizer and detector as trainable PyTorch modules (`--pretrained ppocrv4`, `ppocrv4_mobile`), with
the real weights the rapidocr-onnxruntime wheel ships (installed by scripts/setup, read offline): the same outputs as
the wheel's ONNX files on ONNX Runtime, weights that train, text found and read before any training, the default
start and architecture for full-size models and not for tiny ones, a clear error where the wheel is missing, and
versions trained from them (recognizer only; detector and recognizer), continued with --from, exported to ONNX
Runtime and OpenVINO with parity and read back."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from factory import api
from factory.errors import ConfigError
from factory.tasks.ocr import ppocr
from factory.tasks.ocr.architectures import ARCHITECTURES, RECOGNIZERS
from factory.tasks.ocr.formats import write_ocr
from factory.tasks.ocr.metrics import detection_scores
from factory.tasks.ocr.pipeline import detector_input, recognizer_input
from factory.tasks.ocr.postprocess import ctc_decode
from factory.tasks.ocr.postprocess import db_boxes
from factory.tasks.ocr.synthetic import crop, scene
from factory.tasks.ocr import TASK as OCR
from factory.tasks.ocr.task import pretrained_start

pytestmark = pytest.mark.skipif(not ppocr.available(), reason="rapidocr-onnxruntime or onnx2torch is not installed "
                                                              "(scripts/setup installs both)")


def pretrained(alphabet: list[str]) -> ppocr.PPOCRv4Recognizer:
    model = ppocr.PPOCRv4Recognizer(len(alphabet) + 1)
    model.load_pretrained(alphabet)
    return model.eval()


def test_the_module_gives_the_wheel_s_probabilities_for_an_rgb_crop():
    import onnxruntime as ort

    _, _, chars = ppocr._graph()
    model = pretrained(chars[1:])  # PP-OCRv4's whole dictionary: its head as shipped
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 48, 160)).astype(np.float32)
    session = ort.InferenceSession(str(ppocr.model_file()), providers=["CPUExecutionProvider"])
    shipped = session.run(None, {session.get_inputs()[0].name: x[:, ::-1].copy()})[0]  # Paddle reads BGR
    with torch.no_grad():
        ours = model(torch.from_numpy(x)).softmax(-1).numpy()
    assert ours.shape == shipped.shape == (2, 20, 6625)
    assert np.abs(ours - shipped).max() < 1e-4


def test_its_weights_train_and_no_batch_statistics_are_left():
    model = ppocr.PPOCRv4Recognizer(5)
    model.load_pretrained(list("abcd"))
    floats = [b for b in model.buffers() if b.is_floating_point() and b.numel() > 1
              and not any(b is getattr(m, k, None) for m in model.modules() for k in ("running_mean", "running_var", "weight", "bias"))]
    assert not floats  # every float weight is a parameter (the frozen norms' statistics are their buffers)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    logits = model(torch.zeros(2, 3, 48, 64))
    torch.nn.functional.ctc_loss(logits.log_softmax(2).transpose(0, 1), torch.tensor([1, 2, 3]), torch.tensor([8, 8]),
                                 torch.tensor([2, 1])).backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert "head.weight" in changed and any(n.startswith("body.initializers.") for n in changed)
    assert sum(1 for n in changed if "Conv" in n) > 30


def test_it_reads_rendered_english_and_chinese_before_any_training():
    alphabet = sorted(set("Invoice 2024-08 营业时间 EXIT"))
    model = pretrained(alphabet)
    rng = random.Random(3)
    read = []
    for text in ("Invoice 2024-08", "营业时间", "EXIT"):
        image, _ = crop(rng, height=48, text=text)
        with torch.no_grad():
            probs = model(torch.from_numpy(recognizer_input([image], 48, multiple=8)[0])).softmax(-1).numpy()
        read.append(ctc_decode(probs, alphabet)[0]["text"])
    assert read == ["Invoice 2024-08", "营业时间", "EXIT"]


def test_the_detector_gives_the_wheel_s_map_for_the_pipeline_s_rgb_input():
    import onnxruntime as ort

    page = scene(random.Random(5), 480, 352, languages=("en", "zh"))
    x = detector_input(page.image, 480)  # RGB, ImageNet mean and std, as every OCR detector here reads
    rgb = x * np.array(ppocr.PADDLE_STD, np.float32).reshape(1, 3, 1, 1) + np.array(ppocr.PADDLE_MEAN, np.float32).reshape(1, 3, 1, 1)
    paddle = (rgb[:, ::-1] - np.array(ppocr.PADDLE_MEAN, np.float32).reshape(1, 3, 1, 1)) / np.array(
        ppocr.PADDLE_STD, np.float32).reshape(1, 3, 1, 1)  # BGR with the mean and std in that order, as Paddle trained
    session = ort.InferenceSession(str(ppocr.model_file(ppocr.DET_FILE)), providers=["CPUExecutionProvider"])
    shipped = session.run(None, {session.get_inputs()[0].name: paddle.astype(np.float32)})[0]
    with torch.no_grad():
        ours = ppocr.PPOCRv4Detector().eval()(torch.from_numpy(x)).numpy()
    assert ours.shape == shipped.shape == (1, 1, 352, 480)
    assert shipped.max() > 0.9  # the page's text is found
    assert np.abs(ours - shipped).max() < 1e-3


def test_the_detector_finds_rendered_text_before_any_training_and_trains_a_threshold_head():
    detector = ppocr.PPOCRv4Detector().eval()
    rng = random.Random(11)
    truth, found = {}, {}
    for i in range(12):
        page = scene(rng, 480, 352, languages=("en", "zh"))
        with torch.no_grad():
            prob = detector(torch.from_numpy(detector_input(page.image, 480))).numpy()[0, 0]
        truth[i], found[i] = page.regions, db_boxes(prob, page.image.width, page.image.height)
    assert detection_scores(truth, found)["hmean"] >= 0.9
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in detector.body.modules())
    detector.train()
    prob, thresh, binary = detector(torch.zeros(1, 3, 64, 96))
    assert prob.shape == thresh.shape == binary.shape == (1, 1, 64, 96)
    thresh.mean().backward()
    assert detector.thresh_head[0][0].weight.grad is not None
    assert detector.pretrained_info()["loaded"] > 200


def test_ppocrv4_mobile_is_the_default_architecture_where_the_wheel_is_here(monkeypatch: pytest.MonkeyPatch):
    assert OCR.default_architecture({}) == OCR.default_architecture({"pretrained": "ppocrv4"}) == "ppocrv4_mobile"
    assert OCR.default_architecture({"pretrained": "none"}) == "mobilenet_v3_small"
    assert OCR.default_architecture({"pretrained": "imagenet"}) == "efficientnet_lite0"
    assert pretrained_start(ARCHITECTURES.get("ppocrv4_mobile"), True, False)[0] == "ppocrv4"
    with pytest.raises(ConfigError, match="starts from --pretrained ppocrv4 only") as err:
        OCR._check_pretrained("none", "ppocrv4_mobile", ARCHITECTURES.get("ppocrv4_mobile"), True)
    assert "--model mobilenet_v3_small --pretrained none" in err.value.fix
    monkeypatch.setattr(ppocr, "available", lambda: False)
    assert OCR.default_architecture({}) == "mobilenet_v3_small"


def test_it_is_the_default_start_for_full_size_models_only(monkeypatch: pytest.MonkeyPatch):
    assert pretrained_start(ARCHITECTURES.get("mobilenet_v3_small"), True, False)[0] == "ppocrv4"
    assert pretrained_start(ARCHITECTURES.get("tiny_ocr"), True, False)[0] == "none"
    assert pretrained_start(ARCHITECTURES.get("mobilenet_v3_small"), True, True)[0] == "none"  # --from
    monkeypatch.setattr(ppocr, "available", lambda: False)
    assert pretrained_start(ARCHITECTURES.get("mobilenet_v3_small"), True, False)[0] == "none"
    assert (RECOGNIZERS.get("ppocrv4").height, RECOGNIZERS.get("ppocrv4").stride) == (48, 8)


def test_asking_for_it_without_the_wheel_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path / "ws"
    api.import_dataset(write_ocr(tmp_path / "crops", "paddle_rec", count=20, seed=1, languages=("en",)), "words",
                       task="ocr", home=home)
    monkeypatch.setattr(ppocr, "model_file", lambda name=None: (_ for _ in ()).throw(
        ConfigError("PP-OCRv4's networks come from the rapidocr-onnxruntime wheel, which is not installed.",
                    fix=ppocr.FIX)))
    monkeypatch.setattr(ppocr, "available", lambda: False)
    with pytest.raises(ConfigError, match="rapidocr-onnxruntime") as err:
        api.train({"dataset": "words", "model": "tiny_ocr", "epochs": 1, "pretrained": "ppocrv4"}, home=home)
    assert "pip install rapidocr-onnxruntime" in err.value.fix
    assert api.list_models(home=home) == []
    with pytest.raises(ConfigError, match="--pretrained coco does not apply to ocr models"):
        api.train({"dataset": "words", "model": "tiny_ocr", "epochs": 1, "pretrained": "coco"}, home=home)


@pytest.mark.slow
def test_a_recognizer_fine_tuned_from_it_exports_with_parity_and_continues_with_from(tmp_path: Path):
    from targets import api as targets_api

    home = tmp_path / "ws"
    api.import_dataset(write_ocr(tmp_path / "crops", "paddle_rec", count=48, seed=2, languages=("en", "zh")), "words",
                       task="ocr", home=home)
    events: list[dict] = []
    api.train({"dataset": "words", "model": "tiny_ocr", "epochs": 1, "pretrained": "ppocrv4", "name": "words"},
              home=home, on_event=events.append)
    shown = api.show_model("words", home=home)
    assert shown["postprocessing"]["recognizer"] == "ppocrv4"
    assert shown["preprocessing"]["recognizer"]["height"] == 48 and shown["preprocessing"]["recognizer"]["width_multiple"] == 8
    (init,) = [e for e in events if e.get("type") == "init"]
    assert init["source"] == "ppocrv4" and init["characters_known"] == len(shown["postprocessing"]["alphabet"])
    # a single epoch from PP-OCRv4's weights already reads most of the held-out crops
    assert shown["metrics"]["rec"]["word_accuracy"] >= 0.6
    for target in ("onnxruntime", "openvino"):
        out = targets_api.export("words", target, home=home, in_process=True)
        meta = json.loads((Path(out["path"]) / "metadata.json").read_text())
        parity = meta["networks"]["recognizer"]["parity"]
        assert meta["parity"]["passed"] and parity["agreement_kind"] == "string" and parity["agreement"] >= 0.98
        assert meta["accuracy"] == pytest.approx(meta["reference_accuracy"], abs=0.02)
    texts = dict(line.split("\t") for line in (tmp_path / "crops" / "rec_gt_train.txt").read_text("utf-8").splitlines())
    out = targets_api.predict_folder("words", tmp_path / "crops", tmp_path / "read.jsonl", target="openvino", home=home)
    lines = [json.loads(x) for x in (tmp_path / "read.jsonl").read_text("utf-8").splitlines()]
    assert out["failed"] == 0 and len(lines) == len(texts)
    right = sum(line["predictions"][0]["text"] == texts[line["file"]] for line in lines if line["predictions"])
    assert right >= 0.6 * len(texts)
    api.train({"dataset": "words", "from_model": "words:v1", "epochs": 1, "name": "words"}, home=home)
    child = api.show_model("words:v2", home=home)
    assert child["postprocessing"]["recognizer"] == "ppocrv4"
