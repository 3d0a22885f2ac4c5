"""The Anthropic Messages API front door (``/v1/messages``): each translation rule as the Converse
request Bedrock receives (Stubber checks it against the real API model and the exact expected shape),
Anthropic's response, usage, error and streaming shapes, and the same keys, routes and records."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from typing import Any

import pytest
import test_gateway_streaming as streaming_tests
from botocore.stub import ANY
from conftest import HAIKU, Harness, converse_response, make_event
from test_gateway_agent_chat import use_catalog_caps
from test_gateway_streaming import (
    START,
    FakeBedrock,
    event,
    exception,
    make_harness,
    metadata,
    stop,
    text,
)

from aif_gateway.anthropic_messages import IGNORED_FIELDS, REFUSED_FIELDS
from aif_gateway.capabilities import ModelCapabilities
from aif_gateway.config import Route
from aif_gateway.streaming import StreamingResponse

fake_bedrock = streaming_tests.fake_bedrock  # the fake Bedrock endpoint fixture, shared

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n0000").decode()
WEATHER = {
    "name": "weather",
    "description": "Current weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def post(h: Harness, body: Any, key: str | None, headers: dict[str, str] | None = None,
         path: str = "/v1/messages") -> tuple[int, dict[str, str], Any]:  # fmt: skip
    sent = {"Content-Type": "application/json", "anthropic-version": "2023-06-01", **(headers or {})}
    if key is not None:
        sent["x-api-key"] = key
    response = h.gateway.handle(make_event("POST", path, json.dumps(body), sent))
    if isinstance(response, StreamingResponse):
        return response.status, response.headers, b"".join(response.body).decode()
    return response["statusCode"], response["headers"], json.loads(response["body"])


def expect(h: Harness, response: dict[str, Any] | None = None, **params: Any) -> None:
    expected = {
        "modelId": HAIKU.model_id,
        "messages": ANY,
        "guardrailConfig": ANY,
        "requestMetadata": ANY,
        "inferenceConfig": {"maxTokens": 512},
        **params,
    }
    h.stubber.add_response("converse", response or converse_response(), expected)


def msg(content: Any, **extra: Any) -> dict[str, Any]:
    return {
        "model": "chat-solo",
        "max_tokens": 512,
        "messages": [{"role": "user", "content": content}],
        **extra,
    }


def test_system_blocks_tools_images_and_cache_control_become_converse_blocks(harness: Harness) -> None:
    use_catalog_caps(harness)
    key = harness.add_key()
    expect(
        harness,
        system=[{"text": "You are terse."}, {"text": "Project rules."}, {"cachePoint": {"type": "default"}}],
        messages=[
            {
                "role": "user",
                "content": [
                    {"text": "What is this?"},
                    {"image": {"format": "png", "source": {"bytes": base64.b64decode(PNG)}}},
                    {"cachePoint": {"type": "default"}},
                ],
            }
        ],
        toolConfig={
            "tools": [
                {
                    "toolSpec": {
                        "name": "weather",
                        "description": "Current weather",
                        "inputSchema": {"json": WEATHER["input_schema"]},
                    }
                },
                {"cachePoint": {"type": "default"}},
            ],
            "toolChoice": {"any": {}},
        },
        inferenceConfig={"maxTokens": 512, "temperature": 0.2, "stopSequences": ["###"]},
        additionalModelResponseFieldPaths=["/stop_sequence"],
    )
    body = msg(
        [
            {"type": "text", "text": "What is this?"},
            {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                "cache_control": {"type": "ephemeral"},
            },
        ],
        system=[
            {"type": "text", "text": "You are terse."},
            {"type": "text", "text": "Project rules.", "cache_control": {"type": "ephemeral"}},
        ],
        tools=[{**WEATHER, "cache_control": {"type": "ephemeral"}}],
        tool_choice={"type": "any"},
        temperature=0.2,
        stop_sequences=["###"],
        metadata={"user_id": "u-1"},
    )
    status, headers, answer = post(harness, body, key)
    harness.stubber.assert_no_pending_responses()
    assert status == 200, answer
    assert answer["type"] == "message" and answer["role"] == "assistant"
    assert answer["model"] == "chat-solo" and headers["x-aif-served-by"] == HAIKU.name
    assert answer["content"] == [{"type": "text", "text": "Hi!"}]
    assert answer["stop_reason"] == "end_turn" and answer["stop_sequence"] is None


def test_tool_use_and_tool_results_round_trip(harness: Harness) -> None:
    key = harness.add_key()
    expect(
        harness,
        messages=[
            {"role": "user", "content": [{"text": "Weather in Paris and Rome?"}]},
            {
                "role": "assistant",
                "content": [
                    {"text": "Checking."},
                    {"toolUse": {"toolUseId": "tu_1", "name": "weather", "input": {"city": "Paris"}}},
                    {"toolUse": {"toolUseId": "tu_2", "name": "weather", "input": {"city": "Rome"}}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"toolResult": {"toolUseId": "tu_1", "content": [{"text": "18C"}]}},
                    {"toolResult": {"toolUseId": "tu_2", "content": [{"text": "Error: station offline"}]}},
                    {"text": "Summarise."},
                ],
            },
        ],
        toolConfig={"tools": ANY},
        inferenceConfig={"maxTokens": 512},
        response=converse_response(
            stop="tool_use",
            content=[{"toolUse": {"toolUseId": "tu_3", "name": "weather", "input": {"city": "Oslo"}}}],
            usage={"inputTokens": 30, "outputTokens": 7, "totalTokens": 237, "cacheReadInputTokens": 200},
        ),
    )
    body = {
        "model": "chat-solo",
        "max_tokens": 512,
        "tools": [WEATHER],
        "messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "dropped", "signature": "sig"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "tu_1", "name": "weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "tu_2", "name": "weather", "input": {"city": "Rome"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "tu_1",
                        "content": [{"type": "text", "text": "18C"}],
                    },
                    {
                        "type": "tool_result",
                        "tool_use_id": "tu_2",
                        "content": "station offline",
                        "is_error": True,
                    },
                    {"type": "text", "text": "Summarise."},
                ],
            },
        ],
    }
    status, _, answer = post(harness, body, key)
    harness.stubber.assert_no_pending_responses()
    assert status == 200, answer
    assert answer["stop_reason"] == "tool_use"
    assert answer["content"] == [
        {"type": "tool_use", "id": "tu_3", "name": "weather", "input": {"city": "Oslo"}}
    ]
    assert answer["usage"] == {
        "input_tokens": 30,
        "output_tokens": 7,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 200,
    }
    record = list(harness.ledger.records.values())[-1]
    assert (record.input_tokens, record.cache_read_tokens, record.status) == (30, 200, 200)


def test_thinking_sets_the_exact_budget_and_returns_a_thinking_block(harness: Harness) -> None:
    use_catalog_caps(harness)
    key = harness.add_key()
    expect(
        harness,
        inferenceConfig={"maxTokens": 4000},
        additionalModelRequestFields={"thinking": {"type": "enabled", "budget_tokens": 2000}},
        response=converse_response(
            content=[
                {"reasoningContent": {"reasoningText": {"text": "Let me think.", "signature": "sig-1"}}},
                {"text": "42"},
            ]
        ),
    )
    status, _, answer = post(
        harness, msg("Answer?", max_tokens=4000, thinking={"type": "enabled", "budget_tokens": 2000}), key
    )
    assert status == 200, answer
    assert answer["content"] == [
        {"type": "thinking", "thinking": "Let me think.", "signature": "sig-1"},
        {"type": "text", "text": "42"},
    ]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "chat-solo", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        (msg("x", top_k=5), "top_k"),
        (msg("x", frobnicate=True), "frobnicate"),
        (msg("x", thinking={"type": "enabled", "budget_tokens": 100}), "thinking.budget_tokens"),
        (msg("x", tools=[{"type": "web_search_20250305", "name": "web_search"}]), "tools[0].type"),
        (msg([{"type": "document", "source": {}}]), "messages[0].content[0].type"),
        (
            msg([{"type": "tool_result", "tool_use_id": "nope", "content": "x"}]),
            "messages[0].content[0].tool_use_id",
        ),
        (
            msg([{"type": "image", "source": {"type": "url", "url": "https://x"}}]),
            "messages[0].content[0].source.type",
        ),
    ],
)
def test_bad_requests_are_anthropic_shaped_400s_naming_the_field(
    harness: Harness, body: dict[str, Any], param: str
) -> None:
    key = harness.add_key()
    status, _, answer = post(harness, body, key)
    assert status == 400
    assert answer["type"] == "error" and answer["error"]["type"] == "invalid_request_error"
    assert f"'{param}'" in answer["error"]["message"], answer


def test_auth_by_x_api_key_or_bearer_and_anthropic_shaped_auth_errors(harness: Harness) -> None:
    key = harness.add_key()
    expect(harness)
    status, _, _ = post(harness, msg("hi"), None, {"Authorization": f"Bearer {key}"})
    assert status == 200
    status, _, answer = post(harness, msg("hi"), "aif-not-a-key")
    assert status == 401 and answer["error"]["type"] == "authentication_error"
    status, _, answer = post(harness, msg("hi", model="embed"), key)
    assert status == 400
    status, _, answer = post(harness, msg("hi", model="no-such-model"), key)
    assert status == 404 and answer["error"]["type"] == "not_found_error"
    status, _, answer = post(harness, msg("hi"), key, {"anthropic-version": "latest"})
    assert status == 400 and "anthropic-version" in answer["error"]["message"]
    # Rejected requests are audited like every other front door's.
    assert harness.audit[-1].status == 400


def test_client_model_names_resolve_through_the_catalogs_model_aliases(harness: Harness) -> None:
    harness.gateway.config = replace(harness.gateway.config, model_aliases={"claude-sonnet-4-5": "chat-solo"})
    key = harness.add_key()
    expect(harness)
    status, _, answer = post(harness, msg("hi", model="claude-sonnet-4-5"), key)
    assert status == 200, answer
    assert answer["model"] == "claude-sonnet-4-5"
    assert list(harness.ledger.records.values())[-1].route == "chat-solo"  # metered and budgeted as the route


def counting_route(h: Harness, *targets: Any) -> None:
    routes = dict(h.gateway.config.routes)
    routes["chat-count"] = Route("chat-count", "chat", targets)
    h.gateway.config = replace(h.gateway.config, routes=routes)


def test_count_tokens_calls_bedrock_count_tokens_with_the_converse_input(harness: Harness) -> None:
    """The Converse request /v1/messages would send, to CountTokens with the foundation-model ID (the
    route calls the us. cross-region profile); Stubber checks it against the real API model."""
    counting = replace(HAIKU, capabilities=ModelCapabilities(count_tokens=True, prompt_caching=True))
    counting_route(harness, counting)
    key = harness.add_key(allowed_models=("chat-count",))
    expected = {
        "modelId": "anthropic.claude-haiku-4-5-20251001-v1:0",
        "input": {
            "converse": {
                "system": [{"text": "Be terse."}, {"cachePoint": {"type": "default"}}],
                "messages": [{"role": "user", "content": [{"text": "How many tokens?"}]}],
                "toolConfig": {
                    "tools": [
                        {
                            "toolSpec": {
                                "name": "weather",
                                "description": "Current weather",
                                "inputSchema": {"json": WEATHER["input_schema"]},
                            }
                        }
                    ]
                },
            }
        },
    }
    harness.stubber.add_response("count_tokens", {"inputTokens": 57}, expected)
    body = {
        "model": "chat-count",
        "system": [{"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "How many tokens?"}],
        "tools": [WEATHER],
    }
    status, headers, answer = post(harness, body, key, path="/v1/messages/count_tokens")
    harness.stubber.assert_no_pending_responses()
    assert status == 200, answer
    assert answer == {"input_tokens": 57} and headers["x-aif-served-by"] == HAIKU.name
    record = list(harness.ledger.records.values())[-1]
    assert (record.operation, record.route, record.cost_usd) == ("count_tokens", "chat-count", 0.0)
    assert record.extra["counted_input_tokens"] == "57"


def test_count_tokens_on_a_model_that_cannot_count_is_a_400_naming_it(harness: Harness) -> None:
    key = harness.add_key()
    status, _, answer = post(harness, msg("hi"), key, path="/v1/messages/count_tokens")
    assert status == 400 and answer["type"] == "error"
    assert answer["error"]["type"] == "invalid_request_error"
    assert "'claude-haiku-4-5'" in answer["error"]["message"]
    assert "capabilities.count_tokens" in answer["error"]["message"]
    assert harness.audit[-1].status == 400


def test_count_tokens_errors_from_bedrock_are_anthropic_shaped(harness: Harness) -> None:
    counting = replace(HAIKU, capabilities=ModelCapabilities(count_tokens=True))
    counting_route(harness, counting)
    key = harness.add_key(allowed_models=("chat-count",))
    harness.stubber.add_client_error(
        "count_tokens", "ValidationException", "The provided model doesn't support counting tokens.", 400
    )
    harness.stubber.add_client_error("count_tokens", "ThrottlingException", "Too many requests", 429)
    body = {"model": "chat-count", "messages": [{"role": "user", "content": "hi"}]}
    status, _, answer = post(harness, body, key, path="/v1/messages/count_tokens")
    assert status == 400 and "doesn't support counting tokens" in answer["error"]["message"]
    status, headers, answer = post(harness, body, key, path="/v1/messages/count_tokens")
    assert status == 503 and answer["error"]["type"] == "overloaded_error"
    assert headers["Retry-After"] == "5"


def test_ignored_and_refused_lists_do_not_overlap() -> None:
    assert not set(IGNORED_FIELDS) & set(REFUSED_FIELDS)


# -- streaming -----------------------------------------------------------------------------------------


def named_events(raw: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in raw.split("\n\n"):
        if not block:
            continue
        name_line, data_line = block.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: "), block
        data = json.loads(data_line[len("data: ") :])
        assert data["type"] == name_line[len("event: ") :]
        out.append((data["type"], data))
    return out


def stream(h: Any, body: dict[str, Any]) -> tuple[StreamingResponse, str]:
    ev = make_event("POST", "/v1/messages", json.dumps({**body, "stream": True}), {"x-api-key": h.key})
    response = h.gateway.handle(ev)
    assert isinstance(response, StreamingResponse), response
    return response, ev["requestContext"]["requestId"]


def test_stream_has_anthropic_event_types_with_thinking_text_and_tool_blocks(
    fake_bedrock: FakeBedrock,
) -> None:
    reasoning = {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Hmm."}}}
    signature = {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "sig"}}}
    tool_start = {"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tu_1", "name": "weather"}}}
    fake_bedrock.scripts[HAIKU.model_id] = [
        (0, START),
        (0, event("contentBlockDelta", reasoning)),
        (0, event("contentBlockDelta", signature)),
        (0, text("Let me ", 1)),
        (0, text("check.", 1)),
        (0, event("contentBlockStart", tool_start)),
        (
            0,
            event("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": '{"city":'}}}),
        ),
        (0, event("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": '"Oslo"}'}}})),
        (0, stop("tool_use")),
        (0, metadata(100, 20, cache_read=1000, cache_write=50)),
    ]
    h = make_harness(fake_bedrock)
    response, request_id = stream(h, msg("hi", model="chat-fast"))
    events = named_events(b"".join(response.body).decode())
    kinds = [k for k, _ in events]
    assert kinds == [
        "message_start", "ping",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop",
    ]  # fmt: skip
    assert events[0][1]["message"]["model"] == "chat-fast"
    assert events[2][1]["content_block"]["type"] == "thinking"
    assert events[3][1]["delta"] == {"type": "thinking_delta", "thinking": "Hmm."}
    assert events[4][1]["delta"] == {"type": "signature_delta", "signature": "sig"}
    assert [e[1]["delta"]["text"] for e in events[7:9]] == ["Let me ", "check."]
    assert events[10][1]["content_block"] == {
        "type": "tool_use",
        "id": "tu_1",
        "name": "weather",
        "input": {},
    }
    assert [e[1]["delta"]["partial_json"] for e in events[11:13]] == ['{"city":', '"Oslo"}']
    assert [e[1]["index"] for e in events[2:14:4]] == [0, 1, 2]
    final = events[14][1]
    assert final["delta"]["stop_reason"] == "tool_use"
    assert final["usage"] == {
        "input_tokens": 100,
        "output_tokens": 20,
        "cache_creation_input_tokens": 50,
        "cache_read_input_tokens": 1000,
    }
    record = h.ledger.find(request_id)
    assert record is not None and record.cache_read_tokens == 1000 and record.extra["stream"] == "true"


def test_stream_failing_mid_way_ends_with_an_error_event(fake_bedrock: FakeBedrock) -> None:
    fake_bedrock.scripts[HAIKU.model_id] = [
        (0, START),
        (0, text("Partial")),
        (0, exception("modelStreamErrorException", "boom")),
    ]
    h = make_harness(fake_bedrock)
    response, request_id = stream(h, msg("hi", model="chat-fast"))
    events = named_events(b"".join(response.body).decode())
    assert events[-1][0] == "error" and events[-1][1]["error"]["type"] == "overloaded_error"
    record = h.ledger.find(request_id)
    assert record is not None and record.error_type == "model_stream_error"


def test_tool_choice_tool_none_and_disable_parallel_tool_use(harness: Harness) -> None:
    key = harness.add_key()
    use = {"toolUse": {"toolUseId": "tu_1", "name": "weather", "input": {}}}
    two_calls = converse_response(
        stop="tool_use", content=[use, {"toolUse": {**use["toolUse"], "toolUseId": "tu_2"}}]
    )
    expect(
        harness, toolConfig={"tools": ANY, "toolChoice": {"tool": {"name": "weather"}}}, response=two_calls
    )
    choice = {"type": "tool", "name": "weather", "disable_parallel_tool_use": True}
    status, _, answer = post(harness, msg("hi", tools=[WEATHER], tool_choice=choice), key)
    assert status == 200, answer
    assert [b["id"] for b in answer["content"]] == ["tu_1"]  # at most one call per answer
    # "none": no tools are offered at all (Converse has no "none"), so no toolConfig is sent.
    expect(harness)
    status, _, answer = post(harness, msg("hi", tools=[WEATHER], tool_choice={"type": "none"}), key)
    harness.stubber.assert_no_pending_responses()
    assert status == 200, answer


def test_claude_codes_beta_request_shape_is_mapped(harness: Harness) -> None:
    """The fields Claude Code 2.1 sends (recorded from the real CLI): context_management ignored, a
    system turn after the user's message joins the system prompt, adaptive thinking takes the effort's
    budget, the deferred placeholder tool is not offered, cache_control with a ttl and on a tool result
    become cache points."""
    use_catalog_caps(harness)
    key = harness.add_key()
    expect(
        harness,
        system=[
            {"text": "You are a Claude agent."},
            {"cachePoint": {"type": "default"}},
            {"text": "# Environment"},
        ],
        messages=[
            {
                "role": "user",
                "content": [{"text": "<system-reminder>x</system-reminder>"}, {"text": "Read it"}],
            },
            {
                "role": "assistant",
                "content": [{"toolUse": {"toolUseId": "tu_1", "name": "Read", "input": {}}}],
            },
            {
                "role": "user",
                "content": [
                    {"toolResult": {"toolUseId": "tu_1", "content": [{"text": "1\tdata"}]}},
                    {"cachePoint": {"type": "default"}},
                ],
            },
        ],
        toolConfig={
            "tools": [
                {
                    "toolSpec": {
                        "name": "Read",
                        "description": "Reads a file",
                        "inputSchema": {
                            "json": {"type": "object", "properties": {"file_path": {"type": "string"}}}
                        },
                    }
                }
            ]
        },
        # The tool loop is open (the last assistant turn called a tool): thinking is not sent.
        inferenceConfig={"maxTokens": 32000},
    )
    body = {
        "model": "chat-solo",
        "max_tokens": 32000,
        "stream": False,
        "system": [
            {
                "type": "text",
                "text": "You are a Claude agent.",
                "cache_control": {"type": "ephemeral", "ttl": "1h"},
            }
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>x</system-reminder>"},
                    {"type": "text", "text": "Read it"},
                ],
            },
            {"role": "system", "content": [{"type": "text", "text": "# Environment"}]},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "tu_1", "name": "Read", "input": {}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "tu_1",
                        "content": "1\tdata",
                        "cache_control": {"type": "ephemeral"},
                    }
                ],
            },
        ],
        "tools": [
            {
                "name": "Read",
                "description": "Reads a file",
                "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}},
                "strict": False,
            },
            {
                "name": "DeferredToolPlaceholder",
                "description": "never call this tool",
                "input_schema": {"type": "object", "properties": {}},
                "defer_loading": True,
            },
        ],
        "metadata": {"user_id": '{"device_id": "d1", "session_id": "s1"}'},
        "thinking": {"type": "adaptive", "display": "omitted"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
    }
    status, _, answer = post(harness, body, key, {"anthropic-beta": "claude-code-20250219,effort-2025-11-24"})
    harness.stubber.assert_no_pending_responses()
    assert status == 200, answer


def test_adaptive_thinking_uses_the_effort_budget_and_output_format_is_structured_output(
    harness: Harness,
) -> None:
    use_catalog_caps(harness)
    key = harness.add_key()
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    expect(
        harness,
        inferenceConfig={"maxTokens": 4000},
        additionalModelRequestFields={"thinking": {"type": "enabled", "budget_tokens": 2048}},
        outputConfig={
            "textFormat": {
                "type": "json_schema",
                "structure": {"jsonSchema": {"schema": json.dumps(schema), "name": "output"}},
            }
        },
    )
    body = msg(
        "Count",
        max_tokens=4000,
        thinking={"type": "adaptive"},
        output_config={"effort": "low", "format": {"type": "json_schema", "schema": schema}},
    )
    status, _, answer = post(harness, body, key)
    harness.stubber.assert_no_pending_responses()
    assert status == 200, answer


def test_deferred_tools_are_offered_once_a_tool_reference_loads_them(harness: Harness) -> None:
    use_catalog_caps(harness)
    key = harness.add_key()
    search = {
        "name": "ToolSearch",
        "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
    }
    fetch = {"name": "WebFetch", "input_schema": {"type": "object"}, "defer_loading": True}
    expect(
        harness,
        messages=ANY,
        toolConfig={
            "tools": [
                {"toolSpec": {"name": "ToolSearch", "inputSchema": {"json": search["input_schema"]}}},
                {"toolSpec": {"name": "WebFetch", "inputSchema": {"json": {"type": "object"}}}},
            ]
        },
        inferenceConfig={"maxTokens": 512},
    )
    body = msg("find a fetch tool", tools=[search, fetch])
    body["messages"] += [
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "ts", "name": "ToolSearch", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "ts",
                    "content": [{"type": "tool_reference", "tool_name": "WebFetch"}],
                }
            ],
        },
    ]
    status, _, answer = post(harness, body, key)
    harness.stubber.assert_no_pending_responses()
    assert status == 200, answer


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"output_config": {"effort": "extreme"}}, "output_config.effort"),
        ({"output_config": {"verbosity": "low"}}, "output_config.verbosity"),
        ({"output_config": {"format": {"type": "json_object"}}}, "output_config.format"),
        ({"thinking": {"type": "sometimes"}}, "thinking.type"),
        ({"tools": [{**WEATHER, "defer_loading": "yes"}]}, "tools[0].defer_loading"),
        ({"system": [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral", "ttl": "1d"}}]},
         "system[0].cache_control.ttl"),
    ],
)  # fmt: skip
def test_bad_beta_fields_are_400s_naming_the_field(
    harness: Harness, extra: dict[str, Any], param: str
) -> None:
    key = harness.add_key()
    status, _, answer = post(harness, msg("x", **extra), key)
    assert status == 400
    assert f"'{param}'" in answer["error"]["message"], answer


def test_the_stop_sequence_bedrock_reports_is_the_answers_stop_sequence(harness: Harness) -> None:
    key = harness.add_key()
    response = {
        **converse_response("The answer", stop="stop_sequence"),
        "additionalModelResponseFields": {"stop_sequence": "END"},
    }
    expect(
        harness,
        response=response,
        inferenceConfig={"maxTokens": 512, "stopSequences": ["###", "END"]},
        additionalModelResponseFieldPaths=["/stop_sequence"],
    )
    status, _, answer = post(harness, msg("hi", stop_sequences=["###", "END"]), key)
    harness.stubber.assert_no_pending_responses()
    assert status == 200, answer
    assert (answer["stop_reason"], answer["stop_sequence"]) == ("stop_sequence", "END")


def test_streams_report_the_stop_sequence_and_keep_one_tool_call_without_parallel_use(
    fake_bedrock: FakeBedrock,
) -> None:
    fake_bedrock.scripts[HAIKU.model_id] = [
        (0, START),
        (0, text("Done")),
        (
            0,
            event(
                "messageStop",
                {"stopReason": "stop_sequence", "additionalModelResponseFields": {"stop_sequence": "END"}},
            ),
        ),
        (0, metadata(10, 2)),
    ]
    h = make_harness(fake_bedrock)
    response, _ = stream(h, msg("hi", model="chat-fast", stop_sequences=["###", "END"]))
    final = named_events(b"".join(response.body).decode())[-2][1]
    assert final["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}

    def tool(block: int, use_id: str, city: str) -> list[tuple[int, bytes]]:
        start = {"contentBlockIndex": block, "start": {"toolUse": {"toolUseId": use_id, "name": "weather"}}}
        piece = {"contentBlockIndex": block, "delta": {"toolUse": {"input": json.dumps({"city": city})}}}
        return [(0, event("contentBlockStart", start)), (0, event("contentBlockDelta", piece))]

    fake_bedrock.scripts[HAIKU.model_id] = [
        (0, START), *tool(0, "tu_1", "Oslo"), *tool(1, "tu_2", "Rome"),
        (0, stop("tool_use")), (0, metadata(10, 9)),
    ]  # fmt: skip
    body = msg(
        "hi",
        model="chat-fast",
        tools=[WEATHER],
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
    )
    response, _ = stream(h, body)
    events = named_events(b"".join(response.body).decode())
    starts = [e["content_block"] for k, e in events if k == "content_block_start"]
    assert starts == [{"type": "tool_use", "id": "tu_1", "name": "weather", "input": {}}]
    assert [e["delta"]["partial_json"] for k, e in events if k == "content_block_delta"] == [
        '{"city": "Oslo"}'
    ]


def test_an_image_returned_by_a_tool_reaches_the_model_after_the_results(harness: Harness) -> None:
    """Claude Code's Read on a screenshot answers with an image block inside the tool_result. Converse
    takes images in the user turn, so the image follows the tool results there and the result says so."""
    use_catalog_caps(harness)
    key = harness.add_key()
    expect(
        harness,
        messages=[
            {"role": "user", "content": [{"text": "What does the screenshot show?"}]},
            {
                "role": "assistant",
                "content": [{"toolUse": {"toolUseId": "tu_1", "name": "weather", "input": {"city": "x"}}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "toolResult": {
                            "toolUseId": "tu_1",
                            "content": [{"text": "screenshot.png\n[1 image from this tool result follows]"}],
                        }
                    },
                    {"image": {"format": "png", "source": {"bytes": base64.b64decode(PNG)}}},
                ],
            },
        ],
        toolConfig={"tools": ANY},
    )
    body = {
        "model": "chat-solo",
        "max_tokens": 512,
        "tools": [WEATHER],
        "messages": [
            {"role": "user", "content": "What does the screenshot show?"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "tu_1", "name": "weather", "input": {"city": "x"}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "tu_1",
                        "content": [
                            {"type": "text", "text": "screenshot.png"},
                            {
                                "type": "image",
                                "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                            },
                        ],
                    }
                ],
            },
        ],
    }
    status, _, answer = post(harness, body, key)
    harness.stubber.assert_no_pending_responses()
    assert status == 200, answer


def test_a_document_in_a_tool_result_is_refused_naming_the_block(harness: Harness) -> None:
    key = harness.add_key()
    body = msg(
        [
            {
                "type": "tool_result",
                "tool_use_id": "tu_1",
                "content": [{"type": "document", "source": {"type": "text", "data": "x"}}],
            }
        ]
    )
    body["messages"].insert(
        0,
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "tu_1", "name": "weather", "input": {}}],
        },
    )
    body["messages"].insert(0, {"role": "user", "content": "hi"})
    status, _, answer = post(harness, body, key)
    assert status == 400 and "content[0].content[0].type" in answer["error"]["message"], answer
