"""Chat completions: OpenAI <-> Converse translation, guardrail, metering, streaming, embeddings."""

from __future__ import annotations

import base64
import json
import struct

import pytest
from botocore.stub import ANY
from conftest import HAIKU, TITAN, Harness, converse_response

from aif_gateway.config import Prices
from aif_gateway.metering import cost_usd
from aif_gateway.provider_types import TokenUsage


def test_full_request_translates_to_converse(harness: Harness) -> None:
    key = harness.add_key()
    image = base64.b64encode(b"\x89PNG fake").decode()
    expected = {
        "modelId": HAIKU.model_id,
        "system": [
            {"text": "Be brief."},
            {"text": "Respond with a single valid JSON object and nothing else."},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"text": "Weather in Paris?"},
                    {"image": {"format": "png", "source": {"bytes": b"\x89PNG fake"}}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"toolUse": {"toolUseId": "call_1", "name": "weather", "input": {"city": "Paris"}}}
                ],
            },
            {
                "role": "user",
                "content": [
                    {"toolResult": {"toolUseId": "call_1", "content": [{"text": "18C"}]}},
                    {"text": "Thanks"},
                ],
            },
        ],
        "inferenceConfig": {"maxTokens": 100, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]},
        "additionalModelResponseFieldPaths": ["/stop_sequence"],  # which stop sequence matched (Claude)
        "toolConfig": {
            "tools": [
                {
                    "toolSpec": {
                        "name": "weather",
                        "description": "Get weather",
                        "inputSchema": {
                            "json": {"type": "object", "properties": {"city": {"type": "string"}}}
                        },
                    }
                }
            ],
            "toolChoice": {"auto": {}},
        },
        "guardrailConfig": {"guardrailIdentifier": "gr-123", "guardrailVersion": "1", "trace": "enabled"},
        "requestMetadata": {"aif_team": "support", "aif_feature": "summarizer", "aif_request_id": ANY},
    }
    harness.stubber.add_response("converse", converse_response(text='{"ok": true}'), expected)
    body = {
        "model": "chat-fast",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather in Paris?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "user", "content": "Thanks"},
        ],
        "max_tokens": 100,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": "END",
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "weather",
                    "description": "Get weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
            }
        ],
        "tool_choice": "auto",
        "response_format": {"type": "json_object"},
        "seed": 7,
    }
    status, _, out = harness.call("POST", "/v1/chat/completions", body, key)
    assert status == 200, out
    assert out["object"] == "chat.completion"
    assert out["choices"][0]["message"] == {"role": "assistant", "content": '{"ok": true}'}
    harness.stubber.assert_no_pending_responses()


def test_tool_use_response_becomes_tool_calls(harness: Harness) -> None:
    key = harness.add_key()
    content = [
        {"text": "Let me check."},
        {"toolUse": {"toolUseId": "tu_9", "name": "weather", "input": {"city": "Oslo"}}},
    ]
    harness.stubber.add_response("converse", converse_response(stop="tool_use", content=content))
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
    status, _, out = harness.chat(
        key, tools=tools, tool_choice={"type": "function", "function": {"name": "weather"}}
    )
    assert status == 200
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["id"] == "tu_9" and call["function"]["name"] == "weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Oslo"}


def test_json_schema_response_format_uses_output_config(harness: Harness) -> None:
    key = harness.add_key()
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    harness.stubber.add_response(
        "converse",
        converse_response(text='{"a": 1}'),
        {
            "modelId": HAIKU.model_id,
            "messages": ANY,
            "guardrailConfig": ANY,
            "requestMetadata": ANY,
            "outputConfig": {
                "textFormat": {
                    "type": "json_schema",
                    "structure": {"jsonSchema": {"schema": json.dumps(schema), "name": "thing"}},
                }
            },
        },
    )
    rf = {"type": "json_schema", "json_schema": {"name": "thing", "schema": schema}}
    assert harness.chat(key, response_format=rf)[0] == 200
    harness.stubber.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("stop", "finish"),
    [("max_tokens", "length"), ("stop_sequence", "stop"), ("content_filtered", "content_filter")],
)
def test_stop_reasons_map_to_openai_finish_reasons(harness: Harness, stop: str, finish: str) -> None:
    key = harness.add_key()
    harness.stubber.add_response("converse", converse_response(stop=stop))
    assert harness.chat(key)[2]["choices"][0]["finish_reason"] == finish


def test_guardrail_intervention_is_content_filter_and_counted(harness: Harness) -> None:
    key = harness.add_key()
    harness.stubber.add_response(
        "converse", converse_response(text="Sorry, I can't help with that.", stop="guardrail_intervened")
    )
    status, _, out = harness.chat(key)
    assert status == 200
    assert out["choices"][0]["finish_reason"] == "content_filter"
    (record,) = harness.ledger.records.values()
    assert record.guardrail_action == "INTERVENED"
    assert harness.metrics.counts["GuardrailInterventions"] == 1


