"""SageMaker endpoints as gateway targets: content handlers, guardrail, error mapping, metering and audit.

The sagemaker-runtime and bedrock-runtime clients are real boto3 clients wrapped in botocore's Stubber,
which validates every request and response against the service models.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from conftest import ECHO, make_event

from aif_gateway.app import Gateway
from aif_gateway.config import GatewayConfig, GuardrailRef, ModelTarget, Prices, Route
from aif_gateway.memory_store import MemoryKeyStore, MemoryLedger
from aif_gateway.openai_schema import ChatRequest, EmbeddingsRequest
from aif_gateway.provider_registry import default_providers
from aif_gateway.provider_types import CallContext, ProviderError
from aif_gateway.providers import EchoProvider
from aif_gateway.records import ApiKeyRecord, generate_key
from aif_gateway.sagemaker_provider import SageMakerProvider

CUSTOM = ModelTarget(
    name="ticket-classifier",
    provider="sagemaker",
    model_id="aif-ticket-classifier",
    modality="chat",
    prices=Prices(input=2.0, output=4.0),
    content_handler="openai-chat",
)
TGI = ModelTarget(
    name="tgi-model",
    provider="sagemaker",
    model_id="aif-tgi",
    modality="chat",
    prices=Prices(input=1.0, output=1.0),
    content_handler="tgi",
)
NOW = datetime(2026, 11, 25, 12, 0, 30, tzinfo=UTC)


def _body(payload: Any) -> StreamingBody:
    raw = json.dumps(payload).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


def openai_answer(text: str = "billing", usage: dict[str, int] | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]
    }
    if usage is not None:
        payload["usage"] = usage
    return {"Body": _body(payload), "ContentType": "application/json"}


GUARDRAIL_USAGE = {
    "topicPolicyUnits": 0,
    "contentPolicyUnits": 1,
    "wordPolicyUnits": 0,
    "sensitiveInformationPolicyUnits": 1,
    "sensitiveInformationPolicyFreeUnits": 0,
    "contextualGroundingPolicyUnits": 0,
}


def guardrail_answer(action: str = "NONE", text: str | None = None) -> dict[str, Any]:
    return {
        "usage": GUARDRAIL_USAGE,
        "action": action,
        "outputs": [{"text": text}] if text else [],
        "assessments": [],
    }


@dataclass
class Stubs:
    provider: SageMakerProvider
    runtime: Stubber
    guardrail: Stubber


@pytest.fixture
def stubs() -> Iterator[Stubs]:
    creds = {"region_name": "us-east-1", "aws_access_key_id": "x", "aws_secret_access_key": "x"}
    clients = {
        "sagemaker-runtime": boto3.client("sagemaker-runtime", **creds),  # type: ignore[call-overload]
        "bedrock-runtime": boto3.client("bedrock-runtime", **creds),  # type: ignore[call-overload]
    }
    runtime, guardrail = Stubber(clients["sagemaker-runtime"]), Stubber(clients["bedrock-runtime"])
    runtime.activate()
    guardrail.activate()
    yield Stubs(
        SageMakerProvider(client_factory=lambda service, region: clients[service]), runtime, guardrail
    )
    runtime.assert_no_pending_responses()
    guardrail.assert_no_pending_responses()
    runtime.deactivate()
    guardrail.deactivate()


def _request(**extra: Any) -> ChatRequest:
    fields: dict[str, Any] = {
        "model": "custom",
        "messages": [{"role": "user", "content": "Where is my invoice?"}],
    }
    fields.update(extra)
    return ChatRequest(**fields)


CTX = CallContext("req-1", "support", "triage")


def test_openai_chat_handler_sends_openai_json_and_reads_usage(stubs: Stubs) -> None:
    expected_body = json.dumps(
        {
            "messages": [{"role": "user", "content": "Where is my invoice?"}],
            "temperature": 0.2,
            "max_tokens": 5,
        }
    ).encode()
    stubs.runtime.add_response(
        "invoke_endpoint",
        openai_answer("billing", {"prompt_tokens": 12, "completion_tokens": 1}),
        {
            "EndpointName": "aif-ticket-classifier",
            "Body": expected_body,
            "ContentType": "application/json",
            "Accept": "application/json",
            "InferenceId": "req-1",
        },
    )
    result = stubs.provider.chat(CUSTOM, _request(temperature=0.2, max_tokens=5), CTX)
    assert (result.text, result.finish_reason) == ("billing", "stop")
    assert (result.usage.input, result.usage.output) == (12, 1)


def test_missing_usage_is_estimated_from_words(stubs: Stubs) -> None:
    stubs.runtime.add_response("invoke_endpoint", openai_answer("two words"))
    result = stubs.provider.chat(CUSTOM, _request(), CTX)
    assert (result.usage.input, result.usage.output) == (4, 2)


def test_tgi_handler_flattens_the_chat_and_maps_finish_reasons(stubs: Stubs) -> None:
    answer = [{"generated_text": " Hello", "details": {"finish_reason": "length", "generated_tokens": 3}}]
    stubs.runtime.add_response(
        "invoke_endpoint",
        {"Body": _body(answer)},
        {"EndpointName": "aif-tgi", "Body": ANY, "ContentType": ANY, "Accept": ANY, "InferenceId": ANY},
    )
    request = _request(
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        max_tokens=3,
        temperature=0,
        stop=["\n"],
    )
    result = stubs.provider.chat(TGI, request, CTX)
    assert (result.text, result.finish_reason, result.usage.output) == (" Hello", "length", 3)
    assert result.usage.input == 3  # no prefill details: words of the messages


def test_tgi_request_body() -> None:
    from aif_gateway.sagemaker_provider import _tgi_body

    body = _tgi_body(
        _request(
            messages=[{"role": "system", "content": "S"}, {"role": "user", "content": "U"}],
            max_tokens=9,
            temperature=0,
        )
    )
    assert body == {
        "inputs": "System: S\nUser: U\nAssistant:",
        "parameters": {"details": True, "return_full_text": False, "max_new_tokens": 9},
    }


@pytest.mark.parametrize(
    ("code", "status", "retryable", "client_fault"),
    [
        ("ThrottlingException", 400, True, False),
        ("ServiceUnavailable", 503, True, False),
        ("ModelNotReadyException", 429, True, False),
        ("InternalFailure", 500, True, False),
        ("ModelError", 424, True, False),
        ("ValidationError", 400, False, True),
        ("AccessDeniedException", 400, False, False),
    ],
)
def test_errors_map_like_bedrocks(
    stubs: Stubs, code: str, status: int, retryable: bool, client_fault: bool
) -> None:
    stubs.runtime.add_client_error(
        "invoke_endpoint", service_error_code=code, service_message="nope", http_status_code=status
    )
    with pytest.raises(ProviderError) as info:
        stubs.provider.chat(CUSTOM, _request(), CTX)
    assert (info.value.kind, info.value.retryable, info.value.client_fault) == (code, retryable, client_fault)


def test_unparseable_answer_is_a_retryable_error(stubs: Stubs) -> None:
    stubs.runtime.add_response("invoke_endpoint", {"Body": _body({"unexpected": True})})
    with pytest.raises(ProviderError) as info:
        stubs.provider.chat(CUSTOM, _request(), CTX)
    assert info.value.kind == "InvalidModelResponse" and info.value.retryable


def test_tools_and_embeddings_are_refused_without_a_call(stubs: Stubs) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    with pytest.raises(ProviderError) as info:
        stubs.provider.chat(CUSTOM, _request(tools=tools), CTX)
    assert info.value.client_fault and not info.value.retryable
    with pytest.raises(ProviderError, match="chat routes only"):
        stubs.provider.embed(CUSTOM, EmbeddingsRequest(model="x", inputs=["a"]), CTX)


GUARDED = CallContext("req-2", "support", "triage", GuardrailRef("gr-1", "3"))


def test_guardrail_checks_prompt_and_answer(stubs: Stubs) -> None:
    stubs.guardrail.add_response(
        "apply_guardrail",
        guardrail_answer(),
        {"guardrailIdentifier": "gr-1", "guardrailVersion": "3", "source": "INPUT", "content": ANY},
    )
    stubs.runtime.add_response(
        "invoke_endpoint",
        openai_answer("card 4111 1111 1111 1111", {"prompt_tokens": 4, "completion_tokens": 5}),
    )
    stubs.guardrail.add_response(
        "apply_guardrail",
        guardrail_answer("GUARDRAIL_INTERVENED", "The model's answer was blocked."),
        {
            "guardrailIdentifier": "gr-1",
            "guardrailVersion": "3",
            "source": "OUTPUT",
            "content": [{"text": {"text": "card 4111 1111 1111 1111"}}],
        },
    )
    result = stubs.provider.chat(CUSTOM, _request(), GUARDED)
    assert result.guardrail_intervened and result.finish_reason == "content_filter"
    assert result.text == "The model's answer was blocked."
    assert (result.usage.input, result.usage.output) == (4, 5)  # the model ran: still metered


def test_blocked_prompt_never_reaches_the_endpoint(stubs: Stubs) -> None:
    stubs.guardrail.add_response("apply_guardrail", guardrail_answer("GUARDRAIL_INTERVENED", "Blocked."))
    result = stubs.provider.chat(CUSTOM, _request(), GUARDED)
    assert (result.text, result.guardrail_intervened, result.usage.input) == ("Blocked.", True, 0)


def test_guardrail_outage_fails_closed(stubs: Stubs) -> None:
    stubs.guardrail.add_client_error(
        "apply_guardrail", service_error_code="ThrottlingException", http_status_code=429
    )
    with pytest.raises(ProviderError) as info:
        stubs.provider.chat(CUSTOM, _request(), GUARDED)
    assert info.value.kind == "GuardrailUnavailable" and info.value.retryable


def test_default_providers_include_sagemaker() -> None:
    assert isinstance(default_providers()["sagemaker"], SageMakerProvider)


def _gateway(stubs: Stubs) -> tuple[Gateway, MemoryLedger, list[Any], str]:
    config = GatewayConfig(
        routes={
            "custom": Route("custom", "chat", (CUSTOM, ECHO)),
            "custom-only": Route("custom-only", "chat", (CUSTOM,)),
        }
    )
    keys, ledger, audit = MemoryKeyStore(), MemoryLedger(), cast(list[Any], [])
    plaintext, key_id, key_hash = generate_key()
    keys.put(
        ApiKeyRecord(
            key_id=key_id,
            key_hash=key_hash,
            team="support",
            feature="triage",
            allowed_models=("custom",),
            monthly_budget_usd=1.0,
            rate_limit_rpm=100,
            created_at=NOW - timedelta(days=1),
        )
    )
    gateway = Gateway(
        config,
        keys=keys,
        ledger=ledger,
        providers={"sagemaker": stubs.provider, "echo": EchoProvider()},
        audit_log=audit.append,
        now=lambda: NOW,
    )
    return gateway, ledger, audit, plaintext


def _post(gateway: Gateway, key: str, model: str) -> dict[str, Any]:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "Where is my invoice?"}]})
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    return gateway.handle(make_event("POST", "/v1/chat/completions", body, headers))


def test_gateway_meters_and_audits_a_sagemaker_route(stubs: Stubs) -> None:
    gateway, ledger, _audit, key = _gateway(stubs)
    stubs.runtime.add_response(
        "invoke_endpoint", openai_answer("billing", {"prompt_tokens": 100_000, "completion_tokens": 50_000})
    )
    response = _post(gateway, key, "custom")
    assert response["statusCode"] == 200, response["body"]
    assert json.loads(response["body"])["choices"][0]["message"]["content"] == "billing"
    assert response["headers"]["x-aif-served-by"] == "ticket-classifier"
    (record,) = ledger.records.values()
    assert (record.model_served, record.model_id, record.team, record.feature) == (
        "ticket-classifier",
        "aif-ticket-classifier",
        "support",
        "triage",
    )
    # Catalog prices: 0.1M input tokens x $2 + 0.05M output tokens x $4.
    assert record.cost_usd == pytest.approx(0.2 + 0.2)


def test_gateway_falls_back_when_the_endpoint_is_throttled(stubs: Stubs) -> None:
    gateway, ledger, _audit, key = _gateway(stubs)
    stubs.runtime.add_client_error(
        "invoke_endpoint", service_error_code="ModelNotReadyException", http_status_code=429
    )
    response = _post(gateway, key, "custom")
    assert response["statusCode"] == 200
    assert response["headers"]["x-aif-served-by"] == "echo"
    (record,) = ledger.records.values()
    assert record.attempts == 2


def test_gateway_enforces_the_keys_allowed_models_and_budget(stubs: Stubs) -> None:
    gateway, _ledger, _audit, key = _gateway(stubs)
    assert _post(gateway, key, "custom-only")["statusCode"] in (403, 404)
    # Spend the $1 budget, then the next request is refused before any endpoint call.
    stubs.runtime.add_response(
        "invoke_endpoint", openai_answer("x", {"prompt_tokens": 500_000, "completion_tokens": 10})
    )
    assert _post(gateway, key, "custom")["statusCode"] == 200
    assert _post(gateway, key, "custom")["statusCode"] == 429
