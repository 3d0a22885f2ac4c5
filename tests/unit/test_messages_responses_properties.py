"""Property: any valid Anthropic Messages or Responses conversation becomes a Converse request Bedrock's
rules accept (the same rules as for Chat Completions, ``test_converse_properties.check_bedrock_rules``),
and the translation keeps what the client sent: every tool call and every tool result reaches the
model, and system text comes first."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_converse_properties import CAPS, check_bedrock_rules

from aif_gateway.anthropic_messages import parse_messages_request
from aif_gateway.bedrock_translate import to_converse
from aif_gateway.capabilities import ModelCapabilities
from aif_gateway.openai_responses import parse_responses_request

TEXTS = st.sampled_from(["", " ", "hello", "  padded  ", "Weather?", "ok "])
CACHE = st.sampled_from([None, {"type": "ephemeral"}])
NAMES = st.sampled_from(["weather", "search", "calc"])
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()


def _block(kind: str, draw: Any) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": draw(TEXTS)}
    if kind == "image":
        block = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    cache = draw(CACHE)
    if cache:
        block["cache_control"] = cache
    return block


@st.composite
def anthropic_conversations(draw: Any) -> dict[str, Any]:
    """Alternating turns starting with the user; assistants may call tools, the next user turn may
    answer some of them (tool results first), and text may be blank."""
    messages: list[dict[str, Any]] = []
    pending: list[str] = []
    n_calls = 0
    for turn in range(draw(st.integers(1, 6))):
        if turn % 2 == 0:
            blocks: list[dict[str, Any]] = []
            for use_id in pending:
                if draw(st.booleans()):
                    blocks.append({"type": "tool_result", "tool_use_id": use_id, "content": draw(TEXTS),
                                   "is_error": draw(st.booleans())})  # fmt: skip
            pending = []
            blocks += [
                _block(draw(st.sampled_from(["text", "image"])), draw) for _ in range(draw(st.integers(0, 2)))
            ]
            content: Any = blocks if blocks or draw(st.booleans()) else draw(TEXTS)
            messages.append({"role": "user", "content": content or draw(TEXTS)})
        else:
            blocks = [_block("text", draw) for _ in range(draw(st.integers(0, 1)))]
            for _ in range(draw(st.integers(0, 2))):
                n_calls += 1
                use_id = f"tu_{n_calls}"
                pending.append(use_id)
                blocks.append({"type": "tool_use", "id": use_id, "name": draw(NAMES), "input": {"q": "x"}})
            messages.append({"role": "assistant", "content": blocks})
    body: dict[str, Any] = {"model": "m", "max_tokens": 4096, "messages": messages}
    if draw(st.booleans()):
        body["system"] = [{"type": "text", "text": draw(TEXTS), "cache_control": draw(CACHE)}]
        body["system"] = [{k: v for k, v in b.items() if v is not None} for b in body["system"]]
    if draw(st.booleans()):
        body["tools"] = [{"name": "weather", "input_schema": {"type": "object"}}]
        body["tool_choice"] = {"type": draw(st.sampled_from(["auto", "any", "none"]))}
    if draw(st.booleans()):
        body["thinking"] = {"type": "enabled", "budget_tokens": 2048}
    return body


@settings(max_examples=200, deadline=None)
@given(body=anthropic_conversations(), caps=CAPS)
def test_any_valid_messages_conversation_yields_a_valid_converse_request(
    body: dict[str, Any], caps: ModelCapabilities
) -> None:
    request = parse_messages_request(body)
    kwargs = to_converse(request, "model-id", None, {}, caps)
    check_bedrock_rules(kwargs)
    if request.tool_choice != "none":  # with "none", tool history is sent as text on purpose
        sent_results = {
            b["toolResult"]["toolUseId"]
            for t in kwargs["messages"]
            for b in t["content"]
            if "toolResult" in b
        }
        client_results = {
            b["tool_use_id"]
            for m in body["messages"]
            if isinstance(m["content"], list)
            for b in m["content"]
            if b["type"] == "tool_result"
        }
        assert client_results <= sent_results


@st.composite
def responses_inputs(draw: Any) -> dict[str, Any]:
    items: list[dict[str, Any]] = [{"role": "user", "content": draw(TEXTS)}]
    for n in range(draw(st.integers(0, 3))):
        calls = [f"call_{n}_{k}" for k in range(draw(st.integers(1, 2)))]
        for call_id in calls:
            items.append(
                {"type": "function_call", "call_id": call_id, "name": draw(NAMES), "arguments": '{"q":1}'}
            )
        if draw(st.booleans()):
            items.append({"type": "reasoning", "id": f"rs_{n}", "summary": []})
        for call_id in calls:
            if draw(st.booleans()):
                items.append({"type": "function_call_output", "call_id": call_id, "output": draw(TEXTS)})
        if draw(st.booleans()):
            role = draw(st.sampled_from(["user", "assistant", "developer"]))
            part = "output_text" if role == "assistant" else "input_text"
            items.append({"type": "message", "role": role, "content": [{"type": part, "text": draw(TEXTS)}]})
    body: dict[str, Any] = {"model": "m", "input": items}
    if draw(st.booleans()):
        body["instructions"] = draw(TEXTS)
    if draw(st.booleans()):
        body["tools"] = [{"type": "function", "name": "weather", "parameters": {"type": "object"}}]
    return body


@settings(max_examples=200, deadline=None)
@given(body=responses_inputs(), caps=CAPS)
def test_any_valid_responses_input_yields_a_valid_converse_request(
    body: dict[str, Any], caps: ModelCapabilities
) -> None:
    kwargs = to_converse(parse_responses_request(body), "model-id", None, {}, caps)
    check_bedrock_rules(kwargs)
    calls = [i for i in body["input"] if i.get("type") == "function_call"]
    uses = [b["toolUse"] for t in kwargs["messages"] for b in t["content"] if "toolUse" in b]
    texts = json.dumps(kwargs["messages"])
    for call in calls:  # each call reaches the model: as a toolUse, or as text when it was never answered
        assert any(u["toolUseId"] == call["call_id"] for u in uses) or call["name"] in texts
