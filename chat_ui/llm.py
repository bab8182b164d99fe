"""Optional: a LangChain chat model with tool calling drives the same tools with the same
confirmations. Configured by environment variables; any failure (unreachable, timeout, a bad tool
call) falls back to the offline guide with a note.

    EDGEFACTORY_LLM_BASE_URL + EDGEFACTORY_LLM_MODEL (+ EDGEFACTORY_LLM_API_KEY): an OpenAI-compatible
    server (needs langchain-openai); EDGEFACTORY_OLLAMA_MODEL (+ EDGEFACTORY_OLLAMA_URL): Ollama
    (needs langchain-ollama).
"""

from __future__ import annotations

import json
import os
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import BaseTool

from chat_ui.guide import Guide, Reply, State, question
from factory.i18n import tr

SYSTEM = ("You are edgefactory's assistant. You help a user go from images to a model deployed on an edge device: "
          "dataset, target devices and budget, training, evaluation, compression and export, benchmark report, "
          "deployment and a QR code. Use the tools; never invent results. Keep answers short, and answer in the "
          "language the user writes in (Chinese or English).")
MAX_STEPS = 6
TIMEOUT_S = 60


class LLMFailure(Exception):
    pass


def llm_from_env() -> tuple[Any | None, str]:
    """(chat model or None, a note saying what was configured or why it is not used)."""
    base, model = os.environ.get("EDGEFACTORY_LLM_BASE_URL"), os.environ.get("EDGEFACTORY_LLM_MODEL")
    ollama = os.environ.get("EDGEFACTORY_OLLAMA_MODEL")
    try:
        if base and model:
            from langchain_openai import ChatOpenAI

            return ChatOpenAI(base_url=base, model=model, api_key=os.environ.get("EDGEFACTORY_LLM_API_KEY", "none"),
                              timeout=TIMEOUT_S, max_retries=1), f"LLM: {model} at {base}"
        if ollama:
            from langchain_ollama import ChatOllama

            return ChatOllama(model=ollama, base_url=os.environ.get("EDGEFACTORY_OLLAMA_URL", "http://127.0.0.1:11434"),
                              client_kwargs={"timeout": TIMEOUT_S}), f"LLM: Ollama {ollama}"
    except ImportError as exc:
        return None, f"an LLM is configured but its package is missing ({exc.name}); using the offline guide"
    return None, "offline guide (no LLM configured)"


class ToolAgent:
    """Tool-calling loop: read-only tools run at once; tools that write wait for the user's yes."""

    def __init__(self, model: Any, tools: dict[str, BaseTool], guide: Guide):
        self.tools, self.guide = tools, guide
        self.model = model.bind_tools(list(tools.values()))

    def reply(self, state: State, message: str, history: list[dict]) -> Reply:
        messages: list[Any] = [SystemMessage(SYSTEM)]
        messages += [HumanMessage(m["content"]) if m["role"] == "user" else AIMessage(m["content"])
                     for m in history[-10:] if isinstance(m.get("content"), str)]
        messages.append(HumanMessage(message))
        for _ in range(MAX_STEPS):
            try:
                ai = self.model.invoke(messages)
            except Exception as exc:  # network, timeout, provider errors
                raise LLMFailure(f"{type(exc).__name__}: {str(exc)[:160]}") from exc
            if not getattr(ai, "tool_calls", None):
                return Reply(str(ai.content))
            messages.append(ai)
            for call in ai.tool_calls:
                tool = self.tools.get(call["name"])
                if tool is None:
                    raise LLMFailure(f"the model called an unknown tool {call['name']!r}")
                if (tool.metadata or {}).get("needs_confirmation"):
                    state.pending = {"tool": tool.name, "args": call["args"], "then": "then_generic",
                                     "summary": tr("I would run **{tool}** with {args}.", tool=tool.name,
                                                   args=json.dumps(call["args"], ensure_ascii=False))}
                    return Reply(question(state.pending["summary"]))
                try:
                    result = tool.invoke(call["args"])
                except Exception as exc:  # schema validation or a FactoryError: the model's call was bad
                    raise LLMFailure(f"tool {tool.name} failed: {str(exc)[:160]}") from exc
                messages.append(ToolMessage(json.dumps(result, default=str)[:4000], tool_call_id=call["id"]))
        raise LLMFailure("the model kept calling tools without answering")
