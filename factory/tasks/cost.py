"""What a model costs to run: multiply-accumulates and parameters at batch 1.

MACs count convolutions (1-D and 2-D) and linear layers only, which is the compute a roofline compares with a
device's peak. (compression.pruning counts with torch-pruning, which adds normalisation and
activations, about 5% more on MobileNetV3; its counts steer pruning and stay internal to it.)
"""

from __future__ import annotations

import torch
from torch import nn


def model_cost(model: nn.Module, input_size: list[int]) -> dict:
    """{'macs', 'params'} of `model` for one image of `input_size` (C, H, W)."""
    total = 0

    def count(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            per_output = module.in_features
        else:  # Conv1d, Conv2d
            per_output = module.in_channels // module.groups * int(torch.tensor(module.kernel_size).prod())
        total += output[0].numel() * per_output

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros(1, *input_size))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return {"macs": int(total), "params": int(sum(p.numel() for p in model.parameters()))}
