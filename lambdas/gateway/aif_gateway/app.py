"""The gateway: one API in front of every approved model, with three chat front doors.

Chat Completions (``openai_schema``), the Anthropic Messages API (``anthropic_messages``) and OpenAI's
Responses API (``openai_responses``) each parse into the same internal ``ChatRequest``; ``_serve_chat``
then routes, guards, calls and records it once, and an ``_ApiFormat`` shapes the answer (and its
stream encoder) the way the caller's API does. Client model names resolve through the catalog's
``model_aliases`` first.

``Gateway.handle`` takes an API Gateway REST proxy event and returns a proxy response, or for
``stream: true`` a ``StreamingResponse`` that produces the answer's chunks as the model sends them
(``streaming``). The gateway's HTTP server (``http_server``: ``ai-factory serve`` and the Lambda behind
the Lambda Web Adapter) and the buffered Lambda handler (``handler.py``) all call it, so local mode runs
exactly the code that runs in AWS.

Request path, in order: size limit (413) -> API key (401) -> body (400) -> registered prompt, if one
is named (404 prompt_not_found; 400 model or variables) -> route (404) -> key may use the route (403)
-> the feature's clearance reaches a target of the route (403; targets below it are skipped)
-> budget and rate (429) -> model call down the fallback chain, skipping targets whose capabilities
cannot serve the request (503 when all fail, 429 when all were throttled) -> audit line -> response,
then the usage record's ledger write (after the response with a ``UsageWriter``, the deployed server's
set-up; before it without one). Records are written for every request that reached a model; a
ledger write that fails is spilled to a queue, and as a last resort logged in full, never dropped.
"""

from __future__ import annotations

import base64
import inspect
import json
import logging
import math
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol

from . import tracing
from .access import BackgroundRefresher, KeyAuthenticator, UsageGuard
from .anthropic_messages import check_version, message_body, parse_messages_request
from .anthropic_messages import error_body as anthropic_error
from .anthropic_stream import MessageStreamEncoder
from .capabilities import adapt, unfit_reason
from .clearance import cleared_targets
from .config import GatewayConfig, GuardrailPrices, ModelTarget, Route, RouteTimeouts
from .count_tokens import count_input_tokens, counting_target, parse_count_tokens_request
from .errors import (
    Forbidden,
    GatewayError,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    StoreUnavailable,
)
from .feedback import FeedbackService, feedback_response
from .grounding import CitingChunkEncoder, citations, ground, parse_chat_retrieval, search_text
from .guardrail_metering import guardrail_cost
from .memory_store import MemoryQuotaStore
from .metering import CountingMetricsSink, MetricsSink, cost_usd
from .online_samples import Answer, SampleWriter, exchange_sample, samples_request
from .openai_responses import output_items, parse_responses_request, response_body
from .openai_schema import (
    ChatRequest,
    check_conversation,
    parse_chat_request,
    parse_embeddings_request,
    parse_json_body,
)
from .prompt_template import PromptVariablesError, render_messages
from .prompt_view import PromptViewSource
from .provider_registry import default_providers
from .provider_types import CallContext, ChatResult, EmbeddingResult, Provider, TokenUsage
from .quota import Estimate, Gate, QuotaStore, Reservation, worst_case
from .records import ApiKeyRecord, KeyStore, Ledger, LedgerWriteError, StoreError, UsageRecord, utc_now
from .responses_stream import ResponseStreamEncoder
from .retrieval import (
    RetrievalService,
    RetrieveRequest,
    knowledge_base_route,
    parse_retrieve_request,
    retrieve_response,
)
from .routing import RouteFailed, RouteOutcome, Router
from .stream_format import SSE_HEADERS, ChunkEncoder
from .streaming import (
    CHARS_PER_TOKEN,
    OpenedStream,
    StreamEncoder,
    StreamEnd,
    StreamingResponse,
    estimate_tokens,
    open_stream,
    relay,
)
from .usage_writer import UsageWriter

log = logging.getLogger("aif_gateway")

JSON_HEADERS = {"Content-Type": "application/json"}
RETRIEVAL_RECORD_SUFFIX = "-retrieval"  # the request id of a chat request's retrieval record


class Spill(Protocol):
    """Where a usage record goes when the ledger write fails (the SQS spill queue in AWS)."""

    def send(self, usage: UsageRecord) -> None: ...


