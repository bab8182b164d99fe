"""The assistant's actions: LangChain tools with typed schemas over the same API the CLI calls
(factory.api, targets.api, benchmarks.api, serving.api, retrieval). A tool whose metadata says
`needs_confirmation` writes, trains, exports or deploys: the guide and the LLM agent both run it
only after the user said yes in the conversation."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field

from factory import api as core_api
from factory.tasks import all_tasks
from factory.jobs import JobManager
from factory.workspace import Workspace
from targets.api import ExportParams


class DocsQuery(BaseModel):
    query: str = Field(description="the user's question, in their words")


class DatasetRef(BaseModel):
    ref: str = Field(description="dataset NAME or NAME:vN")


class ImportArgs(BaseModel):
    path: str = Field(description="uploaded .zip file or folder of images")
    name: str = Field(description="dataset name to create (a new version if it exists)")
    task: str = Field(default="auto", description="classification, detection, or auto (detection when boxes are found)")


class DemoArgs(BaseModel):
    name: str = Field(default="digits", description="dataset name to create")
    kind: str = Field(
        default="digits", description="digits: scikit-learn's handwritten digits (classification); "
                                      "scenes: seeded synthetic scenes with boxes (object detection)")


class TrainArgs(BaseModel):
    dataset: str
    model: str | None = Field(default=None, description="registered architecture (default mobilenet_v3_small, or the "
                                                         "architecture of from_model)")
    from_model: str | None = Field(default=None, description="continue from an earlier model version NAME:vN")
    img_size: int | None = Field(default=None, ge=16, le=1024, description="input side; left out: from the data")
    hflip: float | None = Field(default=None, ge=0, le=1, description="flip probability; left out: from the data")
    time_budget_min: float | None = Field(default=None, gt=0, description="stop after this many minutes")
    epochs: int | None = Field(default=None, ge=1)
    name: str | None = Field(default=None, description="model name (default <dataset>-<model>)")


class RunRef(BaseModel):
    run_id: str


class ModelRef(BaseModel):
    model: str = Field(description="model NAME or NAME:vN")


class ExportArgs(ExportParams):
    """The export job's own schema (types, ranges), INT8 by default in the chat."""

    precision: str = Field(default="int8", description="fp32, fp16 or int8")


class ResolveArgs(BaseModel):
    options: dict = Field(description="training options as for start_training; those left out are resolved from the data")


class DeployArgs(BaseModel):
    model: str
    target: str | None = None


class KeyArgs(BaseModel):
    name: str
    models: list[str] | None = None


class GalleryArgs(BaseModel):
    model: str = Field(description="the embedder NAME[:vN] (a retrieval model)")
    path: str = Field(description="uploaded .zip or folder of gallery photos (one folder per identity), or a dataset name")
    name: str = Field(description="the index name")


class GalleryAddArgs(BaseModel):
    index: str = Field(description="the index NAME")
    path: str = Field(description="uploaded .zip or folder of photos to add (one folder per identity)")
    label: str | None = Field(default=None, description="label every photo with this (photos of one new identity)")


class LinkArgs(BaseModel):
    model: str
    base_url: str | None = Field(default=None, description="the server as a phone reaches it")


