"""The Anthropic Messages API (``POST /v1/messages``): request parsing, translation to the gateway's
internal request model (``ChatRequest``) and the response and error shapes.

A Messages request becomes the same ``ChatRequest`` a Chat Completions request does, so it is routed,
metered, audited and sent to Bedrock Converse (``bedrock_translate``) by the same code:

- ``system`` (a string or text blocks) becomes a system message; ``cache_control`` on a block or a tool
  becomes a Converse cache point (models whose catalog entry has ``prompt_caching``);
- ``tool_use`` blocks become the assistant's tool calls and ``tool_result`` blocks become tool results
  (``is_error`` results are prefixed ``Error:``); base64 ``image`` blocks become images;
- ``thinking`` (``enabled`` with ``budget_tokens``) becomes the model's extended-thinking budget,
  ``adaptive`` the budget of ``output_config.effort``; ``thinking``/``redacted_thinking`` blocks of
  earlier turns are dropped (the gateway sends no thinking in a tool loop, see docs/gateway.md);
- ``output_config.format`` (``json_schema``) becomes Converse structured output;
- ``tool_choice`` ``auto``/``any``/``tool``/``none`` and ``disable_parallel_tool_use`` map to their
  Chat Completions equivalents;
- what Claude Code sends with its beta features: ``system`` turns inside ``messages`` join the system
  prompt, tools with ``defer_loading`` are offered only once a ``tool_reference`` block of a tool result
  names them (tool search), and ``context_management`` is ignored (see IGNORED_FIELDS).

Every field is in exactly one of SUPPORTED_FIELDS, IGNORED_FIELDS or REFUSED_FIELDS (docs/gateway.md's
"Messages API compatibility" table is checked against them); any other field is a 400 naming it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import GatewayError, InvalidRequest
from .openai_schema import ChatRequest, _kind, _number, _require_str, check_fields, function_tool
from .provider_types import ChatResult, TokenUsage

SUPPORTED_FIELDS = (
    "model",
    "messages",
    "max_tokens",
    "system",
    "stop_sequences",
    "temperature",
    "top_p",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
    "stream",
)
IGNORED_FIELDS = {
    "metadata": "metadata.user_id is not sent to the model; the API key identifies team and feature",
    "service_tier": "the gateway's route decides capacity",
    "context_management": (
        "server-side context editing (Claude Code's clear_thinking, clear_tool_uses); the gateway sends "
        "the conversation as the client gives it and drops earlier thinking blocks itself"
    ),
}
REFUSED_FIELDS = {
    "top_k": "Bedrock Converse has no portable top_k",
    "mcp_servers": "the gateway does not connect to MCP servers",
    "container": "the gateway runs no code-execution containers",
}
# Content block types, by role; anything else is refused with a 400 naming the block.
USER_BLOCKS = ("text", "image", "tool_result")
ASSISTANT_BLOCKS = ("text", "tool_use", "thinking", "redacted_thinking")
# Blocks of a tool_result's content: text, images (a file the tool read), and tool search's references
# to deferred tools.
TOOL_RESULT_BLOCKS = ("text", "image", "tool_reference")
TOOL_CHOICES = ("auto", "any", "tool", "none")
THINKING_TYPES = ("enabled", "adaptive", "disabled")
MIN_THINKING_BUDGET = 1024
# output_config.effort -> the gateway's reasoning effort (its extended-thinking budget, bedrock_translate).
EFFORTS = {"low": "low", "medium": "medium", "high": "high", "max": "high"}
OUTPUT_CONFIG_KEYS = ("effort", "format")
# anthropic-version: any dated version is accepted (the official SDKs send their release's date); the
# gateway answers in the Messages shape those versions share. Anything else is a 400.
_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Client model names (claude-..., gpt-...) reach an approved route through the catalog's model_aliases.

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    501: "api_error",
    503: "overloaded_error",
}


def parse_messages_request(data: dict[str, Any]) -> ChatRequest:
    """A validated Messages request as the gateway's internal ``ChatRequest``."""
    check_fields(data, SUPPORTED_FIELDS, IGNORED_FIELDS, REFUSED_FIELDS, "Messages API")
    model = _require_str(data, "model", "model")
    max_tokens = data.get("max_tokens")
    if max_tokens is None:
        raise InvalidRequest("'max_tokens' is required.", param="max_tokens", code="missing_field")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise InvalidRequest(
            f"'max_tokens' must be a positive integer; got {json.dumps(max_tokens)[:40]}.", param="max_tokens"
        )
    _parse_metadata(data.get("metadata"))
    declared, deferred = _parse_tools(data.get("tools"))
    referenced: set[str] = set()
    messages = _system_messages(data.get("system")) + _parse_messages(data.get("messages"), referenced)
    # Tool search: a deferred tool is offered once a tool_reference block has loaded it.
    tools = [t for t in declared if t["function"]["name"] not in deferred - referenced] or None
    choice, parallel = _parse_tool_choice(data.get("tool_choice"), tools)
    stream = data.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest(f"'stream' must be true or false, not {_kind(stream)}.", param="stream")
    output_effort, response_format = _parse_output_config(data.get("output_config"))
    effort, budget = _parse_thinking(data.get("thinking"), max_tokens, output_effort)
    return ChatRequest(
        model=model,
        messages=messages,
        temperature=_number(data, "temperature", 0.0, 1.0),
        top_p=_number(data, "top_p", 0.0, 1.0),
        max_tokens=max_tokens,
        stop=_parse_stop_sequences(data.get("stop_sequences")),
        tools=tools,
        tool_choice=choice,
        response_format=response_format,
        stream=bool(stream),
        include_usage=True,
        parallel_tool_calls=parallel,
        reasoning_effort=effort,
        thinking_budget=budget,
    )


