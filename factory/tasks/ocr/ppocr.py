"""PP-OCRv4 mobile's text recognizer as a trainable PyTorch module (`--pretrained ppocrv4`).

The `rapidocr-onnxruntime` wheel ships PaddleOCR's PP-OCRv4 mobile recognizer as ONNX (Apache-2.0) with its
character dictionary in the file's metadata. `onnx2torch` turns that graph into a PyTorch module: here its constants
become initializers first (onnx2torch reads weights from initializers only), shapes are inferred for the width that
varies, the softmax and the 6,625-class head are cut off, and every float tensor of more than one value becomes a
trainable parameter (onnx2torch keeps MatMul weights and LayerNorm scales as buffers). The few BatchNorms left in its
neck are frozen (`FrozenBatchNorm2d`): the rest of the network has its BatchNorms folded into the convolutions, so
it reads one crop as it reads a batch. The first convolution's input channels are swapped when the module is built
(Paddle reads BGR, the pipeline RGB), and a new head over the model's own dictionary takes PP-OCRv4's rows for the
characters both hold (`load_pretrained`).

Input: (N, 3, 48, W) in [-1, 1], W a multiple of 8; output: (N, W / 8, classes) logits. The module's structure is
built from the wheel's file, so a model version trained from it needs the wheel where it is trained, evaluated or
exported again (its exported files do not).
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from factory.errors import ConfigError
from factory.tasks.base import IMAGENET_MEAN, IMAGENET_STD

HEIGHT, STRIDE = 48, 8
FEATURES = 120  # the neck's channels: what the head reads at each time step
PACKAGE = "rapidocr-onnxruntime==1.4.4"
FIX = f"pip install {PACKAGE} onnx2torch --no-deps (scripts/setup installs both), or train without --pretrained ppocrv4."


REC_FILE, DET_FILE = "ch_PP-OCRv4_rec_infer.onnx", "ch_PP-OCRv4_det_infer.onnx"
DET_FUSED = "p2o.Concat.1"  # the detector's neck output (N, 96, H / 4, W / 4): what its DB head reads
DET_FEATURES = 96
# the detector was trained on BGR pictures with ImageNet's mean and std taken in that order (PaddleOCR's
# NormalizeImage on cv2's BGR arrays); the pipeline gives RGB with the same numbers in RGB order
PADDLE_MEAN, PADDLE_STD = IMAGENET_MEAN, IMAGENET_STD


def model_file(name: str = REC_FILE) -> Path:
    """One of PP-OCRv4 mobile's ONNX files in the installed rapidocr-onnxruntime wheel."""
    try:
        import rapidocr_onnxruntime
    except ImportError:
        raise ConfigError("PP-OCRv4's networks come from the rapidocr-onnxruntime wheel, which is not installed.",
                          fix=FIX) from None
    path = Path(rapidocr_onnxruntime.__file__).parent / "models" / name
    if not path.is_file():
        raise ConfigError(f"The rapidocr-onnxruntime wheel here has no {path.name}.", fix=FIX)
    return path


def available() -> bool:
    """Whether `--pretrained ppocrv4` can load here (the wheel's two networks and onnx2torch installed)."""
    try:
        model_file(REC_FILE), model_file(DET_FILE)
        import onnx2torch  # noqa: F401
    except (ConfigError, ImportError):
        return False
    return True


def _load(name: str) -> tuple[object, dict, list]:
    """The wheel's ONNX file `name`, its Constant nodes' values by name, and its other nodes in order."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(model_file(name)))
    values, body = {}, []
    for node in m.graph.node:
        if node.op_type == "Constant" and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        else:
            body.append(node)
    return m, values, body


def _convertible(m, values: dict, kept: list, outputs: list[str], height: int | None = None):
    """`m` with the nodes `kept`, the constants they read as initializers (where onnx2torch reads weights), the
    graph outputs `outputs` and its shapes inferred (the input's height fixed where given)."""
    import onnx
    from onnx import numpy_helper
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    g = m.graph
    used = {name for node in kept for name in node.input}
    del g.node[:]
    g.node.extend(kept)
    g.initializer.extend(numpy_helper.from_array(v, k) for k, v in values.items() if k in used)
    del g.output[:]
    g.output.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in outputs)
    if height is not None:
        g.input[0].type.tensor_type.shape.dim[2].dim_value = height
    return SymbolicShapeInference.infer_shapes(m, auto_merge=True)


