"""One assistant per server: the tools, the guide, the optional LLM agent, the training jobs, and
conversations persisted in the catalog (one per browser session; a restart resumes them)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from chat_ui.guide import Guide, Reply, State, snapshot
from chat_ui.llm import LLMFailure, ToolAgent, llm_from_env
from chat_ui.parse import parse
from chat_ui.tools import BackgroundWork, build_tools
from chat_ui.words import asked_language, without_names
from factory.api import session
from factory.catalog import Schema, register_schema
from factory.i18n import LANGUAGES, language_of, speaking, tr
from factory.jobs import JobManager
from targets.devices import load_profiles

SCHEMA = register_schema(Schema("chat_ui", migrations=(
    # 1 (catalog schema 6 before the packages owned their tables: IF NOT EXISTS keeps those catalogs' rows)
    """
    CREATE TABLE IF NOT EXISTS conversations (
        id TEXT PRIMARY KEY, state TEXT NOT NULL, messages TEXT NOT NULL,
        created_at REAL NOT NULL, updated_at REAL NOT NULL);
    """,), json_columns=frozenset({"messages"})))


class Assistant:
    def __init__(self, home: str | Path, base_url: str = "http://127.0.0.1:8000", chat_model=None):
        with session(home) as (ws, _):
            self.home = ws.home
        self.jobs = JobManager()
        self.profiles = load_profiles(self.home)
        from factory.training.run import mark_orphans

        with session(self.home) as (_, catalog):
            mark_orphans(catalog)  # runs a previous server left behind are not "running" any more
        self._index = None
        self._index_lock = threading.Lock()
        self.tools = build_tools(self.home, self.jobs, self.search_docs)
        self.guide = Guide(self.tools, self.profiles, base_url)
        model, self.llm_note = (chat_model, "scripted model") if chat_model is not None else llm_from_env()
        self.agent = ToolAgent(model, self.tools, self.guide) if model is not None else None
        self._locks: dict[str, threading.Lock] = {}
        self.background: dict[str, BackgroundWork] = {}
        self._shown: dict[str, dict[int, str]] = {}  # replies with a secret, as shown in this process
        # device and architecture names read the same in every language ("Jetson Orin" in a Chinese message)
        from factory.tasks import all_tasks

        self.names = sorted({a for pid, prof in self.profiles.items()
                             for a in (pid, pid.replace("_", " "), prof.short_name, *prof.aliases)}
                            | {arch for task in all_tasks() for arch in task.architectures()}, key=len, reverse=True)

    def search_docs(self, query: str) -> list[dict]:
        from retrieval.docs_index import DocIndex

        with self._index_lock:
            if self._index is None:
                self._index = DocIndex.load_or_build(self.home / "retrieval")
        return self._index.search(query, 3)

    # -- persistence -------------------------------------------------------------------------------
    def load(self, conv_id: str) -> tuple[State, list[dict]]:
        with session(self.home) as (_, catalog):
            rows = catalog.select("SELECT * FROM conversations WHERE id = ?", (conv_id,))
        if not rows:
            return State(), []
        return State.from_json(rows[0]["state"]), rows[0]["messages"]

    def save(self, conv_id: str, state: State, messages: list[dict]) -> None:
        now = time.time()
        with session(self.home) as (_, catalog), catalog.transaction():
            catalog.execute(
                "INSERT INTO conversations (id, state, messages, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET state = excluded.state, messages = excluded.messages, updated_at = excluded.updated_at",
                (conv_id, state.to_json(), json.dumps(messages, default=str), now, now))

    # -- one turn ----------------------------------------------------------------------------------
    def chat(self, conv_id: str, message: str, files: list[str] | None = None, lang: str | None = None,
             said_by_user: bool = True) -> Reply:
        """One turn. `lang`: the page's language (its switch, else the browser's) for a conversation that has none
        yet; a message the user writes in another language switches it (`said_by_user` False: the server's own
        "how is it going?" when training ends, which does not)."""
        lock = self._locks.setdefault(conv_id, threading.Lock())
        with lock:
            state, messages = self.load(conv_id)
            state.lang = state.lang or (lang if lang in LANGUAGES else None)
            if said_by_user:
                state.lang = asked_language(message) or language_of(without_names(message, self.names), state.lang)
            with speaking(state.lang):
                reply = self._reply(conv_id, state, message, files or [], messages)
            if said_by_user:  # the server's own question is not shown as if the user had asked it
                messages.append({"role": "user", "content": message + "".join(f"\n[uploaded {Path(f).name}]" for f in files or [])})
            stored = reply.text
            for secret in reply.secrets:  # the catalog never holds a key: only this process shows it, once
                stored = stored.replace(secret, "(shown once when it was made; not stored)")
            messages.append({"role": "assistant", "content": stored, "images": reply.images})
            if reply.secrets:
                self._shown.setdefault(conv_id, {})[len(messages) - 1] = reply.text
            self.save(conv_id, state, messages)
        if reply.background:
            self._start_background(conv_id, reply.background)
        return reply

    def language(self, conv_id: str, lang: str | None = None) -> str | None:
        """The conversation's language; with `lang` (the page's switch), set it first."""
        if lang not in LANGUAGES:
            return self.load(conv_id)[0].lang
        with self._locks.setdefault(conv_id, threading.Lock()):
            state, messages = self.load(conv_id)
            state.lang = lang
            self.save(conv_id, state, messages)
        return lang

    def _start_background(self, conv_id: str, job: dict) -> None:
        work = self.background[conv_id] = BackgroundWork()

        def finish(lines_log) -> None:
            result = self.guide.run_background(job, lines_log)
            with self._locks[conv_id]:
                state, messages = self.load(conv_id)
                done = self.guide.background_done(state, result)
                messages.append({"role": "assistant", "content": done.text, "images": done.images})
                self.save(conv_id, state, messages)

        def failed_guard(log) -> None:
            try:
                finish(log)
            except Exception as exc:  # said in the chat, in plain words
                with self._locks[conv_id]:
                    state, messages = self.load(conv_id)
                    state.step, state.pending = "export", None
                    with speaking(state.lang):
                        text = tr("The exports stopped: {error}. Say *yes* to try again.",
                                  error=getattr(exc, "message", str(exc))[:300])
                    state.pending = {"tool": "__exports__", "args": {"targets": job["targets"]}, "then": "", "summary": text}
                    messages.append({"role": "assistant", "content": text})
                    self.save(conv_id, state, messages)

        work.start(failed_guard)

    def _reply(self, conv_id: str, state: State, message: str, files: list[str], history: list[dict]) -> Reply:
        p = parse(message, self.profiles)
        if state.step == "exporting" and ("status" in p.intents or not p.intents & {"restart", "help", "question"}):
            work = self.background.get(conv_id)
            lines = work.lines if work else []
            if work is None or not work.running and not lines:  # a restart lost the work: offer it again
                state.step = "export"
                state.pending = {"tool": "__exports__", "args": {"targets": self.guide.export_targets(state)}, "then": "",
                                 "summary": tr("The exports were interrupted (the server restarted).")}
                return Reply(tr("The exports were interrupted (the server restarted). Say *yes* to run them again."))
            return Reply(tr("Still exporting and measuring") + (f" ({lines[-1]})" if lines else "")
                         + tr(". I will post the results here when they are ready."))
        use_guide = self.agent is None or files or (state.pending and p.intents & {"confirm", "deny"}) or \
            p.intents & {"restart", "stop", "back", "status"}
        if use_guide:
            return self.guide.reply(state, message, files)
        try:
            return self.agent.reply(state, message, history)
        except LLMFailure as exc:
            reply = self.guide.reply(state, message, files)
            reply.text = tr("*(The language model failed: {error}; the built-in guide answers instead.)*", error=exc) \
                + f"\n\n{reply.text}"
            return reply

    def messages(self, conv_id: str) -> list[dict]:
        """The conversation for the page: stored messages, with secrets this process showed put back."""
        messages = self.load(conv_id)[1]
        for i, text in self._shown.get(conv_id, {}).items():
            if i < len(messages):
                messages[i] = {**messages[i], "content": text}
        return messages

    def poll(self, conv_id: str) -> Reply | None:
        """A message to push when background work changed the conversation (training finished)."""
        state, _ = self.load(conv_id)
        if state.step != "training" or not state.run_id:
            return None
        with session(self.home) as (_, catalog):
            run = catalog.run(state.run_id)
        if run is None or run["status"] == "running":
            return None
        return self.chat(conv_id, "how is it going?", said_by_user=False)

    def view(self, conv_id: str) -> dict:
        """What the tabs show for a conversation."""
        state, messages = self.load(conv_id)
        out = {"state": snapshot(state), "messages": messages, "run": None}
        if state.run_id:
            with session(self.home) as (_, catalog):
                out["run"] = catalog.run(state.run_id)
        return out