def check_version(value: str | None) -> None:
    """The ``anthropic-version`` header: absent or a dated version (``2023-06-01``); else a 400."""
    if value is not None and not _VERSION.match(value.strip()):
        raise InvalidRequest(
            f"anthropic-version {value[:40]!r} is not a version; send a date such as 2023-06-01.",
            param="anthropic-version",
        )


def _parse_metadata(raw: Any) -> None:
    if raw is None:
        return
    if not isinstance(raw, dict):
        raise InvalidRequest(f"'metadata' must be an object, not {_kind(raw)}.", param="metadata")
    user = raw.get("user_id")
    if user is not None and not isinstance(user, str):
        raise InvalidRequest("'metadata.user_id' must be a string.", param="metadata.user_id")


def _cache_control(block: dict[str, Any], path: str) -> dict[str, str] | None:
    """``{"type": "ephemeral"}``, with an optional ``ttl`` (``5m``/``1h``) that is not sent on: cache
    points use Bedrock's default lifetime, which the catalog's cache-write price is for."""
    value = block.get("cache_control")
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type") != "ephemeral":
        raise InvalidRequest(f'\'{path}.cache_control\' must be {{"type": "ephemeral"}}.', param=path)
    if value.get("ttl") not in (None, "5m", "1h"):
        raise InvalidRequest(
            f"'{path}.cache_control.ttl' must be 5m or 1h.", param=f"{path}.cache_control.ttl"
        )
    return {"type": "ephemeral"}


def _text_part(block: dict[str, Any], path: str) -> dict[str, Any]:
    text = block.get("text")
    if not isinstance(text, str):
        raise InvalidRequest(f"'{path}.text' must be a string, not {_kind(text)}.", param=f"{path}.text")
    part: dict[str, Any] = {"type": "text", "text": text}
    cache = _cache_control(block, path)
    if cache:
        part["cache_control"] = cache
    return part


