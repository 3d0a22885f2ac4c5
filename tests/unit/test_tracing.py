"""The gateway's OpenTelemetry spans (request, model attempts), their GenAI attributes, what they must never
carry (prompt or completion text), and the SigV4-signed OTLP/JSON export to X-Ray's endpoint."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from botocore.credentials import Credentials
from botocore.stub import ANY
from conftest import HAIKU, NOVA, Harness, converse_response
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.util._once import Once

from aif_gateway import contract, trace_export, tracing

PROMPT = "Summarise ticket 4711 for Jane Roe, card 4111 1111 1111 1111"
ANSWER = "Jane's card ending 1111 was double-charged"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """A global SDK tracer provider writing to memory for one test (reset before and after: the API
    lets a process set its provider only once)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"service.name": "test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _reset_provider()
    trace.set_tracer_provider(provider)
    yield exporter
    _reset_provider()


def _reset_provider() -> None:
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None


def _chat(h: Harness, key: str, model: str = "chat-fast", headers: dict[str, str] | None = None) -> Any:
    from conftest import make_event

    body = json.dumps({"model": model, "messages": [{"role": "user", "content": PROMPT}]})
    event = make_event(
        "POST",
        "/v1/chat/completions",
        body,
        {"Content-Type": "application/json", "Authorization": f"Bearer {key}", **(headers or {})},
    )
    return h.gateway.handle(event)


def _expect_converse(h: Harness, model_id: str, text: str = ANSWER) -> None:
    usage = {"inputTokens": 20, "outputTokens": 7, "totalTokens": 31, "cacheReadInputTokens": 4}
    h.stubber.add_response(
        "converse",
        converse_response(text=text, usage=usage),
        {"modelId": model_id, "messages": ANY, "guardrailConfig": ANY, "requestMetadata": ANY},
    )


def _text_anywhere(finished: tuple[ReadableSpan, ...], *texts: str) -> list[str]:
    """Every attribute, event and status text of the spans that contains one of ``texts``."""
    found = []
    for span in finished:
        values = [str(v) for v in (span.attributes or {}).values()]
        values += [str(v) for e in span.events for v in (e.attributes or {}).values()]
        values += [span.name, span.status.description or ""]
        for text in texts:
            for word in text.split():
                if len(word) > 4:
                    found += [v for v in values if word in v]
    return found


def test_request_and_attempt_spans_carry_genai_attributes(
    harness: Harness, spans: InMemorySpanExporter
) -> None:
    key = harness.add_key(team="support", feature="summarizer")
    _expect_converse(harness, HAIKU.model_id)

    response = _chat(harness, key)

    assert response["statusCode"] == 200
    finished = spans.get_finished_spans()
    request = next(s for s in finished if s.kind is SpanKind.SERVER)
    attempt = next(s for s in finished if s.kind is SpanKind.CLIENT)
    assert len(finished) == 2
    assert request.name == "POST /v1/chat/completions"
    assert request.attributes is not None and attempt.attributes is not None
    assert request.attributes["http.response.status_code"] == 200
    assert request.attributes["aif.team"] == "support" and request.attributes["aif.feature"] == "summarizer"
    assert attempt.parent is not None and attempt.parent.span_id == request.context.span_id
    assert attempt.name == f"chat {HAIKU.model_id}"
    assert dict(attempt.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "aws.bedrock",
        "gen_ai.request.model": "chat-fast",
        "gen_ai.response.model": HAIKU.model_id,
        "gen_ai.usage.input_tokens": 24,  # 20 plus the 4 read from the prompt cache
        "gen_ai.usage.output_tokens": 7,
        "gen_ai.response.finish_reasons": ("stop",),
        "aif.target": "claude-haiku-4-5",
        "aif.model_id": HAIKU.model_id,
    }


def test_no_prompt_or_completion_text_on_any_span(harness: Harness, spans: InMemorySpanExporter) -> None:
    key = harness.add_key()
    _expect_converse(harness, HAIKU.model_id)
    assert _chat(harness, key)["statusCode"] == 200
    finished = spans.get_finished_spans()
    assert finished
    assert _text_anywhere(finished, PROMPT, ANSWER) == []


