"""Training configuration: a frozen dataclass with defaults in code, type and range checks with
messages that name the fix, and unknown keys rejected with suggestions."""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, fields
from typing import Annotated, Any, Literal

from pydantic import Field, create_model

from factory import params
from factory.errors import ConfigError
from factory.registry import suggest


# What the engine uses for an option nobody resolved (a TrainConfig built in code, e.g. a fine-tune
# inside an export); a training run gets its values from the data instead (factory.training.defaults).
ENGINE_FALLBACKS = {"batch_size": 64, "lr": 2e-3, "patience": 15, "hflip": 0.5, "crop_scale": 0.6}


@dataclass(frozen=True)
class TrainConfig:
    dataset: str  # "name" (latest) or "name:vN"
    model: str | None = None  # None: mobilenet_v3_small, or the architecture of --from
    name: str | None = None  # model name in the registry; default "<dataset>-<model>"
    epochs: int | None = None  # None: 30, or as many as the time budget allows
    time_budget_min: float | None = None
    # None below: resolved from the data when the run starts (the reason is saved beside the value)
    img_size: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    patience: int | None = None  # epochs without a better validation metric before stopping
    seed: int = 0
    pretrained: str | None = None  # "imagenet": weights found offline; "none": from scratch; a task's own source
    # (Task.pretrained_sources: OCR's "ppocrv4"); None: resolved
    from_model: str | None = None  # "name:vN": continue from an earlier model version
    hflip: float | None = None  # probability of a horizontal flip; 0 where orientation matters
    crop_scale: float | None = None  # random resized crop keeps between crop_scale and 100 % of the area
    color_jitter: float = 0.2
    workers: int | None = None  # DataLoader workers for data too large to cache; None: up to 4
    device: str = "auto"  # auto | cpu | cuda
    devices: int | None = None  # data-parallel processes (torch.distributed: gloo on the CPU, NCCL on GPUs); None: 1
    # options of one task (a task lists those it reads in `Task.options`; others refuse them)
    embedding_dim: int | None = None  # retrieval: width of the L2-normalised embedding (default 256)
    loss: str | None = None  # retrieval: metric-learning loss (multi_similarity, arcface, subcenter_arcface, cosface)
    dict_file: str | None = None  # ocr: a character dictionary (one character per line) joining the data's characters

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Build a config from user values: unknown keys are rejected with a suggestion."""
        names = [f.name for f in fields(cls)]
        unknown = [k for k in values if k not in names]
        if unknown:
            raise ConfigError(f"Unknown training option {unknown[0]!r}.{suggest(unknown[0], names)}",
                              fix=f"Valid options: {', '.join(names)}.")
        if "dataset" not in values or not values["dataset"]:
            raise ConfigError("No dataset given.", fix="Pass --dataset NAME (see `edgefactory dataset list`).")
        cfg = cls(**{k: v for k, v in values.items() if v is not None or k in ("epochs",)})
        cfg.check()
        return cfg

    def check(self) -> None:
        """Each value of its field's type and range (the shared job schema, `TRAIN_PARAMS`), then the rules
        between fields; ConfigError names the field."""
        params.check(TRAIN_PARAMS, self.to_dict())
        if self.pretrained is not None and not re.fullmatch(r"[a-z0-9_]{1,32}", self.pretrained):
            # which sources there are is the dataset's task's to say (Task.pretrained_sources, checked when a run is
            # resolved); here only the shape of a name
            raise ConfigError(f"Training option pretrained={self.pretrained!r} is not a source's name.",
                              fix="Send pretrained as imagenet, none or a task's own source (lower-case letters, digits "
                                  "and _; or leave it out).")
        if self.pretrained not in (None, "none") and self.from_model:
            raise ConfigError("Both --pretrained and --from were given.",
                              fix="Use --from to continue an earlier model, or --pretrained to start from pretrained "
                                  "weights.")

    def filled(self) -> "TrainConfig":
        """This config with ENGINE_FALLBACKS in place of every option left unresolved (None)."""
        return dataclasses.replace(self, **{k: v for k, v in ENGINE_FALLBACKS.items() if getattr(self, k) is None})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "TrainConfig":
        cfg = dataclasses.replace(self, **changes)
        cfg.check()
        return cfg


# The ranges of TrainConfig's fields, and the pydantic model that checks types and ranges for every caller: the
# REST API's train jobs, the CLI and the chat's start_training all build a TrainConfig.
_RANGES: dict[str, Any] = {
    "epochs": Field(ge=1, le=10_000), "time_budget_min": Field(gt=0, le=24 * 60), "img_size": Field(ge=16, le=1024),
    "batch_size": Field(ge=1, le=4096), "lr": Field(gt=0, lt=1), "weight_decay": Field(ge=0, lt=1),
    "warmup_epochs": Field(ge=0, le=100), "label_smoothing": Field(ge=0, lt=1), "patience": Field(ge=1),
    "hflip": Field(ge=0, le=1), "crop_scale": Field(ge=0.05, le=1), "color_jitter": Field(ge=0, le=1),
    "workers": Field(ge=0, le=64), "devices": Field(ge=1, le=64), "embedding_dim": Field(ge=8, le=4096),
}
_CHOICES: dict[str, Any] = {"device": Literal["auto", "cpu", "cuda"]}


class _TrainParams(params.Params):
    what: typing.ClassVar[str] = "Training option"


TRAIN_PARAMS = create_model("TrainParams", __base__=_TrainParams, **{
    f.name: (Annotated[_CHOICES.get(f.name, typing.get_type_hints(TrainConfig)[f.name]), _RANGES.get(f.name, Field())],
             ... if f.default is dataclasses.MISSING else f.default)
    for f in fields(TrainConfig)})