def _system_messages(system: Any) -> list[dict[str, Any]]:
    if system is None:
        return []
    if isinstance(system, str):
        return [{"role": "system", "content": system}] if system.strip() else []
    if not isinstance(system, list):
        raise InvalidRequest(
            f"'system' must be a string or an array of text blocks, not {_kind(system)}.", param="system"
        )
    parts = []
    for i, block in enumerate(system):
        path = f"system[{i}]"
        if not isinstance(block, dict) or block.get("type") != "text":
            raise InvalidRequest(f"'{path}.type' must be \"text\".", param=f"{path}.type")
        parts.append(_text_part(block, path))
    return [{"role": "system", "content": parts}] if parts else []


def _parse_messages(raw: Any, referenced: set[str]) -> list[dict[str, Any]]:
    """The conversation as chat messages; ``referenced`` collects the tools tool_reference blocks name.
    A ``system`` turn (Claude Code sends its environment notes as one) joins the system prompt."""
    if raw is None:
        raise InvalidRequest("'messages' is required.", param="messages", code="missing_field")
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("'messages' must be a non-empty array.", param="messages")
    out: list[dict[str, Any]] = []
    call_ids: set[str] = set()
    for i, message in enumerate(raw):
        path = f"messages[{i}]"
        if not isinstance(message, dict):
            raise InvalidRequest(f"'{path}' must be an object, not {_kind(message)}.", param=path)
        role = message.get("role")
        if role not in ("user", "assistant", "system"):
            raise InvalidRequest(
                f"'{path}.role' must be user, assistant or system; got {json.dumps(role)[:40]}.",
                param=f"{path}.role",
            )
        if i == 0 and role != "user":
            raise InvalidRequest("'messages[0].role' must be user.", param="messages[0].role")
        content = message.get("content")
        if role == "system":
            out.extend(_system_turn(content, path))
            continue
        if isinstance(content, str):
            out.append({"role": role, "content": content})
            continue
        if not isinstance(content, list):
            raise InvalidRequest(
                f"'{path}.content' must be a string or an array of content blocks, not {_kind(content)}.",
                param=f"{path}.content",
            )
        if role == "user":
            out.extend(_user_message(content, path, call_ids, referenced))
        else:
            out.append(_assistant_message(content, path, call_ids))
    return out


def _system_turn(content: Any, path: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"role": "system", "content": content}] if content.strip() else []
    if not isinstance(content, list):
        raise InvalidRequest(
            f"'{path}.content' must be a string or an array of text blocks, not {_kind(content)}.",
            param=f"{path}.content",
        )
    parts = []
    for j, block in enumerate(content):
        p = f"{path}.content[{j}]"
        _block_type(block, p, ("text",), "system")
        parts.append(_text_part(block, p))
    return [{"role": "system", "content": parts}] if parts else []


def _user_message(
    content: list[Any], path: str, call_ids: set[str], referenced: set[str]
) -> list[dict[str, Any]]:
    """Tool results become tool messages (first, as Converse wants them); the rest one user message."""
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    tool_images: list[dict[str, Any]] = []  # images returned by tools: after the results, in the user turn
    for j, block in enumerate(content):
        p = f"{path}.content[{j}]"
        kind = _block_type(block, p, USER_BLOCKS, "user")
        if kind == "text":
            parts.append(_text_part(block, p))
        elif kind == "image":
            parts.append(_image_part(block, p))
        else:
            use_id = _require_str(block, "tool_use_id", f"{p}.tool_use_id")
            if use_id not in call_ids:
                raise InvalidRequest(
                    f"'{p}.tool_use_id' ({use_id[:64]!r}) matches no tool_use block of an earlier "
                    "assistant message.",
                    param=f"{p}.tool_use_id",
                )
            images: list[dict[str, Any]] = []
            text = _tool_result_text(block.get("content"), p, referenced, images)
            if images:
                # Converse takes images in the user turn, not inside a tool result: they follow the
                # results there, and the result says so (the model reads them as the tool's output).
                count = f"{len(images)} image{'s' if len(images) > 1 else ''}"
                text = (
                    f"{text}\n[{count} from this tool result follow{'' if len(images) > 1 else 's'}]".lstrip()
                )
                tool_images += images
            if block.get("is_error") is True:
                text = f"Error: {text}" if text.strip() else "Error"
            result: dict[str, Any] = {"role": "tool", "tool_call_id": use_id, "content": text}
            if _cache_control(block, p):  # Claude Code marks the newest turn, a tool result in a loop
                result["cache_control"] = {"type": "ephemeral"}
            results.append(result)
    parts = tool_images + parts
    return results + ([{"role": "user", "content": parts}] if parts else [])