def test_cache_tokens_are_priced_separately() -> None:
    prices = Prices(input=3.0, output=15.0, cache_read=0.30, cache_write=3.75)
    usage = TokenUsage(input=1000, output=200, cache_read=50_000, cache_write=10_000)
    # 1000*3 + 200*15 + 50000*0.30 + 10000*3.75 = 3000 + 3000 + 15000 + 37500 = 58500 per 1M
    assert cost_usd(usage, prices) == pytest.approx(0.0585)


def test_usage_and_cost_from_bedrock_counters(harness: Harness) -> None:
    key = harness.add_key()
    usage = {
        "inputTokens": 100,
        "outputTokens": 20,
        "totalTokens": 2120,
        "cacheReadInputTokens": 1500,
        "cacheWriteInputTokens": 500,
    }
    harness.stubber.add_response("converse", converse_response(usage=usage))
    _status, headers, out = harness.chat(key)
    assert out["usage"] == {
        "prompt_tokens": 2100,
        "completion_tokens": 20,
        "total_tokens": 2120,
        "prompt_tokens_details": {"cached_tokens": 1500},
        "cache_creation_input_tokens": 500,
    }
    (record,) = harness.ledger.records.values()
    expected = (100 * 1.0 + 20 * 5.0 + 1500 * 0.10 + 500 * 1.25) / 1e6
    assert record.cost_usd == pytest.approx(expected)
    assert (
        record.input_tokens,
        record.output_tokens,
        record.cache_read_tokens,
        record.cache_write_tokens,
    ) == (100, 20, 1500, 500)
    assert float(headers["x-aif-cost-usd"]) == pytest.approx(expected)


def test_audit_record_has_the_required_fields_and_no_text(harness: Harness) -> None:
    key = harness.add_key()
    harness.stubber.add_response("converse", converse_response(text="SECRET-COMPLETION"))
    harness.call(
        "POST",
        "/v1/chat/completions",
        {"model": "chat-fast", "messages": [{"role": "user", "content": "SECRET-PROMPT"}]},
        key,
    )
    (record,) = harness.audit
    data = record.to_dict()
    for field in (
        "request_id",
        "team",
        "feature",
        "route",
        "model_served",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "cost_usd",
        "latency_ms",
        "guardrail_action",
        "status",
    ):
        assert field in data
    assert data["route"] == "chat-fast" and data["model_served"] == "claude-haiku-4-5"
    assert "SECRET" not in json.dumps(data)


def test_stream_is_a_valid_buffered_sse_body(harness: Harness) -> None:
    key = harness.add_key()
    status, headers, text = harness.chat(
        key, model="echo", stream=True, stream_options={"include_usage": True}
    )
    assert status == 200
    assert headers["Content-Type"] == "text/event-stream"
    events = [line[len("data: ") :] for line in text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert content == "echo: Hello there"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3


def test_embeddings_through_titan(harness: Harness) -> None:
    key = harness.add_key()
    # One call at a time: the Stubber's response queue is not meant for concurrent callers.
    harness.gateway.providers["bedrock"].embedder.concurrency = 1  # type: ignore[attr-defined]
    for n in (3, 4):
        payload = json.dumps({"embedding": [0.1, 0.2], "inputTextTokenCount": n}).encode()
        import io

        from botocore.response import StreamingBody

        harness.stubber.add_response(
            "invoke_model",
            {"body": StreamingBody(io.BytesIO(payload), len(payload)), "contentType": "application/json"},
            {
                "modelId": TITAN.model_id,
                "body": ANY,
                "contentType": "application/json",
                "accept": "application/json",
            },
        )
    status, _, out = harness.call(
        "POST", "/v1/embeddings", {"model": "embed", "input": ["a b c", "d e f g"]}, key
    )
    assert status == 200
    assert [d["embedding"] for d in out["data"]] == [[0.1, 0.2], [0.1, 0.2]]
    assert out["usage"]["prompt_tokens"] == 7
    (record,) = harness.ledger.records.values()
    assert record.operation == "embeddings" and record.cost_usd == pytest.approx(7 * 0.02 / 1e6)


def test_echo_embeddings_base64(harness: Harness) -> None:
    key = harness.add_key()
    status, _, out = harness.call(
        "POST",
        "/v1/embeddings",
        {"model": "echo-embed", "input": "hi", "encoding_format": "base64", "dimensions": 8},
        key,
    )
    assert status == 200
    vector = struct.unpack("<8f", base64.b64decode(out["data"][0]["embedding"]))
    assert sum(x * x for x in vector) == pytest.approx(1.0, rel=1e-5)


def test_modality_mismatch_is_400(harness: Harness) -> None:
    key = harness.add_key()
    assert harness.chat(key, model="embed")[0] == 400
    assert harness.call("POST", "/v1/embeddings", {"model": "echo", "input": "x"}, key)[0] == 400
