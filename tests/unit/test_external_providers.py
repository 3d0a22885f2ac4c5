"""External providers (OpenAI and compatible servers, Anthropic, Mistral) against local fakes of their
HTTP APIs: the wire format sent, answers and streams read, errors mapped to the fallback rules, the
guardrail applied, and API keys read from (moto) Secrets Manager with caching and rotation.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from fake_provider_api import FakeApi, json_answer, sse_answer, stall, start_fake_api
from moto import mock_aws

from aif_gateway.anthropic_provider import AnthropicProvider
from aif_gateway.config import GuardrailRef, ModelTarget, Prices, RouteTimeouts
from aif_gateway.external_provider import ExternalProvider
from aif_gateway.mistral_provider import MistralProvider, mistral_tool_id
from aif_gateway.openai_provider import OpenAiProvider
from aif_gateway.openai_schema import ChatRequest, EmbeddingsRequest
from aif_gateway.provider_secrets import SecretCache
from aif_gateway.provider_types import (
    CallContext,
    ProviderError,
    StreamStop,
    StreamUsage,
    TextDelta,
    TokenUsage,
    ToolCallDelta,
)
from aif_gateway.routing import client_error

REGION = "us-east-1"
CTX = CallContext("req-1", "payments", "invoice-summary", None, RouteTimeouts(first_token_s=2, idle_s=2))
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture
def api() -> Iterator[FakeApi]:
    yield from start_fake_api()


@pytest.fixture
def secrets() -> Iterator[SecretCache]:
    with mock_aws():
        client = boto3.client("secretsmanager", region_name=REGION)
        client.create_secret(
            Name="ai-factory/providers/openai", SecretString=json.dumps({"api_key": "sk-test-1"})
        )
        client.create_secret(Name="ai-factory/providers/anthropic", SecretString="sk-ant-test-1")
        client.create_secret(
            Name="ai-factory/providers/mistral", SecretString=json.dumps({"api_key": "m-key"})
        )
        yield SecretCache(client_factory=lambda region: boto3.client("secretsmanager", region_name=REGION))


def target(provider: str, api: FakeApi, **extra: Any) -> ModelTarget:
    suffix = "/v1" if provider != "anthropic" else ""
    return ModelTarget(
        name=f"{provider}-model",
        provider=provider,  # type: ignore[arg-type]
        model_id=extra.pop("model_id", f"{provider}-model-id"),
        modality=extra.pop("modality", "chat"),
        prices=Prices(input=1.0, output=2.0, cache_read=0.5),
        base_url=api.url + suffix,
        secret=extra.pop("secret", f"ai-factory/providers/{provider}"),
        max_classification="internal",
        **extra,
    )


def chat(**fields: Any) -> ChatRequest:
    fields.setdefault("messages", [{"role": "user", "content": "Hello"}])
    return ChatRequest(model="alias", **fields)


def openai_completion(
    text: str | None = "Hi!", tool_calls: list[Any] | None = None, **usage: int
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o",
        "choices": [
            {"index": 0, "message": message, "finish_reason": "tool_calls" if tool_calls else "stop"}
        ],
        "usage": {
            "prompt_tokens": usage.get("prompt", 12),
            "completion_tokens": usage.get("completion", 3),
            "total_tokens": 15,
            "prompt_tokens_details": {"cached_tokens": usage.get("cached", 0)},
        },
    }


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


# -- OpenAI ----------------------------------------------------------------------------------------


def test_openai_chat_sends_chat_completions_and_reads_tools_and_cached_usage(
    api: FakeApi, secrets: SecretCache
) -> None:
    call = {
        "id": "call_abc",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
    }
    api.queue(json_answer(openai_completion(None, [call], prompt=120, completion=9, cached=100)))
    provider = OpenAiProvider(secrets=secrets)
    request = chat(tools=[WEATHER_TOOL], tool_choice="required", max_tokens=50, temperature=0.2, stop=["END"])
    result = provider.chat(target("openai", api), request, CTX)

    sent = api.received[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test-1"
    assert sent.body == {
        "model": "openai-model-id",
        "messages": [{"role": "user", "content": "Hello"}],
        "temperature": 0.2,
        "max_completion_tokens": 50,
        "stop": ["END"],
        "tools": [WEATHER_TOOL],
        "tool_choice": "required",
    }
    assert result.finish_reason == "tool_calls"
    assert result.tool_calls == [call]
    # Cached prompt tokens are cache reads (priced apart), not input.
    assert result.usage == TokenUsage(input=20, output=9, cache_read=100)


def test_openai_stream_relays_text_tool_call_pieces_finish_and_usage(
    api: FakeApi, secrets: SecretCache
) -> None:
    api.queue(
        sse_answer(
            [
                ("", chunk({"role": "assistant", "content": ""})),
                ("", chunk({"content": "Let me "})),
                ("", chunk({"content": "check."})),
                (
                    "",
                    chunk(
                        {
                            "tool_calls": [
                                {
                                    "index": 0,
                                    "id": "call_1",
                                    "type": "function",
                                    "function": {"name": "get_weather", "arguments": ""},
                                }
                            ]
                        }
                    ),
                ),
                ("", chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]})),
                ("", chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]})),
                ("", chunk({}, "tool_calls")),
                (
                    "",
                    {
                        "id": "c",
                        "object": "chat.completion.chunk",
                        "choices": [],
                        "usage": {"prompt_tokens": 30, "completion_tokens": 7},
                    },
                ),
                ("", "[DONE]"),
            ]
        )
    )
    stream = OpenAiProvider(secrets=secrets).chat_stream(
        target("openai", api), chat(tools=[WEATHER_TOOL]), CTX
    )
    events = list(stream)
    stream.close()
    assert api.received[0].body["stream"] is True
    assert api.received[0].body["stream_options"] == {"include_usage": True}
    assert events == [
        TextDelta("Let me "),
        TextDelta("check."),
        ToolCallDelta(0, "", "call_1", "get_weather"),
        ToolCallDelta(0, '{"city":'),
        ToolCallDelta(0, '"Oslo"}'),
        StreamStop("tool_calls"),
        StreamUsage(TokenUsage(input=30, output=7)),
    ]


def test_azure_flavor_sends_the_api_key_header_and_compatible_servers_get_max_tokens(
    api: FakeApi, secrets: SecretCache
) -> None:
    api.queue(json_answer(openai_completion()), json_answer(openai_completion()))
    provider = OpenAiProvider(secrets=secrets)
    provider.chat(
        target("openai", api, api_flavor="azure", model_id="my-gpt4o-deployment"), chat(max_tokens=5), CTX
    )
    provider.chat(target("openai", api, api_flavor="compatible"), chat(max_tokens=5), CTX)
    azure, vllm = api.received
    assert azure.headers["api-key"] == "sk-test-1" and "authorization" not in azure.headers
    assert azure.body["model"] == "my-gpt4o-deployment" and azure.body["max_completion_tokens"] == 5
    assert vllm.headers["authorization"] == "Bearer sk-test-1"
    assert vllm.body["max_tokens"] == 5 and "max_completion_tokens" not in vllm.body


def test_openai_embeddings(api: FakeApi, secrets: SecretCache) -> None:
    api.queue(
        json_answer(
            {
                "object": "list",
                "data": [
                    {"object": "embedding", "index": 1, "embedding": [0.0, 1.0]},
                    {"object": "embedding", "index": 0, "embedding": [1.0, 0.0]},
                ],
                "model": "text-embedding-3-small",
                "usage": {"prompt_tokens": 4, "total_tokens": 4},
            }
        )
    )
    result = OpenAiProvider(secrets=secrets).embed(
        target("openai", api, modality="embedding"),
        EmbeddingsRequest("embed", ["a b", "c d"], dimensions=2),
        CTX,
    )
    assert api.received[0].path == "/v1/embeddings"
    assert api.received[0].body == {
        "model": "openai-model-id",
        "input": ["a b", "c d"],
        "encoding_format": "float",
        "dimensions": 2,
    }
    assert result.vectors == [[1.0, 0.0], [0.0, 1.0]] and result.input_tokens == 4


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "kind", "retryable", "client_fault"),
    [
        (
            429,
            {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}},
            "TooManyRequestsException",
            True,
            False,
        ),
        (
            429,
            {
                "error": {
                    "message": "You exceeded your current quota",
                    "type": "insufficient_quota",
                    "code": "insufficient_quota",
                }
            },
            "InsufficientQuota",
            True,
            False,
        ),
        (
            500,
            {"error": {"message": "server error", "type": "server_error"}},
            "ServiceUnavailableException",
            True,
            False,
        ),
        (503, {"error": {"message": "overloaded"}}, "ServiceUnavailableException", True, False),
        (
            400,
            {"error": {"message": "bad tool schema", "type": "invalid_request_error"}},
            "ValidationException",
            False,
            True,
        ),
        (
            404,
            {"error": {"message": "The model does not exist", "code": "model_not_found"}},
            "ModelNotFound",
            False,
            False,
        ),
        (403, {"error": {"message": "not allowed in region"}}, "AuthenticationError", False, False),
    ],
)
def test_http_errors_map_to_the_fallback_rules(
    api: FakeApi, secrets: SecretCache, status: int, body: Any, kind: str, retryable: bool, client_fault: bool
) -> None:
    api.queue(json_answer(body, status))
    with pytest.raises(ProviderError) as caught:
        OpenAiProvider(secrets=secrets).chat(target("openai", api), chat(), CTX)
    assert (caught.value.kind, caught.value.retryable, caught.value.client_fault) == (
        kind,
        retryable,
        client_fault,
    )
    assert "sk-test-1" not in str(caught.value)


@pytest.mark.parametrize(
    ("provider_cls", "provider", "message"),
    [
        (
            OpenAiProvider,
            "openai",
            "This model's maximum context length is 128000 tokens. However, your messages resulted in "
            "130000 tokens.",
        ),
        (AnthropicProvider, "anthropic", "prompt is too long: 210000 tokens > 200000 maximum"),
        (
            MistralProvider,
            "mistral",
            "Prompt contains 140000 tokens, too large for model with 131072 maximum context length",
        ),
    ],
)
def test_a_prompt_too_long_becomes_context_length_exceeded(
    api: FakeApi, secrets: SecretCache, provider_cls: type[ExternalProvider], provider: str, message: str
) -> None:
    body = (
        {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
        if provider == "anthropic"
        else {"object": "error", "message": message, "type": "invalid_request_error"}
        if provider == "mistral"
        else {
            "error": {"message": message, "type": "invalid_request_error", "code": "context_length_exceeded"}
        }
    )
    api.queue(json_answer(body, 422 if provider == "mistral" else 400))
    with pytest.raises(ProviderError) as caught:
        provider_cls(secrets=secrets).chat(target(provider, api), chat(), CTX)
    assert caught.value.client_fault
    assert client_error(caught.value).code == "context_length_exceeded"


def test_a_silent_provider_times_out_as_a_retryable_error(api: FakeApi, secrets: SecretCache) -> None:
    api.queue(stall(1.5))
    ctx = CallContext("r", "t", "f", None, RouteTimeouts(first_token_s=0.3, idle_s=0.3, total_minutes=0.005))
    with pytest.raises(ProviderError) as caught:
        OpenAiProvider(secrets=secrets).chat(target("openai", api), chat(), ctx)
    assert caught.value.kind == "Timeout" and caught.value.retryable


def test_a_stream_that_goes_silent_is_cut_at_the_idle_timeout(api: FakeApi, secrets: SecretCache) -> None:
    api.queue(sse_answer([("", chunk({"content": "a"})), ("", chunk({"content": "b"}))], event_pause_s=0.8))
    ctx = CallContext("r", "t", "f", None, RouteTimeouts(first_token_s=2, idle_s=0.3))
    stream = OpenAiProvider(secrets=secrets).chat_stream(target("openai", api), chat(), ctx)
    with pytest.raises(ProviderError) as caught:
        list(stream)
    stream.close()
    assert caught.value.kind == "Timeout" and caught.value.retryable


# -- Anthropic -------------------------------------------------------------------------------------


def test_anthropic_messages_body_from_a_tool_conversation(api: FakeApi, secrets: SecretCache) -> None:
    api.queue(
        json_answer(
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5-20250929",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Bergen"}},
                ],
                "stop_reason": "tool_use",
                "stop_sequence": None,
                "usage": {
                    "input_tokens": 50,
                    "output_tokens": 20,
                    "cache_read_input_tokens": 100,
                    "cache_creation_input_tokens": 10,
                },
            }
        )
    )
    messages = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather in Oslo?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "rain"},
        {"role": "user", "content": "And Bergen?"},
    ]
    request = chat(
        messages=messages,
        tools=[WEATHER_TOOL],
        tool_choice="required",
        parallel_tool_calls=False,
        stop=["END"],
    )
    result = AnthropicProvider(secrets=secrets).chat(target("anthropic", api), request, CTX)

    sent = api.received[0]
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == "sk-ant-test-1" and sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.body == {
        "model": "anthropic-model-id",
        "max_tokens": 4096,
        "system": "Be brief.",
        "stop_sequences": ["END"],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather in Oslo?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Oslo"}}
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "rain"},
                    {"type": "text", "text": "And Bergen?"},
                ],
            },
        ],
        "tools": [
            {
                "name": "get_weather",
                "description": "Weather in a city",
                "input_schema": WEATHER_TOOL["function"]["parameters"],
            }
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    }
    assert result.text == "Checking." and result.finish_reason == "tool_calls"
    assert result.tool_calls == [
        {
            "id": "toolu_2",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Bergen"}'},
        }
    ]
    assert result.usage == TokenUsage(input=50, output=20, cache_read=100, cache_write=10)


def anthropic_stream_events(*, error: bool = False) -> list[tuple[str, Any]]:
    events: list[tuple[str, Any]] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "model": "claude",
                    "stop_reason": None,
                    "usage": {"input_tokens": 25, "output_tokens": 1},
                },
            },
        ),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        ("ping", {"type": "ping"}),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}},
        ),
    ]
    if error:
        return [
            *events,
            ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ]
    return [
        *events,
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"city": '},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '"Oslo"}'},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"output_tokens": 15},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]


def test_anthropic_stream_events_become_gateway_events(api: FakeApi, secrets: SecretCache) -> None:
    api.queue(sse_answer(anthropic_stream_events()))
    stream = AnthropicProvider(secrets=secrets).chat_stream(
        target("anthropic", api), chat(tools=[WEATHER_TOOL]), CTX
    )
    events = list(stream)
    stream.close()
    assert api.received[0].body["stream"] is True
    assert events == [
        TextDelta("Hello"),
        ToolCallDelta(0, "", "toolu_1", "get_weather"),
        ToolCallDelta(0, '{"city": '),
        ToolCallDelta(0, '"Oslo"}'),
        StreamStop("tool_calls"),
        StreamUsage(TokenUsage(input=25, output=15)),
    ]


def test_anthropic_error_event_after_http_200_is_a_retryable_provider_error(
    api: FakeApi, secrets: SecretCache
) -> None:
    api.queue(sse_answer(anthropic_stream_events(error=True)))
    stream = AnthropicProvider(secrets=secrets).chat_stream(target("anthropic", api), chat(), CTX)
    assert next(stream) == TextDelta("Hello")
    with pytest.raises(ProviderError) as caught:
        next(stream)
    stream.close()
    assert caught.value.kind == "overloaded_error" and caught.value.retryable


def test_anthropic_529_overloaded_is_retryable_and_has_no_embeddings(
    api: FakeApi, secrets: SecretCache
) -> None:
    api.queue(
        json_answer({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, 529)
    )
    provider = AnthropicProvider(secrets=secrets)
    with pytest.raises(ProviderError) as caught:
        provider.chat(target("anthropic", api), chat(), CTX)
    assert caught.value.retryable and "overloaded_error" in caught.value.message
    with pytest.raises(ProviderError, match="no embeddings API"):
        provider.embed(target("anthropic", api, modality="embedding"), EmbeddingsRequest("e", ["x"]), CTX)


# -- Mistral ---------------------------------------------------------------------------------------


def test_mistral_body_maps_tool_choice_ids_and_max_tokens(api: FakeApi, secrets: SecretCache) -> None:
    api.queue(json_answer(openai_completion("ok")))
    messages = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "toolu_01ABCdef",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01ABCdef", "content": "sun"},
    ]
    request = chat(
        messages=messages, tools=[WEATHER_TOOL], tool_choice="required", max_tokens=20, reasoning_effort="low"
    )
    MistralProvider(secrets=secrets).chat(target("mistral", api), request, CTX)
    body = api.received[0].body
    assert api.received[0].headers["authorization"] == "Bearer m-key"
    assert body["tool_choice"] == "any" and body["max_tokens"] == 20
    assert "reasoning_effort" not in body and "max_completion_tokens" not in body
    mapped = mistral_tool_id("toolu_01ABCdef")
    assert len(mapped) == 9 and mapped.isalnum()
    assert body["messages"][1]["tool_calls"][0]["id"] == mapped == body["messages"][2]["tool_call_id"]
    assert mistral_tool_id("D681PevKs") == "D681PevKs"  # Mistral's own IDs are kept


def test_mistral_stream_has_no_stream_options_and_reads_usage_from_the_last_chunk(
    api: FakeApi, secrets: SecretCache
) -> None:
    last = {
        **chunk({"content": ""}, "stop"),
        "usage": {"prompt_tokens": 8, "completion_tokens": 2, "total_tokens": 10},
    }
    api.queue(
        sse_answer([("", chunk({"role": "assistant", "content": "Bonjour"})), ("", last), ("", "[DONE]")])
    )
    stream = MistralProvider(secrets=secrets).chat_stream(target("mistral", api), chat(), CTX)
    events = list(stream)
    assert "stream_options" not in api.received[0].body
    assert events == [TextDelta("Bonjour"), StreamStop("stop"), StreamUsage(TokenUsage(input=8, output=2))]


def test_mistral_embeddings_refuse_dimensions_without_a_call(api: FakeApi, secrets: SecretCache) -> None:
    with pytest.raises(ProviderError) as caught:
        MistralProvider(secrets=secrets).embed(
            target("mistral", api, modality="embedding"), EmbeddingsRequest("e", ["x"], dimensions=256), CTX
        )
    assert caught.value.client_fault and api.received == []


# -- credentials -----------------------------------------------------------------------------------


def test_secret_is_cached_for_its_ttl_then_reread() -> None:
    with mock_aws():
        client = boto3.client("secretsmanager", region_name=REGION)
        client.create_secret(Name="s", SecretString=json.dumps({"api_key": "k1", "organization": "org-1"}))
        now = [0.0]
        cache = SecretCache(ttl_s=60, client_factory=lambda region: client, clock=lambda: now[0])
        first = cache.get("s")
        assert (first.api_key, first.organization) == ("k1", "org-1")
        assert "k1" not in repr(first)  # never in a log line
        client.put_secret_value(SecretId="s", SecretString="k2")  # rotation
        now[0] = 59
        assert cache.get("s").api_key == "k1"
        now[0] = 61
        assert cache.get("s").api_key == "k2"


def test_a_rotated_key_is_picked_up_on_the_first_401_without_waiting_for_the_ttl(api: FakeApi) -> None:
    with mock_aws():
        client = boto3.client("secretsmanager", region_name=REGION)
        client.create_secret(Name="ai-factory/providers/openai", SecretString="sk-old")
        now = [0.0]
        cache = SecretCache(ttl_s=300, client_factory=lambda region: client, clock=lambda: now[0])
        provider = OpenAiProvider(secrets=cache)
        api.require_key = "sk-old"
        api.queue(json_answer(openai_completion("one")), json_answer(openai_completion("two")))
        assert provider.chat(target("openai", api), chat(), CTX).text == "one"
        client.put_secret_value(SecretId="ai-factory/providers/openai", SecretString="sk-new")
        api.require_key = "sk-new"  # the provider revoked the old key
        now[0] = 10
        assert provider.chat(target("openai", api), chat(), CTX).text == "two"
        assert [r.headers["authorization"] for r in api.received] == [
            "Bearer sk-old",
            "Bearer sk-old",
            "Bearer sk-new",
        ]


def test_a_key_the_provider_keeps_refusing_fails_without_leaking_it(
    api: FakeApi, secrets: SecretCache
) -> None:
    api.require_key = "something-else"
    with pytest.raises(ProviderError) as caught:
        OpenAiProvider(secrets=secrets).chat(target("openai", api), chat(), CTX)
    assert caught.value.kind == "AuthenticationError" and not caught.value.retryable
    assert "sk-test-1" not in str(caught.value)
    assert len(api.received) == 1  # the secret did not change: no second call with the same key


def test_a_missing_secret_is_a_provider_error_naming_the_secret(api: FakeApi, secrets: SecretCache) -> None:
    with pytest.raises(ProviderError, match="ai-factory/providers/nope") as caught:
        OpenAiProvider(secrets=secrets).chat(
            target("openai", api, secret="ai-factory/providers/nope"), chat(), CTX
        )
    assert caught.value.kind == "SecretUnavailable" and not caught.value.retryable
    assert api.received == []


# -- guardrail -------------------------------------------------------------------------------------

GUARDRAIL_USAGE = {
    "topicPolicyUnits": 0,
    "contentPolicyUnits": 1,
    "wordPolicyUnits": 0,
    "sensitiveInformationPolicyUnits": 1,
    "sensitiveInformationPolicyFreeUnits": 0,
    "contextualGroundingPolicyUnits": 0,
}


def _guardrail(action: str, text: str | None = None) -> dict[str, Any]:
    return {
        "usage": GUARDRAIL_USAGE,
        "action": action,
        "outputs": [{"text": text}] if text else [],
        "assessments": [],
    }


def test_external_traffic_goes_through_apply_guardrail_on_input_and_output(
    api: FakeApi, secrets: SecretCache
) -> None:
    bedrock = boto3.client("bedrock-runtime", region_name=REGION)
    stub = Stubber(bedrock)
    expected = {"guardrailIdentifier": "gr-1", "guardrailVersion": "2", "source": "INPUT", "content": ANY}
    stub.add_response("apply_guardrail", _guardrail("NONE"), expected)
    stub.add_response(
        "apply_guardrail",
        _guardrail("GUARDRAIL_INTERVENED", "Sorry, I can't share that."),
        {**expected, "source": "OUTPUT"},
    )
    stub.add_response("apply_guardrail", _guardrail("GUARDRAIL_INTERVENED", "Blocked prompt."), expected)
    api.queue(json_answer(openai_completion("the secret plan", prompt=5, completion=3)))
    provider = OpenAiProvider(secrets=secrets, bedrock_factory=lambda region: bedrock)
    ctx = CallContext("r", "t", "f", GuardrailRef("gr-1", "2"), CTX.timeouts)
    with stub:
        answer = provider.chat(target("openai", api), chat(), ctx)
        assert (answer.text, answer.finish_reason, answer.guardrail_intervened) == (
            "Sorry, I can't share that.",
            "content_filter",
            True,
        )
        assert answer.usage == TokenUsage(input=5, output=3)  # the model was called: still metered
        # With a guardrail, a stream is served buffered (the guardrail sees the whole answer first);
        # a blocked prompt never reaches the provider.
        events = list(provider.chat_stream(target("openai", api), chat(stream=True), ctx))
        assert events[0] == TextDelta("Blocked prompt.") and len(api.received) == 1
        stub.assert_no_pending_responses()


def test_guardrail_outage_fails_closed(api: FakeApi, secrets: SecretCache) -> None:
    bedrock = boto3.client("bedrock-runtime", region_name=REGION)
    stub = Stubber(bedrock)
    stub.add_client_error("apply_guardrail", "ThrottlingException", http_status_code=429)
    provider = AnthropicProvider(secrets=secrets, bedrock_factory=lambda region: bedrock)
    with stub, pytest.raises(ProviderError) as caught:
        provider.chat(target("anthropic", api), chat(), CallContext("r", "t", "f", GuardrailRef("gr", "1")))
    assert caught.value.kind == "GuardrailUnavailable" and caught.value.retryable
    assert api.received == []
