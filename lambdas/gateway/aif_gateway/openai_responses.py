"""OpenAI's Responses API (``POST /v1/responses``), stateless subset: request parsing, translation to the
gateway's internal request model (``ChatRequest``) and the ``response`` object.

The gateway stores no conversation state: ``previous_response_id``, ``conversation``, ``store: true``
and ``background`` are refused with a 400 naming the field, and the client sends the whole
conversation as ``input`` items each turn (what Codex and the OpenAI Agents SDK do with ``store:
false``). Items map to the Chat Completions messages the rest of the gateway serves:

- ``message`` items (``input_text``, ``input_image`` data URLs, ``output_text``) -> messages by role;
- ``function_call`` items -> the assistant's tool calls (consecutive calls join one assistant turn);
- ``function_call_output`` items -> tool results; ``reasoning`` items -> dropped (no state to resume);
- ``instructions`` -> a system message first; ``text.format`` -> ``response_format``;
  ``reasoning.effort`` -> ``reasoning_effort``; ``max_output_tokens`` -> ``max_tokens``;
- ``function`` tools -> chat tools, also those grouped in a ``namespace`` tool (Codex groups its
  sub-agent tools so); ``web_search`` tools are not offered (no model behind the gateway searches the
  web), any other built-in tool is a 400.

Every field is in exactly one of SUPPORTED_FIELDS, IGNORED_FIELDS or REFUSED_FIELDS (docs/gateway.md's
"Responses API compatibility" table is checked against them); any other field is a 400 naming it.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import InvalidRequest
from .openai_schema import (
    REASONING_EFFORTS,
    ChatRequest,
    _kind,
    _number,
    _positive_int,
    _require_str,
    check_conversation,
    check_fields,
    function_tool,
)
from .provider_types import ChatResult, TokenUsage

SUPPORTED_FIELDS = (
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_output_tokens",
    "temperature",
    "top_p",
    "text",
    "reasoning",
    "stream",
    "store",
)
IGNORED_FIELDS = {
    "metadata": "kept by OpenAI with a stored response; the gateway stores none",
    "user": "the API key identifies team and feature",
    "safety_identifier": "the API key identifies team and feature",
    "prompt_cache_key": "Bedrock caches by prefix; cache points come from the route's prompt_cache setting",
    "service_tier": "the gateway's route decides capacity",
    "truncation": "the gateway never truncates input; an input over the context window is a 400",
    "include": "extra output (encrypted reasoning, logprobs) that only OpenAI's models produce",
    "top_logprobs": "the gateway's models return no log probabilities",
    "stream_options": "streamed usage always arrives in response.completed",
    "client_metadata": (
        "the client's own tags (Codex sends its session and turn IDs); the key identifies team and feature"
    ),
}
REFUSED_FIELDS = {
    "previous_response_id": "the gateway stores no responses; send the whole conversation as input items",
    "conversation": "the gateway stores no conversations; send the whole conversation as input items",
    "background": "the gateway runs no background responses",
    "prompt": "OpenAI-hosted prompts do not exist here; chat completions take the gateway's own prompts",
    "max_tool_calls": "built-in tools are not offered",
}
ROLES = ("user", "system", "developer", "assistant")
# Built-in tools left out rather than refused: Codex offers web search by default, and a model that is
# not offered a tool cannot call it.
UNOFFERED_TOOLS = ("web_search", "web_search_preview")
TEXT_PARTS = ("input_text", "output_text", "refusal")


def parse_responses_request(data: dict[str, Any]) -> ChatRequest:
    """A validated Responses request as the gateway's internal ``ChatRequest``."""
    check_fields(data, SUPPORTED_FIELDS, IGNORED_FIELDS, REFUSED_FIELDS, "Responses API")
    model = _require_str(data, "model", "model")
    if data.get("store") not in (None, False):
        raise InvalidRequest(
            "'store' must be false or absent: the gateway stores no responses (stateless Responses API).",
            param="store",
        )
    messages: list[dict[str, Any]] = []
    instructions = data.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise InvalidRequest("'instructions' must be a string.", param="instructions")
        if instructions.strip():
            messages.append({"role": "system", "content": instructions})
    messages += _parse_input(data.get("input"))
    check_conversation(messages)
    tools = _parse_tools(data.get("tools"))
    parallel = data.get("parallel_tool_calls", True)
    if parallel is None:
        parallel = True
    if not isinstance(parallel, bool):
        raise InvalidRequest("'parallel_tool_calls' must be true or false.", param="parallel_tool_calls")
    stream = data.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest(f"'stream' must be true or false, not {_kind(stream)}.", param="stream")
    return ChatRequest(
        model=model,
        messages=messages,
        temperature=_number(data, "temperature", 0.0, 2.0),
        top_p=_number(data, "top_p", 0.0, 1.0),
        max_tokens=_positive_int(data, "max_output_tokens", 1_000_000),
        tools=tools,
        tool_choice=_parse_tool_choice(data.get("tool_choice"), tools),
        response_format=_parse_text(data.get("text")),
        stream=bool(stream),
        include_usage=True,
        parallel_tool_calls=parallel,
        reasoning_effort=_parse_reasoning(data.get("reasoning")),
    )


