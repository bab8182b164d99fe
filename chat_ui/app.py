"""The Gradio app, mounted at / of the serving app (one server, one port): a chat with file upload
and, beside it, tabs that show the conversation's state above everything the workspace holds: Datasets,
Training, Models & Reports, Deployments. The chat function is also Gradio's `/chat` API (message in, reply out).

The page speaks the conversation's language: the browser's (Accept-Language) until the user writes in another
one or picks one with the switch; every label, tab and reply follows (factory.i18n)."""

from __future__ import annotations

import uuid
from pathlib import Path

import gradio as gr
from fastapi import FastAPI

from chat_ui import workspace_view
from chat_ui.assistant import Assistant
from chat_ui.words import describe_dataset, exports_table, metric_name, progress_text
from factory.i18n import LANGUAGES, from_accept_language, speaking, tr

WELCOME = ("Hello! I take you from images to a model on your device. Upload a .zip of images, say **demo** for "
           "handwritten digits, or ask *what can you do?*")


def _history(messages: list[dict]) -> list[dict]:
    out = [{"role": "assistant", "content": tr(WELCOME)}]
    for m in messages:
        out.append({"role": m["role"], "content": m["content"]})
        for image in m.get("images") or []:
            if Path(image).is_file():
                out.append({"role": m["role"], "content": {"path": image}})
    return out


def _tabs(assistant: Assistant, conv_id: str) -> tuple:
    view = assistant.view(conv_id)
    state, run = view["state"], view["run"]
    home = assistant.home
    summary = state["dataset_summary"]
    current_data = f"{summary['dataset']}:v{summary['version']}" if summary else None
    data_md = _joined(describe_dataset(summary) if summary else "", workspace_view.datasets(home, current_data),
                      tr("No dataset yet: upload a .zip of images, or say **demo**."))
    gallery = []
    if state["dataset_summary"]:
        root = assistant.home / state["dataset_summary"]["path"]
        gallery = [str(p) for p in sorted(root.rglob("*.png"))[:12]]
    if run:
        train_md = progress_text(run) if run["status"] == "running" else tr("Run `{run}`: **{status}**.", run=run["id"],
                                                                             status=tr(run["status"]))
        history = run.get("history") or []
        label = metric_name(run["config"].get("task"))
        curve = {"epoch": [h["epoch"] for h in history] * 2,
                 "value": [h.get("val_metric", h.get("val_accuracy")) for h in history] + [h["train_loss"] for h in history],
                 "series": [tr("val {metric}", metric=label)] * len(history) + [tr("train loss")] * len(history)}
    else:
        train_md, curve = tr("No training yet."), {"epoch": [], "value": [], "series": []}
    listed, newest_cm = workspace_view.models(home, state["model"])
    model_md, cm = "", newest_cm
    if state["model"]:
        ev = state["evaluation"] or {}
        model_md = tr("**{model}**: test {metric} {score:.2%}.", model=state["model"], metric=metric_name(state["task"]),
                      score=ev["accuracy"]) if ev.get("accuracy") is not None else f"**{state['model']}**"
        cm = ev.get("files", {}).get("confusion_matrix_png") or newest_cm
        if state["exports"]:
            model_md += "\n\n" + exports_table(state["exports"], [], metric_name(state["task"]))
        if state["report"]:
            name, version = state["model"].split(":v")
            model_md += "\n\n" + tr("[Benchmark report]({url})", url=f"/v1/models/{name}/versions/{version}/report")
    model_md = _joined(model_md, listed, tr("No model yet."))
    dep = state["deployment"]
    deployed, newest_qr = workspace_view.deployments(home)
    dep_md = _joined(tr("**{name}:v{version}** ({target} {precision})\n\nEndpoint: `/v1/models/{name}/predict`; PAI-EAS: "
                        "`/api/predict/{name}`; key id `{key}`\n\nPhone preview: {url}", name=dep["name"],
                        version=dep["version"], target=dep["target"], precision=dep["precision"], key=dep["key_id"],
                        url=dep["url"]) if dep else "", deployed, tr("Not deployed yet."))
    import pandas as pd

    return (data_md, gallery, train_md, pd.DataFrame(curve), model_md, cm, dep_md, dep["qr"] if dep else newest_qr)


def _joined(mine: str, workspace: str, empty: str) -> str:
    """The conversation's own item above what the whole workspace holds; `empty` when there is neither."""
    return "\n\n".join(part for part in (mine, workspace) if part) or empty


def _chrome(lang: str) -> tuple:
    """The page's own words in `lang`: title, message box, tab and component labels, the switch."""
    with speaking(lang):
        return (tr("## edgefactory: from images to a model on your device"),
                gr.MultimodalTextbox(placeholder=tr("Type a message, or attach a .zip of images")),
                *(gr.Tab(label=tr(name)) for name in TAB_NAMES),
                gr.Gallery(label=tr("samples")), gr.LinePlot(label=tr("curves")), gr.Image(label=tr("confusion matrix")),
                gr.Image(label=tr("QR code: scan with a phone")), gr.Radio(value=lang, label=tr("Language")))


TAB_NAMES = ("Datasets", "Training", "Models & Reports", "Deployments")


def page_language(assistant: Assistant, conv_id: str | None, request: gr.Request | None) -> str:
    """The conversation's language, else the browser's first one spoken here, else English."""
    spoken = assistant.language(conv_id) if conv_id else None
    header = request.headers.get("accept-language") if request is not None else None
    return spoken or from_accept_language(header) or "en"


