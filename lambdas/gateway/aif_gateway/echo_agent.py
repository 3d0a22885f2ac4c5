"""The offline ``echo`` model's tool behaviour: deterministic enough for end-to-end agent tests.

Rules, in order (the first that applies decides the answer):

1. ``tool_choice`` names a tool, or is ``required``: that tool (or the first one) is called.
2. Tools are offered (``tool_choice`` absent or ``auto``), the conversation ends with a user message,
   and that message names offered tools as whole words ("use weather for Paris"): each named tool is
   called once, in the order the tools were offered (several at once are parallel tool calls).
3. The conversation ends with tool results: the answer is ``echo: <the results, joined by "; ">``.
4. Otherwise no rule applies and the plain echo answer is given (``providers.EchoProvider``).

System messages after the last turn (Claude Code appends its environment notes as one) do not count as
the end of the conversation. A call's arguments are the JSON object written right after the tool's name
(``Read {"file_path": "notes.txt"}``), else the tool's first schema property (or ``text``) filled with
the user's text. Call IDs derive from the conversation, so a replayed conversation gets the same IDs.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from .openai_schema import ChatRequest
from .provider_types import ChatResult, TokenUsage


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(p["text"] for p in content or [] if p.get("type") == "text")


def scripted_turn(request: ChatRequest, usage_in: int, last_user: str) -> ChatResult | None:
    """The echo model's answer when one of the tool rules applies, else None."""
    turns = [m for m in request.messages if m["role"] not in ("system", "developer")]
    last = turns[-1] if turns else {}
    tools = request.tools or []
    choice = request.tool_choice
    names: list[str] = []
    if isinstance(choice, dict):
        names = [choice["function"]["name"]]
    elif choice == "required" and tools:
        names = [tools[0]["function"]["name"]]
    elif tools and choice in (None, "auto") and last.get("role") == "user":
        words = set(re.findall(r"[\w-]+", _text(last.get("content"))))
        names = [t["function"]["name"] for t in tools if t["function"]["name"] in words]
    if names:
        by_name = {t["function"]["name"]: t["function"] for t in tools}
        calls = [_call(by_name.get(name, {}), name, last_user, n) for n, name in enumerate(names)]
        return ChatResult("", "tool_calls", TokenUsage(input=usage_in, output=len(calls)), tool_calls=calls)
    if last.get("role") == "tool":
        results: list[str] = []
        for message in reversed(turns):
            if message["role"] != "tool":
                break
            results.insert(0, _text(message.get("content")))
        reply = "echo: " + "; ".join(results)
        return ChatResult(reply, "stop", TokenUsage(input=usage_in, output=len(reply.split())))
    return None


def _call(fn: dict[str, Any], name: str, text: str, n: int) -> dict[str, Any]:
    arguments = _written_arguments(name, text)
    if arguments is None:
        properties = (fn.get("parameters") or {}).get("properties") or {}
        arguments = {next(iter(properties), "text"): text}
    digest = hashlib.sha256(f"{n}:{name}:{text}".encode()).hexdigest()[:12]
    return {
        "id": f"call_{digest}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


def _written_arguments(name: str, text: str) -> dict[str, Any] | None:
    """The JSON object right after the first whole-word mention of ``name`` in ``text``, if any."""
    match = re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])\s*(?=\{{)", text)
    if match is None:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(text, match.end())
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