def _parse_input(raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        raise InvalidRequest("'input' is required.", param="input", code="missing_field")
    if isinstance(raw, str):
        return [{"role": "user", "content": raw}]
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("'input' must be a string or a non-empty array of items.", param="input")
    out: list[dict[str, Any]] = []
    call_ids: set[str] = set()
    for i, item in enumerate(raw):
        path = f"input[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"'{path}' must be an object, not {_kind(item)}.", param=path)
        kind = item.get("type", "message")
        if kind == "message":
            out.append(_message(item, path))
        elif kind == "function_call":
            call_id = _require_str(item, "call_id", f"{path}.call_id")
            name = _require_str(item, "name", f"{path}.name")
            args = _require_str(item, "arguments", f"{path}.arguments", allow_empty=True)
            try:
                parsed = json.loads(args or "{}")
            except ValueError:
                parsed = None
            if not isinstance(parsed, dict):
                raise InvalidRequest(
                    f"'{path}.arguments' must be a JSON object encoded as a string.",
                    param=f"{path}.arguments",
                )
            call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": args or "{}"}}
            call_ids.add(call_id)
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            call_id = _require_str(item, "call_id", f"{path}.call_id")
            if call_id not in call_ids:
                raise InvalidRequest(
                    f"'{path}.call_id' ({call_id[:64]!r}) matches no earlier function_call item.",
                    param=f"{path}.call_id",
                )
            out.append(
                {"role": "tool", "tool_call_id": call_id, "content": _output_text(item.get("output"), path)}
            )
        elif kind == "reasoning":
            continue  # reasoning of an earlier turn: nothing to resume it with (stateless)
        else:
            raise InvalidRequest(
                f"'{path}.type' must be message, function_call, function_call_output or reasoning; "
                f"got {json.dumps(kind)[:50]} (built-in tools and item references are not supported).",
                param=f"{path}.type",
            )
    return out


def _message(item: dict[str, Any], path: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in ROLES:
        raise InvalidRequest(
            f"'{path}.role' must be one of {', '.join(ROLES)}; got {json.dumps(role)[:40]}.",
            param=f"{path}.role",
        )
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise InvalidRequest(
            f"'{path}.content' must be a string or an array of parts, not {_kind(content)}.",
            param=f"{path}.content",
        )
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        p = f"{path}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in TEXT_PARTS:
            assert isinstance(part, dict)
            key = "refusal" if kind == "refusal" else "text"
            parts.append({"type": "text", "text": _require_str(part, key, f"{p}.{key}", allow_empty=True)})
        elif kind == "input_image" and role == "user":
            assert isinstance(part, dict)
            url = part.get("image_url")
            if not isinstance(url, str) or not url.startswith("data:image/"):
                raise InvalidRequest(
                    f"'{p}.image_url' must be a data:image/...;base64 URL; the gateway does not fetch remote "
                    "content or OpenAI files.",
                    param=f"{p}.image_url",
                )
            parts.append({"type": "image_url", "image_url": {"url": url}})
        else:
            raise InvalidRequest(
                f"'{p}.type' must be input_text, output_text, refusal or (user) input_image; "
                f"got {json.dumps(kind)[:50]}.",
                param=f"{p}.type",
            )
    return {"role": role, "content": parts or ""}


def _output_text(output: Any, path: str) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        texts = []
        for k, part in enumerate(output):
            if not isinstance(part, dict) or part.get("type") not in ("input_text", "output_text"):
                raise InvalidRequest(
                    f"'{path}.output[{k}].type' must be input_text: tool results reach the model as text.",
                    param=f"{path}.output[{k}].type",
                )
            texts.append(_require_str(part, "text", f"{path}.output[{k}].text", allow_empty=True))
        return "\n".join(texts)
    raise InvalidRequest(
        f"'{path}.output' must be a string or an array of text parts.", param=f"{path}.output"
    )


def _parse_tools(raw: Any) -> list[dict[str, Any]] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise InvalidRequest(f"'tools' must be an array, not {_kind(raw)}.", param="tools")
    tools: list[dict[str, Any]] = []
    names: set[str] = set()
    for i, tool in enumerate(raw):
        path = f"tools[{i}]"
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind in UNOFFERED_TOOLS:
            continue
        if kind == "namespace":
            assert isinstance(tool, dict)
            members = tool.get("tools")
            if not isinstance(members, list):
                raise InvalidRequest(
                    f"'{path}.tools' must be an array of function tools.", param=f"{path}.tools"
                )
            tools.extend(
                _function_tool(member, f"{path}.tools[{j}]", names) for j, member in enumerate(members)
            )
            continue
        tools.append(_function_tool(tool, path, names))
    return tools or None


def _function_tool(tool: Any, path: str, names: set[str]) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        kind = tool.get("type") if isinstance(tool, dict) else None
        raise InvalidRequest(
            f'\'{path}.type\' must be "function" or "namespace"; got {json.dumps(kind)[:50]} (OpenAI\'s '
            "built-in tools run on OpenAI's side and are not offered).",
            param=f"{path}.type",
        )
    fn = function_tool(tool, path, names, "parameters", {"type": "object", "properties": {}})
    return {"type": "function", "function": fn}  # ``strict``: Converse validates no schema


def _parse_tool_choice(raw: Any, tools: list[dict[str, Any]] | None) -> str | dict[str, Any] | None:
    if raw is None:
        return None
    if raw in ("none", "auto"):
        return str(raw)
    if raw == "required":
        if not tools:
            raise InvalidRequest("'tool_choice' is required but no 'tools' were given.", param="tool_choice")
        return "required"
    if isinstance(raw, dict) and raw.get("type") == "function":
        name = raw.get("name")
        if name not in {t["function"]["name"] for t in tools or []}:
            raise InvalidRequest(
                f"'tool_choice.name' must name one of the given tools; got {json.dumps(name)[:60]}.",
                param="tool_choice.name",
            )
        return {"type": "function", "function": {"name": name}}
    raise InvalidRequest(
        "'tool_choice' must be none, auto, required or {type: function, name}.", param="tool_choice"
    )


def _parse_text(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidRequest(f"'text' must be an object, not {_kind(raw)}.", param="text")
    unknown = sorted(k for k in raw if k not in ("format", "verbosity"))
    if unknown:
        raise InvalidRequest(
            f"Unknown field 'text.{unknown[0]}'.", param=f"text.{unknown[0]}", code="unknown_field"
        )
    fmt = raw.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
        raise InvalidRequest(
            "'text.format.type' must be text, json_object or json_schema.", param="text.format.type"
        )
    if fmt["type"] == "text":
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise InvalidRequest("'text.format.schema' must be a JSON Schema object.", param="text.format.schema")
    spec: dict[str, Any] = {"schema": schema}
    if isinstance(fmt.get("name"), str):
        spec["name"] = fmt["name"]
    return {"type": "json_schema", "json_schema": spec}


def _parse_reasoning(raw: Any) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidRequest(f"'reasoning' must be an object, not {_kind(raw)}.", param="reasoning")
    effort = raw.get("effort")
    if effort is None:
        return None
    if effort not in REASONING_EFFORTS:
        raise InvalidRequest(
            f"'reasoning.effort' must be one of {', '.join(REASONING_EFFORTS)}.", param="reasoning.effort"
        )
    return None if effort == "none" else str(effort)


# -- the response object -------------------------------------------------------------------------------


def usage_body(usage: TokenUsage) -> dict[str, Any]:
    """The Responses ``usage``: input tokens include cached ones (OpenAI's convention)."""
    prompt = usage.input + usage.cache_read + usage.cache_write
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": usage.cache_read},
        "output_tokens": usage.output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + usage.output,
    }


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": []}] if status == "completed" else []
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str = "completed"
) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def response_body(
    response_id: str,
    created_at: int,
    model: str,
    request: ChatRequest,
    *,
    status: str,
    output: list[dict[str, Any]],
    usage: TokenUsage | None,
    finish_reason: str | None = None,
    error: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The ``response`` object (also the payload of the stream's created/completed events)."""
    incomplete = {"reason": "max_output_tokens"} if finish_reason == "length" else None
    if finish_reason == "content_filter":
        incomplete = {"reason": "content_filter"}
    if status == "completed" and incomplete:
        status = "incomplete"
    fmt: dict[str, Any] = {"type": "text"}
    if request.response_format:
        fmt = {"type": request.response_format["type"]}
        if fmt["type"] == "json_schema":
            fmt.update(request.response_format["json_schema"])
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": request.parallel_tool_calls,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_output_tokens": request.max_tokens,
        "tool_choice": _choice_out(request.tool_choice),
        "tools": [{"type": "function", "strict": False, **t["function"]} for t in request.tools or []],
        "text": {"format": fmt},
        "reasoning": {"effort": request.reasoning_effort, "summary": None},
        "store": False,
        "metadata": {},
        "usage": usage_body(usage) if usage is not None else None,
    }


def _choice_out(choice: str | dict[str, Any] | None) -> Any:
    if choice is None:
        return "auto"
    if isinstance(choice, dict):
        return {"type": "function", "name": choice["function"]["name"]}
    return choice


def output_items(request_id: str, result: ChatResult) -> list[dict[str, Any]]:
    """The output of a finished answer: its text as one message item, then one item per tool call."""
    items: list[dict[str, Any]] = []
    if result.text or not result.tool_calls:
        items.append(message_item(f"msg_{request_id}", result.text))
    for n, call in enumerate(result.tool_calls):
        fn = call["function"]
        items.append(function_call_item(f"fc_{request_id}_{n}", call["id"], fn["name"], fn["arguments"]))
    return items
