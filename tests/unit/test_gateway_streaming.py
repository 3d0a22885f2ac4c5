"""Streamed chat through Bedrock ConverseStream, parsed by botocore's real event-stream parser.

A small fake Bedrock endpoint on 127.0.0.1 answers ``converse-stream`` with binary event-stream frames
(prelude, headers, payload, CRCs) built here, so the boto3 client makes real signed HTTP requests and
botocore decodes the stream exactly as it decodes Bedrock's: events, and exceptions raised mid-stream.
"""

from __future__ import annotations

import binascii
import json
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

import boto3
import pytest
from botocore.config import Config
from conftest import HAIKU, NOVA, InlineExecutor, make_config, make_event, put_key

from aif_gateway.app import Gateway
from aif_gateway.config import Route, RouteTimeouts
from aif_gateway.memory_store import MemoryKeyStore, MemoryLedger
from aif_gateway.metering import CountingMetricsSink, cost_usd
from aif_gateway.provider_types import TokenUsage
from aif_gateway.providers import BedrockProvider, EchoProvider
from aif_gateway.records import UsageRecord
from aif_gateway.streaming import StreamingResponse

# -- binary event-stream frames (the vnd.amazon.eventstream encoding) --------------------------------


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return (
        struct.pack("B", len(raw_name)) + raw_name + b"\x07" + struct.pack(">H", len(raw_value)) + raw_value
    )


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    head = b"".join(_header(k, v) for k, v in headers.items())
    prelude = struct.pack(">II", 16 + len(head) + len(payload), len(head))
    message = prelude + struct.pack(">I", binascii.crc32(prelude)) + head + payload
    return message + struct.pack(">I", binascii.crc32(message))


def event(kind: str, body: dict[str, Any]) -> bytes:
    headers = {":message-type": "event", ":event-type": kind, ":content-type": "application/json"}
    return frame(headers, json.dumps(body).encode())


def exception(kind: str, message: str) -> bytes:
    headers = {":message-type": "exception", ":exception-type": kind, ":content-type": "application/json"}
    return frame(headers, json.dumps({"message": message}).encode())


def text(piece: str, block: int = 0) -> bytes:
    return event("contentBlockDelta", {"contentBlockIndex": block, "delta": {"text": piece}})


def stop(reason: str = "end_turn") -> bytes:
    return event("messageStop", {"stopReason": reason})


def metadata(inp: int, out: int, cache_read: int = 0, cache_write: int = 0) -> bytes:
    usage = {
        "inputTokens": inp,
        "outputTokens": out,
        "totalTokens": inp + out + cache_read + cache_write,
        "cacheReadInputTokens": cache_read,
        "cacheWriteInputTokens": cache_write,
    }
    return event("metadata", {"usage": usage, "metrics": {"latencyMs": 120}})


START = event("messageStart", {"role": "assistant"})


# -- a fake Bedrock endpoint -------------------------------------------------------------------------


@dataclass
class FakeBedrock:
    """Answers ConverseStream per model ID with a script of (delay seconds, frame)."""

    scripts: dict[str, list[tuple[float, bytes]]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    client_gone: threading.Event = field(default_factory=threading.Event)
    url: str = ""


def _fake_bedrock_handler(fake: FakeBedrock) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            model_id = unquote(self.path.split("/")[2])
            fake.calls.append(model_id)
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.amazon.eventstream")
            self.send_header("Transfer-Encoding", "chunked")  # as Bedrock sends event streams
            self.end_headers()
            self.close_connection = True
            try:
                for delay, raw in fake.scripts[model_id]:
                    time.sleep(delay)
                    self.wfile.write(b"%x\r\n%b\r\n" % (len(raw), raw))
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                fake.client_gone.set()

    return Handler


@pytest.fixture
def fake_bedrock() -> Iterator[FakeBedrock]:
    fake = FakeBedrock()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _fake_bedrock_handler(fake))
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


@dataclass
class StreamHarness:
    gateway: Gateway
    ledger: MemoryLedger
    key: str
    fake: FakeBedrock

    def stream(self, model: str = "chat-fast", **extra: Any) -> tuple[StreamingResponse, str]:
        body = {
            "model": model,
            "messages": [{"role": "user", "content": "Write a long answer"}],
            "stream": True,
            "stream_options": {"include_usage": True},
            **extra,
        }
        ev = make_event(
            "POST", "/v1/chat/completions", json.dumps(body), {"Authorization": f"Bearer {self.key}"}
        )
        response = self.gateway.handle(ev)
        assert isinstance(response, StreamingResponse), response
        return response, ev["requestContext"]["requestId"]

    def record(self, request_id: str) -> UsageRecord:
        record = self.ledger.find(request_id)
        assert record is not None
        return record


