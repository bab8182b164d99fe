"""The `edgefactory` command line. Every command takes --json and then prints one JSON object as
the last line of standard output; human-readable output and progress bars go to standard error
(progress) and standard output (tables)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from importlib.metadata import entry_points
from typing import Any, Callable

from factory import __version__, api
from factory.errors import FactoryError
from factory.executors import add_executor_option
from factory.progress import StageBars, TrainingBar
from factory.tasks import DEFAULT_TASK, TASKS, all_tasks, task_of
from factory.text import table


def _print_table(rows: list[dict], columns: list[str]) -> None:
    print("\n".join(table(rows, columns)))


def _show_issues(issues: list[dict]) -> None:
    for issue in issues:
        files = f" [{', '.join(issue['files'][:3])}{' ...' if len(issue['files']) > 3 else ''}]" if issue["files"] else ""
        print(f"  {issue['severity']:7s} {issue['code']}: {issue['message']}{files}")


# -- commands: each returns the JSON object and prints its human form when not --json -------------
def cmd_dataset_import(a: argparse.Namespace) -> dict:
    out = api.import_dataset(a.path, a.name, task=a.task, fmt=a.format, seed=a.seed, home=a.home,
                             progress=StageBars(not a.quiet))
    if not a.json:
        chosen = "detected" if a.format == "auto" else "given"
        print(f"format: {out['format']} ({chosen})")
        print(f"dataset {out['dataset']}:v{out['version']}: {out['num_images']} images, {len(out['classes'])} "
              f"{task_of(out).class_word}, "
              f"splits {out['splits']}")
        _show_issues(out["issues"])
    return out


def cmd_dataset_inspect(a: argparse.Namespace) -> dict:
    out = api.inspect_dataset(a.ref, home=a.home)
    if not a.json:
        print(f"{out['dataset']}:v{out['version']} ({out['format']}): {out['num_images']} images, splits {out['splits']}")
        print("\n".join(task_of(out).stats_lines(out["stats"])))
        _show_issues(out["issues"])
    return out


def cmd_dataset_list(a: argparse.Namespace) -> dict:
    rows = api.list_datasets(home=a.home)
    if not a.json:
        _print_table(rows, ["dataset", "version", "task", "format", "num_images", "classes"])
    return {"datasets": rows}


def cmd_dataset_export(a: argparse.Namespace) -> dict:
    out = api.export_dataset(a.ref, a.dest, fmt=a.format, home=a.home)
    if not a.json:
        print(f"wrote {out['dataset']} as {out['format']} to {out['path']}")
    return out


def sample_writers() -> dict:
    """Sample-data writers of every task, by kind."""
    return {kind: write for task in all_tasks() for kind, write in task.samples().items()}


def cmd_dataset_sample(a: argparse.Namespace) -> dict:
    from pathlib import Path

    dest = Path(a.dest)
    if dest.exists() and any(dest.iterdir()):
        raise FactoryError(f"{dest} is not empty.", fix="Give a new or empty folder.", code="CONFIG_ERROR")
    options = {"images": a.images, "classes": a.classes, "per_class": a.per_class, "seed": a.seed, "layout": a.layout}
    sample_writers()[a.kind](dest, **{k: v for k, v in options.items() if v is not None})
    files = sum(1 for p in dest.rglob("*") if p.is_file())
    if not a.json:
        print(f"wrote {files} files to {dest}")
    return {"path": str(dest), "kind": a.kind, "files": files}


def _train_config(a: argparse.Namespace) -> dict:
    return {"dataset": a.dataset, "model": a.model, "epochs": a.epochs, "time_budget_min": a.time_budget,
            "img_size": a.img_size, "name": a.name, "batch_size": a.batch_size, "lr": a.lr, "seed": a.seed,
            "pretrained": a.pretrained, "from_model": a.from_model, "device": a.device, "devices": a.devices,
            "patience": a.patience,
            "hflip": a.hflip, "embedding_dim": a.embedding_dim, "loss": a.loss, "dict_file": a.dict_file}


def cmd_train(a: argparse.Namespace) -> dict:
    bar = TrainingBar(not a.quiet)
    if a.resume:
        out = api.resume_training(a.resume, home=a.home, on_event=bar, executor=a.executor)
    else:
        if not a.dataset:
            raise FactoryError("No dataset given.", fix="Pass --dataset NAME, or --resume RUN to continue a run.",
                               code="CONFIG_ERROR")
        out = api.train({k: v for k, v in _train_config(a).items() if v is not None}, home=a.home, on_event=bar,
                        executor=a.executor)
    if not a.json:
        m = out["metrics"]
        score = "test " + task_of(out).score_text(m)
        print(f"model {out['model']}:v{out['version']} (run {out['run']}): {score}, "
              f"{m['epochs_run']} epochs in {m['train_time_s']} s")
        for warning in out.get("warnings", []) if a.quiet else []:  # the bar printed them already
            print(f"warning [{warning['code']}]: {warning['message']} Fix: {warning['fix']}")
    return out


def cmd_eval(a: argparse.Namespace) -> dict:
    out = api.evaluate(a.ref, split=a.split, dataset=a.dataset, home=a.home, save_predictions=a.save_predictions,
                       gallery=a.gallery, queries=a.queries)
    if not a.json:
        print("\n".join(TASKS.get(out["task"]).eval_lines(out)))
    return out


def cmd_models_list(a: argparse.Namespace) -> dict:
    rows = api.list_models(home=a.home)
    if not a.json:
        _print_table([{**r, "score": _score(task_of(r), r["metrics"])} for r in rows],
                     ["ref", "task", "arch", "dataset", "score", "run"])
    return {"models": rows}


def _score(task, metrics: dict) -> str:
    value = metrics.get(task.metric)
    return f"{value:.4f} {task.metric_label}" if isinstance(value, (int, float)) else "–"


def cmd_models_show(a: argparse.Namespace) -> dict:
    out = api.show_model(a.ref, home=a.home)
    if not a.json:
        print(json.dumps(out, indent=2, default=str))
    return out


def cmd_models_delete(a: argparse.Namespace) -> dict:
    out = api.delete_model(a.ref, home=a.home)
    if not a.json:
        print(f"deleted {out['deleted']}")
    return out


def cmd_runs_list(a: argparse.Namespace) -> dict:
    rows = api.list_runs(home=a.home)
    if not a.json:
        _print_table([{**r, "epoch": (r["progress"] or {}).get("epoch", "")} for r in rows],
                     ["run", "status", "dataset", "model", "epoch"])
    return {"runs": rows}


def cmd_catalog_copy(a: argparse.Namespace) -> dict:
    out = api.copy_catalog(a.to, home=a.home)
    if not a.json:
        print(f"copied {sum(out['rows'].values())} rows of {len(out['rows'])} tables from {out['from']} to {out['to']}")
        print(f"next: {out['next']}")
    return out


def cmd_demo(a: argparse.Namespace) -> dict:
    out = api.demo(home=a.home, model=a.model, time_budget_min=a.time_budget, epochs=a.epochs,
                   on_event=TrainingBar(not a.quiet), progress=StageBars(not a.quiet))
    if not a.json:
        d, t, e = out["dataset"], out["train"], out["eval"]
        print(f"dataset {d['dataset']}:v{d['version']}: {d['num_images']} images, {len(d['classes'])} classes")
        print(f"model {t['model']}:v{t['version']}: test accuracy {e['metrics']['accuracy']:.4f}, "
              f"macro F1 {e['metrics']['f1_macro']:.4f}")
        for key, path in e["files"].items():
            print(f"{key}: {path}")
    return out


# -- parser --------------------------------------------------------------------------------------
def _dataset_parsers(sub: Any, add: Callable) -> None:
    ds = sub.add_parser("dataset", help="import and inspect datasets").add_subparsers(dest="action", required=True)
    sp = add(ds, "import", cmd_dataset_import, "import a folder or .zip as a new dataset version")
    sp.add_argument("path")
    sp.add_argument("--name", required=True)
    sp.add_argument("--task", default=DEFAULT_TASK, help=f"{', '.join(TASKS.names())}, or auto (the first task whose "
                                                          "layout claims the data, the most specific layouts first)")
    sp.add_argument("--format", default="auto", help="auto (tries the task's own formats), or one of: " + "; ".join(
        f"{t.name}: {', '.join(t.format_names())}" for t in all_tasks()))
    sp.add_argument("--seed", type=int, default=0, help="seed of the stratified split")
    add(ds, "inspect", cmd_dataset_inspect, "statistics and issues of a dataset").add_argument("ref")
    add(ds, "list", cmd_dataset_list, "all datasets and versions")
    exports = {f: t.name for t in all_tasks() for f in t.export_formats}
    sp = add(ds, "export", cmd_dataset_export, "write a dataset version in another layout, splits kept ("
             + "; ".join(f"{t.name}: {', '.join(t.export_formats)}" for t in all_tasks() if t.export_formats) + ")")
    sp.add_argument("ref")
    sp.add_argument("dest")
    sp.add_argument("--format", required=True, choices=sorted(exports))
    sp = add(ds, "sample", cmd_dataset_sample, "write offline sample data to a folder (to try imports)")
    sp.add_argument("kind", choices=sorted(sample_writers()),
                    help="digits: scikit-learn's handwriting; shapes: synthetic classes; detection: synthetic scenes with "
                         "boxes; identities: synthetic objects, a folder of photos each (retrieval)")
    sp.add_argument("dest")
    sp.add_argument("--layout",
                    choices=["folder_per_class", "split_folders", "kuplus_txfl", "csv", "coco", "yolo", "voc", "kuplus_txkt",
                             "modelarts_manifest", "csv_coordinates", "folder_per_identity", "ppshitu_list", "tao"],
                    help="shapes: the first four (default folder_per_class); detection: coco (default), yolo, voc, "
                         "kuplus_txkt, modelarts_manifest, csv_coordinates; identities: folder_per_identity (default), "
                         "ppshitu_list, tao")
    sp.add_argument("--images", type=int, help="detection only (default 60)")
    sp.add_argument("--classes", type=int, help="shapes (1-6, default 3) and identities (default 40)")
    sp.add_argument("--per-class", type=int, help="shapes (default 30) and identities (images each, default 8)")
    sp.add_argument("--seed", type=int, help="shapes and identities (default 0)")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON object as the last line of stdout")
    common.add_argument("--home", help="workspace folder (default $EDGEFACTORY_HOME or ./workspace)")
    common.add_argument("--quiet", action="store_true", help="no progress bars")
    common.add_argument("--verbose", action="store_true",
                        help="show the libraries' own output (converters, quantizers) in the terminal; by default it "
                             "goes to the workspace's logs/ folder")
    p = argparse.ArgumentParser(prog="edgefactory", description="Local-first model factory for edge devices.")
    p.add_argument("--version", action="version", version=f"edgefactory {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def add(parent: Any, name: str, fn: Callable, help_: str) -> argparse.ArgumentParser:
        sp = parent.add_parser(name, parents=[common], help=help_, description=help_)
        sp.set_defaults(fn=fn)
        return sp

    _dataset_parsers(sub, add)

    sp = add(sub, "train", cmd_train, "train a model on a dataset")
    sp.add_argument("--dataset")
    sp.add_argument("--model", help="architecture (default: the task's; mobilenet_v3_small for images, "
                                              "ppocrv4_mobile for OCR)")
    sp.add_argument("--epochs", type=int)
    sp.add_argument("--time-budget", type=float, help="minutes; stops when spent (like PAI's auto mode)")
    sp.add_argument("--img-size", type=int, help="input side in px (default: from the images and objects)")
    sp.add_argument("--name", help="model name (default <dataset>-<model>)")
    sp.add_argument("--batch-size", type=int, help="default: from the number of training images")
    sp.add_argument("--lr", type=float, help="default: from the batch size and the start (scratch or pretrained)")
    sp.add_argument("--patience", type=int, help="epochs without improvement before stopping (default: 15, or off "
                                                  "with --time-budget)")
    sp.add_argument("--seed", type=int)
    sp.add_argument("--pretrained", choices=list(dict.fromkeys(s for t in all_tasks() for s in t.pretrained_sources)),
                    help="start from ImageNet weights found on this machine, from PP-OCRv4's recognizer (OCR: "
                         "ppocrv4), or from scratch (default: decided from the data and the weights at hand; the run's "
                         "config.json says why)")
    sp.add_argument("--hflip", type=float, metavar="P",
                    help="probability of a horizontal flip in training; 0 where orientation matters (default: decided "
                         "from the data)")
    sp.add_argument("--from", dest="from_model", help="continue from an earlier model version NAME:vN")
    sp.add_argument("--device", choices=["auto", "cpu", "cuda"])
    sp.add_argument("--devices", type=int, metavar="N",
                    help="data-parallel processes on this machine (torch.distributed: one per GPU with NCCL, or CPU "
                         "processes with gloo sharing the cores); each takes its share of every batch (default 1)")
    sp.add_argument("--embedding-dim", type=int, help="retrieval: embedding width (default 256)")
    sp.add_argument("--loss", help="retrieval: multi_similarity (default), arcface, subcenter_arcface or cosface")
    sp.add_argument("--dict", dest="dict_file", metavar="FILE",
                    help="ocr: a character dictionary, one character per line (as PaddleOCR's ppocr_keys); its characters "
                         "join the data's, and rendered text teaches those the data lacks")
    sp.add_argument("--resume", metavar="RUN", help="continue an interrupted run from its last checkpoint")
    add_executor_option(sp)

    sp = add(sub, "eval", cmd_eval, "evaluate a model version")
    sp.add_argument("ref")
    sp.add_argument("--split", default="test")
    sp.add_argument("--dataset", help="evaluate on another dataset NAME[:vN] with the same classes")
    sp.add_argument("--save-predictions", metavar="FILE", help="detection: write a COCO results list (JSON); "
                                                               "retrieval: each query's ranked labels (JSON)")
    sp.add_argument("--gallery", metavar="PATH", help="retrieval: a gallery folder (one folder per identity) that "
                                                      "--queries are searched against")
    sp.add_argument("--queries", metavar="PATH", help="retrieval: a folder of query images, one folder per identity")

    ms = sub.add_parser("models", help="the model registry").add_subparsers(dest="action", required=True)
    add(ms, "list", cmd_models_list, "all model versions")
    add(ms, "show", cmd_models_show, "metadata of a model version").add_argument("ref")
    add(ms, "delete", cmd_models_delete, "delete a model version").add_argument("ref")

    rs = sub.add_parser("runs", help="training runs").add_subparsers(dest="action", required=True)
    add(rs, "list", cmd_runs_list, "all runs with status and progress")

    cs = sub.add_parser("catalog", help="the workspace's catalog database").add_subparsers(dest="action", required=True)
    add(cs, "copy", cmd_catalog_copy, "copy the workspace's catalog.sqlite into an empty PostgreSQL database, to "
                                      "share the workspace between machines").add_argument(
        "--to", required=True, metavar="URL", help="postgresql://USER:PASSWORD@HOST:5432/DATABASE (an empty database)")

    for plugin in entry_points(group="edgefactory.cli"):  # commands of the packages above factory/
        plugin.load()(sub, add)

    sp = add(sub, "demo", cmd_demo, "offline demo: digits -> train -> evaluate")
    sp.add_argument("--model", default="mobilenet_v3_small")
    sp.add_argument("--time-budget", type=float, default=4.0)
    sp.add_argument("--epochs", type=int)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "verbose", False):
        os.environ["EDGEFACTORY_VERBOSE"] = "1"  # read by the child processes (factory.isolated) too
    try:
        out = args.fn(args)
    except FactoryError as exc:
        print(f"error [{exc.code}]: {exc}", file=sys.stderr)
        if getattr(exc, "details", None) and isinstance(exc.details, list):
            for issue in exc.details:
                if isinstance(issue, dict) and "code" in issue and issue["code"] != exc.code:
                    files = f": {', '.join(issue['files'][:5])}" if issue.get("files") else ""
                    print(f"  also {issue['severity']} {issue['code']}{files}", file=sys.stderr)
        if args.json:
            print(json.dumps({"error": exc.to_dict()}, default=str))
        return 1
    except KeyboardInterrupt:
        print("interrupted: nothing half-written was kept. A training run keeps its last checkpoint: "
              "`edgefactory runs list` shows it, `edgefactory train --resume RUN` continues it", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
