"""The offline ``echo`` model's tool behaviour: deterministic enough for end-to-end agent tests.

Rules, in order (the first that applies decides the answer):

1. ``tool_choice`` names a tool, or is ``required``: that tool (or the first one) is called.
2. Tools are offered (``tool_choice`` absent or ``auto``), the conversation ends with a user message,
   and that message names offered tools as whole words ("use weather for Paris"): each named tool is
   called once, in the order the tools were offered (several at once are parallel tool calls).
3. The conversation ends with tool results: the answer is ``echo: <the results, joined by "; ">``.
4. Otherwise no rule applies and the plain echo answer is given (``providers.EchoProvider``).

A call's arguments fill the tool's first schema property (or ``text``) with the user's text. Call IDs
derive from the conversation, so a replayed conversation gets the same IDs.
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
    last = request.messages[-1] if request.messages else {}
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
        for message in reversed(request.messages):
            if message["role"] != "tool":
                break
            results.insert(0, _text(message.get("content")))
        reply = "echo: " + "; ".join(results)
        return ChatResult(reply, "stop", TokenUsage(input=usage_in, output=len(reply.split())))
    return None


def _call(fn: dict[str, Any], name: str, text: str, n: int) -> dict[str, Any]:
    properties = (fn.get("parameters") or {}).get("properties") or {}
    arg = next(iter(properties), "text")
    digest = hashlib.sha256(f"{n}:{name}:{text}".encode()).hexdigest()[:12]
    return {
        "id": f"call_{digest}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps({arg: text})},
    }
