"""Parsing and validation of OpenAI-style request bodies.

Hand-written rather than a pydantic model so that every error names the exact field (``messages[2].
content[0].type``) and says why, and so that parsing stays in the microseconds the overhead budget
allows. Fields the gateway cannot honour are refused with a 400 rather than silently ignored; fields
that only tune sampling on OpenAI's own models (seed, penalties, user, ...) are accepted and dropped.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidRequest

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
# Chat Completions fields, each in exactly one list (docs/gateway.md's compatibility table is checked
# against these): SUPPORTED fields are honoured (translated or mapped), IGNORED_FIELDS only tune OpenAI's
# own models and are accepted without effect, REFUSED_FIELDS get a 400 saying why. Any other field is a
# 400 naming it, so a misspelt or new field is never silently dropped.
SUPPORTED_FIELDS = (
    "model",
    "messages",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "functions",
    "function_call",
    "response_format",
    "reasoning_effort",
    "stream",
    "stream_options",
    "n",
    "logprobs",
    "prompt",
    "retrieval",
)
IGNORED_FIELDS = frozenset(
    {
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "user",
        "logit_bias",
        "top_logprobs",
        "metadata",
        "store",
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "safety_identifier",
        "verbosity",
    }
)
REFUSED_FIELDS = {
    "audio": "audio output is not supported by the gateway's models",
    "modalities": "only text output is supported",
    "prediction": "predicted outputs are an OpenAI-only feature",
    "web_search_options": "the gateway's models do not search the web",
}
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high")
MAX_STOP_SEQUENCES = 4
# Token arrays are token IDs of OpenAI's tokenizer; the gateway's embedding models tokenize text their own
# way, so the IDs mean nothing to them. LangChain's OpenAIEmbeddings sends them by default.
TOKEN_ARRAY_HINT = (
    "'{path}' is a token array; the gateway embeds text only (its models use their own tokenizers). "
    "Send strings: with LangChain set OpenAIEmbeddings(check_embedding_ctx_length=False); with the openai "
    "SDK pass text, not token IDs."
)


@dataclass(frozen=True)
class PromptRef:
    """A registered prompt named by a chat request: ``version`` or ``alias`` (neither = production)."""

    name: str
    version: str | None = None
    alias: str | None = None
    variables: dict[str, str | int | float] = field(default_factory=dict)


@dataclass
class ChatRequest:
    model: str  # "" when a prompt is given without a model: the prompt version's model then applies
    messages: list[dict[str, Any]]
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    stream: bool = False
    include_usage: bool = False
    prompt: PromptRef | None = None
    parallel_tool_calls: bool = True  # False: at most one tool call per answer
    reasoning_effort: str | None = None  # one of REASONING_EFFORTS; "none" is stored as None
    # An exact extended-thinking budget (Anthropic ``thinking.budget_tokens``); with reasoning_effort set,
    # it replaces the effort's default budget.
    thinking_budget: int | None = None
    # Set by the gateway, not the client: the route asks for automatic cache points (after system and
    # tools); the serving model's catalog entry says whether cache points are sent at all.
    auto_cache: bool = False
    # The ``retrieval`` extension (``grounding.ChatRetrieval``, parsed by the gateway) and, once the
    # passages are in the messages, where they sit (``grounding.Grounding``, for the guardrail).
    retrieval: Any = None
    grounding: Any = None


@dataclass
class EmbeddingsRequest:
    model: str
    inputs: list[str]
    dimensions: int | None = None
    encoding_format: str = "float"


def parse_json_body(body: str | None) -> dict[str, Any]:
    if body is None or not body.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.", code="invalid_json")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise InvalidRequest(
            f"The request body must be a JSON object, not {_kind(data)}.", code="invalid_json"
        )
    # JSON may spell a lone UTF-16 surrogate as an escape; such text cannot be stored or sent on as
    # UTF-8. Only bodies that contain a surrogate escape at all pay for the full check.
    if _SURROGATE_ESCAPE.search(body) and _has_lone_surrogate(data):
        raise InvalidRequest(
            "The request body holds an unpaired UTF-16 surrogate escape (\\ud800-\\udfff); send valid "
            "Unicode text.",
            code="invalid_json",
        )
    return data


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= ch <= "\udfff" for ch in value)
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


def reject_unknown_fields(body: dict[str, Any], fields: tuple[str, ...], endpoint: str) -> None:
    """For endpoints of our own (no OpenAI clients sending extras): a misspelt field is an error, not
    something silently dropped."""
    unknown = sorted(str(k) for k in body if k not in fields)
    if unknown:
        raise InvalidRequest(
            f"Unknown field '{unknown[0]}'; {endpoint} takes {', '.join(fields)}.",
            param=unknown[0],
            code="unknown_field",
        )


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def function_tool(
    tool: dict[str, Any], path: str, names: set[str], schema_field: str, default_schema: Any = None
) -> dict[str, Any]:
    """A client-declared function tool as the internal ``{"name", "parameters", "description"?}``: its
    name unique in the request (added to ``names``), its JSON Schema under ``schema_field`` (an empty or
    missing one is ``default_schema`` when given) and an optional string description."""
    name = _require_str(tool, "name", f"{path}.name")
    if name in names:
        raise InvalidRequest(f"'{path}.name' repeats {name!r}.", param=f"{path}.name")
    names.add(name)
    schema = tool.get(schema_field)
    if default_schema is not None and not schema:
        schema = default_schema
    if not isinstance(schema, dict):
        raise InvalidRequest(
            f"'{path}.{schema_field}' must be a JSON Schema object.", param=f"{path}.{schema_field}"
        )
    fn: dict[str, Any] = {"name": name, "parameters": schema}
    description = tool.get("description")
    if description is not None:
        if not isinstance(description, str):
            raise InvalidRequest(f"'{path}.description' must be a string.", param=f"{path}.description")
        fn["description"] = description
    return fn


def _require_str(data: dict[str, Any], key: str, path: str, *, allow_empty: bool = False) -> str:
    if key not in data or data[key] is None:
        raise InvalidRequest(f"'{path}' is required.", param=path, code="missing_field")
    value = data[key]
    if not isinstance(value, str):
        raise InvalidRequest(f"'{path}' must be a string, not {_kind(value)}.", param=path)
    if not allow_empty and not value.strip():
        raise InvalidRequest(f"'{path}' must not be empty.", param=path)
    return value


def _number(data: dict[str, Any], key: str, lo: float, hi: float) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise InvalidRequest(f"'{key}' must be a number, not {_kind(value)}.", param=key)
    if not lo <= value <= hi:
        raise InvalidRequest(f"'{key}' must be between {lo} and {hi}; got {value}.", param=key)
    return float(value)


def _positive_int(data: dict[str, Any], key: str, hi: int) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"'{key}' must be an integer, not {_kind(value)}.", param=key)
    if not 1 <= value <= hi:
        raise InvalidRequest(f"'{key}' must be between 1 and {hi}; got {value}.", param=key)
    return value


def _bool(data: dict[str, Any], key: str) -> bool:
    value = data.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidRequest(f"'{key}' must be true or false, not {_kind(value)}.", param=key)
    return value


def parse_chat_request(data: dict[str, Any]) -> ChatRequest:
    """A validated chat request. With a ``prompt``, ``model`` and ``messages`` are optional: the
    gateway checks the conversation again once the prompt's messages are rendered in front."""
    _check_fields(data)
    data = _map_legacy_functions(data)
    prompt = parse_prompt_ref(data.get("prompt"))
    without_model = prompt is not None and data.get("model") is None
    model = "" if without_model else _require_str(data, "model", "model")
    messages = data.get("messages")
    if messages is None and prompt is None:
        raise InvalidRequest("'messages' is required.", param="messages", code="missing_field")
    if messages is None:
        messages = []
    if not isinstance(messages, list):
        raise InvalidRequest(f"'messages' must be an array, not {_kind(messages)}.", param="messages")
    for i, message in enumerate(messages):
        _validate_message(message, f"messages[{i}]")
    messages = _normalize_messages(messages)
    if prompt is None:
        check_conversation(messages)

    n = data.get("n")
    if n is not None and n != 1:
        raise InvalidRequest("'n': only 1 choice per request is supported.", param="n")
    if data.get("logprobs"):
        raise InvalidRequest("'logprobs' is not supported by the gateway's models.", param="logprobs")

    max_tokens = _positive_int(data, "max_completion_tokens", 1_000_000)
    if max_tokens is None:
        max_tokens = _positive_int(data, "max_tokens", 1_000_000)

    stream = _bool(data, "stream")
    include_usage = False
    stream_options = data.get("stream_options")
    if stream_options is not None:
        if not isinstance(stream_options, dict):
            raise InvalidRequest("'stream_options' must be an object.", param="stream_options")
        include_usage = _bool(stream_options, "include_usage")

    return ChatRequest(
        model=model,
        messages=messages,
        temperature=_number(data, "temperature", 0.0, 2.0),
        top_p=_number(data, "top_p", 0.0, 1.0),
        max_tokens=max_tokens,
        stop=_parse_stop(data.get("stop")),
        tools=_parse_tools(data.get("tools")),
        tool_choice=_parse_tool_choice(data.get("tool_choice"), data.get("tools")),
        response_format=_parse_response_format(data.get("response_format")),
        stream=stream,
        include_usage=include_usage,
        prompt=prompt,
        parallel_tool_calls=_parallel_tool_calls(data),
        reasoning_effort=_reasoning_effort(data),
    )