def _tool_result_text(content: Any, path: str, referenced: set[str], images: list[dict[str, Any]]) -> str:
    """A tool result as the text the model is sent; a ``tool_reference`` block (tool search loaded a
    deferred tool) becomes a line naming the tool, which is then offered (``referenced``); ``image``
    blocks are appended to ``images``."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest(
            f"'{path}.content' must be a string or an array of text blocks.", param=f"{path}.content"
        )
    texts = []
    for k, block in enumerate(content):
        p = f"{path}.content[{k}]"
        if not isinstance(block, dict) or block.get("type") not in TOOL_RESULT_BLOCKS:
            raise InvalidRequest(
                f"'{p}.type' must be text, image or tool_reference: the gateway sends tool results to "
                "the model as text and images.",
                param=f"{p}.type",
            )
        if block["type"] == "image":
            images.append(_image_part(block, p))
        elif block["type"] == "tool_reference":
            name = _require_str(block, "tool_name", f"{p}.tool_name")
            referenced.add(name)
            texts.append(f"Tool {name} is now available.")
        else:
            texts.append(_text_part(block, p)["text"])
    return "\n".join(texts)


def _assistant_message(content: list[Any], path: str, call_ids: set[str]) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        p = f"{path}.content[{j}]"
        kind = _block_type(block, p, ASSISTANT_BLOCKS, "assistant")
        if kind == "text":
            parts.append(_text_part(block, p))
        elif kind == "tool_use":
            use_id = _require_str(block, "id", f"{p}.id")
            name = _require_str(block, "name", f"{p}.name")
            args = block.get("input", {})
            if not isinstance(args, dict):
                raise InvalidRequest(f"'{p}.input' must be an object.", param=f"{p}.input")
            call_ids.add(use_id)
            calls.append(
                {"id": use_id, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
            )
        # thinking / redacted_thinking: dropped (see the module docstring)
    message: dict[str, Any] = {"role": "assistant", "content": parts}
    if calls:
        message["tool_calls"] = calls
    return message


def _block_type(block: Any, path: str, allowed: tuple[str, ...], role: str) -> str:
    if not isinstance(block, dict):
        raise InvalidRequest(f"'{path}' must be an object, not {_kind(block)}.", param=path)
    kind = block.get("type")
    if kind not in allowed:
        raise InvalidRequest(
            f"'{path}.type' must be one of {', '.join(allowed)} in a {role} message; "
            f"got {json.dumps(kind)[:50]}.",
            param=f"{path}.type",
        )
    return str(kind)


def _image_part(block: dict[str, Any], path: str) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, dict) or source.get("type") != "base64":
        raise InvalidRequest(
            f"'{path}.source.type' must be base64; the gateway does not fetch remote content.",
            param=f"{path}.source.type",
        )
    media = _require_str(source, "media_type", f"{path}.source.media_type")
    data = _require_str(source, "data", f"{path}.source.data")
    if not media.startswith("image/"):
        raise InvalidRequest(
            f"'{path}.source.media_type' must be an image type.", param=f"{path}.source.media_type"
        )
    part: dict[str, Any] = {"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}}
    cache = _cache_control(block, path)
    if cache:
        part["cache_control"] = cache
    return part


def _parse_tools(raw: Any) -> tuple[list[dict[str, Any]], set[str]]:
    """(the custom tools as chat tools, the names of those with ``defer_loading: true``). Other keys of
    a tool: ``strict`` (Bedrock validates against the schema given), ``input_examples`` and
    ``eager_input_streaming`` pass unused (input is streamed as the model writes it anyway)."""
    if raw is None:
        return [], set()
    if not isinstance(raw, list):
        raise InvalidRequest(f"'tools' must be an array, not {_kind(raw)}.", param="tools")
    tools: list[dict[str, Any]] = []
    names: set[str] = set()
    deferred: set[str] = set()
    for i, tool in enumerate(raw):
        path = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise InvalidRequest(f"'{path}' must be an object.", param=path)
        kind = tool.get("type", "custom")
        if kind not in (None, "custom"):
            raise InvalidRequest(
                f"'{path}.type' {json.dumps(kind)[:50]} is a server tool Anthropic runs itself; the gateway "
                'offers custom tools only (no type, or "custom").',
                param=f"{path}.type",
            )
        fn = function_tool(tool, path, names, "input_schema")
        converted: dict[str, Any] = {"type": "function", "function": fn}
        cache = _cache_control(tool, path)
        if cache:
            converted["cache_control"] = cache
        defer = tool.get("defer_loading", False)
        if not isinstance(defer, bool):
            raise InvalidRequest(
                f"'{path}.defer_loading' must be true or false.", param=f"{path}.defer_loading"
            )
        if defer:
            deferred.add(fn["name"])
        tools.append(converted)
    return tools, deferred


def _parse_tool_choice(
    raw: Any, tools: list[dict[str, Any]] | None
) -> tuple[str | dict[str, Any] | None, bool]:
    """(Chat Completions tool_choice, parallel tool calls allowed)."""
    if raw is None:
        return None, True
    if not isinstance(raw, dict) or raw.get("type") not in TOOL_CHOICES:
        raise InvalidRequest(
            f"'tool_choice.type' must be one of {', '.join(TOOL_CHOICES)}.", param="tool_choice.type"
        )
    disable = raw.get("disable_parallel_tool_use", False)
    if not isinstance(disable, bool):
        raise InvalidRequest(
            "'tool_choice.disable_parallel_tool_use' must be true or false.",
            param="tool_choice.disable_parallel_tool_use",
        )
    kind = raw["type"]
    if kind in ("any", "tool") and not tools:
        raise InvalidRequest(f"'tool_choice.type' is {kind} but no 'tools' were given.", param="tool_choice")
    if kind == "tool":
        name = raw.get("name")
        known = {t["function"]["name"] for t in tools or []}
        if name not in known:
            raise InvalidRequest(
                f"'tool_choice.name' must name one of the given tools; got {json.dumps(name)[:60]}.",
                param="tool_choice.name",
            )
        return {"type": "function", "function": {"name": name}}, not disable
    return {"auto": "auto", "any": "required", "none": "none"}[kind], not disable


def _parse_output_config(raw: Any) -> tuple[str | None, dict[str, Any] | None]:
    """(the gateway's reasoning effort for ``effort``, a chat ``response_format`` for ``format``)."""
    if raw is None:
        return None, None
    if not isinstance(raw, dict):
        raise InvalidRequest(f"'output_config' must be an object, not {_kind(raw)}.", param="output_config")
    for name in raw:
        if name not in OUTPUT_CONFIG_KEYS:
            raise InvalidRequest(
                f"Unknown field 'output_config.{str(name)[:40]}' (known: {', '.join(OUTPUT_CONFIG_KEYS)}).",
                param=f"output_config.{str(name)[:40]}",
                code="unknown_field",
            )
    effort = raw.get("effort")
    if effort is not None and effort not in EFFORTS:
        raise InvalidRequest(
            f"'output_config.effort' must be one of {', '.join(EFFORTS)}; got {json.dumps(effort)[:40]}.",
            param="output_config.effort",
        )
    fmt = raw.get("format")
    response_format = None
    if fmt is not None:
        if (
            not isinstance(fmt, dict)
            or fmt.get("type") != "json_schema"
            or not isinstance(fmt.get("schema"), dict)
        ):
            raise InvalidRequest(
                '\'output_config.format\' must be {"type": "json_schema", "schema": {...}}.',
                param="output_config.format",
            )
        response_format = {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt["schema"]}}
    return (EFFORTS[effort] if effort is not None else None), response_format


