"""OpenAI's Responses API front door (``/v1/responses``, stateless): input items and options as the
Converse request Bedrock receives (Stubber-checked), the ``response`` object, refusals of stateful
fields, and the Responses stream event types."""

from __future__ import annotations

import json
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

from aif_gateway.openai_responses import IGNORED_FIELDS, REFUSED_FIELDS
from aif_gateway.streaming import StreamingResponse

fake_bedrock = streaming_tests.fake_bedrock  # the fake Bedrock endpoint fixture, shared

WEATHER = {
    "type": "function",
    "name": "weather",
    "description": "Current weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": True,
}


def expect(h: Harness, response: dict[str, Any] | None = None, **params: Any) -> None:
    expected = {
        "modelId": HAIKU.model_id,
        "messages": ANY,
        "guardrailConfig": ANY,
        "requestMetadata": ANY,
        **params,
    }
    h.stubber.add_response("converse", response or converse_response(), expected)


def respond(h: Harness, key: str, **body: Any) -> tuple[int, dict[str, str], Any]:
    return h.call("POST", "/v1/responses", {"model": "chat-solo", **body}, key)


def test_input_items_instructions_and_options_become_one_converse_request(harness: Harness) -> None:
    use_catalog_caps(harness)
    key = harness.add_key()
    schema = {"type": "object", "properties": {"summary": {"type": "string"}}}
    expect(
        harness,
        system=[{"text": "Be brief."}],
        messages=[
            {"role": "user", "content": [{"text": "Weather in Paris?"}]},
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
                    {"text": "Summarise as JSON."},
                ],
            },
        ],
        toolConfig={
            "tools": [
                {
                    "toolSpec": {
                        "name": "weather",
                        "description": "Current weather",
                        "inputSchema": {"json": WEATHER["parameters"]},
                    }
                }
            ],
            "toolChoice": {"auto": {}},
        },
        inferenceConfig={"maxTokens": 300, "temperature": 0.3},
        outputConfig={
            "textFormat": {
                "type": "json_schema",
                "structure": {"jsonSchema": {"schema": json.dumps(schema), "name": "summary"}},
            }
        },
        response=converse_response(text='{"summary": "mild"}', usage={"inputTokens": 40, "outputTokens": 6,
                                                                       "totalTokens": 46}),
    )  # fmt: skip
    status, headers, answer = respond(
        harness,
        key,
        instructions="Be brief.",
        input=[
            {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "weather",
                "arguments": '{"city":"Paris"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
            {"type": "message", "role": "user", "content": "Summarise as JSON."},
        ],
        tools=[WEATHER],
        tool_choice="auto",
        max_output_tokens=300,
        temperature=0.3,
        text={"format": {"type": "json_schema", "name": "summary", "schema": schema, "strict": True}},
        store=False,
        metadata={"ticket": "T-1"},
    )
    harness.stubber.assert_no_pending_responses()
    assert status == 200, answer
    assert answer["object"] == "response" and answer["status"] == "completed"
    assert answer["id"] == f"resp_{headers['x-request-id']}" and answer["model"] == HAIKU.name
    assert answer["output"] == [
        {
            "type": "message",
            "id": f"msg_{headers['x-request-id']}",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": '{"summary": "mild"}', "annotations": []}],
        }
    ]
    assert answer["usage"] == {
        "input_tokens": 40,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 6,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 46,
    }


def test_tool_calls_are_function_call_items_and_length_is_incomplete(harness: Harness) -> None:
    key = harness.add_key()
    use = {"toolUse": {"toolUseId": "tu_9", "name": "weather", "input": {"city": "Oslo"}}}
    expect(harness, toolConfig=ANY, response=converse_response(stop="tool_use", content=[use]))
    status, _, answer = respond(harness, key, input="Weather in Oslo?", tools=[WEATHER])
    assert status == 200, answer
    call = answer["output"][0]
    assert call["type"] == "function_call" and call["call_id"] == "tu_9" and call["name"] == "weather"
    assert json.loads(call["arguments"]) == {"city": "Oslo"}

    expect(harness, inferenceConfig={"maxTokens": 5}, response=converse_response(stop="max_tokens"))
    status, _, answer = respond(harness, key, input="Long story", max_output_tokens=5)
    assert answer["status"] == "incomplete"
    assert answer["incomplete_details"] == {"reason": "max_output_tokens"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x", "previous_response_id": "resp_1"}, "previous_response_id"),
        ({"input": "x", "store": True}, "store"),
        ({"input": "x", "conversation": "conv_1"}, "conversation"),
        ({"input": "x", "frobnicate": 1}, "frobnicate"),
        ({"input": "x", "tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "tools[0].type"),
        ({"input": [{"type": "function_call_output", "call_id": "c9", "output": "x"}]}, "input[0].call_id"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
        ({}, "input"),
    ],
)
def test_stateful_unknown_and_malformed_fields_are_400s_naming_the_field(
    harness: Harness, body: dict[str, Any], param: str
) -> None:
    key = harness.add_key()
    status, _, answer = respond(harness, key, **body)
    assert status == 400
    assert answer["error"]["param"] == param, answer
    assert f"'{param}'" in answer["error"]["message"]


def test_ignored_and_refused_lists_do_not_overlap() -> None:
    assert not set(IGNORED_FIELDS) & set(REFUSED_FIELDS)


def test_stream_has_responses_event_types_and_usage_in_completed(fake_bedrock: FakeBedrock) -> None:
    tool_start = {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tu_1", "name": "weather"}}}
    fake_bedrock.scripts[HAIKU.model_id] = [
        (0, START),
        (0, text("Let me ")),
        (0, text("check.")),
        (0, event("contentBlockStart", tool_start)),
        (
            0,
            event(
                "contentBlockDelta",
                {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"city":"Oslo"}'}}},
            ),
        ),
        (0, stop("tool_use")),
        (0, metadata(100, 20, cache_read=1000)),
    ]
    h = make_harness(fake_bedrock)
    body = {"model": "chat-fast", "input": "Weather?", "tools": [WEATHER], "stream": True}
    ev = make_event("POST", "/v1/responses", json.dumps(body), {"Authorization": f"Bearer {h.key}"})
    response = h.gateway.handle(ev)
    assert isinstance(response, StreamingResponse)
    events = []
    for block in b"".join(response.body).decode().split("\n\n"):
        if block:
            name, data = block.split("\n")
            payload = json.loads(data[len("data: ") :])
            assert name == f"event: {payload['type']}"
            events.append(payload)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed",
    ]  # fmt: skip
    assert events[6]["text"] == "Let me check."
    assert events[11]["arguments"] == '{"city":"Oslo"}' and events[12]["output_index"] == 1
    final = events[-1]["response"]
    assert [i["type"] for i in final["output"]] == ["message", "function_call"]
    assert (
        final["usage"]["input_tokens"] == 1100
        and final["usage"]["input_tokens_details"]["cached_tokens"] == 1000
    )
    record = h.ledger.find(ev["requestContext"]["requestId"])
    assert record is not None and record.input_tokens == 100 and record.cache_read_tokens == 1000


def test_stream_failing_mid_way_ends_with_error_and_response_failed(fake_bedrock: FakeBedrock) -> None:
    fake_bedrock.scripts[HAIKU.model_id] = [
        (0, START),
        (0, text("Part")),
        (0, exception("modelStreamErrorException", "x")),
    ]
    h = make_harness(fake_bedrock)
    body = {"model": "chat-fast", "input": "hi", "stream": True}
    ev = make_event("POST", "/v1/responses", json.dumps(body), {"Authorization": f"Bearer {h.key}"})
    response = h.gateway.handle(ev)
    assert isinstance(response, StreamingResponse)
    raw = b"".join(response.body).decode()
    assert "event: error\n" in raw and raw.rstrip().split("\n")[-2] == "event: response.failed"


def test_reasoning_effort_json_object_and_images(harness: Harness) -> None:
    use_catalog_caps(harness)
    key = harness.add_key()
    png = "data:image/png;base64,iVBORw0KGgo="
    expect(
        harness,
        system=[{"text": "Respond with a single valid JSON object and nothing else."}],
        messages=[
            {
                "role": "user",
                "content": [{"text": "Describe"}, {"image": {"format": "png", "source": {"bytes": ANY}}}],
            }
        ],
        inferenceConfig={"maxTokens": 4000},
        additionalModelRequestFields={"thinking": {"type": "enabled", "budget_tokens": 2048}},
    )
    status, _, answer = respond(
        harness,
        key,
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Describe"},
                    {"type": "input_image", "image_url": png},
                ],
            }
        ],
        reasoning={"effort": "low"},
        text={"format": {"type": "json_object"}},
        max_output_tokens=4000,
    )
    harness.stubber.assert_no_pending_responses()
    assert status == 200, answer
    assert answer["text"] == {"format": {"type": "json_object"}}