def _check_fields(data: dict[str, Any]) -> None:
    check_fields(data, SUPPORTED_FIELDS, IGNORED_FIELDS, REFUSED_FIELDS, "Chat Completions")


def check_fields(
    data: dict[str, Any],
    supported: tuple[str, ...],
    ignored: Collection[str],
    refused: dict[str, str],
    api: str,
) -> None:
    """A 400 for a refused or unknown top-level field of ``api``; ignored fields pass. The rule every
    front door follows (docs/gateway.md has each API's compatibility table)."""
    for name in data:
        if name in refused:
            raise InvalidRequest(
                f"'{name}' is not supported: {refused[name]}.", param=name, code="unsupported_field"
            )
        if name not in supported and name not in ignored:
            raise InvalidRequest(
                f"Unknown field '{str(name)[:80]}'; see the {api} compatibility table in "
                "docs/gateway.md for the fields the gateway supports, ignores or refuses.",
                param=str(name)[:80],
                code="unknown_field",
            )


def _parallel_tool_calls(data: dict[str, Any]) -> bool:
    value = data.get("parallel_tool_calls")
    if value is None:
        return True
    if not isinstance(value, bool):
        raise InvalidRequest(
            f"'parallel_tool_calls' must be true or false, not {_kind(value)}.", param="parallel_tool_calls"
        )
    return value


