"""Exporting a model version of several networks (`Task.networks`; OCR: a text detector and a recognizer).

Each network goes through the one driver (targets.driver) as an export of its own: its module and metadata from
`Task.network`, its own parity against PyTorch, score, INT8 strategies and speed check. The chosen files go into
one subfolder per network of one artifact folder. Then the networks' runners are scored together on the test
split (`Task.pipeline_score`) against the PyTorch pipeline: that composed score is what the accuracy budget holds.

Precision per network: asked for INT8, a network whose INT8 file misses the budget or is not faster here stays at
FP32 (and says why), and when the composed score misses the budget, the INT8 network that lost most on its own
goes back to FP32 until it holds. Only when no network could stay INT8 is the export refused.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
import time

from factory.errors import BudgetError
from targets.driver import Attempt, ExportJob, artifact_bytes, check_request
from targets.pytorch import eager_runner


@dataclasses.dataclass
class Part:
    """One network's export: the sub-job that made it, the attempt chosen, and its metadata."""

    name: str
    job: ExportJob
    chosen: Attempt
    meta: dict
    why_fp32: str = ""  # set when INT8 was asked for and this network stayed at FP32

    @property
    def precision(self) -> str:
        return self.job.plan.precision

    @property
    def drop(self) -> float:
        return self.meta["accuracy_drop_points"] or 0.0


