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

HEIGHT, STRIDE = 48, 8
FEATURES = 120  # the neck's channels: what the head reads at each time step
PACKAGE = "rapidocr-onnxruntime==1.4.4"
FIX = f"pip install {PACKAGE} onnx2torch --no-deps (scripts/setup installs both), or train without --pretrained ppocrv4."


def model_file() -> Path:
    """The PP-OCRv4 mobile recognizer's ONNX file in the installed rapidocr-onnxruntime wheel."""
    try:
        import rapidocr_onnxruntime
    except ImportError:
        raise ConfigError("PP-OCRv4's recognizer comes from the rapidocr-onnxruntime wheel, which is not installed.",
                          fix=FIX) from None
    path = Path(rapidocr_onnxruntime.__file__).parent / "models" / "ch_PP-OCRv4_rec_infer.onnx"
    if not path.is_file():
        raise ConfigError(f"The rapidocr-onnxruntime wheel here has no {path.name}.", fix=FIX)
    return path


def available() -> bool:
    """Whether `--pretrained ppocrv4` can load here (the wheel and onnx2torch installed)."""
    try:
        model_file()
        import onnx2torch  # noqa: F401
    except (ConfigError, ImportError):
        return False
    return True


@lru_cache(maxsize=1)
def _graph() -> tuple[object, object, list[str]]:
    """The ONNX graph up to the head's input (N, T, 120), the head's weight (120, 6625) and bias as tensors, and
    PP-OCRv4's dictionary (index 0 the blank, then its characters, the space last)."""
    import onnx
    from onnx import numpy_helper
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    m = onnx.load(str(model_file()))
    g = m.graph
    values = {}
    body = []
    for node in g.node:
        if node.op_type == "Constant" and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        else:
            body.append(node)
    softmax = body[-1]
    head_add, head_matmul = body[-2], body[-3]
    if (softmax.op_type, head_add.op_type, head_matmul.op_type) != ("Softmax", "Add", "MatMul"):
        raise ConfigError("This rapidocr-onnxruntime wheel's recognizer does not end in the MatMul, Add and Softmax "
                          "of PP-OCRv4's head.", fix=FIX)
    weight, bias = values[head_matmul.input[1]], values[head_add.input[1]]
    features = head_matmul.input[0]
    kept = body[:-3]
    used = {name for node in kept for name in node.input}
    del g.node[:]
    g.node.extend(kept)
    g.initializer.extend(numpy_helper.from_array(v, k) for k, v in values.items() if k in used)
    del g.output[:]
    g.output.append(onnx.helper.make_tensor_value_info(features, onnx.TensorProto.FLOAT, None))
    g.input[0].type.tensor_type.shape.dim[2].dim_value = HEIGHT
    m = SymbolicShapeInference.infer_shapes(m, auto_merge=True)
    meta = {p.key: p.value for p in m.metadata_props}
    chars = meta.get("character", "").split("\n")
    return m, (torch.from_numpy(weight.copy()), torch.from_numpy(bias.copy())), ["<blank>", *chars, " "]


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


def _trainable(graph: nn.Module) -> nn.Module:
    """onnx2torch's module with its float weights (buffers) as parameters, its BatchNorms frozen and its hand-exported
    modules plain (`_plain`)."""
    from onnx2torch.utils.custom_export_to_onnx import OnnxToTorchModuleWithCustomExport
    from torchvision.ops import FrozenBatchNorm2d

    holder = graph.initializers if hasattr(graph, "initializers") else None
    if holder is not None:
        for name, buf in list(holder.named_buffers(recurse=False)):
            if buf.is_floating_point() and buf.numel() > 1:
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
        from onnx2torch import convert

        onnx_model, _, _ = _graph()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.body = _trainable(convert(onnx_model))  # PP-OCRv4's weights as shipped
        first = next(m for m in self.body.modules() if isinstance(m, nn.Conv2d))
        with torch.no_grad():
            first.weight.copy_(first.weight.flip(1))  # BGR -> RGB
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