def build_tools(home: Path, jobs: JobManager, docs_search: Callable[[str], list[dict]]) -> dict[str, BaseTool]:
    """Every tool, bound to one workspace and one job manager."""
    from benchmarks import api as bench_api
    from serving import api as serving_api
    from serving import gallery as serving_gallery
    from targets import api as targets_api

    def import_demo(name: str = "digits", kind: str = "digits") -> dict:
        task = next(t for t in all_tasks() if t.demo and t.demo["kind"] == kind)
        with Workspace.open(home).scratch("demo-") as tmp:  # the import copies what it keeps
            return core_api.import_dataset(task.write_demo(tmp / kind), name, task=task.name, home=home)

    def start_training(**kwargs: Any) -> dict:
        config = {k: v for k, v in kwargs.items() if v is not None}
        run_id = core_api.start_training(config, jobs, home=home)
        return {"run_id": run_id}

    def stop_training(run_id: str) -> dict:
        jobs.stop(run_id)
        return {"run_id": run_id, "stopping": True}

    specs: list[tuple[Callable, str, str, type[BaseModel], bool]] = [
        (lambda query: docs_search(query), "search_docs", "Answer how-to / what-is questions from the project's docs.", DocsQuery, False),
        (lambda: core_api.list_datasets(home=home), "list_datasets", "List imported datasets.", BaseModel, False),
        (lambda: core_api.list_models(home=home), "list_models", "List the model versions of the workspace.", BaseModel, False),
        (lambda model: bench_api.report_path(model, home=home).is_file(), "report_exists",
         "Whether a model version has a benchmark report.", ModelRef, False),
        (lambda ref: core_api.inspect_dataset(ref, home=home), "inspect_dataset", "Statistics and issues of a dataset.", DatasetRef, False),
        (lambda path, name, task="auto": core_api.import_dataset(path, name, task=task, home=home), "import_dataset",
         "Import and validate an uploaded .zip or folder as a dataset version.", ImportArgs, True),
        (import_demo, "import_demo_data", "Import offline demo data: handwritten digits, or scenes with boxes for detection.", DemoArgs, True),
        (lambda options: core_api.resolve_training(options, home=home), "resolve_training",
         "The training options a run would use (input size, batch, lr, flips, pretrained start), each with its reason.",
         ResolveArgs, False),
        (start_training, "start_training", "Start training in the background; returns the run id.", TrainArgs, True),
        (lambda run_id: core_api.run_status(run_id, home=home), "training_status", "Status and progress of a run.", RunRef, False),
        (stop_training, "stop_training", "Stop a running training job (keeps the last checkpoint).", RunRef, False),
        (lambda model: core_api.evaluate(model, home=home), "evaluate", "Evaluate a model version on its test split (writes its evaluation).", ModelRef, True),
        (lambda model, target, precision="int8", **options: targets_api.export(
            model, target, precision=precision, home=home, **options), "export",
         "Export a model to a target runtime with parity checks under an accuracy budget.", ExportArgs, True),
        (lambda model: bench_api.report(model, home=home), "benchmark_report",
         "Measure every artifact here, estimate the device profiles, write the HTML + JSON report.", ModelRef, True),
        (lambda model, target=None: serving_api.deploy(model, target=target, home=home), "deploy",
         "Serve a model version under its name.", DeployArgs, True),
        (lambda name, models=None: serving_api.create_key(name, models=models, home=home), "create_api_key",
         "Create an API key (shown once).", KeyArgs, True),
        (lambda model, path, name: serving_gallery.build(model, path, name, home=home), "build_gallery_index",
         "Embed gallery photos with a retrieval model and index them (faiss) for search.", GalleryArgs, True),
        (lambda index, path, label=None: serving_gallery.add(index, path, label=label, home=home), "add_to_gallery",
         "Add photos to a gallery index (its next version), without retraining.", GalleryAddArgs, True),
        (lambda model, base_url=None: serving_api.preview_link(model, base_url=base_url, home=home), "preview_link",
         "A QR code and signed link that opens the model on a phone.", LinkArgs, True),
    ]
    tools = {}
    for fn, name, description, schema, confirm in specs:
        tools[name] = StructuredTool.from_function(func=fn, name=name, description=description,
                                                   args_schema=None if schema is BaseModel else schema,
                                                   metadata={"needs_confirmation": confirm})
    return tools


class BackgroundWork:
    """Long tool chains (exports + report) run in a thread; the chat asks how it is going."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.result: Any = None
        self.error: str | None = None
        self.thread: threading.Thread | None = None

    def start(self, work: Callable[[Callable[[str], None]], Any]) -> None:
        def run() -> None:
            try:
                self.result = work(self.lines.append)
            except Exception as exc:  # reported in the chat in plain words, never as a traceback
                self.error = str(exc)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()
