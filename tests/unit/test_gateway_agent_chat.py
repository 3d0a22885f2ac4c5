"""Agent-grade Chat Completions: every shape real clients send becomes a Converse request Bedrock
accepts (Stubber checks each request against the real API model and the exact expected shape)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from botocore.stub import ANY
from conftest import HAIKU, NOVA, Harness, converse_response

from aif_gateway.capabilities import ModelCapabilities
from aif_gateway.config import Route
from aif_gateway.openai_schema import IGNORED_FIELDS

CLAUDE_CAPS = ModelCapabilities(
    prompt_caching=True,
    reasoning="thinking",
    max_output_tokens=64000,
    temperature_max=1.0,
    exclusive_params=("temperature", "top_p"),
)
NOVA_CAPS = ModelCapabilities(structured_output=False, vision=False, prompt_caching=True, temperature_max=1.0)
HAIKU_C = replace(HAIKU, capabilities=CLAUDE_CAPS)
NOVA_C = replace(NOVA, capabilities=NOVA_CAPS)
WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def use_catalog_caps(h: Harness, *, auto_cache: bool = False) -> None:
    routes = dict(h.gateway.config.routes)
    routes["chat-fast"] = Route("chat-fast", "chat", (HAIKU_C, NOVA_C), prompt_cache=auto_cache)
    routes["chat-solo"] = Route("chat-solo", "chat", (HAIKU_C,), prompt_cache=auto_cache)
    h.gateway.config = replace(h.gateway.config, routes=routes)


def expect(h: Harness, messages: Any = ANY, response: dict[str, Any] | None = None, **params: Any) -> None:
    expected = {
        "modelId": params.pop("modelId", HAIKU.model_id),
        "messages": messages,
        "guardrailConfig": ANY,
        "requestMetadata": ANY,
        **params,
    }
    h.stubber.add_response("converse", response or converse_response(), expected)


def chat(h: Harness, key: str, messages: list[dict[str, Any]], model: str = "chat-solo", **extra: Any) -> Any:
    return h.call("POST", "/v1/chat/completions", {"model": model, "messages": messages, **extra}, key)


def call(id_: str, name: str = "weather", args: str = '{"city": "Paris"}') -> dict[str, Any]:
    return {"id": id_, "type": "function", "function": {"name": name, "arguments": args}}


TOOL_HISTORY = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [call("c1")]},
    {"role": "tool", "tool_call_id": "c1", "content": "18C"},
]


def test_tool_history_without_tools_synthesizes_a_tool_config(harness: Harness) -> None:
    key = harness.add_key()
    expect(
        harness,
        toolConfig={
            "tools": [
                {
                    "toolSpec": {
                        "name": "weather",
                        "description": "Declared by an earlier turn of this conversation.",
                        "inputSchema": {"json": {"type": "object"}},
                    }
                }
            ]
        },
    )
    status, _, body = chat(harness, key, TOOL_HISTORY)
    assert status == 200, body
    harness.stubber.assert_no_pending_responses()


def test_blank_text_and_blank_tool_results_never_become_blank_blocks(harness: Harness) -> None:
    key = harness.add_key()
    messages = [
        {"role": "system", "content": "  "},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [call("c1")]},
        {"role": "tool", "tool_call_id": "c1", "content": "   "},
        {"role": "user", "content": [{"type": "text", "text": ""}, {"type": "text", "text": "and?"}]},
        {"role": "assistant", "content": "   "},
        {"role": "user", "content": " \n"},
    ]
    expect(
        harness,
        [
            {"role": "user", "content": [{"text": "Weather in Paris?"}]},
            {
                "role": "assistant",
                "content": [{"toolUse": {"toolUseId": "c1", "name": "weather", "input": {"city": "Paris"}}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "toolResult": {
                            "toolUseId": "c1",
                            "content": [{"text": "(the tool returned no output)"}],
                        }
                    },
                    {"text": "and?"},
                ],
            },
        ],
        toolConfig=ANY,
    )
    status, _, body = chat(harness, key, messages)
    assert status == 200, body
    harness.stubber.assert_no_pending_responses()


def test_blank_first_user_message_keeps_the_conversation_valid(harness: Harness) -> None:
    key = harness.add_key()
    messages = [
        {"role": "user", "content": ""},
        {"role": "assistant", "content": "How can I help?"},
        {"role": "user", "content": "Hi"},
    ]
    expect(
        harness,
        [
            {"role": "user", "content": [{"text": "(empty message)"}]},
            {"role": "assistant", "content": [{"text": "How can I help?"}]},
            {"role": "user", "content": [{"text": "Hi"}]},
        ],
    )
    assert chat(harness, key, messages)[0] == 200


def test_tool_choice_none_with_history_offers_no_tools(harness: Harness) -> None:
    key = harness.add_key()
    expect(
        harness,
        [
            {"role": "user", "content": [{"text": "Weather in Paris?"}]},
            {"role": "assistant", "content": [{"text": '[called tool weather with {"city": "Paris"}]'}]},
            {"role": "user", "content": [{"text": "[result of tool weather: 18C]"}]},
        ],
    )
    status, _, body = chat(harness, key, TOOL_HISTORY, tools=[WEATHER], tool_choice="none")
    assert status == 200, body
    harness.stubber.assert_no_pending_responses()


def test_parallel_tool_calls_pair_with_their_results(harness: Harness) -> None:
    key = harness.add_key()
    messages = [
        {"role": "user", "content": "Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [call("c1"), call("c2", args='{"city": "Rome"}')],
        },
        {"role": "tool", "tool_call_id": "c2", "content": "25C"},
        {"role": "tool", "tool_call_id": "c1", "content": "18C"},
    ]
    expect(
        harness,
        [
            {"role": "user", "content": [{"text": "Paris and Rome?"}]},
            {
                "role": "assistant",
                "content": [
                    {"text": "Checking."},
                    {"toolUse": {"toolUseId": "c1", "name": "weather", "input": {"city": "Paris"}}},
                    {"toolUse": {"toolUseId": "c2", "name": "weather", "input": {"city": "Rome"}}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"toolResult": {"toolUseId": "c2", "content": [{"text": "25C"}]}},
                    {"toolResult": {"toolUseId": "c1", "content": [{"text": "18C"}]}},
                ],
            },
        ],
        toolConfig={"tools": ANY},
    )
    assert chat(harness, key, messages, tools=[WEATHER])[0] == 200


def test_missing_tool_result_is_an_error_result_not_a_bedrock_400(harness: Harness) -> None:
    key = harness.add_key()
    messages = [
        {"role": "user", "content": "Paris and Rome?"},
        {"role": "assistant", "content": None, "tool_calls": [call("c1"), call("c2")]},
        {"role": "tool", "tool_call_id": "c1", "content": "18C"},
        {"role": "user", "content": "Never mind Rome."},
    ]
    expect(
        harness,
        [
            ANY,
            ANY,
            {
                "role": "user",
                "content": [
                    {"toolResult": {"toolUseId": "c1", "content": [{"text": "18C"}]}},
                    {
                        "toolResult": {
                            "toolUseId": "c2",
                            "content": [{"text": "(no result was sent for this tool call)"}],
                            "status": "error",
                        }
                    },
                    {"text": "Never mind Rome."},
                ],
            },
        ],
        toolConfig=ANY,
    )
    assert chat(harness, key, messages, tools=[WEATHER])[0] == 200


def test_parallel_tool_calls_false_returns_at_most_one_call(harness: Harness) -> None:
    key = harness.add_key()
    content = [
        {"toolUse": {"toolUseId": "t1", "name": "weather", "input": {"city": "Paris"}}},
        {"toolUse": {"toolUseId": "t2", "name": "weather", "input": {"city": "Rome"}}},
    ]
    for parallel, n in ((False, 1), (True, 2)):
        expect(harness, toolConfig=ANY, response=converse_response(stop="tool_use", content=content))
        status, _, body = chat(
            harness,
            key,
            [{"role": "user", "content": "Paris and Rome?"}],
            tools=[WEATHER],
            parallel_tool_calls=parallel,
        )
        assert status == 200
        assert len(body["choices"][0]["message"]["tool_calls"]) == n


def test_legacy_functions_and_function_call_are_mapped(harness: Harness) -> None:
    key = harness.add_key()
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "function_call": {"name": "weather", "arguments": '{"city": "Paris"}'},
        },
        {"role": "function", "name": "weather", "content": "18C"},
    ]
    expect(
        harness,
        [
            ANY,
            {
                "role": "assistant",
                "content": [
                    {
                        "toolUse": {
                            "toolUseId": "call_1_weather",
                            "name": "weather",
                            "input": {"city": "Paris"},
                        }
                    }
                ],
            },
            {
                "role": "user",
                "content": [{"toolResult": {"toolUseId": "call_1_weather", "content": [{"text": "18C"}]}}],
            },
        ],
        toolConfig={
            "tools": [
                {"toolSpec": {"name": "weather", "inputSchema": {"json": WEATHER["function"]["parameters"]}}}
            ],
            "toolChoice": {"tool": {"name": "weather"}},
        },
    )
    status, _, body = chat(
        harness, key, messages, functions=[WEATHER["function"]], function_call={"name": "weather"}
    )
    assert status == 200, body


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"functions": [WEATHER["function"]], "tools": [WEATHER]}, "functions", None),
        ({"function_call": "always"}, "function_call", None),
        ({"strict": True}, "strict", "unknown_field"),
        ({"temprature": 0.2}, "temprature", "unknown_field"),
        ({"audio": {"voice": "alloy"}}, "audio", "unsupported_field"),
        ({"reasoning_effort": "max"}, "reasoning_effort", None),
        ({"parallel_tool_calls": "no"}, "parallel_tool_calls", None),
    ],
)
def test_bad_fields_are_a_400_naming_the_field(
    harness: Harness, body: dict[str, Any], param: str, code: str | None
) -> None:
    key = harness.add_key()
    status, _, out = chat(harness, key, [{"role": "user", "content": "hi"}], **body)
    assert status == 400
    assert out["error"]["param"] == param
    if code:
        assert out["error"]["code"] == code
    assert param in out["error"]["message"]


def test_openai_only_tuning_fields_are_accepted_and_ignored(harness: Harness) -> None:
    key = harness.add_key()
    expect(harness)
    values = {name: None for name in IGNORED_FIELDS} | {"seed": 7, "user": "u1", "frequency_penalty": 0.5}
    assert chat(harness, key, [{"role": "user", "content": "hi"}], **values)[0] == 200


def test_orphan_tool_result_is_a_400(harness: Harness) -> None:
    key = harness.add_key()
    messages = [{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "nope", "content": "x"}]
    status, _, out = chat(harness, key, messages)
    assert status == 400 and out["error"]["param"] == "messages[1].tool_call_id"


def test_cache_control_becomes_cache_points_on_models_that_cache(harness: Harness) -> None:
    use_catalog_caps(harness)
    key = harness.add_key()
    messages = [
        {
            "role": "system",
            "content": [{"type": "text", "text": "Long policy.", "cache_control": {"type": "ephemeral"}}],
        },
        {"role": "user", "content": [{"type": "text", "text": "Q", "cache_control": {"type": "ephemeral"}}]},
    ]
    cache_point = {"cachePoint": {"type": "default"}}
    expect(
        harness,
        [{"role": "user", "content": [{"text": "Q"}, cache_point]}],
        system=[{"text": "Long policy."}, cache_point],
        response=converse_response(
            usage={"inputTokens": 5, "outputTokens": 2, "totalTokens": 1507, "cacheReadInputTokens": 1500}
        ),
    )
    status, headers, body = chat(harness, key, messages)
    assert status == 200
    assert body["usage"]["prompt_tokens_details"]["cached_tokens"] == 1500
    record = next(iter(harness.ledger.records.values()))
    assert record.cache_read_tokens == 1500
    assert float(headers["x-aif-cost-usd"]) == pytest.approx((5 * 1.0 + 2 * 5.0 + 1500 * 0.10) / 1e6)


def test_cache_control_is_dropped_for_models_without_prompt_caching(harness: Harness) -> None:
    key = harness.add_key()  # the harness's Haiku target has no catalog capabilities: no caching
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "Q", "cache_control": {"type": "ephemeral"}}]}
    ]
    expect(harness, [{"role": "user", "content": [{"text": "Q"}]}])
    assert chat(harness, key, messages)[0] == 200


def test_automatic_cache_mode_puts_points_after_system_and_tools(harness: Harness) -> None:
    use_catalog_caps(harness, auto_cache=True)
    key = harness.add_key()
    cache_point = {"cachePoint": {"type": "default"}}
    expect(
        harness,
        [{"role": "user", "content": [{"text": "Q"}]}],
        system=[{"text": "Policy."}, cache_point],
        toolConfig={"tools": [ANY, cache_point]},
    )
    messages = [{"role": "system", "content": "Policy."}, {"role": "user", "content": "Q"}]
    assert chat(harness, key, messages, tools=[WEATHER])[0] == 200


def test_reasoning_effort_maps_to_thinking_and_reasoning_is_returned(harness: Harness) -> None:
    use_catalog_caps(harness)
    key = harness.add_key()
    content = [
        {"reasoningContent": {"reasoningText": {"text": "Think: 2+2.", "signature": "sig"}}},
        {"text": "4"},
    ]
    expect(
        harness,
        inferenceConfig={"maxTokens": 4000},
        additionalModelRequestFields={"thinking": {"type": "enabled", "budget_tokens": 2048}},
        response=converse_response(content=content),
    )
    status, _, body = chat(
        harness,
        key,
        [{"role": "user", "content": "2+2?"}],
        reasoning_effort="low",
        max_tokens=4000,
        temperature=0.3,
    )
    assert status == 200, body
    message = body["choices"][0]["message"]
    assert message["content"] == "4" and message["reasoning_content"] == "Think: 2+2."


def test_reasoning_effort_is_dropped_on_a_model_without_reasoning(harness: Harness) -> None:
    key = harness.add_key()
    expect(harness, inferenceConfig={"maxTokens": 100})
    assert (
        chat(harness, key, [{"role": "user", "content": "hi"}], reasoning_effort="high", max_tokens=100)[0]
        == 200
    )


def test_max_tokens_is_clamped_to_the_models_maximum(harness: Harness) -> None:
    use_catalog_caps(harness)
    key = harness.add_key()
    expect(harness, inferenceConfig={"maxTokens": 64000})
    assert chat(harness, key, [{"role": "user", "content": "hi"}], max_tokens=100000)[0] == 200


def test_neutral_top_p_is_dropped_when_the_model_takes_one_of_the_pair(harness: Harness) -> None:
    use_catalog_caps(harness)
    key = harness.add_key()
    expect(harness, inferenceConfig={"temperature": 0.2})
    assert chat(harness, key, [{"role": "user", "content": "hi"}], temperature=0.2, top_p=1.0)[0] == 200


def test_request_no_model_of_the_route_can_serve_is_a_400_naming_why(harness: Harness) -> None:
    use_catalog_caps(harness)
    key = harness.add_key()
    status, _, body = chat(harness, key, [{"role": "user", "content": "hi"}], temperature=0.2, top_p=0.5)
    assert status == 400 and body["error"]["code"] == "unsupported_by_model"
    assert "temperature or top_p" in body["error"]["message"]
    status, _, body = chat(harness, key, [{"role": "user", "content": "hi"}], temperature=1.5)
    assert status == 400 and "temperature above 1" in body["error"]["message"]


def test_fallback_that_cannot_serve_is_skipped_without_a_call(harness: Harness) -> None:
    """Regression: a json_schema request valid for Haiku went to Nova (no structured output) when Haiku
    was unavailable, and Nova's ValidationException became the client's 400."""
    use_catalog_caps(harness)
    key = harness.add_key()
    harness.stubber.add_client_error(
        "converse", service_error_code="ServiceUnavailableException", http_status_code=503
    )
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    status, headers, body = chat(
        harness, key, [{"role": "user", "content": "hi"}], model="chat-fast", response_format=schema
    )
    assert status == 503 and headers["Retry-After"] == "5"
    assert "nova-lite: no json_schema output" in body["error"]["message"]
    harness.stubber.assert_no_pending_responses()  # Nova was never called


def test_created_is_the_request_time(harness: Harness) -> None:
    key = harness.add_key()
    expect(harness)
    body = chat(harness, key, [{"role": "user", "content": "hi"}])[2]
    assert body["created"] == int(harness.now.timestamp())
    assert json.dumps(body)  # plain JSON


def test_thinking_is_skipped_while_a_tool_loop_is_open_and_for_forced_tools(harness: Harness) -> None:
    use_catalog_caps(harness)
    key = harness.add_key()
    # The last assistant turn called a tool: its thinking blocks are gone, so thinking is not sent.
    expect(harness, toolConfig=ANY)
    assert chat(harness, key, TOOL_HISTORY, tools=[WEATHER], reasoning_effort="high")[0] == 200
    forced = {"type": "function", "function": {"name": "weather"}}
    expect(harness, toolConfig=ANY)
    status, _, _ = chat(
        harness,
        key,
        [{"role": "user", "content": "hi"}],
        tools=[WEATHER],
        tool_choice=forced,
        reasoning_effort="low",
    )
    assert status == 200
    harness.stubber.assert_no_pending_responses()


def test_thinking_without_max_tokens_leaves_room_for_the_answer(harness: Harness) -> None:
    use_catalog_caps(harness)
    key = harness.add_key()
    expect(
        harness,
        inferenceConfig={"maxTokens": 24576 + 8192},
        additionalModelRequestFields={"thinking": {"type": "enabled", "budget_tokens": 24576}},
    )
    assert (
        chat(harness, key, [{"role": "user", "content": "hi"}], reasoning_effort="high", top_p=0.5)[0] == 200
    )


def test_an_earlier_refusal_part_is_sent_as_assistant_text(harness: Harness) -> None:
    key = harness.add_key()
    messages = [
        {"role": "user", "content": "Do something bad"},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't help with that."}]},
        {"role": "user", "content": "OK, something good then"},
    ]
    expect(
        harness,
        [
            {"role": "user", "content": [{"text": "Do something bad"}]},
            {"role": "assistant", "content": [{"text": "I can't help with that."}]},
            {"role": "user", "content": [{"text": "OK, something good then"}]},
        ],
    )
    assert chat(harness, key, messages)[0] == 200


def test_a_primary_that_cannot_serve_is_passed_over_and_recorded(harness: Harness) -> None:
    routes = dict(harness.gateway.config.routes)
    routes["chat-fast"] = Route("chat-fast", "chat", (NOVA_C, HAIKU_C))  # Nova first: no json_schema
    harness.gateway.config = replace(harness.gateway.config, routes=routes)
    key = harness.add_key()
    expect(harness, outputConfig=ANY)
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    status, headers, _ = chat(
        harness, key, [{"role": "user", "content": "hi"}], model="chat-fast", response_format=schema
    )
    assert status == 200 and headers["x-aif-served-by"] == "claude-haiku-4-5"
    assert headers["x-aif-attempts"] == "1"
    (record,) = harness.ledger.records.values()
    assert record.extra["failures"] == "nova-lite: no json_schema output"
    assert harness.metrics.counts["Fallbacks"] == 1
