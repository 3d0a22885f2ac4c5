"""The requestMetadata the gateway sends to Bedrock: team, feature, request id and the gateway's own
identity (its ``edge_namespace``), which the online sampler needs to tell two gateways' traffic apart in
the shared invocation log (issue #18). Requests are checked by botocore's Stubber against the real
bedrock-runtime API model, and the values against the model's pattern (the Stubber checks lengths and
types, not patterns)."""

from __future__ import annotations

from typing import Any

import boto3
import botocore.session
import pytest
from botocore.stub import ANY, Stubber
from conftest import HAIKU, converse_response

from aif_gateway import contract
from aif_gateway.openai_schema import ChatRequest
from aif_gateway.provider_registry import default_providers
from aif_gateway.provider_types import CallContext
from aif_gateway.providers import BedrockProvider

NAMESPACE = contract.edge_namespace("Prod-Gateway/Prod/Gateway/Gateway")
CTX = CallContext("req-0001", "support", "summarizer")
REQUEST = ChatRequest(model="chat-fast", messages=[{"role": "user", "content": "Hello"}])


def _metadata_shape(operation: str) -> Any:
    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    return model.operation_model(operation).input_shape.members["requestMetadata"]


def assert_valid_for_bedrock(metadata: dict[str, str], operation: str) -> None:
    """Bedrock's limits on requestMetadata, read from botocore's model of ``operation``."""
    import re

    shape = _metadata_shape(operation)
    assert shape.metadata["min"] <= len(metadata) <= shape.metadata["max"]
    for key, value in metadata.items():
        assert shape.key.metadata["min"] <= len(key) <= shape.key.metadata["max"], key
        assert re.fullmatch(shape.key.metadata["pattern"], key), key
        assert shape.value.metadata["min"] <= len(value) <= shape.value.metadata["max"], value
        assert re.fullmatch(shape.value.metadata["pattern"], value), value


def stubbed(operation: str, response: dict[str, Any], expected: dict[str, Any]) -> tuple[Any, Stubber]:
    client = boto3.client(
        "bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(client)
    stubber.add_response(operation, response, expected)
    stubber.activate()
    return client, stubber


EXPECTED = {
    "modelId": HAIKU.model_id,
    "messages": ANY,
    "requestMetadata": {
        "aif_team": "support",
        "aif_feature": "summarizer",
        "aif_request_id": "req-0001",
        "aif_gateway": NAMESPACE,
    },
}


@pytest.mark.parametrize(
    ("operation", "response"),
    [("Converse", converse_response()), ("ConverseStream", {"stream": {}})],
)
def test_converse_and_converse_stream_name_the_gateway(operation: str, response: dict[str, Any]) -> None:
    method = "converse" if operation == "Converse" else "converse_stream"
    client, stubber = stubbed(method, response, EXPECTED)
    sent: dict[str, Any] = {}
    client.meta.events.register(
        f"provide-client-params.bedrock-runtime.{operation}", lambda params, **_: sent.update(params)
    )
    provider = BedrockProvider(client_factory=lambda region: client, gateway_namespace=NAMESPACE)
    if operation == "Converse":
        assert provider.chat(HAIKU, REQUEST, CTX).text == "Hi!"
    else:
        provider.chat_stream(HAIKU, REQUEST, CTX)
    stubber.assert_no_pending_responses()
    assert_valid_for_bedrock(sent["requestMetadata"], operation)


def test_the_gateway_namespace_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """``LlmGateway`` sets ``AIF_EDGE_NAMESPACE`` on the gateway function; the default providers read it."""
    monkeypatch.setenv(contract.EDGE_NAMESPACE_ENV, NAMESPACE)
    provider = default_providers()["bedrock"]
    assert isinstance(provider, BedrockProvider) and provider.gateway_namespace == NAMESPACE


def test_without_a_namespace_the_call_is_made_without_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ai-factory serve`` and a gateway from before the variable: Bedrock calls still work; their
    records are no feature's traffic for the online sampler."""
    monkeypatch.delenv(contract.EDGE_NAMESPACE_ENV, raising=False)
    expected = {
        **EXPECTED,
        "requestMetadata": {k: v for k, v in EXPECTED["requestMetadata"].items() if k != "aif_gateway"},
    }
    client, stubber = stubbed("converse", converse_response(), expected)
    provider = BedrockProvider(client_factory=lambda region: client)
    assert provider.gateway_namespace is None
    assert provider.chat(HAIKU, REQUEST, CTX).text == "Hi!"
    stubber.assert_no_pending_responses()
    monkeypatch.setenv(contract.EDGE_NAMESPACE_ENV, "")
    assert BedrockProvider(client_factory=lambda region: client).gateway_namespace is None


@pytest.mark.parametrize("value", ["prod gateway!", "x" * 257, 'a"b'])
def test_a_namespace_bedrock_would_refuse_fails_at_start(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """Bedrock would answer every call with a ValidationException: refused when the provider is made,
    naming the variable, rather than on each request."""
    monkeypatch.setenv(contract.EDGE_NAMESPACE_ENV, value)
    with pytest.raises(ValueError, match=rf"{contract.EDGE_NAMESPACE_ENV}: .*requestMetadata"):
        BedrockProvider()


def test_the_contracts_pattern_is_bedrocks() -> None:
    """``contract.REQUEST_METADATA_RE`` and the pair limit agree with botocore's model, character by
    character (the model's ``,-.`` is a range: comma, hyphen, full stop)."""
    import re

    shape = _metadata_shape("Converse")
    assert shape.metadata["max"] == contract.REQUEST_METADATA_MAX_PAIRS
    model = re.compile(shape.value.metadata["pattern"])
    for code in range(0x2FF):
        char = chr(code)
        assert bool(contract.REQUEST_METADATA_RE.fullmatch(char)) == bool(model.fullmatch(char)), repr(char)
    assert not contract.REQUEST_METADATA_RE.fullmatch("x" * 257)
    assert contract.REQUEST_METADATA_RE.fullmatch(NAMESPACE)
