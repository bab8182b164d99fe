"""The OCR model as one PyTorch module holding its two networks, and the architectures it comes in.

An architecture names the text detector's backbone (DB head and FPN on its stride-4 to -32 features) and the
recognizer's width; the recognizer reads the dictionary in `postprocessing.alphabet` plus the CTC blank at index 0.
The recognizer comes in kinds (`RECOGNIZERS`, named in `postprocessing.recognizer`): `crnn`, this project's own (32 px
high, a time step per 4 px), and `ppocrv4`, PP-OCRv4 mobile's (48 px high, a time step per 8 px), which
`--pretrained ppocrv4` starts from PaddleOCR's weights.
An architecture's detector is a DB head on its backbone, or PP-OCRv4 mobile's whole DB network (`ppocrv4_mobile`,
whose structure and weights come from the rapidocr-onnxruntime wheel: its recognizer is PP-OCRv4's too).
A model trained on crops alone (a recognition dataset) has no detector (`detector` is None, `networks` names the
recognizer only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from factory.errors import UnsupportedSpecError
from factory.registry import Registry
from factory.tasks.detection.model import StrideFeatures
from factory.tasks.efficientnet_lite import build_efficientnet_lite, load_lite_weights, weights_path
from factory.tasks.ocr import ppocr
from factory.tasks.ocr.model import CTCRecognizer, DBDetector, TinyBackbone

DB_STRIDES = (4, 8, 16, 32)
NOT_YET = ("Benchmarks, reports and the phone preview do not take OCR models (two networks) yet; import, training, "
           "`eval`, `export`, `predict` and serving do.")
NOT_YET_FIX = ("Time the exported pipeline with `edgefactory predict` on a folder, or evaluate with `edgefactory eval "
               "NAME --save-predictions FILE`.")


def _db_detector(spec: "OcrArch") -> nn.Module:
    backbone = spec.backbone()
    return DBDetector(backbone, list(backbone.channels), spec.fpn)


@dataclass(frozen=True)
class OcrArch:
    name: str
    backbone: Callable[[], nn.Module] | None  # -> a module returning the stride 4, 8, 16 and 32 features, with `channels`
    fpn: int  # the FPN's inner channels
    rec_width: int  # the recognizer's first convolution's channels (the rest are 2x, 4x, 8x)
    default_side: int  # the detector's long side
    load_imagenet: Callable[[nn.Module], dict] | None = None  # ImageNet weights into the backbone (never downloads)
    imagenet_available: Callable[[], bool] = lambda: False
    ppocr_default: bool = True  # whether `--pretrained` defaults to ppocrv4 where the wheel is here (not tiny models)
    detector: Callable[["OcrArch"], nn.Module] = _db_detector
    weights: str | None = None  # the one start this architecture has (its structure comes with those weights)


@dataclass(frozen=True)
class RecognizerKind:
    name: str
    height: int  # the crops' height in pixels
    stride: int  # pixels of crop width per time step (the crops' width is a multiple of it)
    build: Callable[[int, OcrArch], nn.Module]  # (classes with the blank, architecture) -> the network
    crops_per_scene: int  # recognizer crops per detector scene in a training step


ARCHITECTURES: Registry[OcrArch] = Registry("OCR architecture")


def _torchvision(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision

        return StrideFeatures(getattr(torchvision.models, name)(weights=None).features, DB_STRIDES)
    return build


def _lite0_available() -> bool:
    try:
        return weights_path("lite0").is_file()
    except Exception:
        return False


RECOGNIZERS: Registry[RecognizerKind] = Registry("OCR recognizer")
RECOGNIZERS.add("crnn", RecognizerKind("crnn", 32, 4, lambda classes, spec: CTCRecognizer(classes, 32, spec.rec_width),
                                       crops_per_scene=4))
# a PP-OCRv4 crop costs about 4x a CRNN crop to train, and the network starts trained: one crop per scene leaves
# the detector most of the time budget
RECOGNIZERS.add("ppocrv4", RecognizerKind("ppocrv4", ppocr.HEIGHT, ppocr.STRIDE,
                                          lambda classes, spec: ppocr.PPOCRv4Recognizer(classes), crops_per_scene=1))

ARCHITECTURES.add("tiny_ocr", OcrArch("tiny_ocr", lambda: TinyBackbone(8), 16, 8, 320, ppocr_default=False))
ARCHITECTURES.add("mobilenet_v3_small", OcrArch("mobilenet_v3_small", _torchvision("mobilenet_v3_small"), 64, 32, 640))
ARCHITECTURES.add("ppocrv4_mobile", OcrArch("ppocrv4_mobile", None, 0, 0, 640, detector=lambda spec: ppocr.PPOCRv4Detector(),
                                            weights="ppocrv4"))
ARCHITECTURES.add("efficientnet_lite0", OcrArch(
    "efficientnet_lite0", lambda: StrideFeatures(build_efficientnet_lite("lite0", 1000).features, DB_STRIDES), 64, 32,
    640, lambda backbone: load_lite_weights(backbone, "lite0", skip_head=True), _lite0_available))


class OcrModel(nn.Module):
    """The detector (None for a recognizer-only model) and the recognizer of one model version."""

    def __init__(self, detector: nn.Module | None, recognizer: nn.Module):
        super().__init__()
        self.detector, self.recognizer = detector, recognizer

    def networks(self) -> dict[str, nn.Module]:
        return {name: net for name, net in (("detector", self.detector), ("recognizer", self.recognizer)) if net is not None}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Not one network: the OCR pipeline (factory.tasks.ocr.pipeline) runs the detector and the recognizer."""
        raise UnsupportedSpecError(NOT_YET, fix=NOT_YET_FIX)


def build_ocr(arch: str, alphabet_size: int, with_detector: bool = True, recognizer: str = "crnn") -> OcrModel:
    spec = ARCHITECTURES.get(arch)
    detector = spec.detector(spec) if with_detector else None
    return OcrModel(detector, RECOGNIZERS.get(recognizer).build(alphabet_size + 1, spec))