class Gateway:
    def __init__(
        self,
        config: GatewayConfig,
        keys: KeyStore,
        ledger: Ledger,
        providers: dict[str, Provider] | None = None,
        spill: Spill | None = None,
        metrics: MetricsSink | None = None,
        audit_log: Callable[..., None] | None = None,
        now: Callable[[], datetime] = utc_now,
        clock: Callable[[], float] = time.monotonic,
        prompts: PromptViewSource | None = None,
        refresh_executor: Executor | None = None,
        retrieval: RetrievalService | None = None,
        quota: QuotaStore | None = None,
        usage_writer: UsageWriter | None = None,
        samples: SampleWriter | None = None,
        namespace: str = "",
    ) -> None:
        self.config = config
        # The registry's runtime view (cached; re-read at most every ttl). None: no prompts published.
        self.prompts = prompts if prompts is not None else PromptViewSource(None)
        self.ledger = ledger
        self.providers = providers if providers is not None else default_providers(config.model_timeout_s)
        self.spill = spill
        self.metrics = metrics if metrics is not None else CountingMetricsSink()
        self.audit_log = audit_log
        self.now = now
        self.clock = clock
        refresher = BackgroundRefresher(refresh_executor)
        self.auth = KeyAuthenticator(keys, config.key_cache_ttl_s, clock, refresher)
        self.guard = UsageGuard(ledger, config.usage_snapshot_ttl_s, clock, refresher)
        # Reservations against the feature's shared gate (budget, rpm, tpm, concurrency): the store every
        # instance shares in AWS (DynamoDB); without one, this process's own gates.
        self.gate = Gate(quota if quota is not None else MemoryQuotaStore(), refresher)
        # With a writer, usage records are written after the response (``usage_writer``); without one,
        # before it. Either way through ``persist``: ledger, else spill queue, else the log.
        self.usage_writer = usage_writer
        if usage_writer is not None:
            usage_writer.bind(self.persist)
        # Online samples of answers Bedrock's invocation log never holds (``online_samples``), sent after
        # the response; they carry the gateway's identity (``LlmGateway.edge_namespace``).
        self.samples = samples
        self.namespace = namespace
        self.router = Router(config.breaker_failure_threshold, config.breaker_cooldown_s, clock)
        self.feedback = FeedbackService(ledger, self.metrics)
        # Knowledge bases a RagFeature registered (SSM in AWS); none unless configured.
        self.retrieval = retrieval if retrieval is not None else RetrievalService.from_env()
        self._routes: dict[tuple[str, str], Callable[[_Call], dict[str, Any] | StreamingResponse]] = {
            ("GET", "/v1/models"): self._list_models,
            ("POST", "/v1/chat/completions"): self._chat_completions,
            ("POST", "/v1/messages"): self._messages,
            ("POST", "/v1/messages/count_tokens"): self._count_tokens,
            ("POST", "/v1/responses"): self._responses,
            ("POST", "/v1/embeddings"): self._embeddings,
            ("POST", "/v1/feedback"): self._feedback,
            ("POST", "/v1/retrieve"): self._retrieve,
        }

    # -- entry point -------------------------------------------------------------------------------

    def handle(self, event: dict[str, Any], context: Any = None) -> dict[str, Any] | StreamingResponse:
        """The proxy response for one request; a ``StreamingResponse`` for a chat request with
        ``stream: true`` (a server sends it piece by piece; ``.buffered()`` is its proxy form).
        Each request is one span (``tracing``), the model attempts its children."""
        call = _Call(event, self.now(), self.clock())
        with tracing.request_span(
            call.method, call.path, call.request_id, call.header("x-amzn-trace-id")
        ) as span:
            response = self._handle(call)
            status = response.status if isinstance(response, StreamingResponse) else response["statusCode"]
            tracing.set_status(span, int(status))
            return response

    def _handle(self, call: _Call) -> dict[str, Any] | StreamingResponse:
        streaming = False
        try:
            path = call.path.rstrip("/") or "/"
            handler = self._routes.get((call.method, path))
            if handler is None:
                if path.startswith("/v1/models/") and call.method == "GET":
                    handler = self._get_model
                elif any(p == path for _, p in self._routes):
                    raise MethodNotAllowed(f"{call.method} is not allowed on {path}.")
                else:
                    raise NotFound(f"Unknown path {path}.", code="unknown_path")
            response = handler(call)
            if isinstance(response, StreamingResponse):
                streaming = True  # the stream settles the reservation when it ends (or is closed)
            return response
        except GatewayError as exc:
            return self._error(call, exc)
        except StoreError:
            log.exception("store unavailable for request %s", call.request_id)
            unavailable = StoreUnavailable(
                "The gateway cannot reach its key or usage store right now. Retry after 5 s.",
                headers={"Retry-After": "5"},
            )
            return self._error(call, unavailable)
        except Exception:
            log.exception("unhandled error in gateway request %s", call.request_id)
            return self._error(
                call, InternalError("The gateway failed to handle the request; it was logged.")
            )
        finally:
            if call.reservation is not None and not call.reservation.settled and not streaming:
                # An exit no step accounted for: keep what was reserved (the model may have billed it).
                call.reservation.settle(call.reservation.claim.cost_usd, call.reservation.claim.tokens)

    # -- routes --------------------------------------------------------------------------------------

    def _list_models(self, call: _Call) -> dict[str, Any]:
        key = self._authenticate(call)
        data = [_model_entry(alias) for alias in key.allowed_models if alias in self.config.routes]
        return _response(200, {"object": "list", "data": data}, call.request_id)

    def _get_model(self, call: _Call) -> dict[str, Any]:
        key = self._authenticate(call)
        alias = call.path.rstrip("/")[len("/v1/models/") :]
        self._route_for(key, alias)
        return _response(200, _model_entry(alias), call.request_id)

    def _chat_completions(self, call: _Call) -> dict[str, Any] | StreamingResponse:
        key = self._authenticate(call)
        data = parse_json_body(call.body(self.config.max_body_bytes))
        request = parse_chat_request(data)
        request.retrieval = parse_chat_retrieval(data.get("retrieval"))
        if request.prompt is not None:
            self._apply_prompt(call, request)
        return self._serve_chat(call, key, request, _ChatCompletionsFormat(call))

    def _messages(self, call: _Call) -> dict[str, Any] | StreamingResponse:
        """The Anthropic Messages API (``anthropic_messages``): same routing, keys and records."""
        call.api = "anthropic"
        check_version(call.header("anthropic-version"))
        key = self._authenticate(call)
        request = parse_messages_request(parse_json_body(call.body(self.config.max_body_bytes)))
        return self._serve_chat(call, key, request, _MessagesFormat(call, request.model))

    def _count_tokens(self, call: _Call) -> dict[str, Any]:
        """The input tokens of a Messages request, counted by the model that would answer it
        (``count_tokens``); recorded like every request, at no cost."""
        call.api = "anthropic"
        check_version(call.header("anthropic-version"))
        key = self._authenticate(call)
        request = parse_count_tokens_request(parse_json_body(call.body(self.config.max_body_bytes)))
        request.model = self.config.model_aliases.get(request.model, request.model)
        call.route = request.model
        route = self._route_for(key, request.model)
        if route.modality != "chat":
            raise InvalidRequest(f"'{request.model}' is an embedding model.", param="model")
        target = counting_target(route, request, cleared_targets(key, route))
        self.guard.check(key, call.started)
        self._reserve(call, key, Estimate(0.0, 0, 0, 0))
        ctx = CallContext(call.request_id, key.team, key.feature, None)
        tokens = count_input_tokens(self.providers[target.provider], target, request, ctx)
        record = self._base_record(call, key, status=200, operation="count_tokens")
        record.model_served, record.model_id = target.name, target.model_id
        record.extra["counted_input_tokens"] = str(tokens)
        self._persist(record)
        self._settle(call, record)
        self._emit(record)
        headers = {"x-aif-served-by": target.name, "x-aif-served-model-id": target.model_id}
        return _response(200, {"input_tokens": tokens}, call.request_id, headers)

    def _responses(self, call: _Call) -> dict[str, Any] | StreamingResponse:
        """OpenAI's Responses API, stateless subset (``openai_responses``)."""
        key = self._authenticate(call)
        request = parse_responses_request(parse_json_body(call.body(self.config.max_body_bytes)))
        return self._serve_chat(call, key, request, _ResponsesFormat(call, request))

    def _serve_chat(
        self, call: _Call, key: ApiKeyRecord, request: ChatRequest, api: _ApiFormat
    ) -> dict[str, Any] | StreamingResponse:
        """One chat request, whichever API it came in through: route, guard, model call (buffered or
        streamed), record, and the answer in ``api``'s shape."""
        request.model = self.config.model_aliases.get(request.model, request.model)
        call.route = request.model
        route = self._route_for(key, request.model)
        if route.modality != "chat":
            raise InvalidRequest(
                f"'{request.model}' is an embedding model; call /v1/embeddings.", param="model"
            )
        cleared = cleared_targets(key, route)  # 403 when no target may receive the feature's data
        self.guard.check(key, call.started)
        if request.retrieval is not None:
            api.citations = self._ground(call, key, request)
        self._reserve(call, key, worst_case(route, estimate_tokens(request), request.max_tokens))
        timeouts = self._timeouts(route)
        guardrail = self.config.guardrail
        if guardrail is not None and route.guard_scope is not None:
            guardrail = replace(guardrail, scope=route.guard_scope)
        grounding = request.grounding if request.grounding is not None and request.grounding.check else None
        ctx = CallContext(
            call.request_id,
            key.team,
            key.feature,
            guardrail,
            timeouts,
            grounding=grounding,
            inference_profiles=key.inference_profiles,
        )
        request.auto_cache = route.prompt_cache
        unfit = lambda t: cleared(t) or unfit_reason(request, t.capabilities)  # noqa: E731
        if request.stream:
            return self._stream_chat(call, key, route, request, ctx, timeouts, api, unfit)
        outcome: RouteOutcome[ChatResult] = self._call_models(
            call,
            key,
            route,
            "chat",
            lambda t: self.providers[t.provider].chat(t, adapt(request, t.capabilities), ctx),
            timeouts.total_s,
            unfit,
            lambda: estimate_tokens(request),
        )
        result = outcome.result
        if not request.parallel_tool_calls:
            result.tool_calls = result.tool_calls[:1]  # the client asked for at most one call per answer
        record = self._record(call, key, outcome, result.usage, status=200)
        if result.guardrail_intervened:
            record.guardrail_action = "INTERVENED"
        if result.guardrail_units:
            _add_guardrail_cost(record, result.guardrail_units, self.config.guardrail_prices)
        self._finish(record, outcome, call)
        if self._sampled(key, outcome.target, call):
            answer = Answer(
                result.text,
                result.finish_reason,
                result.stop_sequence,
                len(result.tool_calls),
                result.guardrail_intervened,
            )
            self._send_sample(call, key, outcome.target, request, record, answer)
        body = api.body(outcome.target.name, result, record)
        return _response(200, body, call.request_id, _served_headers(outcome, record))

    def _stream_chat(
        self,
        call: _Call,
        key: ApiKeyRecord,
        route: Route,
        request: ChatRequest,
        ctx: CallContext,
        timeouts: RouteTimeouts,
        api: _ApiFormat,
        unfit: Callable[[ModelTarget], str | None],
    ) -> StreamingResponse:
        """ConverseStream (or the provider's stream) relayed chunk by chunk (``streaming``): fallback
        until the first model event, none after; the usage record is complete (audit line out, ledger
        write handed over or done) before ``[DONE]``."""
        outcome: RouteOutcome[OpenedStream] = self._call_models(
            call,
            key,
            route,
            "chat",
            lambda t: open_stream(self.providers[t.provider], t, adapt(request, t.capabilities), ctx),
            timeouts.first_token_s,
            unfit,
            lambda: estimate_tokens(request),
        )
        first_token_ms = call.elapsed_ms()
        sampled = self._sampled(key, outcome.target, call)
        deadline = self.clock() + timeouts.total_s
        if self.config.request_deadline_s is not None:
            deadline = min(deadline, call.t_clock + self.config.request_deadline_s)
        ended = False

        def on_end(end: StreamEnd) -> None:
            nonlocal ended
            if ended:
                return
            ended = True
            record = self._record(call, key, outcome, end.usage, status=200)
            record.extra["stream"] = "true"
            record.extra["first_token_ms"] = f"{first_token_ms:.3f}"
            if end.usage_estimated:
                record.extra["usage_estimated"] = "true"
            if end.guardrail_intervened:
                record.guardrail_action = "INTERVENED"
            if end.guardrail_units:
                _add_guardrail_cost(record, end.guardrail_units, self.config.guardrail_prices)
            if end.error_code is not None:
                record.error_type = end.error_code
                if end.error_kind:
                    record.extra["stream_error"] = end.error_kind
                if end.retryable and self.router.breaker(outcome.target).record_failure():
                    outcome.breaker_opened.append(outcome.target.name)
            self._finish(record, outcome, call)
            if sampled and end.error_code is None:  # an unfinished answer is not a sample of the feature
                finish = end.finish_reason or "stop"
                answer = Answer(end.text, finish, end.stop_sequence, end.tool_calls, end.guardrail_intervened)
                self._send_sample(call, key, outcome.target, request, record, answer)

        def on_close() -> None:
            """The client left before the relay started: the model call was opened (and billed for its
            input), so the request is recorded with estimated usage."""
            usage = TokenUsage(input=estimate_tokens(request))
            on_end(StreamEnd(usage, True, None, False, error_code="client_disconnected"))

        body = relay(
            outcome.result,
            api.encoder(outcome.target.name),
            include_usage=request.include_usage,
            deadline=deadline,
            clock=self.clock,
            input_estimate=lambda: estimate_tokens(request),
            on_end=on_end,
            collect_text=sampled,
        )
        headers = {
            **SSE_HEADERS,
            "x-request-id": call.request_id,
            "x-aif-served-by": outcome.target.name,
            "x-aif-served-model-id": outcome.target.model_id,
            "x-aif-attempts": str(outcome.attempts),
        }
        return StreamingResponse(200, headers, body, on_close=on_close)

    def _timeouts(self, route: Route) -> RouteTimeouts:
        """The route's limits, shortened to the request deadline where that is tighter."""
        limits, deadline = route.timeouts, self.config.request_deadline_s
        if deadline is None or deadline >= limits.total_s:
            return limits
        return RouteTimeouts(min(limits.first_token_s, deadline), min(limits.idle_s, deadline), deadline / 60)

    def _embeddings(self, call: _Call) -> dict[str, Any]:
        key = self._authenticate(call)
        request = parse_embeddings_request(parse_json_body(call.body(self.config.max_body_bytes)))
        call.route = request.model
        route = self._route_for(key, request.model)
        if route.modality != "embedding":
            raise InvalidRequest(
                f"'{request.model}' is a chat model; call /v1/chat/completions.", param="model"
            )
        cleared = cleared_targets(key, route)
        self.guard.check(key, call.started)
        # Embedding models price input only; CHARS_PER_TOKEN is the estimate the streaming path uses.
        chars = sum(len(text) for text in request.inputs)
        self._reserve(call, key, worst_case(route, math.ceil(chars / CHARS_PER_TOKEN), 0))
        ctx = CallContext(
            call.request_id, key.team, key.feature, None, inference_profiles=key.inference_profiles
        )
        outcome: RouteOutcome[EmbeddingResult] = self._call_models(
            call,
            key,
            route,
            "embeddings",
            lambda t: self.providers[t.provider].embed(t, request, ctx),
            self.config.model_timeout_s,
            cleared,
        )
        usage = TokenUsage(input=outcome.result.input_tokens)
        record = self._record(call, key, outcome, usage, status=200, operation="embeddings")
        self._finish(record, outcome, call)
        data = [
            {"object": "embedding", "index": i, "embedding": _encode_vector(v, request.encoding_format)}
            for i, v in enumerate(outcome.result.vectors)
        ]
        body = {
            "object": "list",
            "data": data,
            "model": outcome.target.name,
            "usage": {"prompt_tokens": usage.input, "total_tokens": usage.input},
        }
        return _response(200, body, call.request_id, _served_headers(outcome, record))

    def _feedback(self, call: _Call) -> dict[str, Any]:
        key = self._authenticate(call)
        body = parse_json_body(call.body(self.config.max_body_bytes))
        feedback = self.feedback.submit(key, body, call.started)
        return _response(200, feedback_response(feedback), call.request_id)

    def _retrieve(self, call: _Call) -> dict[str, Any]:
        """Passages from a registered knowledge base the key's feature may query (docs/rag.md)."""
        key = self._authenticate(call)
        request = parse_retrieve_request(parse_json_body(call.body(self.config.max_body_bytes)))
        call.route = knowledge_base_route(request.knowledge_base)
        kb = self.retrieval.resolve(key, request.knowledge_base)
        self.guard.check(key, call.started)
        self._reserve(call, key, Estimate(0.0, 0, 0, 0))
        result = self.retrieval.retrieve(kb, self.retrieval.for_key(key, request))
        record = self._base_record(call, key, status=200, operation="retrieve")
        record.route = knowledge_base_route(kb.name)
        self.retrieval.meter(record, kb, result)
        self._persist(record)
        self._settle(call, record)
        self.guard.add(record.team, record.feature, record.timestamp, record.cost_usd)
        self._emit(record)
        headers = {"x-aif-cost-usd": f"{record.cost_usd:.10f}"}
        return _response(200, retrieve_response(call.request_id, kb, result), call.request_id, headers)

    def _ground(self, call: _Call, key: ApiKeyRecord, request: ChatRequest) -> list[dict[str, Any]]:
        """The ``retrieval`` extension: retrieve (clearance-filtered, metered and audited as its own
        ``retrieve`` record, ``<request id>-retrieval``), put the passages in the conversation, and
        return them as the answer's citations (docs/rag.md)."""
        wanted = request.retrieval
        if wanted.grounding_check and self.config.guardrail is None:
            raise InvalidRequest(
                "'retrieval.grounding_check' needs the gateway's guardrail, and this gateway has none.",
                param="retrieval.grounding_check",
            )
        query = search_text(wanted, request.messages)
        try:
            kb = self.retrieval.resolve(key, wanted.knowledge_base)
        except GatewayError as exc:
            exc.param = "retrieval.knowledge_base"
            raise
        self._reserve(call, key, Estimate(0.0, 0, 0, 0))
        try:
            result = self.retrieval.retrieve(
                kb, self.retrieval.for_key(key, RetrieveRequest(kb.name, query, wanted.top_k))
            )
        except GatewayError as exc:
            if exc.param is not None:
                exc.param = f"retrieval.{exc.param}"  # Bedrock rejected the query: retrieval.query
            raise
        record = self._base_record(call, key, status=200, operation="retrieve")
        record.request_id = call.request_id + RETRIEVAL_RECORD_SUFFIX
        record.route = knowledge_base_route(kb.name)
        record.extra["chat_request_id"] = call.request_id
        self.retrieval.meter(record, kb, result)
        self._persist(record)
        self._settle(call, record)
        self.guard.add(record.team, record.feature, record.timestamp, record.cost_usd)
        self._emit(record)
        call.reservation = None  # settled: the chat holds a reservation of its own, like a second call
        request.messages, request.grounding = ground(
            request.messages, result.passages, query, wanted.grounding_check
        )
        return citations(result.passages)

    # -- steps -----------------------------------------------------------------------------------------

    def _authenticate(self, call: _Call) -> ApiKeyRecord:
        authorization = call.header("authorization")
        api_key = call.header("x-api-key")  # Anthropic clients' header; same keys
        if api_key is not None and call.api == "anthropic":
            authorization = f"Bearer {api_key}"
        key = self.auth.authenticate(authorization, call.started)
        call.key = key
        tracing.set_caller(key.team, key.feature)
        return key

    def _apply_prompt(self, call: _Call, request: ChatRequest) -> None:
        """Render the registered prompt the request names into it: its messages go first, its model and
        parameters are defaults that the request's own fields override."""
        ref = request.prompt
        assert ref is not None
        call.prompt_name = ref.name
        try:
            version, prompt = self.prompts.resolve(ref.name, ref.version, ref.alias)
        except StoreError:
            log.exception("prompt view unavailable for request %s", call.request_id)
            raise StoreUnavailable(
                "The gateway cannot read the prompt registry right now. Retry after 5 s.",
                headers={"Retry-After": "5"},
            ) from None
        call.prompt_version = version
        label = f"Prompt '{prompt.name}' version {version}"
        if request.model and request.model != prompt.model:
            raise InvalidRequest(
                f"{label} is registered for model '{prompt.model}', but the request asks for "
                f"'{request.model}'. Omit 'model' or send '{prompt.model}'.",
                param="model",
            )
        request.model = prompt.model
        try:
            rendered = render_messages(prompt.messages, ref.variables)
        except PromptVariablesError as exc:
            parts = []
            if exc.missing:
                parts.append("missing " + ", ".join(exc.missing))
            if exc.extra:
                parts.append("unexpected " + ", ".join(exc.extra))
            if exc.invalid:
                parts.append("not a string or number: " + ", ".join(exc.invalid))
            expected = ", ".join(prompt.variables) or "none"
            raise InvalidRequest(
                f"{label}: variables {'; '.join(parts)} (it takes: {expected}).",
                param="prompt.variables",
                code="invalid_prompt_variables",
            ) from None
        request.messages = rendered + request.messages
        check_conversation(request.messages)
        params = prompt.parameters
        if request.temperature is None and "temperature" in params:
            request.temperature = float(params["temperature"])
        if request.top_p is None and "top_p" in params:
            request.top_p = float(params["top_p"])
        if request.max_tokens is None and "max_tokens" in params:
            request.max_tokens = int(params["max_tokens"])
        if not request.stop and "stop" in params:
            request.stop = list(params["stop"])

    def _route_for(self, key: ApiKeyRecord, alias: str) -> Route:
        route = self.config.routes.get(alias)
        if route is None:
            raise NotFound(
                f"The model '{alias}' does not exist in the catalog.", param="model", code="model_not_found"
            )
        if alias not in key.allowed_models:
            allowed = ", ".join(key.allowed_models) or "none"
            raise Forbidden(
                f"API key {key.key_id} ({key.team}/{key.feature}) may not use '{alias}'; allowed: {allowed}.",
                param="model",
            )
        return route

    def _call_models(
        self,
        call: _Call,
        key: ApiKeyRecord,
        route: Route,
        operation: str,
        fn: Any,
        attempt_s: float,
        unfit: Any = None,
        estimate_input: Callable[[], int] | None = None,
    ) -> Any:
        """Down the fallback chain; a target is started only while ``attempt_s`` (what one attempt may
        take before the gateway knows whether it failed) still fits before the request deadline.
        ``unfit(target)`` names why a target cannot serve the request (it is then passed over)."""
        latest_start = None
        deadline = self.config.request_deadline_s
        if deadline is not None:
            latest_start = call.t_clock + deadline - attempt_s
        try:
            attempts = tracing.traced_attempts(fn, operation, route.alias)
            return self.router.call(route, attempts, latest_start, unfit, estimate_input)
        except RouteFailed as exc:
            # The models were called (and may have billed partial work): the attempt is recorded.
            record = self._base_record(call, key, status=exc.status, operation=operation)
            record.attempts, record.error_type = exc.attempts, exc.code or "all_targets_failed"
            record.extra["failures"] = "; ".join(exc.failures)
            _add_failed_usage(record, exc.failed_usage, exc.failed_cost_usd, exc.estimated_failures)
            self._persist(record)
            self._settle(call, record)
            self._emit(record, fell_back=True, breaker_opened=len(exc.breaker_opened))
            raise

    def _base_record(
        self, call: _Call, key: ApiKeyRecord | None, status: int, operation: str = "chat"
    ) -> UsageRecord:
        return UsageRecord(
            request_id=call.request_id,
            timestamp=call.started,
            team=key.team if key else "",
            feature=key.feature if key else "",
            key_id=key.key_id if key else "",
            route=call.route or "",
            status=status,
            latency_ms=call.elapsed_ms(),
            operation=operation,
            prompt_name=call.prompt_name,
            prompt_version=call.prompt_version,
        )

    def _record(
        self,
        call: _Call,
        key: ApiKeyRecord,
        outcome: RouteOutcome[Any],
        usage: TokenUsage,
        *,
        status: int,
        operation: str = "chat",
    ) -> UsageRecord:
        record = self._base_record(call, key, status, operation)
        record.model_served = outcome.target.name
        record.model_id = outcome.target.model_id
        record.input_tokens, record.output_tokens = usage.input, usage.output
        record.cache_read_tokens, record.cache_write_tokens = usage.cache_read, usage.cache_write
        record.cost_usd = round(cost_usd(usage, outcome.target.prices), 10)
        _add_failed_usage(record, outcome.failed_usage, outcome.failed_cost_usd, outcome.estimated_failures)
        record.attempts = outcome.attempts
        if outcome.failures:
            record.extra["failures"] = "; ".join(outcome.failures)
        return record

    def _reserve(self, call: _Call, key: ApiKeyRecord, estimate: Estimate) -> None:
        """Hold the request's worst case against its feature's shared limits (429 naming the limit)."""
        call.reservation = self.gate.reserve(key, call.started, estimate)

    def _settle(self, call: _Call, record: UsageRecord) -> None:
        """Replace the reservation by what the request really cost (its record), freeing its slot."""
        if call.reservation is not None:
            tokens = record.input_tokens + record.output_tokens + record.cache_read_tokens
            call.reservation.settle(record.cost_usd, tokens + record.cache_write_tokens)

    def _finish(self, record: UsageRecord, outcome: RouteOutcome[Any], call: _Call) -> None:
        self._persist(record)
        self._settle(call, record)
        self.guard.add(record.team, record.feature, record.timestamp, record.cost_usd)
        self._emit(record, fell_back=outcome.fell_back, breaker_opened=len(outcome.breaker_opened))

    def _sampled(self, key: ApiKeyRecord, target: ModelTarget, call: _Call) -> bool:
        """Whether this exchange is an online sample the gateway sends itself (``online_samples``)."""
        return self.samples is not None and samples_request(key, target.provider, call.request_id)

    def _send_sample(
        self,
        call: _Call,
        key: ApiKeyRecord,
        target: ModelTarget,
        request: ChatRequest,
        record: UsageRecord,
        answer: Answer,
    ) -> None:
        """Hand the finished exchange to the sample writer (sent after the response). Never raises."""
        assert self.samples is not None
        try:
            sample = exchange_sample(
                request_id=call.request_id,
                key=key,
                model_id=target.model_id,
                started=call.started,
                messages=request.messages,
                answer=answer,
                input_tokens=record.input_tokens,
                output_tokens=record.output_tokens,
                latency_ms=record.latency_ms,
                gateway=self.namespace,
            )
            self.samples.submit(sample)
        except Exception:  # a sample must never fail the request it copies
            log.exception("online sample of request %s not sent", call.request_id)

    def _persist(self, record: UsageRecord) -> None:
        """The audit line now; the ledger write now, or after the response with a usage writer."""
        self._audit(record, ledger=True)
        if self.usage_writer is not None:
            self.usage_writer.submit(record)
        else:
            self.persist(record)

    def drain(self, timeout_s: float | None = None) -> int:
        """Write what is still pending (usage records, gate settlements), waiting at most ``timeout_s``.
        For shutdown (the deployed server on SIGTERM) and tests; returns the records left (logged in
        full)."""
        started = time.monotonic()
        left = self.usage_writer.drain(timeout_s) if self.usage_writer is not None else 0
        if self.samples is not None:  # after the usage records, in what time is left
            remaining = None if timeout_s is None else max(0.0, timeout_s - (time.monotonic() - started))
            self.samples.drain(remaining)
        try:
            self.gate.flush()
        except Exception:  # the reservations stay counted in full: the budget errs on the safe side
            log.exception("flushing gate settlements failed")
        return left

    def persist(self, record: UsageRecord) -> None:
        """Write a usage record: ledger, else spill queue, else the full record in the log. Never raises."""
        try:
            self.ledger.record(record)
            return
        except LedgerWriteError:
            log.warning("ledger write failed for %s; spilling", record.request_id, exc_info=True)
        except Exception:
            log.exception("ledger write raised unexpectedly for %s; spilling", record.request_id)
        if self.spill is not None:
            try:
                self.spill.send(record)
                return
            except Exception:
                log.exception("spill failed for %s", record.request_id)
        # Last resort: the full record in the log, where an operator can replay it from.
        log.critical("UNPERSISTED_USAGE_RECORD %s", json.dumps(record.to_dict(), sort_keys=True))

    @property
    def audit_log(self) -> Callable[..., None] | None:
        """The audit sink: called with each record, and ``ledger=True`` for those the ledger gets too
        when it accepts that keyword (``handler.audit_log``; the usage recovery reads the flag)."""
        return self._audit_log

    @audit_log.setter
    def audit_log(self, sink: Callable[..., None] | None) -> None:
        self._audit_log = sink
        self._audit_takes_ledger = sink is not None and _accepts_keyword(sink, "ledger")

    def _audit(self, record: UsageRecord, ledger: bool = False) -> None:
        """The audit line. A failing sink must not fail the request or skip the ledger write, and the
        record must still reach the log: in full, at CRITICAL, where an operator can recover it."""
        if self._audit_log is None:
            return
        try:
            if self._audit_takes_ledger:
                self._audit_log(record, ledger=ledger)
            else:
                self._audit_log(record)
        except Exception:
            log.critical("UNAUDITED_RECORD %s", json.dumps(record.to_dict(), sort_keys=True), exc_info=True)

    def _emit(self, record: UsageRecord, *, fell_back: bool = False, breaker_opened: int = 0) -> None:
        try:
            self.metrics.emit(record, fell_back=fell_back, breaker_opened=breaker_opened)
        except Exception:  # metrics must never fail a request
            log.exception("metrics emit failed")

    def _error(self, call: _Call, exc: GatewayError) -> dict[str, Any]:
        tracing.set_error_type(exc.code or exc.type)
        if not isinstance(exc, RouteFailed):  # those were recorded with their attempts in _call_models
            record = self._base_record(call, call.key, exc.status)
            record.error_type = exc.code or exc.type
            self._audit(record)  # rejected before any model call: audit line, no ledger write
            self._emit(record)
        headers = {**JSON_HEADERS, "x-request-id": call.request_id, **exc.headers}
        body = json.dumps(anthropic_error(exc, call.request_id)) if call.api == "anthropic" else exc.to_json()
        return {"statusCode": exc.status, "headers": headers, "body": body, "isBase64Encoded": False}


