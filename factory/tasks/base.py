"""The Task protocol: everything that differs per task, behind one class, so that the importer, the training
run, evaluation, the export driver, the benchmarks, the server, the phone page, the CLI and the chat stay
task-neutral and ask `task_of(meta)` instead.

A task subclasses `Task`, fills in what it needs and registers one instance in `factory.tasks.TASKS`. Where it
is used (README "Tasks are plugins" has the table):

- datasets: `claims`, `import_dataset`, `format_names`, `export_dataset`, `samples`, `stats_lines`;
- training: `default_arch` (`default_architecture`), `architectures`, `resolve` (defaults from the data), `training_data`,
  `initial_model`, `trainer`, `preprocessing`, `postprocessing` (saved in the model version's metadata);
- evaluation: `evaluate` (full metrics), `version_metrics` (what the model version keeps), `write_report`,
  `evaluation` (the `eval` command's payload), `score_text` / `eval_lines` (how the CLI prints them);
- export and benchmarks: `networks`, `eval_set`, `output_shape`, `score`, `parity`, `predictions`,
  `unsupported_strategies`, `report_scores`;
- prediction: `postprocess` (NumPy, every Python runtime), `prediction_keys` (the REST shape); the phone
  page loads `serving/web/tasks/<name>.js`;
- words: `metric`, `metric_label`, `unit`, `dataset_sentence`, `evaluation_sentence`.

A task may be a pipeline of networks (`networks` names them; OCR: detector and recognizer): each is exported
and measured as its own artifact, and `postprocess` composes them at predict time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from factory.errors import ConfigError, DatasetError, UnsupportedSpecError
from factory.i18n import tr
from factory.training.data import normalize

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the normalisation of every ImageNet-pretrained backbone here
IMAGENET_STD = (0.229, 0.224, 0.225)
Progress = Callable[[str, int, int], None]
Sink = Callable[[dict], None]


@dataclass
class EvalSet:
    """Preprocessed inputs (NCHW float32; a network of variable input size: a list of CHW arrays, one per input)
    and the task's ground truth for them (label indices, boxes, ...)."""

    inputs: np.ndarray | list[np.ndarray]
    truth: Any


@dataclass
class Network:
    """One network of a model version as the export driver sees it: its module, the metadata an export of it
    reads (input_size, classes; `dynamic_axes` {"input": [...], "output": [...]} where its height or width varies)
    and the task object that makes its evaluation sets, parity and scores."""

    module: nn.Module
    meta: dict
    task: "Task"