def _reasoning_effort(data: dict[str, Any]) -> str | None:
    value = data.get("reasoning_effort")
    if value is None:
        return None
    if value not in REASONING_EFFORTS:
        raise InvalidRequest(
            f"'reasoning_effort' must be one of {', '.join(REASONING_EFFORTS)}; "
            f"got {json.dumps(value)[:40]}.",
            param="reasoning_effort",
        )
    return None if value == "none" else str(value)


def _map_legacy_functions(data: dict[str, Any]) -> dict[str, Any]:
    """The deprecated ``functions``/``function_call`` fields, as ``tools``/``tool_choice``. History in
    the legacy shape (an assistant ``function_call``, a ``function`` role result) is mapped by
    ``_normalize_messages``."""
    functions, call = data.get("functions"), data.get("function_call")
    if functions is None and call is None:
        return data
    if data.get("tools") is not None or data.get("tool_choice") is not None:
        field_name = "functions" if functions is not None else "function_call"
        raise InvalidRequest(
            f"'{field_name}' is the deprecated form of 'tools'/'tool_choice'; send one form, not both.",
            param=field_name,
        )
    mapped = dict(data)
    if functions is not None:
        if not isinstance(functions, list):
            raise InvalidRequest(f"'functions' must be an array, not {_kind(functions)}.", param="functions")
        mapped["tools"] = [{"type": "function", "function": fn} for fn in functions]
    if call is not None:
        if call in ("none", "auto"):
            mapped["tool_choice"] = call
        elif isinstance(call, dict) and isinstance(call.get("name"), str):
            mapped["tool_choice"] = {"type": "function", "function": {"name": call["name"]}}
        else:
            raise InvalidRequest("'function_call' must be none, auto or {name}.", param="function_call")
    mapped.pop("functions", None)
    mapped.pop("function_call", None)
    return mapped


