"""Terminal progress for the CLI: bars drawn from the same events the chat and REST API receive."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


def say(line: str) -> None:
    """One of the product's own lines on stderr, above any progress bar drawn there (not through it)."""
    tqdm.write(line, file=sys.stderr)


UNITS = {"bench": "artifact"}  # what a stage counts, where it is not images


class StageBars:
    """`progress(stage, done, total)` callback drawing one bar per stage (import, copy, ...)."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.bars: dict[str, tqdm] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=total, desc=stage, unit=UNITS.get(stage, "img"), file=sys.stderr,
                                           leave=True)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()


class TrainingBar:
    """Consumes training events: a bar over epochs (or over the time budget), loss and accuracy."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.bar: tqdm | None = None
        self.budget_s: float | None = None

    def __call__(self, event: dict[str, Any]) -> None:
        if not self.enabled:
            return
        kind = event["type"]
        if kind == "run":
            cfg = event["config"]
            self.budget_s = cfg["time_budget_min"] * 60 if cfg.get("time_budget_min") else None
            total = round(self.budget_s) if self.budget_s else (cfg.get("epochs") or 30)
            processes = f" in {cfg['devices']} data-parallel processes" if (cfg.get("devices") or 1) > 1 else ""
            print(f"run {event['run']}: {cfg['model']} on {cfg['dataset']} at {cfg['img_size']} px{processes}",
                  file=sys.stderr)
            fmt = "{l_bar}{bar}| {n_fmt}/{total_fmt} s of budget [{elapsed}<{remaining}{postfix}]" if self.budget_s else None
            self.bar = tqdm(total=total, desc="train", unit="epoch", bar_format=fmt, file=sys.stderr)
        elif kind == "executor":  # where a job of another executor runs (a Ray cluster)
            say(event["message"])
        elif self.bar is None:
            return
        elif kind == "step":
            self.bar.set_postfix(epoch=event["epoch"], loss=f"{event['loss']:.3f}", refresh=True)
        elif kind == "epoch":
            target = min(event["elapsed_s"], self.budget_s) if self.budget_s else event["epoch"]
            self.bar.update(round(target) - self.bar.n)
            self.bar.set_postfix({"epoch": event["epoch"], "loss": f"{event['train_loss']:.3f}",
                                  f"val_{event.get('metric', 'metric')}": f"{event.get('val_metric', 0.0):.3f}"},
                                 refresh=True)
        elif kind in ("finished", "stopped"):
            self.bar.close()
            if kind == "finished":
                print(f"stopped by {event['reason']}; best epoch {event['best_epoch']} "
                      f"(val {_metric_words(event)} {event.get('best_val_metric', 0.0):.4f})", file=sys.stderr)
        elif kind == "registered":
            print(f"registered {event['model']}:v{event['version']} test {_metric_words(event)} "
                  f"{event.get('score', 0.0):.4f}", file=sys.stderr)
        elif kind == "warning":
            fix = f" Fix: {event['fix']}" if event.get("fix") else ""
            print(f"warning: {event['message']}{fix}", file=sys.stderr)


def _metric_words(event: dict) -> str:
    """The metric's name as people write it: the task's own words, which the run adds to its events (events from
    elsewhere, such as an older run's log, fall back to the usual names of the usual keys)."""
    metric = event.get("metric") or ""
    return event.get("metric_label") or {"map50": "mAP@0.5", "map": "mAP@0.5:0.95"}.get(metric, metric or "score")