def _accepts_keyword(fn: Callable[..., None], name: str) -> bool:
    """Whether ``fn`` takes the keyword ``name`` (sinks like ``list.append`` take one positional)."""
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


class _Call:
    """One request's view of the incoming proxy event, plus what the steps learn about it."""

    __slots__ = (
        "_event",
        "_headers",
        "_t0",
        "api",
        "key",
        "method",
        "path",
        "prompt_name",
        "prompt_version",
        "request_id",
        "reservation",
        "route",
        "started",
        "t_clock",
    )

    def __init__(self, event: dict[str, Any], now: datetime, t_clock: float) -> None:
        self._t0 = time.perf_counter()
        self.t_clock = t_clock  # the gateway's (injectable) monotonic clock at the start
        self._event = event if isinstance(event, dict) else {}
        self.started = now
        self.method = str(self._event.get("httpMethod") or "GET").upper()
        self.path = str(self._event.get("path") or "/")
        context = self._event.get("requestContext")
        request_id = context.get("requestId") if isinstance(context, dict) else None
        self.request_id = request_id if isinstance(request_id, str) and request_id else str(uuid.uuid4())
        raw_headers = self._event.get("headers") or {}
        self._headers = (
            {str(k).lower(): v for k, v in raw_headers.items()} if isinstance(raw_headers, dict) else {}
        )
        self.key: ApiKeyRecord | None = None
        self.api = "openai"  # the error shape: "anthropic" on /v1/messages
        self.route: str | None = None
        self.prompt_name: str | None = None
        self.prompt_version: str | None = None
        self.reservation: Reservation | None = None  # settled on every exit path

    def header(self, name: str) -> str | None:
        value = self._headers.get(name)
        return value if isinstance(value, str) else None

    def body(self, limit: int) -> str:
        body = self._event.get("body")
        if body is None:
            return ""
        if self._event.get("isBase64Encoded"):
            try:
                raw = base64.b64decode(body)
            except ValueError:
                raise InvalidRequest("The request body is not valid base64.", code="invalid_body") from None
            if len(raw) > limit:
                raise _too_large(len(raw), limit)
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidRequest("The request body is not UTF-8 text.", code="invalid_body") from None
        if not isinstance(body, str):
            raise InvalidRequest("The request body must be text.", code="invalid_body")
        if len(body) * 4 > limit:  # cheap check first; UTF-8 takes at most 4 bytes a character
            size = len(body.encode("utf-8", "surrogatepass"))
            if size > limit:
                raise _too_large(size, limit)
        return body

    def elapsed_ms(self) -> float:
        return round((time.perf_counter() - self._t0) * 1000, 3)