def _normalize_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Legacy function-calling history in today's shape, and every tool result tied to a tool call of
    an earlier assistant message (Bedrock refuses a result it cannot pair)."""
    out: list[dict[str, Any]] = []
    call_ids: set[str] = set()
    last_function_call: dict[str, str] = {}  # function name -> id given to its legacy call
    for i, message in enumerate(messages):
        role = message["role"]
        if role == "assistant" and message.get("function_call") is not None:
            fn = message["function_call"]
            call_id = f"call_{i}_{fn['name']}"[:64]
            last_function_call[fn["name"]] = call_id
            message = {k: v for k, v in message.items() if k != "function_call"}
            message["tool_calls"] = [
                *(message.get("tool_calls") or []),
                {"id": call_id, "type": "function", "function": fn},
            ]
        elif role == "function":
            name = message["name"]
            if name not in last_function_call:
                raise InvalidRequest(
                    f"'messages[{i}]' is the result of function '{name}', which no earlier assistant "
                    "message called.",
                    param=f"messages[{i}].name",
                )
            message = {
                "role": "tool",
                "tool_call_id": last_function_call[name],
                "content": message["content"],
            }
        if message["role"] == "assistant":
            call_ids.update(call["id"] for call in message.get("tool_calls") or [])
        elif message["role"] == "tool" and message["tool_call_id"] not in call_ids:
            raise InvalidRequest(
                f"'messages[{i}].tool_call_id' ({message['tool_call_id'][:64]!r}) matches no tool call of an "
                "earlier assistant message.",
                param=f"messages[{i}].tool_call_id",
            )
        out.append(message)
    return out


def check_conversation(messages: list[dict[str, Any]]) -> None:
    """A conversation needs at least one message that is not a system message."""
    if not messages:
        raise InvalidRequest("'messages' must contain at least one message.", param="messages")
    if not any(m["role"] in ("user", "assistant", "tool") for m in messages):
        raise InvalidRequest(
            "'messages' holds only system messages; add at least one user message.", param="messages"
        )


_PROMPT_FIELDS = ("name", "version", "alias", "variables")


def parse_prompt_ref(raw: Any) -> PromptRef | None:
    """The ``prompt`` field: ``{name, version | alias, variables}``; None when absent."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidRequest(f"'prompt' must be an object, not {_kind(raw)}.", param="prompt")
    unknown = sorted(str(k) for k in raw if k not in _PROMPT_FIELDS)
    if unknown:
        raise InvalidRequest(
            f"'prompt' has unknown fields: {', '.join(unknown)[:200]}; allowed: {', '.join(_PROMPT_FIELDS)}.",
            param=f"prompt.{unknown[0]}"[:200],
        )
    name = _require_str(raw, "name", "prompt.name")
    version, alias = raw.get("version"), raw.get("alias")
    if version is not None and alias is not None:
        raise InvalidRequest("'prompt' takes a version or an alias, not both.", param="prompt.version")
    if version is not None:
        if isinstance(version, str) and version.isdecimal() and version.isascii():
            version = int(version)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidRequest(
                "'prompt.version' must be a positive integer (the registry's version number).",
                param="prompt.version",
            )
        version = str(version)
    if alias is not None:
        alias = _require_str(raw, "alias", "prompt.alias")
    variables = raw.get("variables")
    if variables is None:
        variables = {}
    if not isinstance(variables, dict):
        raise InvalidRequest(
            f"'prompt.variables' must be an object, not {_kind(variables)}.", param="prompt.variables"
        )
    for var, value in variables.items():
        ok = isinstance(value, str) or (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        )
        if not ok:
            path = f"prompt.variables.{var}"[:200]
            raise InvalidRequest(
                f"'{path}' must be a string or a number, not {_kind(value)}.", param="prompt.variables"
            )
    return PromptRef(name=name, version=version, alias=alias, variables=variables)


