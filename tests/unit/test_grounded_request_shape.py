"""The grounded chat's guardrail requests are valid for Bedrock, checked against botocore's service model.

The gateway marks the retrieved sources ``grounding_source``, the user's words ``query`` and (through
``ApplyGuardrail``) the answer ``guard_content``. The requests the gateway really sends — captured on the
client for ``Converse`` and ``ConverseStream`` through the whole gateway, and ``ApplyGuardrail`` from the
guardrail check — are validated with botocore's own parameter validator, and every value of an enum
shape (which that validator does not check) against the model's enum: a misspelt qualifier fails here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.model import OperationModel
from botocore.stub import Stubber
from botocore.validate import ParamValidator

from aif_gateway.config import GuardrailRef
from aif_gateway.grounding import Grounding
from aif_gateway.guardrail_check import guardrail_block
from aif_gateway.provider_types import CallContext
from aif_gateway.retrieval import BedrockRetriever, RetrievalService, StaticKnowledgeBases
from tests.conftest import Harness, converse_response
from tests.unit.test_rag_grounded_chat import HANDBOOK, expect_retrieve, internal_filter

QUALIFIER_SHAPES = {
    "Converse": "GuardrailConverseContentQualifier",
    "ConverseStream": "GuardrailConverseContentQualifier",
    "ApplyGuardrail": "GuardrailContentQualifier",
}


def enum_violations(value: Any, shape: Any, path: str = "") -> list[str]:
    """Every value of ``value`` that is not in its shape's enum, and every member the model lacks."""
    if getattr(shape, "is_document_type", False):
        return []  # free-form JSON (additionalModelRequestFields)
    if shape.type_name == "structure":
        found: list[str] = []
        for name, item in value.items():
            member = shape.members.get(name)
            if member is None:
                found.append(f"{path}.{name}: not a member of {shape.name}")
            else:
                found += enum_violations(item, member, f"{path}.{name}")
        return found
    if shape.type_name == "list":
        member = shape.member
        return [v for i, item in enumerate(value) for v in enum_violations(item, member, f"{path}[{i}]")]
    if shape.type_name == "map":
        value_shape = shape.value
        return [v for k, item in value.items() for v in enum_violations(item, value_shape, f"{path}.{k}")]
    if shape.type_name == "string" and shape.enum and value not in shape.enum:
        return [f"{path}: {value!r} is not one of {shape.enum} ({shape.name})"]
    return []


def assert_valid(operation: OperationModel, params: dict[str, Any]) -> None:
    shape = operation.input_shape
    assert shape is not None
    report = ParamValidator().validate(params, shape)
    assert not report.has_errors(), report.generate_report()
    assert enum_violations(params, shape) == []


def qualifiers(params: dict[str, Any]) -> list[str]:
    blocks = [b for turn in params.get("messages", []) for b in turn["content"]]
    texts = [b["guardContent"]["text"] for b in blocks if "guardContent" in b]
    texts += [b["text"] for b in params.get("content", []) if "text" in b]
    return [q for text in texts for q in text.get("qualifiers", [])]


@pytest.fixture
def grounded(harness: Harness) -> Iterator[tuple[Harness, Stubber, dict[str, dict[str, Any]]]]:
    """The gateway with a stubbed knowledge base; ``sent[operation]`` is what reached the Bedrock client."""
    agent = boto3.client(
        "bedrock-agent-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    harness.gateway.retrieval = RetrievalService(
        StaticKnowledgeBases({"handbook": HANDBOOK}), BedrockRetriever(client_factory=lambda region: agent)
    )
    sent: dict[str, dict[str, Any]] = {}
    events = harness.gateway.providers["bedrock"].client(None).meta.events
    for operation in ("Converse", "ConverseStream"):
        events.register(
            f"provide-client-params.bedrock-runtime.{operation}",
            lambda params, _op=operation, **_: sent.__setitem__(_op, dict(params)),
        )
    with Stubber(agent) as stubber:
        yield harness, stubber, sent


def ask(h: Harness, stream: bool) -> tuple[int, Any]:
    key = h.add_key(clearance="internal")
    body = {
        "model": "chat-solo",
        "messages": [{"role": "user", "content": "How are refunds paid?"}],
        "retrieval": {"knowledge_base": "handbook", "grounding_check": True},
        "stream": stream,
    }
    status, _, answer = h.call("POST", "/v1/chat/completions", body, key)
    return status, answer


@pytest.mark.parametrize("stream", [False, True], ids=["Converse", "ConverseStream"])
def test_the_grounded_converse_request_is_valid_for_bedrock(
    grounded: tuple[Harness, Stubber, dict[str, dict[str, Any]]], stream: bool
) -> None:
    h, retrieve, sent = grounded
    expect_retrieve(retrieve, "How are refunds paid?", 4, internal_filter())
    operation = "ConverseStream" if stream else "Converse"
    if stream:  # the request is what is checked; the stubbed call then fails as Bedrock could
        h.stubber.add_client_error("converse_stream", "ThrottlingException", http_status_code=429)
    else:
        h.stubber.add_response("converse", converse_response("Within 14 days [1]."), None)
    ask(h, stream)
    h.stubber.assert_no_pending_responses()
    params = sent[operation]
    model = h.gateway.providers["bedrock"].client(None).meta.service_model
    assert_valid(model.operation_model(operation), params)
    assert sorted(qualifiers(params)) == ["grounding_source", "query"]
    assert params["guardrailConfig"]["guardrailIdentifier"] == "gr-123"
    enum = model.shape_for(QUALIFIER_SHAPES[operation]).enum
    assert {"grounding_source", "query", "guard_content"} <= set(enum)


def test_apply_guardrail_with_sources_query_and_answer_is_valid_for_bedrock() -> None:
    client = boto3.client(
        "bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    sent: dict[str, Any] = {}
    client.meta.events.register(
        "provide-client-params.bedrock-runtime.ApplyGuardrail", lambda params, **_: sent.update(params)
    )
    grounding = Grounding("Sources:\n[1] Refunds are paid within 14 days.", "How are refunds paid?", True)
    ctx = CallContext("r", "t", "f", GuardrailRef("gr-1", "2"), grounding=grounding)
    usage = {
        "topicPolicyUnits": 0,
        "contentPolicyUnits": 1,
        "wordPolicyUnits": 0,
        "sensitiveInformationPolicyUnits": 1,
        "sensitiveInformationPolicyFreeUnits": 0,
        "contextualGroundingPolicyUnits": 1,
    }
    with Stubber(client) as stub:
        stub.add_response(
            "apply_guardrail", {"usage": usage, "action": "NONE", "outputs": [], "assessments": []}
        )
        assert guardrail_block(client, ctx, "OUTPUT", "Within 14 days.") is None
    assert_valid(client.meta.service_model.operation_model("ApplyGuardrail"), sent)
    assert qualifiers(sent) == ["grounding_source", "query", "guard_content"]


def test_a_misspelt_qualifier_is_caught() -> None:
    """The check can fail: botocore's validator alone accepts any string for an enum."""
    model = boto3.client("bedrock-runtime", region_name="us-east-1").meta.service_model
    operation = model.operation_model("Converse")
    block = {"guardContent": {"text": {"text": "Sources: ...", "qualifiers": ["grounding_sources"]}}}
    params = {"modelId": "m", "messages": [{"role": "user", "content": [block]}]}
    shape = operation.input_shape
    assert shape is not None
    assert not ParamValidator().validate(params, shape).has_errors()
    [violation] = enum_violations(params, shape)
    assert "'grounding_sources' is not one of" in violation
