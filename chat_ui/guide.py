"""The offline guide: a deterministic assistant for the flow data -> devices and budget -> recipe
-> training -> evaluation -> export -> report -> deployment. It understands free text through
chat_ui.parse, keeps one state per conversation (JSON, persisted by the caller), calls only the
LangChain tools, and asks before anything that writes, trains, exports or deploys."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool

from chat_ui.parse import NOT_INSTALLED, Parsed, parse
from chat_ui.words import (CAPABILITIES, GALLERY_PROMPT, asked_language, defaults_sentence, describe_dataset,
                           device_name, explain_error, exports_table, joined, metric_name, progress_text)
from factory.errors import FactoryError
from factory.i18n import speaking, tr
from factory.tasks import DEFAULT_TASK, TASKS, task_of
from targets.devices import DeviceProfile

SERVER_TARGET = "openvino"
EXPORTABLE_HERE = ("openvino", "onnxruntime", "tflite", "executorch", "ncnn", "web", "coreml", "tensorrt")

@dataclass
class Reply:
    text: str
    images: list[str] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)
    background: dict | None = None  # long work for the caller to run in a thread (Guide.run_background)
    secrets: list[str] = field(default_factory=list)  # shown once, never stored (an API key)


@dataclass
class State:
    step: str = "data"
    task: str | None = None  # None until the user or the data says (classification or detection)
    dataset: str | None = None
    dataset_summary: dict | None = None
    devices: list[str] = field(default_factory=list)
    latency_ms: float | None = None
    size_mb: float | None = None
    max_drop: float = 1.0
    recipe: dict | None = None
    hflip: float | None = None  # the user's word on mirrored training copies; None: the resolver decides
    run_id: str | None = None
    model: str | None = None
    evaluation: dict | None = None
    exports: list[dict] = field(default_factory=list)
    refused: list[dict] = field(default_factory=list)
    report: dict | None = None
    deployment: dict | None = None
    index: str | None = None  # the gallery index of a retrieval model, once built
    pending: dict | None = None  # {"tool", "args", "then"}: waiting for the user's yes
    notice: str | None = None  # the last long result, repeated when the user asks again
    history: list[str] = field(default_factory=list)
    lang: str | None = None  # "en" / "zh": the user's language (the last message's, the page's switch or browser)

    @classmethod
    def from_json(cls, text: str | None) -> State:
        return cls(**json.loads(text)) if text else cls()

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str)


class Guide:
    def __init__(self, tools: dict[str, BaseTool], profiles: dict[str, DeviceProfile], base_url: str = "http://127.0.0.1:8000"):
        self.tools, self.profiles, self.base_url = tools, profiles, base_url.rstrip("/")

    # -- entry point -----------------------------------------------------------------------------
    def reply(self, state: State, message: str, files: list[str] | None = None) -> Reply:
        """One turn, in the conversation's language (the caller sets `state.lang`): never raises; errors come back
        as plain words with their fix."""
        with speaking(state.lang):
            try:
                return self._turn(state, message or "", files or [])
            except FactoryError as exc:
                state.pending = None
                return Reply(explain_error(exc))
            except Exception as exc:  # a bug must not end the conversation: say so plainly
                state.pending = None
                return Reply(tr("Something went wrong on my side ({error}). Please try again, or say *start over*.",
                                error=f"{type(exc).__name__}: {str(exc)[:200]}"))

    def _call(self, tool: str, /, **args: Any) -> Any:
        return self.tools[tool].invoke(args)

    def _turn(self, state: State, message: str, files: list[str]) -> Reply:
        datasets = [d["dataset"] for d in self._call("list_datasets")]
        models = self._call("list_models")
        p = parse(message, self.profiles, datasets, sorted({m["model"] for m in models}))
        if "restart" in p.intents:
            state.__dict__.update(State(lang=state.lang).__dict__)
            return Reply(tr("Starting over.") + " " + tr(CAPABILITIES))
        if "stop" in p.intents:
            return self._stop(state)
        if "back" in p.intents:
            return self._back(state)
        if "help" in p.intents:
            return Reply(tr(CAPABILITIES))
        if asked_language(p.text) and not (p.devices or p.dataset or p.task or p.model_ref or files):
            return self._language_switched(state)
        _keep_slots(state, p)  # a device or budget said at any step is kept for the step that needs it
        if "continue" in p.intents and (p.model_ref or state.model) and state.step != "training" and not files:
            return self._continue(state, p, models)
        if p.model_ref and p.intents & {"deploy", "report"} and not files:
            return self._pick_up(state, p, models)
        if files and (state.step == "gallery" or state.step == "done" and state.index):
            return self._gallery_upload(state, files, p)
        if files:
            return self._upload(state, files, p)
        if state.pending and ("confirm" in p.intents or "deny" in p.intents):
            return self._confirmed(state) if "confirm" in p.intents else self._declined(state)
        if "status" in p.intents:
            return self._status(state)
        if "question" in p.intents and not (p.devices or p.dataset or p.task):
            return self._answer(p.text)
        return self._advance(state, p)

    # -- the flow --------------------------------------------------------------------------------
    def _advance(self, state: State, p: Parsed) -> Reply:
        if p.task and p.task not in TASKS:
            named = tr(NOT_INSTALLED.get(p.task, (p.task,))[0])
            trained = [tr(TASKS.get(n).described) or n for n in TASKS.names()]
            return Reply(tr("{task} is not supported yet: today I train {tasks}. Shall we build one of those?",
                            task=named, tasks=joined(trained)))
        if p.task and state.step == "data":
            state.task = p.task
        if state.step == "data":
            return self._data(state, p)
        if state.step == "target":
            return self._target(state, p)
        if state.step == "recipe":
            return self._recipe(state, p)
        if state.step == "training":
            return self._status(state)
        if state.step == "gallery":
            return self._gallery(state, p)
        if state.step in ("export", "deploy"):
            return self._status(state) if state.pending is None else Reply(
                (f"{state.notice}\n\n" if state.notice and state.step == "deploy" else "")
                + question(state.pending["summary"]))
        return Reply(tr("Everything is done: the model is deployed. Ask me anything, say *start over* for a new model, "
                        "or *go back* to change the targets."))

    def _data(self, state: State, p: Parsed) -> Reply:
        chosen = TASKS.get(state.task) if state.task else None
        demo = (chosen.demo if chosen else None) or TASKS.get(DEFAULT_TASK).demo
        if "demo" in p.intents and demo:
            return self._ask(state, "import_demo_data", {"name": demo["name"], "kind": demo["kind"]}, "then_data",
                             tr(demo["summary"]))
        if p.dataset:
            return self._use_dataset(state, self._call("inspect_dataset", ref=p.dataset))
        names = ", ".join(f"**{d}**" for d in [d["dataset"] for d in self._call("list_datasets")]) or tr("none yet")
        prompt = chosen.upload_prompt(names) if chosen else None
        if prompt:
            return Reply(prompt)
        return Reply(tr("First, the data. Upload a .zip of images (one folder per class for a classifier; VOC, COCO or "
                        "YOLO boxes for a detector), say **demo** for handwritten digits, or name an imported dataset "
                        "(imported: {names}).", names=names))

    def _upload(self, state: State, files: list[str], p: Parsed) -> Reply:
        path = Path(files[0])
        name = p.dataset or _dataset_name(path)
        if len(files) > 1 or path.suffix.lower() != ".zip" and not path.is_dir():
            return Reply(tr("Please upload one .zip file holding your images (for example one folder per class). "
                            "I got {count} file(s): {names}.", count=len(files),
                            names=", ".join(Path(f).name for f in files[:5])))
        state.step = "data"
        task = state.task or "auto"
        kind = tr(TASKS.get(task).upload_hint) if task != "auto" else ""
        return self._ask(state, "import_dataset", {"path": str(path), "name": name, "task": task}, "then_data",
                         tr("I will check **{file}** and import it as dataset **{name}**{kind}.", file=path.name,
                            name=name, kind=kind))

    def _use_dataset(self, state: State, summary: dict) -> Reply:
        state.dataset = f"{summary['dataset']}:v{summary['version']}"
        state.dataset_summary = summary
        state.task = task_of(summary).name
        self._goto(state, "target")
        if state.devices:  # named already ("... on a Raspberry Pi, under 30 ms"): on to the recipe
            then = self._target(state, Parsed(""))
            return Reply(describe_dataset(summary) + "\n\n" + then.text, images=then.images, links=then.links)
        return Reply(describe_dataset(summary) + "\n\n" + tr(
            "Where will the model run? For example *a Raspberry Pi 4 under 30 ms*, *Android phones*, *an Intel NUC*, "
            "*a Jetson*; and how much {metric} may compression cost (*at most 1 point worse*)?",
            metric=metric_name(state.task)))

    def _target(self, state: State, p: Parsed) -> Reply:
        if not state.devices:
            known = ", ".join(sorted({device_name(prof) for prof in self.profiles.values()}))
            return Reply(tr("I did not recognise a device in *{text}*. I know: {known}. Which one is closest? (You can "
                            "add your own device profile to devices.yaml in the workspace.)", text=p.text, known=known))
        if state.max_drop > 20:
            return Reply(tr("A budget of {points:g} points would let compression ruin the model. Please give at most 20 "
                            "points (1 is typical).", points=state.max_drop))
        self._goto(state, "recipe")
        return self._propose(state, p)

    def _propose(self, state: State, p: Parsed) -> Reply:
        stats = (state.dataset_summary or {}).get("stats", {})
        recipe = propose_recipe(stats, [self.profiles[d] for d in state.devices], state.latency_ms, state.size_mb,
                                task=state.task or DEFAULT_TASK)
        if p.model:
            recipe.update(model=p.model, reason=recipe["reason"] + " " + tr("You asked for {model}.", model=p.model))
        if p.minutes:
            recipe["time_budget_min"] = p.minutes
        if p.epochs:
            recipe["epochs"] = p.epochs
        # the rest (input size, batch, learning rate, flips, pretrained start) comes from the factory's own
        # resolver, the one the CLI, the API and the demo use, with its reasons
        if p.hflip is not None:
            state.hflip = p.hflip
        asked = {"dataset": state.dataset, "model": recipe["model"], "img_size": p.img_size, "hflip": state.hflip,
                 "time_budget_min": recipe.get("time_budget_min"), "epochs": recipe.get("epochs")}
        resolved = self._call("resolve_training", options={k: v for k, v in asked.items() if v is not None})
        recipe.update(img_size=resolved["img_size"], hflip=resolved["hflip"],
                      reason=recipe["reason"] + " " + defaults_sentence(resolved) +
                      (" " + tr("Say *flips on* or *flips off* if mirrored pictures are (or are not) still valid examples.")
                       if state.hflip is None else ""))
        if p.img_size:
            recipe["reason"] += " " + tr("You asked for {size} px.", size=p.img_size)
        impossible = impossible_budget(state, recipe)
        if impossible:
            return Reply(impossible)
        state.recipe = recipe
        devices = ", ".join(device_name(self.profiles[d]) for d in state.devices)
        budget = [tr("{metric} at most {points:g} point(s) below FP32", metric=metric_name(state.task), points=state.max_drop)]
        budget += [tr("under {ms:g} ms per image", ms=state.latency_ms)] if state.latency_ms else []
        budget += [tr("under {mb:g} MB", mb=state.size_mb)] if state.size_mb else []
        limit = [tr("{minutes:g} minutes", minutes=recipe["time_budget_min"])] if recipe.get("time_budget_min") else []
        limit += [tr("{epochs} epochs", epochs=recipe["epochs"])] if recipe.get("epochs") else []
        return self._ask(state, "start_training", training_args(state), "then_training", tr(
            "For **{devices}** ({budget}) I propose **{model}** at **{size} px**, trained for {limit}.\n\n*Why:* {why}"
            "\n\nTargets after training: {targets}.", devices=devices, budget=tr("; ").join(budget), model=recipe["model"],
            size=recipe["img_size"], limit=tr(", ").join(limit), why=recipe["reason"], targets=", ".join(self.export_targets(state))))

    def _recipe(self, state: State, p: Parsed) -> Reply:
        if p.devices or p.latency_ms or p.size_mb or p.max_drop is not None:
            return self._target(state, p)
        return self._propose(state, p)

    # -- confirmations ---------------------------------------------------------------------------
    def _ask(self, state: State, tool: str, args: dict, then: str, summary: str) -> Reply:
        state.pending = {"tool": tool, "args": args, "then": then, "summary": summary}
        return Reply(question(summary))

    def _declined(self, state: State) -> Reply:
        state.pending = None
        return Reply(tr("Fine, nothing was changed. Tell me what to do differently, or say *go back*."))

    def _confirmed(self, state: State) -> Reply:
        pending, state.pending = state.pending, None
        if pending["tool"] == "__exports__":
            return self._run_exports(state, pending["args"])
        if pending["tool"] == "__deploy__":
            return self._deploy(state)
        result = self._call(pending["tool"], **pending["args"])
        return getattr(self, f"_{pending['then']}")(state, result)

    def _then_generic(self, state: State, result: Any) -> Reply:
        return Reply(tr("Done:") + "\n\n```json\n" + json.dumps(result, default=str, indent=1)[:1500] + "\n```")

    def _then_data(self, state: State, summary: dict) -> Reply:
        return self._use_dataset(state, summary)

    def _then_training(self, state: State, result: dict) -> Reply:
        state.run_id = result["run_id"]
        self._goto(state, "training")
        return Reply(tr("Training started (run `{run}`). It runs in the background: ask *how is it going?* any time, "
                        "or say *stop*. The Training tab shows the curves.", run=state.run_id))

    # -- training --------------------------------------------------------------------------------
    def _status(self, state: State) -> Reply:
        if state.step == "training" and state.run_id:
            run = self._call("training_status", run_id=state.run_id)
            if run["status"] == "completed":
                return self._trained(state, run["result"])
            if run["status"] in ("failed", "stopped", "interrupted"):
                state.step = "recipe"
                ended = tr("Training {status}", status=tr(run["status"])) + (f": {run['error']}" if run.get("error") else "")
                return Reply(ended + tr(". Say *yes* to train again with the same recipe, or change it.")) \
                    if self._reask(state) else Reply(tr("Training ended."))
            return Reply(progress_text(run))
        if state.step in ("export", "deploy") and state.pending is not None:
            return self._advance(state, parse("", self.profiles))
        return Reply(tr("Nothing is running right now.") + " " + self._advance_hint(state))

    def _reask(self, state: State) -> bool:
        if state.recipe and state.dataset:
            state.pending = {"tool": "start_training", "then": "then_training", "summary": tr("Train again."),
                             "args": training_args(state)}
            return True
        return False

    def _stop(self, state: State) -> Reply:
        if state.step == "training" and state.run_id:
            run = self._call("training_status", run_id=state.run_id)
            if run["status"] == "running":
                self._call("stop_training", run_id=state.run_id)
                return Reply(tr("Stopping after the current step. The last checkpoint is kept; say *how is it going?* "
                                "to see it end."))
        return Reply(tr("Nothing is running, so there is nothing to stop.") + " " + self._advance_hint(state))

    def _trained(self, state: State, result: dict) -> Reply:
        state.model = f"{result['model']}:v{result['version']}"
        evaluation = self._call("evaluate", model=state.model)
        metrics = evaluation["metrics"]
        task = task_of(evaluation)
        state.evaluation = {"accuracy": metrics.get(task.metric), "files": evaluation.get("files", {}),
                            "macro_f1": metrics.get("f1_macro"), "map": metrics.get("map")}
        self._goto(state, "export")
        targets = self.export_targets(state)
        text = task.evaluation_sentence(state.model, evaluation)
        ask = self._ask(state, "__exports__", {"targets": targets}, "", tr(
            "Next I will compress and export it for {targets} (INT8 where it keeps within {points:g} point(s), else "
            "FP32), then measure everything in a benchmark report.", targets=", ".join(targets), points=state.max_drop))
        images = [p for k, p in state.evaluation["files"].items() if k.endswith("_png")]
        return Reply(text + "\n\n" + ask.text, images=images)

    # -- export, report, deploy --------------------------------------------------------------------
    def export_targets(self, state: State) -> list[str]:
        wanted = [t for d in state.devices for t in self.profiles[d].targets[:1]]
        return list(dict.fromkeys([t for t in wanted if t in EXPORTABLE_HERE] + ["web", SERVER_TARGET]))

    def _run_exports(self, state: State, args: dict) -> Reply:
        self._goto(state, "exporting")
        return Reply(tr("Exporting to {targets} and measuring: this takes a minute or two. I will post the results "
                        "here; ask *how is it going?* meanwhile.", targets=", ".join(args["targets"])),
                     background={"model": state.model, "targets": args["targets"], "max_drop": state.max_drop,
                                 "lang": state.lang})

    def run_background(self, job: dict, log) -> dict:
        """The exports (INT8, else FP32, per target) and the benchmark report; runs in a thread, touches no state."""
        with speaking(job.get("lang")):
            return self._exports_and_report(job, log)

    def _exports_and_report(self, job: dict, log) -> dict:
        exports, refused = [], []
        for target in job["targets"]:
            for precision in ("int8", "fp32"):
                try:
                    out = self._call("export", model=job["model"], target=target, precision=precision, max_drop=job["max_drop"])
                    exports.append({"target": target, "precision": precision, "size_mb": out["size_mb"],
                                    "accuracy": out["accuracy"], "drop": out["accuracy_drop_points"]})
                    log(tr("exported {target} {precision}", target=target, precision=precision))
                    break
                except FactoryError as exc:
                    refused.append({"target": target, "precision": precision, "why": exc.message})
                    log(tr("{target} {precision} refused", target=target, precision=precision))
        log(tr("measuring everything for the benchmark report"))
        report = self._call("benchmark_report", model=job["model"])
        return {"exports": exports, "refused": refused, "report": {k: report[k] for k in ("json", "html", "warnings", "measured_rows")},
                "results": report["results"]}

    def background_done(self, state: State, result: dict) -> Reply:
        with speaking(state.lang):
            return self._exported(state, result)

    def _exported(self, state: State, result: dict) -> Reply:
        state.exports, state.refused, state.report = result["exports"], result["refused"], result["report"]
        self._goto(state, "deploy")
        table = exports_table(state.exports, result["results"], metric_name(state.task))
        refused = "".join("\n- " + tr("{target} {precision} not shipped: {why}", **r) for r in state.refused)
        warnings = "".join(f"\n- ⚠ {w['message']}" for w in state.report["warnings"])
        url = self._report_url(state.model)
        ask = self._ask(state, "__deploy__", {}, "", tr("Shall I deploy it here (endpoint + API key) and make the QR "
                                                        "code for your phone?"))
        text = (tr("Exports done:") + f"\n\n{table}" + ("\n\n" + tr("In plain words:") + refused if refused else "")
                + "\n\n" + self._report_line(url, state.report["measured_rows"]) + warnings)
        state.notice = text
        return Reply(f"{text}\n\n{ask.text}", links={"report": url})

    def _deploy(self, state: State) -> Reply:
        dep = self._call("deploy", model=state.model)
        key = self._call("create_api_key", name=f"chat-{dep['name']}", models=[dep["name"]])
        link = self._call("preview_link", model=state.model)  # the phone listener of the server, never the API's URL
        state.deployment = {**dep, "key_id": key["id"], "qr": link["png"], "url": link["url"]}
        gallery = TASKS.get(state.task or DEFAULT_TASK).uses_gallery
        self._goto(state, "gallery" if gallery else "done")
        endpoint = f"{self.base_url}{dep['endpoint']}"
        curl = (f"curl -X POST {endpoint} \\\n  -H 'Authorization: Bearer {key['key']}' \\\n  -F image=@photo.jpg")
        return Reply(tr("Deployed **{name}:v{version}** ({target} {precision}).\n\nEndpoint: `{endpoint}` (PAI-EAS "
                        "route: `{pai}`)\n\nAPI key (shown once, keep it): `{key}`", name=dep["name"],
                        version=dep["version"], target=dep["target"], precision=dep["precision"], endpoint=endpoint,
                        pai=f"{self.base_url}{dep['pai_endpoint']}", key=key["key"])
                     + f"\n\n```\n{curl}\n```\n\n" + tr("Scan the QR code to run the model on your phone: {url}",
                                                          url=link["url"])
                     + ("\n\n" + tr("Note: {warning}", warning=link["warning"]) if link.get("warning") else "")
                     + ("\n\n" + tr(GALLERY_PROMPT, dataset=state.dataset) if gallery else ""),
                     images=[link["png"]], links={"qr": link["url"], "endpoint": endpoint}, secrets=[key["key"]])

    # -- the gallery of a model that searches one (retrieval) ---------------------------------------
    def _gallery(self, state: State, p: Parsed) -> Reply:
        if p.dataset or re.search(r"\bdataset\b|数据集", p.text.lower()):
            return self._ask_gallery(state, p.dataset or state.dataset)
        return Reply(tr(GALLERY_PROMPT, dataset=state.dataset))

    def _ask_gallery(self, state: State, source: str) -> Reply:
        name = f"{state.model.split(':')[0]}-gallery"
        return self._ask(state, "build_gallery_index", {"model": state.model, "path": source, "name": name},
                         "then_gallery", tr("I will embed the photos of **{source}** with **{model}** and index them "
                                            "as gallery **{name}**.", source=Path(source).name, model=state.model, name=name))

    def _gallery_upload(self, state: State, files: list[str], p: Parsed) -> Reply:
        if len(files) > 1:
            return Reply(tr("Please upload one .zip of photos (one folder per identity)."))
        if state.step == "gallery":
            return self._ask_gallery(state, files[0])
        return self._ask(state, "add_to_gallery", {"index": state.index, "path": files[0]}, "then_gallery",
                         tr("I will add the photos of **{source}** to gallery **{index}** (its next version; the model "
                            "is not retrained).", source=Path(files[0]).name, index=state.index))

    def _then_gallery(self, state: State, out: dict) -> Reply:
        first = state.index is None
        state.index = out["index"]
        self._goto(state, "done")
        params = ", ".join(f"{k} {v}" for k, v in (out["params"] or {}).items()) or tr("exact search")
        text = tr("Gallery **{index}:v{version}**: {items} photos, {kind} index ({params}; Recall@10 against exact "
                  "search {recall:.3f}).", index=out["index"], version=out["version"], items=out["items"], kind=out["kind"],
                  params=params, recall=out["recall_at_10_vs_exact"])
        if not first:
            return Reply(text + " " + tr("Upload more photos any time to grow it."))
        key = self._call("create_api_key", name=f"chat-{out['index']}", models=[f"index:{out['index']}:write"])
        url = f"{self.base_url}/v1/indexes/{out['index']}/search"
        return Reply(f"{text}\n\n" + tr("Search it with a photo (API key for this gallery, shown once: `{key}`):",
                                        key=key["key"])
                     + f"\n\n```\ncurl -X POST {url} \\\n  -H 'Authorization: Bearer {key['key']}' -F image=@photo.jpg\n```"
                     "\n\n" + tr("To add new products, parts or people, upload a .zip of their photos (one folder "
                                  "each): the model is not retrained."), secrets=[key["key"]])

    # -- any model of the workspace, whoever made it ---------------------------------------------------
    def _pick_up(self, state: State, p: Parsed, models: list[dict]) -> Reply:
        """"deploy NAME", "show me the report of NAME[:vN]": the conversation takes that model up."""
        row = _model_row(p.model_ref, models)
        if row is None:
            return Reply(tr("There is no **{model}** in this workspace. The Models & Reports tab lists them.",
                            model=p.model_ref))
        state.model, state.task, state.pending = row["ref"], row["task"], None
        state.evaluation = {"accuracy": _row_score(row), "files": {}}
        if "deploy" in p.intents:
            self._goto(state, "deploy")
            return self._ask(state, "__deploy__", {}, "", tr("I will deploy **{model}** here (endpoint + API key) and "
                                                             "make the QR code for your phone.", model=row["ref"]))
        return self._report_of(state, row)

    def _continue(self, state: State, p: Parsed, models: list[dict]) -> Reply:
        """"continue training it (or NAME) for 2 more minutes": a new version of that model from its weights."""
        ref = p.model_ref or state.model
        row = _model_row(ref, models)
        if row is None:
            return Reply(tr("There is no **{model}** in this workspace. The Models & Reports tab lists them.", model=ref))
        minutes = p.minutes or 5.0
        state.model, state.task, state.dataset, state.pending = row["ref"], row["task"], row["dataset"], None
        state.evaluation = None  # the next version's comes when it is trained
        return self._ask(state, "start_training", {"dataset": row["dataset"], "from_model": row["ref"], "name": row["model"],
                                                   "time_budget_min": minutes}, "then_training",
                         tr("I will continue training **{model}** on **{dataset}** from its weights for {minutes:g} "
                            "more minutes; the result is its next version.", model=row["ref"], dataset=row["dataset"],
                            minutes=minutes))

    def _report_of(self, state: State, row: dict) -> Reply:
        url = self._report_url(row["ref"])
        score = _row_score(row)
        headline = tr("**{model}**: test {metric} {score:.2%}.", model=row["ref"], metric=metric_name(row["task"]),
                      score=score) if score is not None else f"**{row['ref']}**."
        if self._call("report_exists", model=row["ref"]):
            return Reply(f"{headline}\n\n" + tr("**Benchmark report:** [{url}]({url})", url=url), links={"report": url})
        return self._ask(state, "benchmark_report", {"model": row["ref"]}, "then_report", headline + " " + tr(
            "It has no benchmark report yet: I will measure every artifact here and estimate the device profiles."))

    def _then_report(self, state: State, out: dict) -> Reply:
        url = self._report_url(state.model)
        return Reply(self._report_line(url, out["measured_rows"]), links={"report": url})

    @staticmethod
    def _report_line(url: str, rows: int) -> str:
        return tr("**Benchmark report:** [{url}]({url}) ({rows} measured rows, estimates for the device profiles)",
                  url=url, rows=rows)

    def _report_url(self, ref: str) -> str:
        """The benchmark report page of model version `ref` (NAME:vN) on this server."""
        name, version = ref.split(":v")
        return f"{self.base_url}/v1/models/{name}/versions/{version}/report"

    # -- navigation and questions ----------------------------------------------------------------
    def _language_switched(self, state: State) -> Reply:
        """'说中文' / 'speak English' alone: said in the new language, then where the conversation stands."""
        ack = tr("OK, I will answer in English.")
        if state.pending:
            return Reply(f"{ack}\n\n" + question(state.pending["summary"]))
        return Reply(f"{ack} " + (self._advance_hint(state) or tr(CAPABILITIES)))

    def _goto(self, state: State, step: str) -> None:
        if state.step != step:
            state.history.append(state.step)
        state.step = step

    def _back(self, state: State) -> Reply:
        state.pending = None
        if state.step == "training":
            return Reply(tr("Training is running; say *stop* first if you want to change the recipe."))
        if not state.history:
            return Reply(tr("We are at the first step.") + " " + self._advance_hint(state))
        state.step = state.history.pop()
        return Reply(tr("Back to **{step}**.", step=tr(state.step)) + " " + self._advance_hint(state))

    def _advance_hint(self, state: State) -> str:
        return tr({"data": "Upload a .zip, say *demo*, or name a dataset.",
                   "target": "Tell me where the model will run and the accuracy budget.",
                   "recipe": "Tell me the devices and budget again, or say *yes* to the proposal.",
                   "export": "Say *yes* to export, or *go back*.", "deploy": "Say *yes* to deploy.",
                   "gallery": "Upload the gallery photos (.zip, one folder per identity) or say *use the dataset*.",
                   "done": "The model is deployed."}.get(state.step, ""))

    def _answer(self, question: str) -> Reply:
        hits = self._call("search_docs", query=question)
        if not hits or hits[0]["score"] < 0.25:
            return Reply(tr("I could not find that in my docs.") + " " + tr(CAPABILITIES))
        best = hits[0]
        more = "".join("\n- " + tr("see also: *{title}*", title=h["title"]) for h in hits[1:3] if h["score"] > 0.35)
        return Reply(f"**{best['title']}**\n\n{best['text']}{more}")


# -- recipes and names (pure functions) ------------------------------------------------------------------
def _dataset_name(path: Path) -> str:
    """A dataset name the importer accepts (ASCII, starts with a letter, at most 64 characters)."""
    import re

    stem = re.sub(r"[^a-z0-9_.-]+", "-", path.stem.lower()).strip("-._")
    stem = stem if stem[:1].isalpha() else f"data-{stem}".rstrip("-")
    return stem[:64] or "dataset"


def question(summary: str) -> str:
    """A summary of what is about to happen, and the question that waits for the user's yes."""
    return f"{summary}\n\n" + tr("Shall I go ahead? (yes / no)")


