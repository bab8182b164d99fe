"""Validation on BN-correct weights: which fix is cheaper and better?

MobileNetV3's BatchNorm momentum (0.01) leaves the running statistics of a short run far behind the weights,
so validation in eval mode measures nothing. Three ways of validating the same training (scikit-learn's digits
at 32 px, mobilenet_v3_small from scratch, same seed and epochs):

  stale        the statistics as training left them (what the engine did before)
  momentum     BN momentum raised to 0.1 for the whole run (no extra work, but it changes what training keeps)
  recalibrate  statistics re-estimated on 256 fixed training images before each validation (the engine's way)

Prints validation accuracy per epoch, the test accuracy of the kept (best) weights after the final exact
re-estimation, and the seconds the re-estimation costs per validation. Writes results/bn_validation.json.

    .venv/bin/python -m benchmarks.perf.bn_validation [--epochs 6]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from benchmarks.device import identity
from factory import api
from factory.config import TrainConfig
from factory.datasets.synthetic import write_digits
from factory.datasets.splits import DatasetSplits
from factory.refs import dataset_row_for
from factory.tasks.classification import build_model, preprocessing_spec
from factory.training.data import ImageTensors
from factory.training.engine import Trainer, predict_logits, recalibrate_batchnorm

RESULTS = Path(__file__).parents[1] / "results" / "bn_validation.json"


class TimedTrainer(Trainer):
    calibration_s: list[float]

    def calibrate_batchnorm(self) -> None:
        start = time.perf_counter()
        super().calibrate_batchnorm()
        self.calibration_s.append(time.perf_counter() - start)


def run(mode: str, epochs: int, data: dict, run_dir: Path) -> dict:
    torch.manual_seed(0)
    model = build_model("mobilenet_v3_small", 10)
    if mode == "momentum":
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = 0.1
    cfg = TrainConfig(dataset="digits", model="mobilenet_v3_small", img_size=32, epochs=epochs, batch_size=32,
                      lr=1.41e-3, hflip=0.0, crop_scale=0.7, patience=1000)
    spec = preprocessing_spec(32)
    trainer = TimedTrainer(cfg, model, data["train"], data["val"], spec, run_dir, calibrate_bn=mode == "recalibrate")
    trainer.calibration_s = []
    start = time.perf_counter()
    state = trainer.fit()
    wall = time.perf_counter() - start
    model.load_state_dict(torch.load(trainer.best_path, map_location="cpu", weights_only=True))
    model.cpu().eval()
    recalibrate_batchnorm(model, data["train"], spec)
    mean, std = (torch.tensor(spec[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
    test = float((predict_logits(model, data["test"], mean, std).argmax(1) == data["test"].labels).float().mean())
    row = {"mode": mode, "val_accuracy": [round(h["val_accuracy"], 4) for h in state.history],
           "best_epoch": state.best_epoch, "test_accuracy_of_kept_weights": round(test, 4), "wall_s": round(wall, 1),
           "calibration_s_per_validation": round(sum(trainer.calibration_s) / len(trainer.calibration_s), 3)
           if trainer.calibration_s else 0.0}
    print(f"{mode:12s} val {row['val_accuracy']}  best epoch {row['best_epoch']}  test {test:.4f}  "
          f"{row['calibration_s_per_validation']:.3f} s re-estimation per validation, {wall:.0f} s", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=6)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bn-validation-") as tmp:
        home = Path(tmp) / "ws"
        api.import_dataset(write_digits(Path(tmp) / "digits"), "digits", home=home)
        with api.session(home) as (ws, catalog):
            digits = DatasetSplits.open(ws, dataset_row_for(catalog, "digits"))
        data = {s: ImageTensors(digits.root, digits.entries(s), digits.row["classes"], 32) for s in ("train", "val", "test")}
        rows = []
        for mode in ("stale", "momentum", "recalibrate"):
            (Path(tmp) / mode).mkdir()
            rows.append(run(mode, args.epochs, data, Path(tmp) / mode))
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "device": identity(), "epochs": args.epochs, "rows": rows,
              "command": f"python -m benchmarks.perf.bn_validation --epochs {args.epochs}"}
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
