"""Property: any valid OpenAI conversation becomes a Converse request Bedrock's rules accept.

Bedrock's rules checked here (what it answers ValidationException for): turns alternate and start with
the user; no text block is blank and no turn is empty; every toolUse of an assistant turn is answered by
exactly one toolResult at the start of the next user turn and no toolResult appears elsewhere; a
toolConfig declares every tool used whenever tool blocks exist; at most four cache points; and the
request matches the API model (botocore's own parameter validation).
"""

from __future__ import annotations

import base64
import json
from itertools import pairwise
from typing import Any

import boto3
from botocore.validate import ParamValidator
from hypothesis import given, settings
from hypothesis import strategies as st

from aif_gateway.bedrock_translate import to_converse
from aif_gateway.capabilities import ModelCapabilities
from aif_gateway.openai_schema import parse_chat_request

_SHAPE = (
    boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    .meta.service_model.operation_model("Converse")
    .input_shape
)

TEXTS = st.sampled_from(["", " ", "\n\t", "hello", "  padded  ", "Weather?", "ok "])
CACHE = st.sampled_from([None, {"type": "ephemeral"}])
NAMES = st.sampled_from(["weather", "search", "calc"])
PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()


@st.composite
def content(draw: Any, role: str) -> Any:
    if draw(st.booleans()):
        return draw(TEXTS)
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        part: dict[str, Any] = {"type": "text", "text": draw(TEXTS)}
        if role == "user" and draw(st.integers(0, 4)) == 0:
            part = {"type": "image_url", "image_url": {"url": PNG}}
        if (cache := draw(CACHE)) is not None:
            part["cache_control"] = cache
        parts.append(part)
    return parts


@st.composite
def conversations(draw: Any) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if draw(st.booleans()):
        system: dict[str, Any] = {"role": "system", "content": draw(content("system"))}
        if (cache := draw(CACHE)) is not None:
            system["cache_control"] = cache
        messages.append(system)
    messages.append({"role": "user", "content": draw(content("user"))})
    used: list[str] = []
    counter = 0
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["user", "assistant", "tools", "system", "legacy"]))
        if kind == "tools":
            calls = []
            for _ in range(draw(st.integers(1, 3))):
                counter += 1
                name = draw(NAMES)
                used.append(name)
                args = json.dumps({"q": draw(TEXTS)}) if draw(st.booleans()) else ""
                calls.append(
                    {"id": f"c{counter}", "type": "function", "function": {"name": name, "arguments": args}}
                )
            messages.append(
                {
                    "role": "assistant",
                    "content": draw(st.sampled_from([None, "", "Let me check."])),
                    "tool_calls": calls,
                }
            )
            answered = draw(st.lists(st.sampled_from(calls), unique_by=lambda c: c["id"]))
            for c in answered:
                messages.append({"role": "tool", "tool_call_id": c["id"], "content": draw(content("tool"))})
        elif kind == "system":
            messages.append({"role": "developer", "content": draw(TEXTS) or "x"})
        elif kind == "legacy":  # the deprecated function-calling shape
            name = draw(NAMES)
            used.append(name)
            call = {"name": name, "arguments": "{}"}
            messages.append({"role": "assistant", "content": None, "function_call": call})
            if draw(st.booleans()):
                messages.append({"role": "function", "name": name, "content": draw(TEXTS)})
        else:
            messages.append({"role": kind, "content": draw(content(kind))})
    body: dict[str, Any] = {"model": "m", "messages": messages}
    if draw(st.booleans()):
        names = sorted(set(draw(st.lists(NAMES, max_size=3))))
        if names:
            body["tools"] = [{"type": "function", "function": {"name": n}} for n in names]
            body["tool_choice"] = draw(st.sampled_from([None, "auto", "none", "required"]))
    return body


CAPS = st.sampled_from(
    [
        ModelCapabilities(),
        ModelCapabilities(prompt_caching=True, reasoning="thinking", max_output_tokens=64000),
    ]
)


def check_bedrock_rules(kwargs: dict[str, Any]) -> None:
    ParamValidator().validate(kwargs, _SHAPE)  # raises on any shape error
    turns = kwargs["messages"]
    assert turns and turns[0]["role"] == "user"
    cache_points = sum("cachePoint" in b for b in kwargs.get("system", []))
    cache_points += sum("cachePoint" in b for b in kwargs.get("toolConfig", {}).get("tools", []))
    for block in kwargs.get("system", []):
        assert "cachePoint" in block or block["text"].strip()
    used_tools: set[str] = set()
    has_tool_blocks = False
    for n, turn in enumerate(turns):
        assert n == 0 or turn["role"] != turns[n - 1]["role"], "roles must alternate"
        blocks = turn["content"]
        assert any("cachePoint" not in b for b in blocks), "empty turn"
        cache_points += sum("cachePoint" in b for b in blocks)
        for block in blocks:
            if "text" in block:
                assert block["text"].strip(), "blank text block"
            if "toolResult" in block:
                has_tool_blocks = True
                for c in block["toolResult"]["content"]:
                    assert c["text"].strip()
            if "toolUse" in block:
                has_tool_blocks = True
                used_tools.add(block["toolUse"]["name"])
        if turn["role"] == "assistant":
            continue
        before = turns[n - 1]["content"] if n else []
        pending = [b["toolUse"]["toolUseId"] for b in before if "toolUse" in b]
        results = [b["toolResult"]["toolUseId"] for b in blocks if "toolResult" in b]
        assert sorted(results) == sorted(pending), "every toolUse needs exactly one toolResult"
        assert all("toolResult" in b for b in blocks[: len(results)]), "tool results come first"
    assert not any("toolUse" in b for b in turns[-1]["content"]), "unanswered trailing tool calls"
    assert cache_points <= 4
    for blocks in [kwargs.get("system", []), kwargs.get("toolConfig", {}).get("tools", [])] + [
        t["content"] for t in turns
    ]:
        assert not blocks or "cachePoint" not in blocks[0], "a cache point must follow content"
        for a, b in pairwise(blocks):
            assert not ("cachePoint" in a and "cachePoint" in b), "two cache points in a row"
    if has_tool_blocks:
        declared = {t["toolSpec"]["name"] for t in kwargs["toolConfig"]["tools"] if "toolSpec" in t}
        assert used_tools <= declared


@settings(max_examples=300, deadline=None)
@given(body=conversations(), caps=CAPS, auto_cache=st.booleans())
def test_any_valid_conversation_yields_a_converse_request_bedrock_accepts(
    body: dict[str, Any], caps: ModelCapabilities, auto_cache: bool
) -> None:
    request = parse_chat_request(body)
    request.auto_cache = auto_cache
    check_bedrock_rules(to_converse(request, "model-id", None, {}, caps))
