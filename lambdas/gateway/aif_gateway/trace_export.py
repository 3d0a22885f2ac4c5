"""Where the gateway's spans go: X-Ray's OTLP endpoint (deployed), the console (opt-in locally), or nowhere.

``AIF_TRACES_EXPORTER`` chooses (the ``LlmGateway`` construct sets ``xray``; unset means ``none``):

* ``xray``: the OpenTelemetry SDK batches the spans and ``XRayOtlpExporter`` posts them as OTLP/JSON to
  ``https://xray.<region>.amazonaws.com/v1/traces``, signed with SigV4 (service ``xray``) with the
  function's credentials: AWS's OpenTelemetry path to X-Ray, with no collector, extension or wrapper
  script. botocore (in the Lambda runtime) signs and sends; the endpoint accepts JSON, so no protobuf.
  The account needs CloudWatch Transaction Search turned on (docs/observability.md, "Tracing").
* ``console``: every span printed as JSON when it ends (``ai-factory serve``, to see what is traced).
* ``none``: no SDK is loaded; the gateway's spans stay the API's non-recording spans.

In Lambda the environment is frozen between invocations, so the handler calls ``flush`` after each
request (``handler.py``; the streaming server after each response is written).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from . import contract

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger(__name__)

EXPORTERS = ("xray", "console", "none")
FLUSH_TIMEOUT_MS = 2000
_provider: TracerProvider | None = None


def xray_otlp_endpoint(region: str) -> str:
    """X-Ray's OTLP/HTTP traces endpoint in ``region``."""
    return f"https://xray.{region}.amazonaws.com/v1/traces"


def configure(environ: Mapping[str, str] | None = None) -> TracerProvider | None:
    """Install the SDK tracer provider ``AIF_TRACES_EXPORTER`` asks for; ``None`` for ``none``.
    A value outside ``EXPORTERS`` is a deployment error and raises, naming the variable."""
    global _provider
    env = os.environ if environ is None else environ
    mode = (env.get(contract.TRACES_EXPORTER_ENV) or "none").strip().lower()
    if mode not in EXPORTERS:
        raise ValueError(
            f"{contract.TRACES_EXPORTER_ENV} must be one of {', '.join(EXPORTERS)}; got {mode!r}."
        )
    if mode == "none":
        return None
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

    attributes: dict[str, Any] = {
        "service.name": env.get(contract.POWERTOOLS_SERVICE_NAME_ENV) or contract.GATEWAY_SERVICE_NAME,
        "cloud.provider": "aws",
    }
    if env.get("AWS_LAMBDA_FUNCTION_NAME"):
        attributes |= {"cloud.platform": "aws_lambda", "faas.name": env["AWS_LAMBDA_FUNCTION_NAME"]}
    # Resource(...) rather than Resource.create(): no entry-point scan for detectors at cold start.
    provider = TracerProvider(resource=Resource(attributes))
    if mode == "xray":
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        if not region:
            raise ValueError(
                f"{contract.TRACES_EXPORTER_ENV}=xray needs AWS_REGION to find X-Ray's endpoint."
            )
        endpoint = env.get(contract.TRACES_ENDPOINT_ENV) or xray_otlp_endpoint(region)
        exporter = cast("SpanExporter", XRayOtlpExporter(region, endpoint))  # duck-typed, see its docstring
        provider.add_span_processor(BatchSpanProcessor(exporter))
    else:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def flush() -> None:
    """Export the spans still batched (before Lambda freezes the environment); no-op without an SDK."""
    if _provider is not None:
        _provider.force_flush(FLUSH_TIMEOUT_MS)


# ------------------------------------------------------------------------------------------ exporter