@lru_cache(maxsize=1)
def _graph() -> tuple[object, object, list[str]]:
    """The recognizer's ONNX graph up to the head's input (N, T, 120), the head's weight (120, 6625) and bias as
    tensors, and PP-OCRv4's dictionary (index 0 the blank, then its characters, the space last)."""
    m, values, body = _load(REC_FILE)
    softmax, head_add, head_matmul = body[-1], body[-2], body[-3]
    if (softmax.op_type, head_add.op_type, head_matmul.op_type) != ("Softmax", "Add", "MatMul"):
        raise ConfigError("This rapidocr-onnxruntime wheel's recognizer does not end in the MatMul, Add and Softmax "
                          "of PP-OCRv4's head.", fix=FIX)
    weight, bias = values[head_matmul.input[1]], values[head_add.input[1]]
    m = _convertible(m, values, body[:-3], [head_matmul.input[0]], HEIGHT)
    meta = {p.key: p.value for p in m.metadata_props}
    chars = meta.get("character", "").split("\n")
    return m, (torch.from_numpy(weight.copy()), torch.from_numpy(bias.copy())), ["<blank>", *chars, " "]


@lru_cache(maxsize=1)
def _det_graph():
    """The detector's ONNX graph returning its neck's output (what a DB head reads) and its probability map."""
    m, values, body = _load(DET_FILE)
    if body[-1].op_type != "Sigmoid" or not any(DET_FUSED in node.output for node in body):
        raise ConfigError("This rapidocr-onnxruntime wheel's detector is not PP-OCRv4's DB network (a neck output "
                          f"{DET_FUSED} and a sigmoid probability map).", fix=FIX)
    return _convertible(m, values, body, [DET_FUSED, body[-1].output[0]])


def _converted(graph) -> nn.Module:
    """onnx2torch's module of `graph`, trainable (`_trainable`), its first convolution reading RGB where Paddle
    read BGR (its input channels flipped)."""
    from onnx2torch import convert

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = _trainable(convert(graph))
    first = next(m for m in module.modules() if isinstance(m, nn.Conv2d))
    with torch.no_grad():
        first.weight.copy_(first.weight.flip(1))  # BGR -> RGB
    return module


class _Shape(nn.Module):
    def __init__(self, start: int | None, end: int | None):
        super().__init__()
        self.start, self.end = start, end

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch._shape_as_tensor(x)[self.start:self.end]  # traced as a shape, not as the example's numbers