def _parse_thinking(raw: Any, max_tokens: int, effort: str | None = None) -> tuple[str | None, int | None]:
    """(reasoning_effort, exact budget): ``enabled`` needs 1024 <= budget_tokens < max_tokens;
    ``adaptive`` (the model decides how much to think) takes the budget of ``output_config.effort``
    (default high, Anthropic's default effort)."""
    if raw is None:
        return None, None
    if not isinstance(raw, dict) or raw.get("type") not in THINKING_TYPES:
        raise InvalidRequest(
            f"'thinking.type' must be one of {', '.join(THINKING_TYPES)}.", param="thinking.type"
        )
    if raw["type"] == "disabled":
        return None, None
    if raw["type"] == "adaptive":
        return effort or "high", None
    budget = raw.get("budget_tokens")
    if (
        isinstance(budget, bool)
        or not isinstance(budget, int)
        or not MIN_THINKING_BUDGET <= budget < max_tokens
    ):
        raise InvalidRequest(
            f"'thinking.budget_tokens' must be an integer of at least {MIN_THINKING_BUDGET} and less than "
            f"max_tokens ({max_tokens}); got {json.dumps(budget)[:40]}.",
            param="thinking.budget_tokens",
        )
    return "high", budget


def _parse_stop_sequences(raw: Any) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(s, str) and s for s in raw):
        raise InvalidRequest(
            "'stop_sequences' must be an array of non-empty strings.", param="stop_sequences"
        )
    return list(raw)


