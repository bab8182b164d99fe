"""Training configuration: a frozen dataclass with defaults in code, type and range checks with
messages that name the fix, and unknown keys rejected with suggestions."""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, fields
from typing import Any

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
    pretrained: str | None = None  # "imagenet": weights found offline; "none": from scratch; None: resolved
    from_model: str | None = None  # "name:vN": continue from an earlier model version
    hflip: float | None = None  # probability of a horizontal flip; 0 where orientation matters
    crop_scale: float | None = None  # random resized crop keeps between crop_scale and 100 % of the area
    color_jitter: float = 0.2
    workers: int | None = None  # DataLoader workers for data too large to cache; None: up to 4
    device: str = "auto"  # auto | cpu | cuda
    # options of one task (a task lists those it reads in `Task.options`; others refuse them)
    embedding_dim: int | None = None  # retrieval: width of the L2-normalised embedding (default 256)
    loss: str | None = None  # retrieval: metric-learning loss (multi_similarity, arcface, subcenter_arcface, cosface)

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
        self.check_types()
        rules = [
            ("epochs", self.epochs is None or 1 <= self.epochs <= 10_000, "an integer from 1 to 10000"),
            ("time_budget_min", self.time_budget_min is None or 0 < self.time_budget_min <= 24 * 60,
             "minutes, above 0 and at most 1440"),
            ("img_size", self.img_size is None or 16 <= self.img_size <= 1024, "pixels from 16 to 1024"),
            ("batch_size", self.batch_size is None or 1 <= self.batch_size <= 4096, "from 1 to 4096"),
            ("lr", self.lr is None or 0 < self.lr < 1, "above 0 and below 1 (AdamW usually 1e-4 to 3e-3)"),
            ("weight_decay", 0 <= self.weight_decay < 1, "from 0 to 1"),
            ("warmup_epochs", 0 <= self.warmup_epochs <= 100, "from 0 to 100"),
            ("label_smoothing", 0 <= self.label_smoothing < 1, "from 0 to below 1"),
            ("patience", self.patience is None or self.patience >= 1, "at least 1"),
            ("pretrained", self.pretrained in (None, "imagenet", "none"), "'imagenet', 'none' or left out"),
            ("hflip", self.hflip is None or 0 <= self.hflip <= 1, "a probability from 0 to 1"),
            ("crop_scale", self.crop_scale is None or 0.05 <= self.crop_scale <= 1, "from 0.05 to 1"),
            ("color_jitter", 0 <= self.color_jitter <= 1, "from 0 to 1"),
            ("workers", self.workers is None or 0 <= self.workers <= 64, "from 0 to 64"),
            ("device", self.device in ("auto", "cpu", "cuda"), "auto, cpu or cuda"),
            ("embedding_dim", self.embedding_dim is None or (type(self.embedding_dim) is int and
                                                             8 <= self.embedding_dim <= 4096), "an integer from 8 to 4096"),
            ("loss", self.loss is None or isinstance(self.loss, str), "a loss name"),
        ]
        for name, ok, expected in rules:
            if not ok:
                raise ConfigError(f"Training option {name}={getattr(self, name)!r} is out of range.",
                                  fix=f"Use {expected}.")
        if self.model is not None and not isinstance(self.model, str):
            raise ConfigError(f"Training option model={self.model!r} is not a name.", fix="Use e.g. mobilenet_v3_small.")
        if self.pretrained == "imagenet" and self.from_model:
            raise ConfigError("Both --pretrained and --from were given.",
                              fix="Use --from to continue an earlier model, or --pretrained to start from ImageNet.")

    def check_types(self) -> None:
        """Each value of the type its field declares (a JSON or job body holds anything): ConfigError names the field.
        bool is not an int, "5" is not a number, 32.5 is not a whole number."""
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and "None" in str(f.type):
                continue
            kind = str(f.type).split(" |")[0]
            number = not isinstance(value, bool)
            ok = {"int": number and isinstance(value, numbers.Integral), "float": number and isinstance(value, numbers.Real),
                  "str": isinstance(value, str)}.get(kind, True)
            if not ok:
                expected = {"int": "a whole number", "float": "a number", "str": "a string"}[kind]
                raise ConfigError(f"Training option {f.name}={value!r} is not {expected}.",
                                  fix=f"Send {f.name} as {expected}" + (" (or leave it out)." if "None" in str(f.type) else "."))

    def filled(self) -> "TrainConfig":
        """This config with ENGINE_FALLBACKS in place of every option left unresolved (None)."""
        return dataclasses.replace(self, **{k: v for k, v in ENGINE_FALLBACKS.items() if getattr(self, k) is None})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "TrainConfig":
        cfg = dataclasses.replace(self, **changes)
        cfg.check()
        return cfg
