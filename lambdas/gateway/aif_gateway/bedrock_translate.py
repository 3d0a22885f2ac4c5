"""Translation between OpenAI chat requests/responses and Amazon Bedrock's Converse API.

Converse wants strictly alternating user/assistant turns that start with a user turn, system text
apart, tool calls as ``toolUse`` blocks and tool results as ``toolResult`` blocks inside a user turn.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from .config import GuardrailRef
from .errors import InvalidRequest
from .openai_schema import ChatRequest
from .provider_types import ChatResult, TokenUsage

JSON_OBJECT_INSTRUCTION = "Respond with a single valid JSON object and nothing else."

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
IMAGE_FORMATS = {"png", "jpeg", "gif", "webp"}


def to_converse(
    request: ChatRequest,
    model_id: str,
    guardrail: GuardrailRef | None,
    metadata: dict[str, str],
) -> dict[str, Any]:
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    has_tool_blocks = False

    def append(role: str, blocks: list[Any]) -> None:
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)  # Converse needs alternation: merge same-role turns
        else:
            turns.append({"role": role, "content": blocks})

    for i, message in enumerate(request.messages):
        role, content = message["role"], message.get("content")
        if role in ("system", "developer"):
            system.extend({"text": text} for text in _texts(content) if text)
        elif role == "user":
            append("user", _user_blocks(content, f"messages[{i}]"))
        elif role == "assistant":
            blocks: list[dict[str, Any]] = [{"text": t} for t in _texts(content) if t]
            for call in message.get("tool_calls") or []:
                has_tool_blocks = True
                fn = call["function"]
                blocks.append(
                    {
                        "toolUse": {
                            "toolUseId": call["id"],
                            "name": fn["name"],
                            "input": json.loads(fn.get("arguments") or "{}"),
                        }
                    }
                )
            if blocks:
                append("assistant", blocks)
        else:  # tool
            has_tool_blocks = True
            text = "\n".join(_texts(content))
            append(
                "user", [{"toolResult": {"toolUseId": message["tool_call_id"], "content": [{"text": text}]}}]
            )

    if not turns or turns[0]["role"] != "user":
        raise InvalidRequest(
            "The first non-system message must come from the user (Bedrock Converse requires it).",
            param="messages",
        )

    if request.response_format and request.response_format["type"] == "json_object":
        system.append({"text": JSON_OBJECT_INSTRUCTION})

    kwargs: dict[str, Any] = {"modelId": model_id, "messages": turns}
    if system:
        kwargs["system"] = system
    inference: dict[str, Any] = {}
    if request.max_tokens is not None:
        inference["maxTokens"] = request.max_tokens
    if request.temperature is not None:
        inference["temperature"] = request.temperature
    if request.top_p is not None:
        inference["topP"] = request.top_p
    if request.stop:
        inference["stopSequences"] = request.stop
    if inference:
        kwargs["inferenceConfig"] = inference
    tool_config = _tool_config(request, has_tool_blocks)
    if tool_config:
        kwargs["toolConfig"] = tool_config
    if request.response_format and request.response_format["type"] == "json_schema":
        spec = request.response_format["json_schema"]
        schema: dict[str, Any] = {"schema": json.dumps(spec["schema"])}
        if isinstance(spec.get("name"), str):
            schema["name"] = spec["name"]
        kwargs["outputConfig"] = {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": schema}}}
    if guardrail is not None:
        kwargs["guardrailConfig"] = {
            "guardrailIdentifier": guardrail.identifier,
            "guardrailVersion": guardrail.version,
            "trace": "enabled",
        }
    if metadata:
        kwargs["requestMetadata"] = metadata
    return kwargs


def _texts(content: Any) -> list[str]:
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    return [part["text"] for part in content if part.get("type") == "text"]


def _user_blocks(content: Any, path: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content or " "}]
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        if part["type"] == "text":
            blocks.append({"text": part["text"] or " "})
        else:
            blocks.append(
                {"image": _image_block(part["image_url"]["url"], f"{path}.content[{j}].image_url.url")}
            )
    return blocks


def _image_block(url: str, path: str) -> dict[str, Any]:
    header, _, data = url.partition(",")
    fmt = header[len("data:image/") :].split(";")[0]
    if fmt == "jpg":
        fmt = "jpeg"
    if fmt not in IMAGE_FORMATS or ";base64" not in header:
        raise InvalidRequest(
            f"'{path}' must be a base64 data URL of a png, jpeg, gif or webp image.", param=path
        )
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"'{path}' holds invalid base64 data.", param=path) from None
    return {"format": fmt, "source": {"bytes": raw}}


def _tool_config(request: ChatRequest, has_tool_blocks: bool) -> dict[str, Any] | None:
    if not request.tools:
        return None
    # Converse has no "none": without tool history the tools are left out; with it, Bedrock requires
    # the tool definitions, so they stay and the model is merely not forced (documented limitation).
    if request.tool_choice == "none" and not has_tool_blocks:
        return None
    tools = []
    for tool in request.tools:
        fn = tool["function"]
        spec: dict[str, Any] = {
            "name": fn["name"],
            "inputSchema": {"json": fn.get("parameters") or {"type": "object", "properties": {}}},
        }
        if fn.get("description"):
            spec["description"] = fn["description"]
        tools.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": tools}
    choice = request.tool_choice
    if choice == "required":
        config["toolChoice"] = {"any": {}}
    elif isinstance(choice, dict):
        config["toolChoice"] = {"tool": {"name": choice["function"]["name"]}}
    elif choice == "auto":
        config["toolChoice"] = {"auto": {}}
    return config


def from_converse(response: dict[str, Any]) -> ChatResult:
    message = response.get("output", {}).get("message", {})
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in message.get("content", []):
        if "text" in block:
            texts.append(block["text"])
        elif "toolUse" in block:
            use = block["toolUse"]
            tool_calls.append(
                {
                    "id": use["toolUseId"],
                    "type": "function",
                    "function": {"name": use["name"], "arguments": json.dumps(use.get("input", {}))},
                }
            )
    stop_reason = response.get("stopReason", "end_turn")
    usage = response.get("usage", {})
    return ChatResult(
        text="".join(texts),
        finish_reason=STOP_REASONS.get(stop_reason, "stop"),
        usage=TokenUsage(
            input=int(usage.get("inputTokens", 0)),
            output=int(usage.get("outputTokens", 0)),
            cache_read=int(usage.get("cacheReadInputTokens", 0) or 0),
            cache_write=int(usage.get("cacheWriteInputTokens", 0) or 0),
        ),
        tool_calls=tool_calls,
        guardrail_intervened=stop_reason == "guardrail_intervened",
    )