class XRayOtlpExporter:
    """OTLP/HTTP JSON span exporter for X-Ray's OTLP endpoint, SigV4-signed with botocore.

    An ``opentelemetry.sdk.trace.export.SpanExporter`` (duck-typed, so importing this module does not
    load the SDK). A rejected batch is logged with the endpoint's status and reason and dropped: traces
    are diagnostics, never worth holding a request for."""

    def __init__(self, region: str, endpoint: str, credentials: Any = None, timeout_s: int = 5) -> None:
        self.region, self.endpoint, self._timeout_s = region, endpoint, timeout_s
        self._credentials = credentials
        self._http: Any = None  # botocore is loaded on the first export, off the import path

    def export(self, spans: Sequence[ReadableSpan]) -> Any:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from opentelemetry.sdk.trace.export import SpanExportResult

        if self._http is None:
            import botocore.session
            from botocore.httpsession import URLLib3Session

            self._http = URLLib3Session(timeout=self._timeout_s)
            if self._credentials is None:  # the function's role, from Lambda's environment variables
                self._credentials = botocore.session.get_session().get_credentials()
        if self._credentials is None:
            log.warning("no AWS credentials: %d span(s) not exported to %s", len(spans), self.endpoint)
            return SpanExportResult.FAILURE
        body = json.dumps(encode_spans(spans), separators=(",", ":")).encode("utf-8")
        request = AWSRequest(
            method="POST", url=self.endpoint, data=body, headers={"Content-Type": "application/json"}
        )
        SigV4Auth(self._credentials.get_frozen_credentials(), "xray", self.region).add_auth(request)
        try:
            response = self._http.send(request.prepare())
        except Exception as exc:  # network trouble: the spans are lost, the request is not
            log.warning("span export to %s failed: %s", self.endpoint, type(exc).__name__)
            return SpanExportResult.FAILURE
        if 200 <= response.status_code < 300:
            return SpanExportResult.SUCCESS
        log.warning(
            "X-Ray OTLP endpoint rejected %d span(s): HTTP %d %s",
            len(spans),
            response.status_code,
            response.text[:300],
        )
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        if self._http is not None:
            self._http.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


# ------------------------------------------------------------------------------ OTLP/JSON encoding


def encode_spans(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """An OTLP ``ExportTraceServiceRequest`` in the protocol's JSON mapping: ids as hex, 64-bit integers
    as strings, enums as numbers; spans grouped by resource and instrumentation scope."""
    by_resource: dict[int, tuple[Any, dict[tuple[str, str], list[dict[str, Any]]]]] = {}
    for span in spans:
        resource = span.resource
        _, scopes = by_resource.setdefault(id(resource), (resource, {}))
        scope = span.instrumentation_scope
        key = (scope.name, scope.version or "") if scope is not None else ("", "")
        scopes.setdefault(key, []).append(_span(span))
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": _attributes(resource.attributes)},
                "scopeSpans": [
                    {"scope": {"name": name, "version": version}, "spans": encoded}
                    for (name, version), encoded in scopes.items()
                ],
            }
            for resource, scopes in by_resource.values()
        ]
    }


def _span(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    assert context is not None  # an SDK span always has one
    encoded: dict[str, Any] = {
        "traceId": f"{context.trace_id:032x}",
        "spanId": f"{context.span_id:016x}",
        "name": span.name,
        "kind": span.kind.value + 1,  # the API's enum starts at INTERNAL=0; OTLP's at UNSPECIFIED=0
        "startTimeUnixNano": str(span.start_time or 0),
        "endTimeUnixNano": str(span.end_time or 0),
        "attributes": _attributes(span.attributes or {}),
        "status": {"code": span.status.status_code.value},
    }
    if span.parent is not None:
        encoded["parentSpanId"] = f"{span.parent.span_id:016x}"
    if span.status.description:
        encoded["status"]["message"] = span.status.description
    return encoded


def _attributes(attributes: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"key": key, "value": otlp_value(value)} for key, value in attributes.items()]


def otlp_value(value: Any) -> dict[str, Any]:
    """One attribute value in OTLP/JSON's ``AnyValue`` form (the online scorer's MLflow traces use it too)."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [otlp_value(v) for v in value]}}
    return {"stringValue": str(value)}
