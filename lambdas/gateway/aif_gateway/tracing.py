"""The gateway's spans, on the OpenTelemetry API: one per request and one per model attempt.

Only ``opentelemetry.trace`` (the API) is used here. Without a configured tracer provider (tests, ``ai-factory
serve`` by default) every span is the API's non-recording span and costs next to nothing; the deployed
gateway installs the SDK with the X-Ray OTLP exporter at start (``trace_export.configure``).

Attributes follow the OpenTelemetry GenAI semantic conventions (``gen_ai.*``) for the attempt spans, and
the HTTP conventions plus the factory's own ``aif.*`` names for the request span. No prompt or completion
text is ever put on a span: the spans carry model names, token counts, finish reasons, status and error
kinds, which every clearance may hold (docs/observability.md, "Tracing").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags

T = TypeVar("T")

TRACER_NAME = "aif_gateway"

# GenAI semantic-convention attribute names (opentelemetry-semantic-conventions, gen_ai_attributes).
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_SYSTEM = "gen_ai.system"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
ERROR_TYPE = "error.type"

# The conventions' gen_ai.system values for the gateway's providers (anything else keeps its own name).
_GEN_AI_SYSTEMS = {
    "bedrock": "aws.bedrock",
    "sagemaker": "aws.sagemaker",
    "openai": "openai",
    "anthropic": "anthropic",
    "mistral": "mistral_ai",
}

# Lambda's X-Ray header: Root=1-<8 hex time>-<24 hex>;Parent=<16 hex>;Sampled=<0|1>
_XRAY_HEADER = re.compile(
    r"Root=1-(?P<time>[0-9a-f]{8})-(?P<rand>[0-9a-f]{24});Parent=(?P<parent>[0-9a-f]{16})(?:;Sampled=(?P<s>[01]))?"
)


def tracer() -> trace.Tracer:
    """The gateway's tracer from the global provider (looked up per call: configuring may come later)."""
    return trace.get_tracer(TRACER_NAME)


def gen_ai_system(provider: str) -> str:
    """The semantic conventions' ``gen_ai.system`` for a catalog provider name."""
    return _GEN_AI_SYSTEMS.get(provider, provider)


def parent_from_xray_header(value: str | None) -> Any:
    """An OpenTelemetry context whose parent is the X-Ray segment in ``value`` (Lambda's
    ``_X_AMZN_TRACE_ID`` or API Gateway's ``X-Amzn-Trace-Id``), so the gateway's spans join the trace
    API Gateway and Lambda started; ``None`` when there is no usable header."""
    match = _XRAY_HEADER.search(value or "")
    if match is None:
        return None
    parent = SpanContext(
        trace_id=int(match["time"] + match["rand"], 16),
        span_id=int(match["parent"], 16),
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if match["s"] != "0" else TraceFlags.DEFAULT),
    )
    return trace.set_span_in_context(NonRecordingSpan(parent))


@contextmanager
def request_span(method: str, path: str, request_id: str, trace_header: str | None = None) -> Iterator[Span]:
    """The span of one gateway request (kind SERVER). Exceptions the gateway turns into error responses
    never reach it; ``set_status`` and ``set_error_type`` record the outcome."""
    with tracer().start_as_current_span(
        f"{method} {path}",
        context=parent_from_xray_header(trace_header),
        kind=SpanKind.SERVER,
        attributes={"http.request.method": method, "url.path": path, "aif.request_id": request_id},
    ) as span:
        yield span


def set_status(span: Span, status: int) -> None:
    """The request's HTTP status on its span; 5xx marks the span as an error (4xx are the client's)."""
    if not span.is_recording():
        return
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))


def set_error_type(code: str) -> None:
    """The gateway's error code (``invalid_api_key``, ``budget_exhausted``...) on the current span."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute(ERROR_TYPE, code)


def set_caller(team: str, feature: str) -> None:
    """Who called: the API key's team and feature on the current (request) span."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute("aif.team", team)
        span.set_attribute("aif.feature", feature)


def traced_attempts(fn: Callable[[Any], T], operation: str, request_model: str) -> Callable[[Any], T]:
    """``fn(target)`` (one model attempt) wrapped in a span per call, kind CLIENT, named as the GenAI
    conventions name it (``{operation} {model}``). A provider error is recorded by its kind only (its
    message may quote the request)."""

    def attempt(target: Any) -> T:
        attributes: dict[str, Any] = {
            GEN_AI_OPERATION_NAME: operation,
            GEN_AI_SYSTEM: gen_ai_system(str(target.provider)),
            GEN_AI_REQUEST_MODEL: request_model,
            "aif.target": target.name,
            "aif.model_id": target.model_id,
        }
        with tracer().start_as_current_span(
            f"{operation} {target.model_id}",
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                result = fn(target)
            except Exception as exc:
                if span.is_recording():
                    kind = getattr(exc, "kind", None) or getattr(exc, "code", None) or type(exc).__name__
                    span.set_attribute(ERROR_TYPE, str(kind))
                    span.set_status(Status(StatusCode.ERROR))
                raise
            if span.is_recording():
                span.set_attribute(GEN_AI_RESPONSE_MODEL, target.model_id)
                record_result(span, result)
            return result

    return attempt


def record_result(span: Span, result: Any) -> None:
    """Token usage and finish reason of a finished answer (a ``ChatResult`` or embeddings result); a
    stream that has only opened has neither yet, and its span records the opening."""
    usage = getattr(result, "usage", None)
    if usage is not None:
        # The conventions count every input token; Bedrock reports cache reads and writes apart.
        inputs = sum(int(getattr(usage, name, 0) or 0) for name in ("input", "cache_read", "cache_write"))
        span.set_attribute(GEN_AI_USAGE_INPUT_TOKENS, inputs)
        span.set_attribute(GEN_AI_USAGE_OUTPUT_TOKENS, int(getattr(usage, "output", 0)))
    finish_reason = getattr(result, "finish_reason", None)
    if isinstance(finish_reason, str):
        span.set_attribute(GEN_AI_RESPONSE_FINISH_REASONS, (finish_reason,))