def _too_large(size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is {size} bytes; the limit is {limit} bytes.")


def _response(
    status: int, body: dict[str, Any], request_id: str, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {**JSON_HEADERS, "x-request-id": request_id, **(headers or {})},
        "body": json.dumps(body, separators=(",", ":")),
        "isBase64Encoded": False,
    }


def _model_entry(alias: str) -> dict[str, Any]:
    return {"id": alias, "object": "model", "created": 0, "owned_by": "ai-factory"}


def _add_failed_usage(record: UsageRecord, usage: TokenUsage, cost: float, estimated: int = 0) -> None:
    """Tokens that failed calls were billed for (an embedding batch that broke half-way, a timed-out
    attempt) are metered; ``estimated`` attempts had no usage report and are marked as such."""
    if estimated:
        record.extra["failed_attempts_estimated"] = str(estimated)
    record.input_tokens += usage.input
    record.output_tokens += usage.output
    record.cache_read_tokens += usage.cache_read
    record.cache_write_tokens += usage.cache_write
    record.cost_usd = round(record.cost_usd + cost, 10)


def _add_guardrail_cost(record: UsageRecord, units: dict[str, int], prices: GuardrailPrices) -> None:
    """The guardrail's assessments are billed apart from the model: their text units and cost are
    recorded (``extra.guardrail_units``, ``extra.guardrail_cost_usd``) and included in ``cost_usd``."""
    cost = guardrail_cost(units, prices)
    record.extra["guardrail_units"] = ",".join(f"{policy}={n}" for policy, n in sorted(units.items()))
    record.extra["guardrail_cost_usd"] = f"{cost:.10f}"
    record.cost_usd = round(record.cost_usd + cost, 10)


def _served_headers(outcome: RouteOutcome[Any], record: UsageRecord) -> dict[str, str]:
    return {
        "x-aif-served-by": outcome.target.name,
        "x-aif-served-model-id": outcome.target.model_id,
        "x-aif-attempts": str(outcome.attempts),
        "x-aif-cost-usd": f"{record.cost_usd:.10f}",
    }


def _completion(call: _Call, served: str, result: ChatResult, record: UsageRecord) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": result.text if result.text or not result.tool_calls else None,
    }
    if result.tool_calls:
        message["tool_calls"] = result.tool_calls
    if result.reasoning:
        message["reasoning_content"] = result.reasoning  # where OpenAI-compatible clients read it
    prompt_tokens = record.input_tokens + record.cache_read_tokens + record.cache_write_tokens
    return {
        "id": f"chatcmpl-{call.request_id}",
        "object": "chat.completion",
        "created": int(call.started.timestamp()),
        "model": served,
        "choices": [
            {"index": 0, "message": message, "finish_reason": result.finish_reason, "logprobs": None}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": record.output_tokens,
            "total_tokens": prompt_tokens + record.output_tokens,
            "prompt_tokens_details": {"cached_tokens": record.cache_read_tokens},
            # Anthropic's name for the tokens written to the cache (priced apart; OpenAI has no field).
            "cache_creation_input_tokens": record.cache_write_tokens,
        },
    }