class Task:
    name: str = ""
    metric = "accuracy"  # the primary score's key, in [0, 1]: early stopping and the accuracy budget use it
    metric_label = "accuracy"  # how people name it
    unit = "images"  # what the dataset's size is counted in, in sentences
    class_word = "classes"  # what its labels are called in sentences (retrieval: identities)
    classes_are_groups = True  # images fall in its classes ("30 images in 3 classes"); OCR's are a dictionary
    default_arch = ""
    sniff_priority = 0  # `--task auto` asks tasks with a higher priority first (the most specific layouts)
    export_formats: tuple[str, ...] = ()
    # compression strategy -> why this task cannot use it; structured pruning's fine-tuning and quantization-aware
    # training run the engine's one-label-per-image Trainer, so a task opts in to them (classification does)
    unsupported_strategies: dict[str, str] = {"prune": "structured pruning fine-tunes with the classification trainer",
                                              "qat": "quantization-aware training runs the classification trainer"}
    prediction_keys: tuple[str, ...] = ("label", "score", "index")
    min_score: float | None = None  # the lowest score a served prediction keeps (the phone page keeps the same)
    options: tuple[str, ...] = ()  # training options (TrainConfig fields) only this task reads, e.g. retrieval's loss
    # what `--pretrained` may name for this task, each with how people call the start it gives (tr() words)
    pretrained_sources: dict[str, str] = {"imagenet": "ImageNet weights", "none": "scratch"}
    uses_gallery = False  # its model answers by searching a gallery index of its embeddings (retrieval/)

    # -- datasets ------------------------------------------------------------------------------------
    def detect_format(self, root: Path) -> str:
        """The name of this task's first layout found in the folder `root`; DatasetError when none is."""
        raise DatasetError(f"{self.name} has no dataset layouts to detect.", fix="Pass --task and --format.")

    def claims(self, root: Path) -> bool:
        """Whether a layout of this task is found in the folder `root` (for `--task auto`)."""
        try:
            self.detect_format(root)
        except DatasetError:
            return False
        return True

    def format_names(self) -> list[str]:
        return []

    def import_dataset(self, ws, catalog, root: Path, name: str, *, fmt: str, seed: int,
                       progress: Progress | None) -> dict:
        """Read the opened folder `root` in `fmt` ('auto': detect), check, split and publish; the catalog row."""
        raise UnsupportedSpecError(f"Datasets of task {self.name!r} cannot be imported.", fix="Pick another --task.")

    def export_dataset(self, ws, row: dict, fmt: str, dest: Path) -> Path:
        raise ConfigError(f"{row['name']}:v{row['version']} is a {self.name} dataset, which has no export formats.",
                          fix="Export a dataset of a task that has them (see `edgefactory dataset export --help`).")

    def samples(self) -> dict[str, Callable[..., Path]]:
        """Sample-data writers by kind (`edgefactory dataset sample KIND DEST`): writer(dest, **options)."""
        return {}

    def stats_lines(self, stats: dict) -> list[str]:
        """`dataset inspect`: lines about the data beyond the image count and splits."""
        return []

    # -- the chat's words ------------------------------------------------------------------------------
    chat_patterns: tuple[str, ...] = ()  # regular expressions (English, Chinese) that ask for this task
    described = ""  # what it trains, in a few words ("image classifiers (one label per image)")
    upload_hint = ""  # what the chat says an upload will be read as, e.g. " (a label per image)"
    # the chat's demo data: {"name": dataset name, "kind": the import_demo_data tool's kind, "summary": sentence}
    demo: dict | None = None

    def write_demo(self, dest: Path) -> Path:
        """Write the chat's demo data to the new folder `dest`; returns the folder to import."""
        raise NotImplementedError

    def upload_prompt(self, imported: str) -> str | None:
        """What the chat asks for when this task is chosen and no data is given yet (None: the general prompt)."""
        return None

    def class_counts(self, stats: dict) -> dict[str, int]:
        """Per class, what the dataset holds of it (in `unit`), for the balance sentence."""
        return stats.get("images_per_class") or {}

    def dataset_lines(self, stats: dict) -> list[str]:
        """Sentences about a dataset beyond its images, classes and splits."""
        return []

    def propose(self, stats: dict, devices: list, latency_ms: float | None, size_mb: float | None) -> dict:
        """The chat's recipe: {model, time_budget_min, epochs, reason} from the data and the slowest device
        (devices have `short_name` and `fp32_gflops`)."""
        n = stats.get("num_images") or 0
        arch = self.default_architecture({})
        return {"model": arch, "time_budget_min": 2.0 if n < 300 else 4.0, "epochs": None,
                "reason": tr("{arch} is the default {task} architecture.", arch=arch, task=tr(self.name))}

    # -- models and training -------------------------------------------------------------------------
    def architectures(self) -> list[str]:
        return []

    def default_architecture(self, given: dict) -> str:
        """The architecture a run takes when `--model` is left out, from the options given (TrainConfig's fields):
        `default_arch` unless a task's default depends on them (OCR's on `--pretrained`)."""
        return self.default_arch

    def build(self, meta: dict) -> nn.Module:
        """A freshly initialised network for the metadata (architecture, classes, ...)."""
        raise NotImplementedError

    def output_layers(self, meta: dict) -> list[str]:
        """Names of the modules whose outputs are the task's (structured pruning keeps their channels)."""
        return []

    def resolve(self, ws, ds: dict, arch: str, res, entries: list[dict], root: Path) -> dict:
        """Fill `res` (factory.training.defaults.Resolution) from the training `entries`; returns extra config."""
        return {}

    def preprocessing(self, resolved: dict) -> dict:
        raise NotImplementedError

    def postprocessing(self, resolved: dict) -> dict:
        return {"classes": resolved["classes"]}

    def training_data(self, root: Path, entries: list[dict], resolved: dict) -> Any:
        """The engine's tensors for one split."""
        raise NotImplementedError

    def initial_model(self, resolved: dict, parent: tuple[nn.Module, dict] | None, sink: Sink) -> nn.Module:
        """The network training starts from: fresh, ImageNet weights, or the parent version's (`--from`)."""
        if parent is not None:
            raise UnsupportedSpecError(f"--from is not available for {self.name} models yet.",
                                       fix="Train from scratch or from ImageNet weights (leave --from out).")
        return self.build({**resolved, "arch": resolved["model"], "num_classes": len(resolved["classes"])})

    def trainer(self, cfg, model: nn.Module, train: Any, val: Any, preprocessing: dict, run_dir: Path,
                resolved: dict, **kwargs):
        """The engine's Trainer (factory.training.engine) for this task: loss, batches, validation metric."""
        raise NotImplementedError

    # -- evaluation ----------------------------------------------------------------------------------
    def evaluate(self, model: nn.Module, meta: dict, root: Path, entries: list[dict]) -> dict:
        """Full metrics of `model` on dataset `entries` (the primary one under `self.metric`)."""
        raise NotImplementedError

    def version_metrics(self, full: dict) -> dict:
        """What a model version keeps of `evaluate`'s metrics."""
        return {self.metric: full[self.metric]}

    def write_report(self, ws, row: dict, split: str, full: dict, root: Path, meta: dict) -> dict:
        """Report files for an evaluation (paths by key); none by default."""
        return {}

    def evaluation(self, ws, row: dict, model: nn.Module, meta: dict, root: Path, entries: list[dict], split: str,
                   save_predictions: str | Path | None) -> dict:
        """The `eval` command's payload: metrics, report files, optionally predictions written to a file."""
        if save_predictions:
            raise ConfigError(f"--save-predictions is not available for {self.name} models.", fix="Leave it out.")
        full = self.evaluate(model, meta, root, entries)
        return {"metrics": full, "files": self.write_report(ws, row, split, full, root, meta)}

    def evaluation_on_folders(self, model: nn.Module, meta: dict, gallery: Path, queries: Path,
                              save_predictions: str | Path | None) -> dict:
        """The `eval --gallery PATH --queries PATH` payload (tasks that search a gallery: retrieval)."""
        raise ConfigError(f"--gallery and --queries are for models that search a gallery; this is a {self.name} model.",
                          fix="Leave them out, or pass --dataset NAME to evaluate on another dataset.")

    def score_text(self, metrics: dict) -> str:
        value = metrics.get(self.metric)
        return f"{self.metric_label} {value:.4f}" if isinstance(value, (int, float)) else f"{self.metric_label} –"

    def eval_lines(self, out: dict) -> list[str]:
        return [f"{out['model']}:v{out['version']} on {out['dataset']} {out['split']}: {self.score_text(out['metrics'])}",
                *(f"{key}: {path}" for key, path in (out.get("files") or {}).items())]

    def evaluation_sentence(self, model: str, out: dict) -> str:
        """The chat's words for an evaluation (the `evaluation` payload)."""
        return tr("Training finished: **{model}** reaches {score} on the {split} split.", model=model,
                  score=self.score_text(out["metrics"]), split=tr(out["split"]))

    # -- export, benchmarks, prediction --------------------------------------------------------------
    def networks(self, meta: dict) -> tuple[str, ...]:
        """The networks of a model version, each exported and measured as its own artifact. ("model",): the model
        version is one network, exported as it is; any other names are exported one by one (`network`) into
        subfolders of one artifact and scored together (`pipeline_score`)."""
        return ("model",)

    def is_pipeline(self, meta: dict) -> bool:
        """Whether the model version is several networks, exported network by network and composed by `read`."""
        return self.networks(meta) != ("model",)

    def read(self, runners: dict[str, Callable[[np.ndarray], np.ndarray]], images: list, meta: dict,
             top_k: int | None, min_score: float | None) -> list[list[dict]]:
        """A model of several networks (`is_pipeline`): per RGB image, its predictions from the networks' runners
        (by name), in the image's pixels, with the keys `prediction_keys` names."""
        raise NotImplementedError

    def network(self, model: nn.Module, meta: dict, name: str) -> Network:
        """Network `name` of `model`: the module, the metadata its export reads, and the task object that scores it."""
        return Network(model, meta, self)

    def pipeline_score(self, runners: dict[str, Callable[[np.ndarray], np.ndarray]], meta: dict, root: Path,
                       entries: list[dict]) -> dict:
        """Metrics (`self.metric` the primary one) of the networks' runners (by name) composed, on dataset `entries`:
        what the accuracy budget of a model of several networks is counted in."""
        raise NotImplementedError

    def outputs(self, runner: Callable[[np.ndarray], np.ndarray], inputs: np.ndarray | list, batch: int,
                meta: dict) -> Any:
        """The runner's raw outputs over an EvalSet's `inputs`, `batch` at a time, in the model's own output shape
        (a network of variable input size: a list of each input's output)."""
        return shaped(run_batched(runner, inputs, batch), self, meta)

    def eval_set(self, root: Path, entries: list[dict], meta: dict) -> EvalSet:
        raise NotImplementedError

    def calibration_labels(self, entry: dict) -> set[str]:
        """The classes a dataset entry shows, so that INT8 calibration draws every class (its label by default)."""
        return {entry["label"]} if entry.get("label") is not None else set()

    def output_shape(self, meta: dict) -> tuple[int, ...]:
        """The raw output's shape per image (runtimes that flatten it get it back in shape)."""
        raise NotImplementedError

    def score(self, outputs: np.ndarray, truth: Any, meta: dict) -> dict:
        """Metrics of raw outputs; `self.metric` is the primary one, `recall_by_class` what the report shows."""
        raise NotImplementedError

    def parity(self, outputs: np.ndarray, reference: np.ndarray, precision: str, meta: dict) -> dict:
        """An exported file's outputs against PyTorch's: {checked, passed, agreement, agreement_kind, ...}."""
        raise NotImplementedError

    def predictions(self, outputs: np.ndarray) -> list | None:
        """Per-image predictions the report compares across artifacts (None: not comparable that way)."""
        return None

    def report_scores(self, metrics: dict) -> dict:
        """Scores beyond the primary metric that a benchmark row carries."""
        return {}

    def pai_item(self, p: dict, width: int, height: int) -> dict:
        """One prediction as an entry of a PAI-EAS `cv_common` body: label and conf, and where a prediction has a
        box, `pos`: its four corners (top-left, top-right, bottom-right, bottom-left) relative to the image size,
        as PAI's detection services return."""
        item = {"label": p["label"], "conf": round(p["score"], 6)}
        if "box" in p:
            x1, y1, x2, y2 = p["box"][0] / width, p["box"][1] / height, p["box"][2] / width, p["box"][3] / height
            item["pos"] = [[round(x, 6), round(y, 6)] for x, y in ((x1, y1), (x2, y1), (x2, y2), (x1, y2))]
        return item

    def postprocess(self, raw: np.ndarray, meta: dict, sizes: list[tuple[int, int]], top_k: int | None,
                    min_score: float | None) -> list[list[dict]]:
        """Raw outputs [batch, ...] -> per image, predictions best first, in the original image's pixels."""
        raise NotImplementedError