def _validate_message(message: Any, path: str) -> None:
    if not isinstance(message, dict):
        raise InvalidRequest(f"'{path}' must be an object, not {_kind(message)}.", param=path)
    role = message.get("role")
    if role not in ROLES:
        raise InvalidRequest(
            f"'{path}.role' must be one of {', '.join(ROLES)}; got {json.dumps(role)[:50]}.",
            param=f"{path}.role",
        )
    content = message.get("content")
    _check_cache_control(message.get("cache_control"), f"{path}.cache_control")
    if role == "tool":
        _require_str(message, "tool_call_id", f"{path}.tool_call_id")
    if role == "function":
        _require_str(message, "name", f"{path}.name")
    legacy_call = message.get("function_call") if role == "assistant" else None
    if legacy_call is not None:
        _validate_tool_calls([{"id": "legacy", "function": legacy_call}], f"{path}.function_call")
    if role == "assistant" and message.get("tool_calls") is not None:
        _validate_tool_calls(message["tool_calls"], f"{path}.tool_calls")
    calls = message.get("tool_calls") is not None or legacy_call is not None
    if role == "assistant" and calls and content is None:
        return
    if content is None:
        raise InvalidRequest(f"'{path}.content' is required.", param=f"{path}.content", code="missing_field")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise InvalidRequest(
            f"'{path}.content' must be a string or an array of parts, not {_kind(content)}.",
            param=f"{path}.content",
        )
    if not content and role != "assistant":
        raise InvalidRequest(f"'{path}.content' must not be an empty array.", param=f"{path}.content")
    for j, part in enumerate(content):
        _validate_part(part, f"{path}.content[{j}]", role)


def _validate_part(part: Any, path: str, role: str) -> None:
    if not isinstance(part, dict):
        raise InvalidRequest(f"'{path}' must be an object, not {_kind(part)}.", param=path)
    kind = part.get("type")
    _check_cache_control(part.get("cache_control"), f"{path}.cache_control")
    if kind == "text":
        _require_str(part, "text", f"{path}.text", allow_empty=True)
    elif kind == "refusal" and role == "assistant":  # an earlier refusal, as the openai SDK returns it
        _require_str(part, "refusal", f"{path}.refusal", allow_empty=True)
    elif kind == "image_url" and role == "user":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else None
        if not isinstance(url, str) or not url.startswith("data:image/"):
            raise InvalidRequest(
                f"'{path}.image_url.url' must be a data:image/...;base64 URL; the gateway does not fetch "
                "remote content.",
                param=f"{path}.image_url.url",
            )
    else:
        allowed = {"user": "text or image_url", "assistant": "text or refusal"}.get(role, "text")
        raise InvalidRequest(
            f"'{path}.type' must be {allowed} for a {role} message; got {json.dumps(kind)[:50]}.",
            param=f"{path}.type",
        )


def _check_cache_control(value: Any, path: str) -> None:
    """Anthropic-style ``{"type": "ephemeral"}`` marks the end of a prefix to cache (a cache point)."""
    if value is None:
        return
    if not isinstance(value, dict) or value.get("type") != "ephemeral":
        raise InvalidRequest(f'\'{path}\' must be {{"type": "ephemeral"}}.', param=path)


def _validate_tool_calls(calls: Any, path: str) -> None:
    if not isinstance(calls, list):
        raise InvalidRequest(f"'{path}' must be an array.", param=path)
    for k, call in enumerate(calls):
        p = f"{path}[{k}]"
        if not isinstance(call, dict):
            raise InvalidRequest(f"'{p}' must be an object.", param=p)
        _require_str(call, "id", f"{p}.id")
        fn = call.get("function")
        if not isinstance(fn, dict):
            raise InvalidRequest(f"'{p}.function' must be an object.", param=f"{p}.function")
        _require_str(fn, "name", f"{p}.function.name")
        args = _require_str(fn, "arguments", f"{p}.function.arguments", allow_empty=True)
        try:
            parsed = json.loads(args or "{}")
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise InvalidRequest(
                f"'{p}.function.arguments' must be a JSON object encoded as a string.",
                param=f"{p}.function.arguments",
            )


def _parse_stop(stop: Any) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise InvalidRequest("'stop' must be a non-empty string or an array of them.", param="stop")
    if len(stop) > MAX_STOP_SEQUENCES:
        raise InvalidRequest(f"'stop' may hold at most {MAX_STOP_SEQUENCES} sequences.", param="stop")
    return stop