class _ApiFormat(Protocol):
    """How one API shapes a chat answer: the buffered body and the streaming encoder."""

    citations: list[dict[str, Any]] | None  # the passages of a ``retrieval`` request (Chat Completions)

    def body(self, served: str, result: ChatResult, record: UsageRecord) -> dict[str, Any]: ...
    def encoder(self, served: str) -> StreamEncoder: ...


def _usage(record: UsageRecord) -> TokenUsage:
    return TokenUsage(
        record.input_tokens, record.output_tokens, record.cache_read_tokens, record.cache_write_tokens
    )


class _ChatCompletionsFormat:
    def __init__(self, call: _Call) -> None:
        self.call = call
        self.citations: list[dict[str, Any]] | None = None

    def body(self, served: str, result: ChatResult, record: UsageRecord) -> dict[str, Any]:
        body = _completion(self.call, served, result, record)
        if self.citations is not None:
            body["citations"] = self.citations
        return body

    def encoder(self, served: str) -> StreamEncoder:
        completion_id, created = f"chatcmpl-{self.call.request_id}", int(self.call.started.timestamp())
        if self.citations is not None:
            return CitingChunkEncoder(completion_id, created, served, self.citations)
        return ChunkEncoder(completion_id, created, served)


class _MessagesFormat:
    """Anthropic answers name the model the client asked for (the served one is in the headers)."""

    citations: list[dict[str, Any]] | None = None  # retrieval is a Chat Completions extension

    def __init__(self, call: _Call, asked: str) -> None:
        self.id, self.asked = f"msg_{call.request_id}", asked

    def body(self, served: str, result: ChatResult, record: UsageRecord) -> dict[str, Any]:
        return message_body(self.id, self.asked, result, _usage(record))

    def encoder(self, served: str) -> StreamEncoder:
        return MessageStreamEncoder(self.id, self.asked)


class _ResponsesFormat:
    citations: list[dict[str, Any]] | None = None  # retrieval is a Chat Completions extension

    def __init__(self, call: _Call, request: ChatRequest) -> None:
        self.call, self.request = call, request
        self.id = f"resp_{call.request_id}"

    def body(self, served: str, result: ChatResult, record: UsageRecord) -> dict[str, Any]:
        output = output_items(self.call.request_id, result)
        created = int(self.call.started.timestamp())
        return response_body(
            self.id, created, served, self.request, status="completed", output=output,
            usage=_usage(record), finish_reason=result.finish_reason,
        )  # fmt: skip

    def encoder(self, served: str) -> StreamEncoder:
        return ResponseStreamEncoder(self.id, int(self.call.started.timestamp()), served, self.request)


def _encode_vector(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "base64":
        import struct

        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector
