"""Reservations on every chat front door: ``/v1/messages`` and ``/v1/responses`` share ``_serve_chat``
with ``/v1/chat/completions``, so each holds the request's worst case against the feature's gate, settles
it to the recorded cost (buffered, or when a stream ends), and refuses with a 429 in its own API's shape
naming the limit."""

from __future__ import annotations

import json
from typing import Any

import pytest
import test_gateway_streaming as streaming_tests
from conftest import HAIKU, Harness, converse_response, make_event
from test_gateway_streaming import START, FakeBedrock, make_harness, metadata, stop, text

from aif_gateway.quota import GateState
from aif_gateway.streaming import StreamingResponse

fake_bedrock = streaming_tests.fake_bedrock  # the fake Bedrock endpoint fixture, shared

MONTH = "2026-11"  # the harnesses' clock: 2026-11-25
MESSAGES = {"model": "chat-solo", "max_tokens": 1000, "messages": [{"role": "user", "content": "Hi"}]}
RESPONSES = {"model": "chat-solo", "max_output_tokens": 1000, "input": "Hi"}


def gate(gateway: Any, team: str, feature: str) -> GateState:
    return gateway.gate.store.state(team, feature, MONTH)  # type: ignore[no-any-return]


def auth(path: str, key: str) -> dict[str, str]:
    """Each API's own way to send the key."""
    if path == "/v1/messages":
        return {"x-api-key": key, "anthropic-version": "2023-06-01"}
    return {"Authorization": f"Bearer {key}"}


def post(h: Harness, path: str, body: dict[str, Any], key: str) -> tuple[int, dict[str, str], Any]:
    headers = {"Content-Type": "application/json", **auth(path, key)}
    response = h.gateway.handle(make_event("POST", path, json.dumps(body), headers))
    assert isinstance(response, dict)
    return response["statusCode"], response["headers"], json.loads(response["body"])


@pytest.mark.parametrize(("path", "body"), [("/v1/messages", MESSAGES), ("/v1/responses", RESPONSES)])
def test_a_buffered_request_settles_its_reservation_to_the_recorded_cost(
    harness: Harness, path: str, body: dict[str, Any]
) -> None:
    key = harness.add_key()
    harness.stubber.add_response("converse", converse_response())
    status, headers, _ = post(harness, path, body, key)
    assert status == 200
    record = harness.ledger.find(headers["x-request-id"])
    assert record is not None and record.cost_usd > 0
    settled = gate(harness.gateway, "support", "summarizer")
    assert settled.in_flight == 0 and settled.settled_requests == 1
    assert settled.committed_usd == pytest.approx(record.cost_usd)
    assert settled.minute_tokens == record.input_tokens + record.output_tokens


@pytest.mark.parametrize(("path", "body"), [("/v1/messages", MESSAGES), ("/v1/responses", RESPONSES)])
def test_a_stream_holds_its_worst_case_until_it_ends_then_settles(
    fake_bedrock: FakeBedrock, path: str, body: dict[str, Any]
) -> None:
    fake_bedrock.scripts[HAIKU.model_id] = [(0, START), (0, text("done")), (0, stop()), (0, metadata(8, 2))]
    h = make_harness(fake_bedrock)
    ev = make_event(
        "POST", path, json.dumps({**body, "model": "chat-fast", "stream": True}), auth(path, h.key)
    )
    response = h.gateway.handle(ev)
    assert isinstance(response, StreamingResponse)
    held = gate(h.gateway, "support", "writer")
    # 1 input token estimated ("Hi") at the highest input-side price (cache writes, $1.25) + 1,000 at $5.
    assert held.in_flight == 1 and held.committed_usd == pytest.approx((1 * 1.25 + 1000 * 5.0) / 1_000_000)
    b"".join(response.body)
    record = h.record(ev["requestContext"]["requestId"])
    settled = gate(h.gateway, "support", "writer")
    assert settled.in_flight == 0 and settled.committed_usd == pytest.approx(record.cost_usd)
    assert (record.input_tokens, record.output_tokens) == (8, 2)


def test_a_budget_429_on_messages_is_anthropic_shaped_and_names_the_limit(harness: Harness) -> None:
    # $0.001 left cannot hold 1,000 output tokens at $5 per million: refused before any model call.
    key = harness.add_key(monthly_budget_usd=0.001)
    status, headers, body = post(harness, "/v1/messages", MESSAGES, key)
    assert status == 429
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    assert "monthly budget" in body["error"]["message"]
    assert headers["x-aif-limit"] == "budget" and int(headers["Retry-After"]) > 0
    assert harness.audit[-1].error_type == "budget_exhausted"
    assert gate(harness.gateway, "support", "summarizer").in_flight == 0  # nothing held, nothing called


def test_a_tokens_per_minute_429_on_responses_is_openai_shaped(harness: Harness) -> None:
    key = harness.add_key(tokens_per_minute=500)
    status, headers, body = post(harness, "/v1/responses", RESPONSES, key)
    assert status == 429 and body["error"]["code"] == "tokens_per_minute_exceeded"
    assert headers["x-aif-limit"] == "tokens_per_minute"
    assert "max_tokens" in body["error"]["message"]
