"""A task is a plugin: a third task defined here, in the test alone (a per-image regression: how much of the
picture a dark rectangle covers, with its own label file, issue code, tiny network, loss and metric), goes
through import -> train -> eval -> export (onnxruntime, openvino) with parity -> benchmark report -> REST predict
and the PAI-EAS route, with no module outside this file knowing it exists.

It has no classes, which every task before it had: the seams must not assume them.
"""

from __future__ import annotations

import base64
import csv
import io
import random
from pathlib import Path
from typing import Any, Iterator

import httpx
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import nn

from benchmarks.harness import Timing
from factory import api
from factory.datasets.issues import CATALOGUE, IssueLog, register_codes
from factory.datasets.publish import check_all, drop_bad, write_version
from factory.datasets.splits import carve
from factory.errors import DatasetError
from factory.tasks import PLUGINS_ENV, TASKS
from factory.tasks.base import IMAGENET_MEAN, IMAGENET_STD, EvalSet, Task, normalized
from factory.training.engine import Trainer
from tests.serving_helpers import running_server

NAME, LABELS, SIZE = "coverage", "coverage.csv", 32
FAST = Timing(warmup=2, min_iters=10, min_time_s=0.2, max_time_s=5)
CODES = {"COVERAGE_OUT_OF_RANGE": ("warning", "Coverage values outside [0, 1] were left out.",
                                   "Write the covered share of the image as a number from 0 to 1.")}


class CoverageData:
    """uint8 images [N, 3, S, S] and their coverage [N] (float), what the engine's batches read."""

    def __init__(self, root: Path, entries: list[dict], size: int):
        arrays = [np.asarray(Image.open(root / e["file"]).convert("RGB").resize((size, size), Image.Resampling.BILINEAR),
                             np.uint8).transpose(2, 0, 1) for e in entries]
        self.images = torch.from_numpy(np.stack(arrays)) if arrays else torch.zeros(0, 3, size, size, dtype=torch.uint8)
        self.labels = torch.tensor([e["coverage"] for e in entries], dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]


class TinyRegressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.head = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


def within(values: np.ndarray, truth: np.ndarray, tolerance: float = 0.1) -> float:
    return float((np.abs(np.asarray(values).reshape(-1) - np.asarray(truth).reshape(-1)) <= tolerance).mean())


