"""Running an export job (targets.driver): network by network where the model has several (targets.networks), in
this process, or in a child process so that a converter that dies of a signal fails the export, not the caller."""

from __future__ import annotations

import shutil
from pathlib import Path

from factory.catalog import Catalog
from factory.errors import ExportError
from factory.isolated import output_log, run_isolated
from factory.workspace import Workspace
from targets.driver import ExportJob, ExportPlan, Log, artifact_folders, remove_empty_parents
from targets.networks import PipelineExportJob


def run_export(job: ExportJob) -> dict:
    """Run `job`: network by network (targets.networks) where its model has several."""
    return PipelineExportJob(job).run() if job.task.is_pipeline(job.meta) else job.run()


def export_here(home: Path, ref: str, plan: ExportPlan, log: Log | None = None) -> dict:
    """One ExportJob in its own workspace session (what the child process of `export_in_child` runs)."""
    ws = Workspace.open(home)
    with Catalog(ws.catalog_location) as catalog:
        return run_export(ExportJob(ws, catalog, ref, plan, log=log))


# imported once by the fork server that export children fork from: what an export loads lazily (about 900
# modules, 2 s on 2 cores), so a child starts warm
CHILD_PRELOAD = ("factory.api", "compression.pruning", "onnx", "onnxruntime", "openvino", "nncf")


def export_output_log(home: str | Path, ref: str, plan: ExportPlan) -> Path:
    """Where an export's converters and quantizers write (their logs, progress bars): logs/ in the workspace,
    one file per model, target and precision, each run appended (`--verbose` shows it in the terminal instead)."""
    return output_log(home, "export", ref, plan.target, plan.precision)


def export_in_child(home: Path, ref: str, plan: ExportPlan, log: Log | None = None) -> dict:
    """`export_here` in a child process: a converter or runtime that dies of a signal (ncnn,
    LiteRT and ExecuTorch have, now and then) fails this export with an ExportError instead of ending
    the server, chat or CLI that asked for it. Its staging folder is removed (nothing else was written) and
    the export is tried once more, since such crashes are mostly one-off; a second crash is the error."""
    top = Path(home) / "artifacts"
    existed = artifact_folders(top)

    def remove_staging(pid: int) -> None:
        for folder in top.glob(f"*/*/{plan.target}/.tmp-{plan.precision}-{pid}-*"):
            shutil.rmtree(folder, ignore_errors=True)
            remove_empty_parents(folder.parent, top, existed)

    log = log or (lambda line: None)
    for tries_left in (1, 0):
        try:
            return run_isolated(export_here, {"home": Path(home), "ref": ref, "plan": plan}, log=log,
                                on_crash=remove_staging, what=f"{plan.target} {plan.precision} export of {ref}",
                                preload=CHILD_PRELOAD, output=export_output_log(home, ref, plan))
        except ExportError as exc:
            if exc.code != "NATIVE_CRASH" or not tries_left:
                raise
            log(f"warning: {exc.message} Trying once more in a fresh process.")
    raise AssertionError("unreachable")
