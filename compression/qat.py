"""Quantization-aware fine-tuning: the last resort of the INT8 budget search. NNCF inserts fake
quantizers (initialised from the calibration set) into the PyTorch model, which is then fine-tuned
for a few epochs with the factory's engine so the weights adapt to INT8 rounding. OpenVINO converts
the result straight into an INT8 IR."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from factory.config import TrainConfig
from compression.ptq import nncf_module
from factory.training.data import ImageTensors
from factory.training.engine import Trainer

QAT_EPOCHS = 3
QAT_LR = 1e-4


def quantization_aware_finetune(model: nn.Module, calibration: np.ndarray, train: ImageTensors, val: ImageTensors,
                                preprocessing: dict, cfg: TrainConfig, run_dir: Path) -> tuple[nn.Module, dict]:
    """Returns the fine-tuned fake-quantized model (eval mode) and a record of what was done."""
    # the first QAT on a machine compiles NNCF's C++ kernels; NNCF gives that 60 s, which a busy 2-core
    # machine can miss. Only a default: a value the user set wins.
    os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "600")
    nncf = nncf_module()
    items = [torch.from_numpy(calibration[i:i + 1]) for i in range(len(calibration))]
    qmodel = nncf.quantize(model.eval(), nncf.Dataset(items), subset_size=len(items))
    run_dir.mkdir(parents=True, exist_ok=True)
    qcfg = cfg.replace(epochs=QAT_EPOCHS, time_budget_min=None, lr=QAT_LR, warmup_epochs=0.0, patience=QAT_EPOCHS)
    # keeps the final epoch's weights; BN statistics stay those the quantizers were initialised with
    state = Trainer(qcfg, qmodel, train, val, preprocessing, run_dir, calibrate_bn=False).fit()
    return qmodel.cpu().eval(), {"epochs": state.epoch, "lr": QAT_LR, "best_val_accuracy": state.best_metric,
                                 "time_s": round(state.elapsed_s, 1)}