class CoverageTrainer(Trainer):
    metric = "within10"

    def train_step(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator, start: float) -> float:
        self.scheduled_lr(start)
        loss = F.mse_loss(self.model((images.float() / 255.0 - self.mean) / self.std).squeeze(1), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.state.step += 1
        return float(loss.detach())

    @torch.no_grad()
    def evaluate_metric(self) -> float:
        self.model.eval()
        out = self.model((self.val.images.float() / 255.0 - self.mean) / self.std).squeeze(1)
        return within(out.cpu().numpy(), self.val.labels.numpy())

    def chance_level(self) -> float:
        return 0.0


class Coverage(Task):
    name, metric, metric_label, unit, default_arch = NAME, "within10", "share within 0.1", "images", "tiny_cov"
    prediction_keys = ("value",)
    sniff_priority = 5  # its label file is more specific than folders of images (classification would claim them)

    def claims(self, root: Path) -> bool:
        return (root / LABELS).is_file()

    def format_names(self) -> list[str]:
        return ["coverage_csv"]

    def import_dataset(self, ws, catalog, root: Path, name: str, *, fmt: str, seed: int, progress) -> dict:
        log = IssueLog()
        rows = list(csv.DictReader((root / LABELS).open()))
        bad = [r["file"] for r in rows if not 0 <= float(r["coverage"]) <= 1]
        if bad:
            log.add("COVERAGE_OUT_OF_RANGE", bad)
        records = [_Record(r["file"], float(r["coverage"])) for r in rows if r["file"] not in bad]
        kept = drop_bad(check_all(root, records, progress), log)
        if not kept:
            log.add("EMPTY_DATASET")
        log.raise_if_errors()
        splits = carve(["high" if c.record.coverage > 0.3 else "low" for c in kept], [None] * len(kept), seed)
        manifest = [{"file": f"images/{c.check.sha256[:16]}.png", "split": s, "label": None, "coverage": c.record.coverage,
                     "source": c.record.path, "sha256": c.check.sha256, "width": c.check.width, "height": c.check.height,
                     "mode": c.check.mode} for c, s in zip(kept, splits)]
        stats = {"num_images": len(manifest), "coverage_mean": float(np.mean([m["coverage"] for m in manifest]))}
        return write_version(ws, catalog, root, name, NAME, "coverage_csv", [], manifest, stats, log, seed, progress)

    def architectures(self) -> list[str]:
        return ["tiny_cov"]

    def build(self, meta: dict) -> nn.Module:
        return TinyRegressor()

    def resolve(self, ws, ds: dict, arch: str, res, entries: list[dict], root: Path) -> dict:
        for key, value in (("img_size", SIZE), ("batch_size", 16), ("lr", 3e-3), ("pretrained", "none"),
                           ("hflip", 0.5), ("crop_scale", 1.0)):
            res.pick(key, lambda v=value: (v, "the coverage task's default"))
        return {}

    def preprocessing(self, resolved: dict) -> dict:
        size = resolved["img_size"]
        return {"resize": [size, size], "resize_mode": "stretch", "interpolation": "bilinear", "color": "RGB",
                "layout": "NCHW", "scale": 1 / 255.0, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}

    def postprocessing(self, resolved: dict) -> dict:
        return {"type": "coverage", "clip": [0.0, 1.0]}

    def training_data(self, root: Path, entries: list[dict], resolved: dict) -> CoverageData:
        return CoverageData(root, entries, resolved["img_size"])

    def trainer(self, cfg, model, train, val, preprocessing, run_dir, resolved, **kwargs) -> CoverageTrainer:
        return CoverageTrainer(cfg, model, train, val, preprocessing, run_dir, **kwargs)

    def evaluate(self, model: nn.Module, meta: dict, root: Path, entries: list[dict]) -> dict:
        data = self.eval_set(root, entries, meta)
        with torch.no_grad():
            out = model.eval()(torch.from_numpy(data.inputs)).numpy()
        return self.score(out, data.truth, meta)

    def version_metrics(self, full: dict) -> dict:
        return {k: full[k] for k in ("within10", "mae")}

    def eval_set(self, root: Path, entries: list[dict], meta: dict) -> EvalSet:
        data = CoverageData(root, entries, meta["preprocessing"]["resize"][0])
        return EvalSet(normalized(data.images, meta["preprocessing"]), data.labels.numpy())

    def output_shape(self, meta: dict) -> tuple[int, ...]:
        return (1,)

    def score(self, outputs: np.ndarray, truth: Any, meta: dict) -> dict:
        values = np.clip(np.asarray(outputs).reshape(-1), 0, 1)
        return {"within10": within(values, truth), "mae": float(np.abs(values - truth).mean()), "images": len(values)}

    def parity(self, outputs: np.ndarray, reference: np.ndarray, precision: str, meta: dict) -> dict:
        diff = float(np.abs(outputs.astype(np.float64) - reference).max())
        agreement = within(outputs, reference, 0.02)
        return {"checked": True, "passed": diff <= 1e-3 if precision == "fp32" else agreement >= 0.9, "max_abs_diff": diff,
                "agreement": agreement, "agreement_kind": "value within 0.02", "images": int(len(reference)),
                "tolerance": {"max_abs_diff": 1e-3}}

    def postprocess(self, raw: np.ndarray, meta: dict, sizes, top_k, min_score) -> list[list[dict]]:
        return [[{"value": round(float(np.clip(v, 0, 1)), 6)}] for v in np.asarray(raw).reshape(-1)]

    def pai_item(self, p: dict, width: int, height: int) -> dict:
        return {"label": NAME, "value": p["value"]}


class _Record:
    def __init__(self, path: str, coverage: float):
        self.path, self.coverage = path, coverage


def install() -> None:
    """Register the task and its issue code ($EDGEFACTORY_TASKS names this for the export and benchmark
    processes; the registry's own lookup below may already call it through that variable)."""
    if NAME in TASKS:
        return
    register_codes({k: v for k, v in CODES.items() if k not in CATALOGUE})
    TASKS.add(NAME, Coverage())


def write_coverage(dest: Path, n: int, seed: int) -> Path:
    """Pictures with one dark rectangle on a light, noisy background, and the share of the picture it covers."""
    rng = random.Random(seed)
    (dest / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        img = Image.new("RGB", (64, 64), tuple(rng.randrange(180, 256) for _ in range(3)))
        w, h = rng.randint(4, 64), rng.randint(4, 64)
        x, y = rng.randint(0, 64 - w), rng.randint(0, 64 - h)
        ImageDraw.Draw(img).rectangle([x, y, x + w - 1, y + h - 1], fill=tuple(rng.randrange(0, 60) for _ in range(3)))
        img.save(dest / "images" / f"{i:03d}.png")
        rows.append(f"images/{i:03d}.png,{w * h / 64 ** 2:.4f}")
    (dest / LABELS).write_text("file,coverage\n" + "\n".join(rows) + "\nimages/000.png,1.7\n")
    return dest


@pytest.fixture
def plugin(monkeypatch: pytest.MonkeyPatch) -> Iterator[Task]:
    monkeypatch.setenv(PLUGINS_ENV, f"{__name__}:install")  # the export and benchmark children load it too
    install()
    yield TASKS.get(NAME)
    TASKS.remove(NAME)
    for code in CODES:
        CATALOGUE.pop(code, None)


def png(path: Path) -> bytes:
    buf = io.BytesIO()
    Image.open(path).save(buf, format="PNG")
    return buf.getvalue()


def test_a_task_defined_in_a_test_goes_through_every_front_end(plugin: Task, tmp_path: Path):
    from benchmarks import api as bench_api
    from serving import api as serving_api
    from targets import api as targets_api

    home = tmp_path / "ws"
    data = write_coverage(tmp_path / "data", 200, seed=1)
    (data / "images" / "broken.png").write_bytes(b"not a png")
    with (data / LABELS).open("a") as labels:
        labels.write("images/broken.png,0.5\n")
    imported = api.import_dataset(data, "boxes", task="auto", home=home)  # found by its own layout
    assert imported["task"] == NAME and imported["classes"] == [] and imported["num_images"] == 199
    assert {i["code"] for i in imported["issues"]} == {"COVERAGE_OUT_OF_RANGE", "CORRUPT_IMAGE"}
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / LABELS).write_text("file,coverage\n")
    with pytest.raises(DatasetError) as failed:  # its own errors stop the import before anything is written
        api.import_dataset(tmp_path / "empty", "nothing", task=NAME, home=home)
    assert failed.value.code == "EMPTY_DATASET" and [d["dataset"] for d in api.list_datasets(home=home)] == ["boxes"]

    trained = api.train({"dataset": "boxes", "epochs": 12}, home=home)
    assert trained["task"] == NAME and trained["metrics"]["split"] == "test"
    assert trained["metrics"]["within10"] > 0.5, trained["metrics"]  # guessing the mean coverage reaches ~0.3
    ref = f"{trained['model']}:v{trained['version']}"
    evaluated = api.evaluate(ref, home=home)
    assert evaluated["task"] == NAME and evaluated["metrics"]["within10"] == pytest.approx(trained["metrics"]["within10"])

    for target in ("onnxruntime", "openvino"):
        out = targets_api.export(ref, target, precision="fp32", home=home)
        assert out["parity"]["passed"] and out["parity"]["agreement_kind"] == "value within 0.02", out["parity"]
        assert out["accuracy"] == pytest.approx(evaluated["metrics"]["within10"], abs=0.02)
    report = bench_api.report(ref, home=home, timing=FAST, log=lambda line: None)
    assert report["measured_rows"] >= 3 and not report["failed"], report["failed"]

    serving_api.deploy(ref, target="onnxruntime", home=home)
    picture = png(data / "images" / "005.png")
    truth = float((data / LABELS).read_text().splitlines()[6].split(",")[1])
    with running_server(home) as url:
        rest = httpx.post(f"{url}/v1/models/{trained['model']}/predict",
                          files={"image": ("a.png", picture, "image/png")}).json()
        pai = httpx.post(f"{url}/api/predict/{trained['model']}",
                         json={"dataArray": [{"name": "image", "type": "stream", "body": base64.b64encode(picture).decode()}]}).json()
    assert rest["task"] == NAME and list(rest["predictions"][0]) == ["value"], rest
    assert abs(rest["predictions"][0]["value"] - truth) < 0.25
    assert pai["success"] is True and pai["result"]["output"][0]["body"] == [{"label": NAME, "value": rest["predictions"][0]["value"]}]
