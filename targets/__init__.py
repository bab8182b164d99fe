"""One module per runtime (export + runner + capabilities) and the export driver.

Importing this package registers every target in `TARGETS`; SDKs are imported lazily inside each
target's `export` / `load`, so listing targets never needs a runtime installed.
"""

from targets import base  # noqa: F401  (the protocol and the registry)
from targets import coreml, executorch, ncnn, onnxruntime, openvino, pytorch, tensorrt, tflite, web  # noqa: F401  (each registers itself)
from targets.base import TARGETS

__all__ = ["TARGETS"]