def shaped(outputs: np.ndarray, task: Task, meta: dict) -> np.ndarray:
    """Raw outputs in the model's own shape [batch, ...] (ncnn and Core ML hand them back flat)."""
    outputs = np.asarray(outputs)
    return outputs.reshape(len(outputs), *task.output_shape(meta))


def run_batched(runner, inputs: np.ndarray, batch: int = 1) -> np.ndarray:
    """Outputs of `runner` over `inputs`, `batch` images at a time (batch 1 for static-shape artifacts)."""
    outs = [np.asarray(runner(inputs[i:i + batch])) for i in range(0, len(inputs), batch)]
    return np.concatenate(outs) if outs else np.empty((0,))


def normalized(images: torch.Tensor, preprocessing: dict) -> np.ndarray:
    """uint8 NCHW tensors -> the model's float32 inputs (NumPy) per the metadata's mean and std."""
    mean, std = (torch.tensor(preprocessing[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
    return normalize(images, mean, std).numpy().astype(np.float32)


def fit_to_state_dict(model: nn.Module, state: dict) -> nn.Module:
    """Resize Conv2d / BatchNorm2d / Linear layers in place to the channel counts in `state`.

    A structurally pruned model differs from its architecture only in channel counts, so a
    plain state dict is enough to rebuild it: no pickled modules, loadable with weights_only.
    """
    for name, module in model.named_modules():
        weight = state.get(f"{name}.weight" if name else "weight")
        if weight is None or tuple(weight.shape) == tuple(module.weight.shape):
            continue
        if isinstance(module, nn.Conv2d):
            depthwise = module.groups > 1 and module.groups == module.in_channels == module.out_channels
            module.out_channels = weight.shape[0]
            module.groups = weight.shape[0] if depthwise else module.groups
            module.in_channels = weight.shape[1] * module.groups
        elif isinstance(module, nn.BatchNorm2d):
            module.num_features = weight.shape[0]
            for buf in ("running_mean", "running_var"):
                setattr(module, buf, torch.zeros(weight.shape[0]))
        elif isinstance(module, nn.Linear):
            module.out_features, module.in_features = weight.shape
        else:
            continue
        module.weight = nn.Parameter(torch.empty_like(weight))
        if getattr(module, "bias", None) is not None:
            module.bias = nn.Parameter(torch.empty(weight.shape[0]))
    return model