def build_blocks(assistant: Assistant) -> gr.Blocks:
    with gr.Blocks(title="edgefactory") as blocks:
        conv = gr.BrowserState(None, storage_key="edgefactory-conversation")
        with gr.Row():
            title = gr.Markdown("## edgefactory: from images to a model on your device")
            switch = gr.Radio([(name, code) for code, name in LANGUAGES.items()], value="en", label="Language",
                              elem_id="language", scale=0, min_width=280)
        with gr.Row():
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(value=_history([]), height=560, elem_id="chat", label="edgefactory")
                box = gr.MultimodalTextbox(placeholder="Type a message, or attach a .zip of images", file_count="multiple",
                                           file_types=[".zip", "image"], elem_id="message", show_label=False)
            with gr.Column(scale=2):
                with gr.Tabs():
                    with gr.Tab("Datasets", elem_id="tab-label-datasets") as tab_data:
                        data_md = gr.Markdown(elem_id="tab-datasets")
                        gallery = gr.Gallery(columns=6, height=200, label="samples")
                    with gr.Tab("Training", elem_id="tab-label-training") as tab_train:
                        train_md = gr.Markdown(elem_id="tab-training")
                        curve = gr.LinePlot(x="epoch", y="value", color="series", label="curves")
                    with gr.Tab("Models & Reports", elem_id="tab-label-models") as tab_models:
                        model_md = gr.Markdown(elem_id="tab-models")
                        cm = gr.Image(label="confusion matrix", type="filepath", elem_id="confusion")
                    with gr.Tab("Deployments", elem_id="tab-label-deployments") as tab_deps:
                        dep_md = gr.Markdown(elem_id="tab-deployments")
                        qr = gr.Image(label="QR code: scan with a phone", type="filepath", elem_id="qr")
        tabs = [data_md, gallery, train_md, curve, model_md, cm, dep_md, qr]
        chrome = [title, box, tab_data, tab_train, tab_models, tab_deps, gallery, curve, cm, qr, switch]

        def page(conv_id: str, lang: str) -> tuple:
            with speaking(lang):
                return (_history(assistant.messages(conv_id)), *_tabs(assistant, conv_id))

        def start(conv_id, request: gr.Request):
            conv_id = conv_id or f"web-{uuid.uuid4().hex[:12]}"
            lang = page_language(assistant, conv_id, request)
            return (conv_id, *page(conv_id, lang), *_chrome(lang))

        def respond(message, conv_id, lang):
            conv_id = conv_id or f"web-{uuid.uuid4().hex[:12]}"
            files = uploaded_only((message or {}).get("files") or [], blocks.upload_file_set)
            assistant.chat(conv_id, (message or {}).get("text", ""), files, lang=lang)
            lang = assistant.language(conv_id) or lang  # a message in the other language switches the page too
            words = _chrome(lang)
            cleared = gr.MultimodalTextbox(value=None, placeholder=words[1].placeholder)
            return (cleared, conv_id, *page(conv_id, lang), words[0], *words[2:])

        def switched(lang, conv_id):
            conv_id = conv_id or f"web-{uuid.uuid4().hex[:12]}"
            assistant.language(conv_id, lang)
            return (conv_id, *page(conv_id, lang), *_chrome(lang))

        def tick(conv_id, lang):
            if not conv_id:
                return (gr.skip(),) * (1 + len(tabs))
            assistant.poll(conv_id)
            return page(conv_id, assistant.language(conv_id) or lang)

        blocks.load(start, [conv], [conv, chatbot, *tabs, *chrome])
        # the message box is also in chrome (its placeholder): here one output clears it and sets the placeholder
        box.submit(respond, [box, conv, switch], [box, conv, chatbot, *tabs, chrome[0], *chrome[2:]],
                   api_visibility="private")
        switch.input(switched, [switch, conv], [conv, chatbot, *tabs, *chrome], api_visibility="private")
        gr.Timer(2.0).tick(tick, [conv, switch], [chatbot, *tabs], api_visibility="private")

        def chat(message: str, request: gr.Request) -> str:
            """The same conversation as the page, for scripts: one message in, the reply out (in the language of the
            message, else of the request's Accept-Language)."""
            conv_id = f"api-{request.session_hash}"
            reply = assistant.chat(conv_id, message, lang=from_accept_language(request.headers.get("accept-language")))
            return reply.text + "".join(f"\n[image: {p}]" for p in reply.images)

        gr.api(chat, api_name="chat")
    return blocks


def uploaded_only(files: list, uploaded: set[str]) -> list[str]:
    """The files that came through Gradio's upload route: a message naming any other path on this machine (sent to
    the queue by hand) gets none of it, not even the copy Gradio makes in its cache."""
    paths = [f if isinstance(f, str) else (f or {}).get("path", "") for f in files]
    return [p for p in paths if p in uploaded]


def local_only(request) -> str | None:
    """The chat acts with the workspace owner's rights (it imports, trains, deploys, makes keys), so it
    answers this machine only; reach it from elsewhere through an SSH tunnel."""
    from serving.http import is_loopback

    return "local" if is_loopback(request) else None


def mount(app: FastAPI, home: Path, base_url: str) -> None:
    """Entry point `edgefactory.apps`: serving calls it with its app; the chat takes `/`."""
    assistant = Assistant(home, base_url=base_url)
    app.state.assistant = assistant
    # only what the tabs show: sample images, reports, QR codes (never the catalog, keys or TLS files)
    shown = [str(home / sub) for sub in ("datasets", "reports", "serving/qr")]
    gr.mount_gradio_app(app, build_blocks(assistant), path="/", allowed_paths=shown, footer_links=["api"],
                        auth_dependency=local_only)