# -- responses ---------------------------------------------------------------------------------------


def usage_body(usage: TokenUsage) -> dict[str, int]:
    """Anthropic's usage: ``input_tokens`` excludes cache reads and writes, as Bedrock's does."""
    return {
        "input_tokens": usage.input,
        "output_tokens": usage.output,
        "cache_creation_input_tokens": usage.cache_write,
        "cache_read_input_tokens": usage.cache_read,
    }


def message_body(message_id: str, model: str, result: ChatResult, usage: TokenUsage) -> dict[str, Any]:
    """The ``message`` object of a non-streamed answer."""
    content: list[dict[str, Any]] = []
    if result.reasoning:
        content.append(
            {"type": "thinking", "thinking": result.reasoning, "signature": result.reasoning_signature}
        )
    if result.text:
        content.append({"type": "text", "text": result.text})
    for call in result.tool_calls:
        fn = call["function"]
        content.append(
            {
                "type": "tool_use",
                "id": call["id"],
                "name": fn["name"],
                "input": json.loads(fn["arguments"] or "{}"),
            }
        )
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(result.finish_reason, result.stop_sequence),
        "stop_sequence": result.stop_sequence,
        "usage": usage_body(usage),
    }


def stop_reason(finish_reason: str, stop_sequence: str | None) -> str:
    """Anthropic's ``stop_reason``: ``stop_sequence`` when a known stop sequence ended the answer."""
    if finish_reason == "stop" and stop_sequence is not None:
        return "stop_sequence"
    return STOP_REASONS.get(finish_reason, "end_turn")


def error_body(exc: GatewayError, request_id: str) -> dict[str, Any]:
    """Anthropic's error shape, with the gateway's code kept in the message's prefix-free form."""
    kind = ERROR_TYPES.get(exc.status, "api_error" if exc.status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": exc.message}, "request_id": request_id}