def _row_score(row: dict) -> float | None:
    """The test score (the task's primary metric) of a `list_models` row."""
    return (row.get("metrics") or {}).get(TASKS.get(row["task"]).metric)


def _model_row(ref: str, models: list[dict]) -> dict | None:
    """The row of `list_models` that `ref` names: NAME:vN, or NAME's latest version; None when there is none."""
    name, _, version = ref.partition(":v")
    rows = [m for m in models if m["model"] == name and (not version or m["version"] == int(version))]
    return max(rows, key=lambda m: m["version"]) if rows else None


def _keep_slots(state: State, p: Parsed) -> None:
    """The devices and budgets a message names, kept in the conversation whatever step it is at."""
    state.devices = p.devices or state.devices
    state.latency_ms = p.latency_ms or state.latency_ms
    state.size_mb = p.size_mb or state.size_mb
    state.max_drop = p.max_drop if p.max_drop is not None else state.max_drop


def propose_recipe(stats: dict, devices: list[DeviceProfile], latency_ms: float | None, size_mb: float | None,
                   task: str = DEFAULT_TASK) -> dict:
    """Model and time budget from the data and the slowest device, with the reason (the input size and the other
    training options come from the factory's resolver: see `defaults_sentence`)."""
    return TASKS.get(task).propose(stats, devices, latency_ms, size_mb)


def training_args(state: State) -> dict:
    """The start_training call for the confirmed recipe (first proposal and "train again" alike)."""
    recipe = state.recipe
    return {"dataset": state.dataset, "model": recipe["model"], "img_size": recipe["img_size"],
            "hflip": recipe.get("hflip"), "time_budget_min": recipe.get("time_budget_min"), "epochs": recipe.get("epochs")}


def impossible_budget(state: State, recipe: dict) -> str | None:
    if state.latency_ms is not None and state.latency_ms < 0.05:
        return tr("{ms:g} ms per image is below what any runtime can do (calling a model costs about 0.05 ms on its "
                  "own). Please give a budget of at least 0.1 ms.", ms=state.latency_ms)
    if state.size_mb is not None and state.size_mb < 0.05:
        return tr("{mb:g} MB is too small for any image model. Please allow at least 0.1 MB.", mb=state.size_mb)
    return None


def snapshot(state: State) -> dict:
    return asdict(state)  # asdict copies nested lists and dicts already