def make_harness(
    fake: FakeBedrock, timeouts: RouteTimeouts | None = None, read_timeout: float = 10
) -> StreamHarness:
    def client(region: str | None) -> Any:
        return boto3.client(
            "bedrock-runtime",
            region_name="us-east-1",
            endpoint_url=fake.url,
            aws_access_key_id="x",
            aws_secret_access_key="x",
            config=Config(read_timeout=read_timeout, retries={"max_attempts": 1}),
        )

    config = make_config()
    if timeouts is not None:
        route = config.routes["chat-fast"]
        config = replace(config, routes={**config.routes, "chat-fast": replace(route, timeouts=timeouts)})
    keys, ledger = MemoryKeyStore(), MemoryLedger()
    gateway = Gateway(
        config,
        keys=keys,
        ledger=ledger,
        providers={"bedrock": BedrockProvider(client_factory=client), "echo": EchoProvider()},  # type: ignore[dict-item]
        metrics=CountingMetricsSink(),
        now=lambda: datetime(2026, 11, 25, 12, 0, 30, tzinfo=UTC),
        refresh_executor=InlineExecutor(),
    )
    plaintext = put_key(keys, ("chat-fast",))
    return StreamHarness(gateway, ledger, plaintext, fake)


def parse_sse(raw: bytes) -> list[Any]:
    events = [e for e in raw.decode("utf-8").split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events), events
    return [e[len("data: ") :] if e == "data: [DONE]" else json.loads(e[len("data: ") :]) for e in events]


def content_of(chunks: list[Any]) -> str:
    return "".join(
        c["choices"][0]["delta"].get("content") or ""
        for c in chunks
        if isinstance(c, dict) and c.get("choices")
    )


# -- tests -------------------------------------------------------------------------------------------