class PipelineExportJob:
    def __init__(self, job: ExportJob):
        self.job = job
        self.task, self.plan = job.task, job.plan
        self.names = self.task.networks(job.meta)

    def sub_job(self, name: str, precision: str) -> ExportJob:
        """The driver's job for network `name` at `precision`, staged in its own folder."""
        network = self.task.network(self.job.model, self.job.meta, name)
        sub = copy.copy(self.job)
        sub.plan = dataclasses.replace(self.plan, precision=precision)
        sub.model, sub.meta, sub.task = network.module, network.meta, network.task
        sub.staging = self.job.staging / name / precision
        sub.log = lambda line: self.job.log(f"{name:<10s} {line}")
        check_request(sub.target, sub.plan, sub.meta)
        return sub

    def export(self, name: str, precision: str, t0: float) -> Part:
        sub = self.sub_job(name, precision)
        request = sub.prepare(t0)
        chosen, tried = sub.search(request, t0)
        speed = sub.speed_check(chosen, t0)
        return Part(name, sub, chosen, sub.metadata(chosen, tried, request, speed))

    def export_network(self, name: str, t0: float) -> Part:
        """Network `name` at the asked precision; asked for INT8 and missing the budget or not faster, at FP32."""
        try:
            return self.export(name, self.plan.precision, t0)
        except BudgetError as exc:
            if self.plan.precision != "int8":
                raise
            self.job.log(f"{name:<10s} INT8 not kept ({exc.message}): exported at fp32")
            part = self.export(name, "fp32", t0)
            part.why_fp32 = exc.message
            return part

    def runners(self, parts: dict[str, Part]) -> dict:
        return {name: p.job.target.load(p.chosen.folder, {**p.job.meta, "precision": p.precision}, self.plan.device)
                for name, p in parts.items()}

    def composed(self, parts: dict[str, Part], entries: list[dict]) -> dict:
        return self.task.pipeline_score(self.runners(parts), self.job.meta, self.job.root, entries)

    def run(self) -> dict:
        t0 = time.perf_counter()
        self.job.open_data()
        try:
            parts = {name: self.export_network(name, t0) for name in self.names}
            if self.plan.precision == "int8" and all(p.precision != "int8" for p in parts.values()):
                raise BudgetError(f"No network of this {self.task.name} model met the budget at INT8 on "
                                  f"{self.plan.target}: " + "; ".join(f"{n}: {p.why_fp32}" for n, p in parts.items()),
                                  fix="Raise --max-drop, or export at fp32 / fp16.")
            return self.publish(parts, *self.hold_budget(parts, t0), t0)
        finally:
            shutil.rmtree(self.job.staging, ignore_errors=True)
            self.job.remove_empty_parents()

    def hold_budget(self, parts: dict[str, Part], t0: float) -> tuple[dict | None, dict | None]:
        """The composed metrics of the PyTorch networks and of the exported ones (None: not runnable here). While the
        composed drop misses the budget, the INT8 network that lost most on its own goes back to FP32."""
        if not all(p.chosen.parity.get("checked") for p in parts.values()):
            return None, None
        test = self.job.test_entries
        torch_runners = {name: eager_runner(self.task.network(self.job.model, self.job.meta, name).module)
                         for name in self.names}
        reference = self.task.pipeline_score(torch_runners, self.job.meta, self.job.root, test)
        metric = self.task.metric
        while True:
            metrics = self.composed(parts, test)
            drop = (reference[metric] - metrics[metric]) * 100
            self.job.stage("pipeline", t0, f"{' + '.join(f'{n} {p.precision}' for n, p in parts.items())}: "
                                           f"{self.task.metric_label} {metrics[metric]:.4f} (pytorch {reference[metric]:.4f})")
            int8 = [p for p in parts.values() if p.precision == "int8"]
            if drop <= self.plan.max_drop or not int8:
                if drop > self.plan.max_drop:
                    raise BudgetError(f"The exported networks together score {metrics[metric]:.4f} "
                                      f"{self.task.metric_label} against PyTorch's {reference[metric]:.4f}: a drop of "
                                      f"{drop:.2f} points, over the budget of {self.plan.max_drop}.",
                                      fix="Raise --max-drop, or report the model and target as a bug.")
                return reference, metrics
            worst = max(int8, key=lambda p: p.drop)
            parts[worst.name] = self.export(worst.name, "fp32", t0)
            parts[worst.name].why_fp32 = (f"together with the other networks INT8 lost {drop:.2f} points of "
                                          f"{self.task.metric_label}, over the budget of {self.plan.max_drop}")
            if all(p.precision != "int8" for p in parts.values()):
                raise BudgetError(f"No network of this {self.task.name} model could stay INT8 on {self.plan.target} "
                                  f"within the budget of {self.plan.max_drop} points of {self.task.metric_label}.",
                                  fix="Raise --max-drop, or export at fp32 / fp16.")

    def publish(self, parts: dict[str, Part], reference: dict | None, metrics: dict | None, t0: float) -> dict:
        folder = self.job.staging / "artifact"
        folder.mkdir()
        files = []
        for name, p in parts.items():
            p.chosen.folder.rename(folder / name)
            files += [f"{name}/{f}" for f in p.chosen.files]
        meta, metric = self.job.meta, self.task.metric
        accuracy = None if metrics is None else metrics[metric]
        ref_acc = reference[metric] if reference else parts[self.names[0]].meta["reference_accuracy"]
        networks = {name: self.network_record(p) for name, p in parts.items()}
        metadata = {
            "model": self.job.row["name"], "version": self.job.row["version"], "target": self.plan.target,
            "precision": self.plan.precision, "device": self.plan.device, "files": files,
            "size_mb": round(artifact_bytes(folder, files) / 1e6, 4), "task": self.task.name, "arch": meta["arch"],
            "classes": meta["classes"], "num_classes": meta["num_classes"], "networks": networks,
            "preprocessing": meta["preprocessing"], "postprocessing": meta["postprocessing"],
            "parity": {"checked": all(p.chosen.parity.get("checked") for p in parts.values()),
                       "passed": all(p.chosen.parity.get("passed") for p in parts.values()),
                       "by_network": {n: r["parity"] for n, r in networks.items()}},
            "accuracy": accuracy, "reference_accuracy": ref_acc, "metric": metric, "metrics": metrics,
            "reference_metrics": reference, "eval_split": self.job.eval_split, "max_drop": self.plan.max_drop,
            "accuracy_drop_points": None if accuracy is None else round((ref_acc - accuracy) * 100, 3),
            "compression": {"precision": self.plan.precision,
                            "by_network": {n: r["precision"] for n, r in networks.items()},
                            "strategy": "+".join(p.chosen.strategy for p in parts.values())},
            "runnable_here": all(p.meta["runnable_here"] for p in parts.values()),
            "proxy": next((p.meta["proxy"] for p in parts.values() if p.meta["proxy"]), None),
            "tool_versions": {k: v for p in parts.values() for k, v in p.meta["tool_versions"].items()},
            "notes": [f"{n}: {note}" for n, r in networks.items() for note in r["notes"]], "created_at": time.time(),
        }
        return self.job.publish(folder, metadata, t0)

    @staticmethod
    def network_record(part: Part) -> dict:
        """A network's entry in the artifact's metadata: its files, shapes, precision, parity and own score."""
        m = part.meta
        keys = ("precision", "files", "size_mb", "input_shape", "input_name", "output_name", "output_shape", "parity",
                "accuracy", "reference_accuracy", "accuracy_drop_points", "metric", "compression", "tool_versions")
        record = {k: m[k] for k in keys}
        record["notes"] = m["notes"] + ([f"kept at fp32: {part.why_fp32}"] if part.why_fp32 else [])
        record["dynamic_axes"] = part.job.meta.get("dynamic_axes")
        record["input_size"] = part.job.meta["input_size"]
        return record