def _parse_tools(tools: Any) -> list[dict[str, Any]] | None:
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise InvalidRequest(f"'tools' must be an array, not {_kind(tools)}.", param="tools")
    names = set()
    for i, tool in enumerate(tools):
        path = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise InvalidRequest(f"'{path}.type' must be \"function\".", param=f"{path}.type")
        fn = tool.get("function")
        if not isinstance(fn, dict):
            raise InvalidRequest(f"'{path}.function' must be an object.", param=f"{path}.function")
        name = _require_str(fn, "name", f"{path}.function.name")
        if name in names:
            raise InvalidRequest(f"'{path}.function.name' repeats {name!r}.", param=f"{path}.function.name")
        names.add(name)
        params = fn.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(params, dict):
            raise InvalidRequest(
                f"'{path}.function.parameters' must be a JSON Schema object.",
                param=f"{path}.function.parameters",
            )
        _check_cache_control(tool.get("cache_control"), f"{path}.cache_control")
        desc = fn.get("description")
        if desc is not None and not isinstance(desc, str):
            raise InvalidRequest(
                f"'{path}.function.description' must be a string.", param=f"{path}.function.description"
            )
    return tools or None


def _parse_tool_choice(choice: Any, tools: Any) -> str | dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise InvalidRequest(
                "'tool_choice' must be none, auto, required or {type: function, function: {name}}.",
                param="tool_choice",
            )
        if choice == "required" and not tools:
            raise InvalidRequest("'tool_choice' is required but no 'tools' were given.", param="tool_choice")
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        known = {t["function"]["name"] for t in tools or []}
        if name not in known:
            raise InvalidRequest(
                f"'tool_choice.function.name' must name one of the given tools; got {json.dumps(name)[:60]}.",
                param="tool_choice.function.name",
            )
        return choice
    raise InvalidRequest(
        "'tool_choice' must be none, auto, required or {type: function, function: {name}}.",
        param="tool_choice",
    )


def _parse_response_format(fmt: Any) -> dict[str, Any] | None:
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
        raise InvalidRequest(
            "'response_format.type' must be text, json_object or json_schema.", param="response_format.type"
        )
    if fmt["type"] == "text":
        return None
    if fmt["type"] == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
            raise InvalidRequest(
                "'response_format.json_schema.schema' must be a JSON Schema object.",
                param="response_format.json_schema.schema",
            )
    return fmt


# ``user`` is accepted and ignored, as on chat (the key identifies team and feature).
EMBEDDINGS_FIELDS = ("model", "input", "dimensions", "encoding_format", "user")


def parse_embeddings_request(data: dict[str, Any]) -> EmbeddingsRequest:
    reject_unknown_fields(data, EMBEDDINGS_FIELDS, "/v1/embeddings")
    model = _require_str(data, "model", "model")
    raw = data.get("input")
    if raw is None:
        raise InvalidRequest("'input' is required.", param="input", code="missing_field")
    inputs = [raw] if isinstance(raw, str) else raw
    if not isinstance(inputs, list) or not inputs:
        raise InvalidRequest("'input' must be a string or a non-empty array of strings.", param="input")
    if all(isinstance(t, int) and not isinstance(t, bool) for t in inputs):
        raise InvalidRequest(TOKEN_ARRAY_HINT.format(path="input"), param="input", code="token_input")
    for i, text in enumerate(inputs):
        if isinstance(text, list):
            path = f"input[{i}]"
            raise InvalidRequest(TOKEN_ARRAY_HINT.format(path=path), param=path, code="token_input")
        if not isinstance(text, str):
            raise InvalidRequest(f"'input[{i}]' must be a string, not {_kind(text)}.", param=f"input[{i}]")
        if not text.strip():
            raise InvalidRequest(f"'input[{i}]' must not be empty.", param=f"input[{i}]")
    if len(inputs) > 256:
        raise InvalidRequest("'input' may hold at most 256 strings per request.", param="input")
    encoding = data.get("encoding_format", "float") or "float"
    if encoding not in ("float", "base64"):
        raise InvalidRequest("'encoding_format' must be float or base64.", param="encoding_format")
    return EmbeddingsRequest(
        model=model,
        inputs=inputs,
        dimensions=_positive_int(data, "dimensions", 8192),
        encoding_format=encoding,
    )