def test_text_and_tool_call_deltas_in_openai_wire_format(fake_bedrock: FakeBedrock) -> None:
    fake_bedrock.scripts[HAIKU.model_id] = [
        (0, START),
        (0, text("Let me ")),
        (0, text("check.")),
        (0, event("contentBlockStop", {"contentBlockIndex": 0})),
        (
            0,
            event(
                "contentBlockStart",
                {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tu_1", "name": "lookup"}}},
            ),
        ),
        (0, event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"q": '}}})),
        (0, event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '"x"}'}}})),
        (0, event("contentBlockStop", {"contentBlockIndex": 1})),
        (0, stop("tool_use")),
        (0, metadata(100, 20, cache_read=1000, cache_write=50)),
    ]
    h = make_harness(fake_bedrock)
    response, request_id = h.stream()
    assert response.headers["Content-Type"] == "text/event-stream"
    assert response.headers["x-aif-served-by"] == HAIKU.name
    chunks = parse_sse(b"".join(response.body))

    assert chunks[-1] == "[DONE]"
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert {c["object"] for c in chunks[:-1]} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks[:-1]}) == 1
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:3]] == ["Let me ", "check."]
    tool_pieces = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks[:-1]
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    assert tool_pieces[0] == {
        "index": 0,
        "id": "tu_1",
        "type": "function",
        "function": {"name": "lookup", "arguments": ""},
    }
    assert [p["function"]["arguments"] for p in tool_pieces[1:]] == ['{"q": ', '"x"}']
    assert all(set(p) == {"index", "function"} for p in tool_pieces[1:])
    finish = chunks[-3]
    assert finish["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "tool_calls", "logprobs": None}
    usage = chunks[-2]
    assert usage["choices"] == []
    assert usage["usage"] == {
        "prompt_tokens": 1150,
        "completion_tokens": 20,
        "total_tokens": 1170,
        "prompt_tokens_details": {"cached_tokens": 1000},
    }

    # Priced exactly as a non-streamed call: each of the four counters at its own price.
    record = h.record(request_id)
    counters = TokenUsage(input=100, output=20, cache_read=1000, cache_write=50)
    assert (record.input_tokens, record.output_tokens) == (100, 20)
    assert (record.cache_read_tokens, record.cache_write_tokens) == (1000, 50)
    assert record.cost_usd == pytest.approx(cost_usd(counters, HAIKU.prices))
    assert record.status == 200 and record.error_type is None
    assert record.extra["stream"] == "true" and "usage_estimated" not in record.extra


def test_throttling_before_the_first_event_falls_back(fake_bedrock: FakeBedrock) -> None:
    fake_bedrock.scripts[HAIKU.model_id] = [(0, exception("throttlingException", "Too many requests"))]
    fake_bedrock.scripts[NOVA.model_id] = [
        (0, START),
        (0, text("From Nova")),
        (0, stop()),
        (0, metadata(8, 2)),
    ]
    h = make_harness(fake_bedrock)
    response, request_id = h.stream()
    chunks = parse_sse(b"".join(response.body))
    assert content_of(chunks) == "From Nova"
    assert response.headers["x-aif-served-by"] == NOVA.name
    # Haiku throttled twice (the router retries a throttle once on the same target), then Nova.
    assert response.headers["x-aif-attempts"] == "3"
    record = h.record(request_id)
    assert record.model_served == NOVA.name and record.attempts == 3
    assert "claude-haiku-4-5: ThrottlingException" in record.extra["failures"]


def test_first_token_timeout_falls_back(fake_bedrock: FakeBedrock) -> None:
    fake_bedrock.scripts[HAIKU.model_id] = [(3, START), (0, text("too late"))]
    fake_bedrock.scripts[NOVA.model_id] = [(0, START), (0, text("on time")), (0, stop()), (0, metadata(8, 2))]
    h = make_harness(fake_bedrock, read_timeout=1)  # wide enough for Nova on a loaded machine
    response, request_id = h.stream()
    assert content_of(parse_sse(b"".join(response.body))) == "on time"
    assert "claude-haiku-4-5: Timeout" in h.record(request_id).extra["failures"]


def test_error_after_deltas_ends_with_an_error_event_and_meters_partial_usage(
    fake_bedrock: FakeBedrock,
) -> None:
    fake_bedrock.scripts[HAIKU.model_id] = [
        (0, START),
        (0, text("The first part of a long answer ")),
        (0, text("and a second part")),
        (0, exception("modelStreamErrorException", "The model stream broke")),
    ]
    fake_bedrock.scripts[NOVA.model_id] = [(0, START), (0, text("never")), (0, stop()), (0, metadata(1, 1))]
    h = make_harness(fake_bedrock)
    response, request_id = h.stream()
    chunks = parse_sse(b"".join(response.body))

    assert content_of(chunks) == "The first part of a long answer and a second part"
    assert chunks[-1] == "[DONE]"
    error = chunks[-2]["error"]
    assert error["code"] == "model_stream_error" and "ModelStreamErrorException" in error["message"]
    assert not any(
        isinstance(c, dict) and c.get("choices") and c["choices"][0]["finish_reason"] for c in chunks
    )
    assert fake_bedrock.calls == [HAIKU.model_id]  # no fallback once bytes reached the client

    record = h.record(request_id)
    assert (
        record.error_type == "model_stream_error"
        and record.extra["stream_error"] == "ModelStreamErrorException"
    )
    assert record.extra["usage_estimated"] == "true"
    assert record.output_tokens > 0 and record.input_tokens > 0 and record.cost_usd > 0


def test_guardrail_intervention_mid_stream_is_content_filter(fake_bedrock: FakeBedrock) -> None:
    fake_bedrock.scripts[HAIKU.model_id] = [
        (0, START),
        (0, text("Here is how to ")),
        (0, text("Sorry, the model cannot answer this.")),
        (0, stop("guardrail_intervened")),
        (0, metadata(30, 9)),
    ]
    h = make_harness(fake_bedrock)
    response, request_id = h.stream()
    chunks = parse_sse(b"".join(response.body))
    assert chunks[-3]["choices"][0]["finish_reason"] == "content_filter"
    record = h.record(request_id)
    assert record.guardrail_action == "INTERVENED" and record.output_tokens == 9


def test_client_disconnect_closes_the_model_stream_and_records_usage(fake_bedrock: FakeBedrock) -> None:
    fake_bedrock.scripts[HAIKU.model_id] = [(0, START)] + [(0.05, text(f"word{i} ")) for i in range(200)]
    h = make_harness(fake_bedrock)
    response, request_id = h.stream()
    pieces = iter(response.body)
    next(pieces)  # role chunk
    assert b"word0" in next(pieces)
    response.close()  # what the HTTP server does when a write to the client fails

    assert fake_bedrock.client_gone.wait(5), "the Bedrock stream was left open"
    record = h.record(request_id)
    assert record.error_type == "client_disconnected"
    assert record.output_tokens >= 1 and record.cost_usd > 0
    assert record.extra["usage_estimated"] == "true"


def test_generation_is_cut_at_the_total_time_limit(fake_bedrock: FakeBedrock) -> None:
    # An event every 0.1 s for 5 s; the idle limit leaves a loaded machine 0.9 s of slack between events.
    fake_bedrock.scripts[HAIKU.model_id] = [(0, START)] + [(0.1, text("more ")) for _ in range(50)]
    h = make_harness(fake_bedrock, RouteTimeouts(first_token_s=1, idle_s=1, total_minutes=0.02))  # 1.2 s
    response, request_id = h.stream()
    chunks = parse_sse(b"".join(response.body))
    assert chunks[-2]["error"]["code"] == "generation_timeout"
    assert 0 < content_of(chunks).count("more") < 50
    assert h.record(request_id).error_type == "generation_timeout"


def test_route_timeouts_are_validated_where_routes_load() -> None:
    from aif_gateway.config import GatewayConfig

    raw = json.loads(make_config().to_json())
    raw["routes"]["chat-fast"]["timeouts"] = {"first_token_s": 0, "idle_s": 30, "total_minutes": 10}
    with pytest.raises(ValueError, match="route 'chat-fast': timeouts: 'first_token_s' must be a number > 0"):
        GatewayConfig.from_dict(raw)
    raw["routes"]["chat-fast"]["timeouts"] = {"first_token_s": 900, "total_minutes": 10}
    with pytest.raises(ValueError, match="must not exceed 'total_minutes'"):
        GatewayConfig.from_dict(raw)
    raw["routes"]["chat-fast"]["timeouts"] = {"first_token_s": 20, "idle_s": 15, "total_minutes": 12}
    assert GatewayConfig.from_dict(raw).routes["chat-fast"].timeouts == RouteTimeouts(20, 15, 12)
    assert isinstance(make_config().routes["chat-fast"], Route)


def test_deadline_derives_from_the_function_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    from aif_gateway.config import LEDGER_MARGIN_S

    monkeypatch.setenv("AIF_FUNCTION_TIMEOUT_S", "600")
    config = make_config().with_deadline_from_env()
    assert config.request_deadline_s == 600 - LEDGER_MARGIN_S
    monkeypatch.setenv("AIF_FUNCTION_TIMEOUT_S", "3")
    with pytest.raises(ValueError, match="must exceed the ledger margin"):
        make_config().with_deadline_from_env()


def test_non_streamed_calls_read_with_the_routes_total_time_bounded_by_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import aif_gateway.providers as providers

    timeouts_seen: list[float] = []
    real = providers.make_client

    def spy(service: str, region: str | None, *, read_timeout: float, max_attempts: int) -> Any:
        timeouts_seen.append(read_timeout)
        return real(service, region, read_timeout=read_timeout, max_attempts=max_attempts)

    monkeypatch.setattr(providers, "make_client", spy)
    long_route = RouteTimeouts(first_token_s=30, idle_s=20, total_minutes=10)
    config = make_config()
    config = replace(
        config,
        routes={**config.routes, "chat-fast": replace(config.routes["chat-fast"], timeouts=long_route)},
        request_deadline_s=295.0,
    )
    gateway = Gateway(config, keys=MemoryKeyStore(), ledger=MemoryLedger())
    bounded = gateway._timeouts(config.routes["chat-fast"])
    assert (bounded.first_token_s, bounded.idle_s, bounded.total_s) == (30, 20, 295.0)
    client = gateway.providers["bedrock"].client(None, bounded.total_s)  # type: ignore[attr-defined]
    assert client.meta.config.read_timeout == 295.0 and timeouts_seen == [295.0]
    unbounded = replace(config, request_deadline_s=None)
    assert (
        Gateway(unbounded, keys=MemoryKeyStore(), ledger=MemoryLedger())._timeouts(
            unbounded.routes["chat-fast"]
        )
        == long_route
    )


def test_a_stream_silent_past_the_idle_timeout_ends_with_an_error_event(fake_bedrock: FakeBedrock) -> None:
    # The client reads with a 5 s timeout (the first-token limit); after the first event the open
    # socket switches to the route's 0.3 s idle limit.
    fake_bedrock.scripts[HAIKU.model_id] = [(0, START), (0, text("started ")), (3, text("too late"))]
    h = make_harness(
        fake_bedrock, RouteTimeouts(first_token_s=5, idle_s=0.3, total_minutes=1), read_timeout=5
    )
    started = time.monotonic()
    response, request_id = h.stream()
    chunks = parse_sse(b"".join(response.body))
    assert time.monotonic() - started < 2.5
    assert content_of(chunks) == "started "
    assert chunks[-2]["error"]["code"] == "model_stream_error"
    record = h.record(request_id)
    assert record.extra["stream_error"] == "Timeout" and record.output_tokens >= 1


# -- SageMaker: InvokeEndpointWithResponseStream -----------------------------------------------------


def payload_part(raw: bytes) -> bytes:
    headers = {
        ":message-type": "event",
        ":event-type": "PayloadPart",
        ":content-type": "application/octet-stream",
    }
    return frame(headers, raw)


def _sse_chunks(*events: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"


@dataclass
class FakeEndpoint:
    """A SageMaker runtime endpoint: streams ``stream`` as PayloadPart events, or refuses to stream."""

    stream: bytes = b""
    refuse_stream: bool = False
    calls: list[str] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def fake_endpoint() -> Iterator[FakeEndpoint]:
    fake = FakeEndpoint()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            kind = self.path.rsplit("/", 1)[1]
            fake.calls.append(kind)
            if kind == "invocations":
                body = json.dumps(
                    {
                        "choices": [{"message": {"content": "whole answer"}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 7, "completion_tokens": 2},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            if fake.refuse_stream:
                body = b'{"message": "Model does not support streaming"}'
                self.send_response(400)
                self.send_header("x-amzn-ErrorType", "ValidationError")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.amazon.eventstream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            # The container's SSE bytes, cut at arbitrary places (mid-line), as SageMaker relays them.
            for i in range(0, len(fake.stream), 37):
                raw = payload_part(fake.stream[i : i + 37])
                self.wfile.write(b"%x\r\n%b\r\n" % (len(raw), raw))
            self.wfile.write(b"0\r\n\r\n")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield fake
    server.shutdown()
    server.server_close()


def _sagemaker_gateway(fake: FakeEndpoint) -> tuple[Gateway, MemoryLedger, str]:
    from aif_gateway.config import GatewayConfig, ModelTarget, Prices
    from aif_gateway.sagemaker_provider import SageMakerProvider

    target = ModelTarget(
        name="tuned-llama",
        provider="sagemaker",
        model_id="tuned-llama-endpoint",
        modality="chat",
        prices=Prices(input=1.0, output=2.0),
        content_handler="openai-chat",
    )

    def client(service: str, region: str | None) -> Any:
        return boto3.client(
            service,
            region_name="us-east-1",
            endpoint_url=fake.url,
            aws_access_key_id="x",
            aws_secret_access_key="x",
            config=Config(retries={"max_attempts": 1}),
        )

    keys, ledger = MemoryKeyStore(), MemoryLedger()
    gateway = Gateway(
        GatewayConfig(routes={"custom": Route("custom", "chat", (target,))}),  # no guardrail
        keys=keys,
        ledger=ledger,
        providers={"sagemaker": SageMakerProvider(client_factory=client)},  # type: ignore[dict-item]
    )
    return gateway, ledger, put_key(keys, ("custom",))


def _stream_custom(gateway: Gateway, key: str) -> tuple[list[Any], str]:
    body = {"model": "custom", "messages": [{"role": "user", "content": "hi there"}], "stream": True}
    ev = make_event("POST", "/v1/chat/completions", json.dumps(body), {"Authorization": f"Bearer {key}"})
    response = gateway.handle(ev)
    assert isinstance(response, StreamingResponse), response
    return parse_sse(b"".join(response.body)), ev["requestContext"]["requestId"]


def test_sagemaker_openai_chat_endpoint_streams_with_its_own_usage(fake_endpoint: FakeEndpoint) -> None:
    base = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "llama"}
    fake_endpoint.stream = _sse_chunks(
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {**base, "choices": [{"index": 0, "delta": {"content": "Streamed from "}}]},
        {**base, "choices": [{"index": 0, "delta": {"content": "SageMaker."}}]},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {**base, "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 4}},
    )
    gateway, ledger, key = _sagemaker_gateway(fake_endpoint)
    chunks, request_id = _stream_custom(gateway, key)
    assert fake_endpoint.calls == ["invocations-response-stream"]
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:3]] == ["Streamed from ", "SageMaker."]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    record = ledger.find(request_id)
    assert record is not None
    assert (record.input_tokens, record.output_tokens) == (12, 4)
    assert record.cost_usd == pytest.approx((12 * 1.0 + 4 * 2.0) / 1e6)


def test_sagemaker_endpoint_that_cannot_stream_is_answered_buffered(fake_endpoint: FakeEndpoint) -> None:
    fake_endpoint.refuse_stream = True
    gateway, ledger, key = _sagemaker_gateway(fake_endpoint)
    chunks, request_id = _stream_custom(gateway, key)
    assert fake_endpoint.calls == ["invocations-response-stream", "invocations"]
    assert content_of(chunks) == "whole answer" and chunks[-1] == "[DONE]"
    record = ledger.find(request_id)
    assert record is not None and (record.input_tokens, record.output_tokens) == (7, 2)


def test_guardrail_units_in_the_final_metadata_event_are_metered(fake_bedrock: FakeBedrock) -> None:
    usage = {"inputTokens": 8, "outputTokens": 2, "totalTokens": 10}
    units = {
        "topicPolicyUnits": 1,
        "contentPolicyUnits": 2,
        "wordPolicyUnits": 0,
        "sensitiveInformationPolicyUnits": 0,
        "sensitiveInformationPolicyFreeUnits": 0,
        "contextualGroundingPolicyUnits": 0,
    }
    trace = {"guardrail": {"inputAssessment": {"gr-123": {"invocationMetrics": {"usage": units}}}}}
    fake_bedrock.scripts[HAIKU.model_id] = [
        (0, START),
        (0, text("fine")),
        (0, stop()),
        (0, event("metadata", {"usage": usage, "metrics": {"latencyMs": 50}, "trace": trace})),
    ]
    h = make_harness(fake_bedrock)
    response, request_id = h.stream()
    assert content_of(parse_sse(b"".join(response.body))) == "fine"
    record = h.record(request_id)
    assert record.extra["guardrail_units"] == "content=2,topic=1"
    tokens = (8 * HAIKU.prices.input + 2 * HAIKU.prices.output) / 1_000_000
    assert record.cost_usd == pytest.approx(tokens + 3 * 0.15 / 1000)


def _gate(h: StreamHarness) -> Any:
    return h.gateway.gate.store.state("support", "writer", "2026-11")  # type: ignore[attr-defined]


def test_a_stream_holds_its_reservation_until_it_ends_then_settles_to_its_usage(
    fake_bedrock: FakeBedrock,
) -> None:
    fake_bedrock.scripts[HAIKU.model_id] = [(0, START), (0, text("done")), (0, stop()), (0, metadata(8, 2))]
    h = make_harness(fake_bedrock)
    response, request_id = h.stream(max_tokens=1000)
    held = _gate(h)
    # 5 input tokens estimated at the highest input-side price (cache writes, $1.25) + 1,000 at $5.
    assert held.in_flight == 1 and held.committed_usd == pytest.approx((5 * 1.25 + 1000 * 5.0) / 1_000_000)
    b"".join(response.body)
    settled = _gate(h)
    assert settled.in_flight == 0
    assert settled.committed_usd == pytest.approx(h.record(request_id).cost_usd)


def test_a_client_gone_before_the_first_byte_is_recorded_and_frees_its_slot(
    fake_bedrock: FakeBedrock,
) -> None:
    fake_bedrock.scripts[HAIKU.model_id] = [
        (0, START),
        (0, text("never read")),
        (0, stop()),
        (0, metadata(8, 2)),
    ]
    h = make_harness(fake_bedrock)
    response, request_id = h.stream(max_tokens=1000)
    response.close()  # the server saw the client disconnect before sending anything

    record = h.record(request_id)
    assert record.extra["usage_estimated"] == "true" and record.error_type == "client_disconnected"
    assert record.input_tokens == 5  # "Write a long answer": 19 characters, estimated
    assert _gate(h).in_flight == 0