class _Reshape(nn.Module):
    """ONNX Reshape: a 0 in `shape` keeps the input's size at that index."""

    def forward(self, x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        k = min(shape.shape[0], x.dim())
        head = torch.where(shape[:k] == 0, torch._shape_as_tensor(x)[:k].to(shape.dtype), shape[:k])
        shape = torch.cat([head, shape[k:]])
        return x.reshape([shape[i] for i in range(shape.shape[0])])


class _Slice(nn.Module):
    def forward(self, x: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor, axes: torch.Tensor | None = None,
                steps: torch.Tensor | None = None) -> torch.Tensor:
        from onnx2torch.node_converters.slice import _get_slices

        flip, positive, negative = _get_slices(starts, ends, axes, steps)  # starts to steps: constants of the graph
        x = torch.flip(x, dims=flip) if flip else x
        x = x[tuple(positive)] if positive else x
        return x[tuple(negative)] if negative else x  # (Ellipsis, ...) already


class _Squeeze(nn.Module):
    def __init__(self, axes: list[int] | None):
        super().__init__()
        self.axes = list(axes or [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for axis in self.axes:
            x = torch.squeeze(x, dim=axis)
        return x if self.axes else torch.squeeze(x)


class _GlobalAveragePool(nn.Module):
    def __init__(self, dims: list[int]):
        super().__init__()
        self.dims = list(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.mean(x, dim=self.dims, keepdim=True)


def _plain(module: nn.Module) -> nn.Module | None:
    """A plain PyTorch module for an onnx2torch module that exports itself by hand (None: keep it)."""
    kind = type(module).__name__
    if kind == "OnnxShape":
        return _Shape(module._start, module._end)
    if kind == "OnnxReshape":
        return _Reshape()
    if kind == "OnnxSlice":
        return _Slice()
    if kind == "OnnxSqueezeStaticAxes":
        return _Squeeze(module.axes)
    if kind == "OnnxGlobalAveragePoolWithKnownInputShape":
        return _GlobalAveragePool(module._x_dims)
    return None


def _resize_inputs(graph: nn.Module) -> set[str]:
    """The initializers the graph's Resize nodes read (their scales): constants of the structure, not weights."""
    resizers = {name for name, m in graph.named_modules() if type(m).__name__.startswith("OnnxResize")}
    return {arg.target.rpartition(".")[2] for node in graph.graph.nodes
            if node.op == "call_module" and node.target in resizers
            for arg in node.args if getattr(arg, "op", None) == "get_attr"}


def _trainable(graph: nn.Module) -> nn.Module:
    """onnx2torch's module with its float weights (buffers) as parameters, its BatchNorms frozen and its hand-exported
    modules plain (`_plain`)."""
    from onnx2torch.utils.custom_export_to_onnx import OnnxToTorchModuleWithCustomExport
    from torchvision.ops import FrozenBatchNorm2d

    holder = graph.initializers if hasattr(graph, "initializers") else None
    if holder is not None:
        constants = _resize_inputs(graph)
        for name, buf in list(holder.named_buffers(recurse=False)):
            if buf.is_floating_point() and buf.numel() > 1 and name not in constants:
                delattr(holder, name)
                holder.register_parameter(name, nn.Parameter(buf.clone()))
    for name, module in list(graph.named_modules()):
        swapped = None
        if isinstance(module, nn.BatchNorm2d):
            swapped = FrozenBatchNorm2d(module.num_features, eps=module.eps)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(swapped, key).copy_(getattr(module, key).detach())
        elif isinstance(module, OnnxToTorchModuleWithCustomExport):
            swapped = _plain(module)
            if swapped is None:
                raise ConfigError(f"onnx2torch's {type(module).__name__} in PP-OCRv4's recognizer has no plain "
                                  "PyTorch counterpart here, so the model would not export.", fix=FIX)
        if swapped is not None:
            parent, _, leaf = name.rpartition(".")
            setattr(graph.get_submodule(parent) if parent else graph, leaf, swapped)
    return graph


class PPOCRv4Recognizer(nn.Module):
    """PP-OCRv4 mobile's recognizer (the wheel's structure) with a head over `classes` (the blank at 0)."""

    height, stride = HEIGHT, STRIDE

    def __init__(self, classes: int):
        super().__init__()
        self.body = _converted(_graph()[0])  # PP-OCRv4's weights as shipped, reading RGB
        self.head = nn.Linear(FEATURES, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 48, W) in [-1, 1], RGB -> (N, W / 8, classes) logits."""
        return self.head(self.body(x))

    def load_pretrained(self, alphabet: list[str]) -> dict:
        """PP-OCRv4's head rows for the blank and for the characters of `alphabet` that its dictionary holds; the
        others start at zero with the lowest bias. The body holds PP-OCRv4's weights from its construction (reading
        RGB). Returns {loaded, characters_known, characters_new}."""
        _, (weight, bias), chars = _graph()
        with torch.no_grad():
            index = {c: i for i, c in enumerate(chars)}
            rows = [0] + [index.get(c, -1) for c in alphabet]
            self.head.weight.zero_()
            self.head.bias.fill_(float(bias.min()))
            for new, old in enumerate(rows):
                if old >= 0:
                    self.head.weight[new] = weight[:, old]
                    self.head.bias[new] = bias[old]
        known = sum(1 for r in rows[1:] if r >= 0)
        return {"loaded": len(self.body.state_dict()) + 2, "characters_known": known,
                "characters_new": len(alphabet) - known}


class PPOCRv4Detector(nn.Module):
    """PP-OCRv4 mobile's DB text detector with its shipped weights, reading the pipeline's RGB input (ImageNet mean
    and std), and a DB threshold head on its neck for training (the wheel's inference graph has the probability
    branch only; this one starts fresh). Training returns (probability, threshold, approximate binary) maps as
    `DBDetector` does; eval (and export) the probability map (N, 1, H, W) only. H and W: multiples of 32."""

    def __init__(self):
        super().__init__()
        from factory.tasks.ocr.model import DBDetector

        self.body = _converted(_det_graph())  # reading RGB
        scale, shift = _rgb_imagenet_input()
        self.register_buffer("in_scale", scale)
        self.register_buffer("in_shift", shift)
        self.thresh_head = DBDetector._head(DET_FEATURES)
        self.export_mode = False

    def forward(self, x: torch.Tensor):
        from factory.tasks.ocr.model import K

        fused, prob = self.body(x * self.in_scale + self.in_shift)
        if self.export_mode or not self.training:
            return prob
        thresh = self.thresh_head(fused)
        return prob, thresh, torch.sigmoid(K * (prob - thresh))

    def pretrained_info(self) -> dict:
        """The init event's fields: the tensors that hold PP-OCRv4's weights (the threshold head's start fresh)."""
        return {"loaded": len(self.body.state_dict()), "fresh": len(self.thresh_head.state_dict())}


def _rgb_imagenet_input() -> tuple[torch.Tensor, torch.Tensor]:
    """The network read channel j as (bgr_j - mean_j) / std_j; the pipeline gives x_i = (rgb_i - mean_i) / std_i.
    With the first convolution's input channels flipped (channel i now meets the weights of the old channel 2 - i),
    channel i must arrive as x_i * scale_i + shift_i: returns (scale, shift), each (1, 3, 1, 1). An affine map in
    front of the network rather than folded into the convolution, so that its zero padding stays exact."""
    mean, std = torch.tensor(PADDLE_MEAN), torch.tensor(PADDLE_STD)
    old_mean, old_std = mean.flip(0), std.flip(0)  # what was subtracted from and divided into the colour now at i
    return (std / old_std).view(1, 3, 1, 1), ((mean - old_mean) / old_std).view(1, 3, 1, 1)