def test_failed_attempt_is_an_error_span_and_the_fallback_its_sibling(
    harness: Harness, spans: InMemorySpanExporter
) -> None:
    key = harness.add_key()
    harness.stubber.add_client_error(
        "converse", service_error_code="ServiceUnavailableException", http_status_code=503
    )
    _expect_converse(harness, NOVA.model_id)

    assert _chat(harness, key)["statusCode"] == 200

    attempts = [s for s in spans.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert [s.attributes["aif.target"] for s in attempts if s.attributes] == ["claude-haiku-4-5", "nova-lite"]
    failed, served = attempts
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes is not None and failed.attributes["error.type"] == "ServiceUnavailableException"
    assert "gen_ai.usage.output_tokens" not in failed.attributes
    assert served.status.status_code is StatusCode.UNSET
    assert failed.parent is not None and served.parent is not None
    assert failed.parent.span_id == served.parent.span_id


def test_rejected_request_records_status_and_code_without_attempts(
    harness: Harness, spans: InMemorySpanExporter
) -> None:
    response = _chat(harness, "aif_not-a-key")
    assert response["statusCode"] == 401
    (request,) = spans.get_finished_spans()
    assert request.attributes is not None
    assert request.attributes["http.response.status_code"] == 401
    assert request.attributes["error.type"] == json.loads(response["body"])["error"]["code"]
    assert request.status.status_code is StatusCode.UNSET  # a client error is not the gateway's


def test_spans_join_the_xray_trace_of_the_incoming_request(
    harness: Harness, spans: InMemorySpanExporter
) -> None:
    key = harness.add_key()
    _expect_converse(harness, HAIKU.model_id)
    header = "Root=1-67891233-abcdef012345678912345678;Parent=53995c3f42cd8ad8;Sampled=1"
    _chat(harness, key, headers={"X-Amzn-Trace-Id": header})
    request = next(s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER)
    assert f"{request.context.trace_id:032x}" == "67891233abcdef012345678912345678"
    assert request.parent is not None and f"{request.parent.span_id:016x}" == "53995c3f42cd8ad8"


@pytest.mark.parametrize("header", [None, "", "Root=1-xyz", "Self=1-67891233-abcdef012345678912345678"])
def test_unusable_xray_header_starts_a_new_trace(header: str | None) -> None:
    assert tracing.parent_from_xray_header(header) is None


def test_without_a_configured_sdk_spans_are_not_recorded(harness: Harness) -> None:
    _reset_provider()
    key = harness.add_key()
    _expect_converse(harness, HAIKU.model_id)
    assert _chat(harness, key)["statusCode"] == 200  # the API's no-op tracer: nothing to assert but success
    assert trace_export.configure({}) is None


def test_unknown_exporter_is_rejected_with_the_variable_named() -> None:
    with pytest.raises(
        ValueError, match=f"{contract.TRACES_EXPORTER_ENV} must be one of xray, console, none"
    ):
        trace_export.configure({contract.TRACES_EXPORTER_ENV: "jaeger"})


# ------------------------------------------------------------------------------------------- export


class _Collector(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(self.status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, type[_Collector]]]:
    handler = type("Collector", (_Collector,), {"received": [], "status": 200})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", handler
    server.shutdown()
    server.server_close()


def test_export_is_signed_otlp_json_with_the_spans(
    harness: Harness, spans: InMemorySpanExporter, collector: tuple[str, type[_Collector]]
) -> None:
    url, handler = collector
    key = harness.add_key()
    _expect_converse(harness, HAIKU.model_id)
    _chat(harness, key)
    finished = spans.get_finished_spans()
    exporter = trace_export.XRayOtlpExporter(
        "eu-west-1", url, credentials=Credentials("AKIDEXAMPLE", "secret")
    )

    assert exporter.export(finished) is SpanExportResult.SUCCESS

    ((headers, body),) = handler.received
    assert headers["content-type"] == "application/json"
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/xray/aws4_request" in headers["authorization"]
    payload = json.loads(body)
    (resource_spans,) = payload["resourceSpans"]
    assert {"key": "service.name", "value": {"stringValue": "test"}} in resource_spans["resource"][
        "attributes"
    ]
    (scope,) = resource_spans["scopeSpans"]
    assert scope["scope"]["name"] == tracing.TRACER_NAME
    by_kind = {s["kind"]: s for s in scope["spans"]}
    server, client = by_kind[2], by_kind[3]  # OTLP: SERVER=2, CLIENT=3
    assert client["parentSpanId"] == server["spanId"] and len(server["spanId"]) == 16
    assert client["traceId"] == server["traceId"] and len(client["traceId"]) == 32
    attributes = {a["key"]: a["value"] for a in client["attributes"]}
    assert attributes["gen_ai.usage.output_tokens"] == {"intValue": "7"}
    assert attributes["gen_ai.response.finish_reasons"] == {
        "arrayValue": {"values": [{"stringValue": "stop"}]}
    }
    assert int(client["endTimeUnixNano"]) >= int(client["startTimeUnixNano"]) > 0
    assert PROMPT.split()[0] not in body.decode() and "double-charged" not in body.decode()


def test_rejected_export_is_a_failure_not_an_exception(
    spans: InMemorySpanExporter, collector: tuple[str, type[_Collector]]
) -> None:
    url, handler = collector
    handler.status = 403
    with tracing.request_span("GET", "/v1/models", "req-1"):
        pass
    exporter = trace_export.XRayOtlpExporter("us-east-1", url, credentials=Credentials("AKID", "secret"))
    assert exporter.export(spans.get_finished_spans()) is SpanExportResult.FAILURE


def test_configure_xray_exports_through_the_endpoint_on_flush(
    collector: tuple[str, type[_Collector]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, handler = collector
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFLUSH")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    _reset_provider()
    try:
        provider = trace_export.configure(
            {
                contract.TRACES_EXPORTER_ENV: "xray",
                contract.TRACES_ENDPOINT_ENV: url,
                "AWS_REGION": "us-west-2",
                "AWS_LAMBDA_FUNCTION_NAME": "gw",
            }
        )
        assert provider is not None
        with tracing.request_span("GET", "/v1/models", "req-2"):
            pass
        trace_export.flush()
        ((headers, body),) = handler.received
        assert "AKIDFLUSH/" in headers["authorization"] and "/us-west-2/xray/" in headers["authorization"]
        resource = json.loads(body)["resourceSpans"][0]["resource"]["attributes"]
        assert {"key": "faas.name", "value": {"stringValue": "gw"}} in resource
        provider.shutdown()
    finally:
        trace_export._provider = None
        _reset_provider()


def test_the_http_server_calls_after_response_once_the_answer_is_written(harness: Harness) -> None:
    """The deployed server (lambda_server) exports each request's spans this way, after the client has
    its answer and before Lambda freezes the environment."""
    import urllib.request

    from aif_gateway.http_server import GatewayHTTPServer

    called = threading.Event()
    server = GatewayHTTPServer(harness.gateway, "127.0.0.1", 0, after_response=called.set)
    server.start()
    try:
        with urllib.request.urlopen(f"{server.url}/v1/models", timeout=10) as response:  # 401: no key
            raise AssertionError(f"expected 401, got {response.status}")
    except urllib.error.HTTPError as exc:
        assert exc.code == 401
        assert called.wait(10)
    finally:
        server.shutdown()
