"""Document-level access and retrieval inside a chat request.

Retrieve carries the clearance filter (Stubber for ``bedrock-agent-runtime``, the filter asserted); a key
below the knowledge base's classification is refused before Bedrock; a chat completion with
``retrieval`` grounds the answer in the passages, returns them as citations (buffered and on the
stream's first chunk), writes a retrieve record and a chat record, and on Converse marks the sources
``grounding_source`` and the question ``query`` for the guardrail's contextual grounding check.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from aif_gateway.grounding import INSTRUCTION, cited_indexes, parse_chat_retrieval
from aif_gateway.offline_retriever import matches
from aif_gateway.retrieval import (
    BedrockRetriever,
    KnowledgeBaseRecord,
    RetrievalService,
    StaticKnowledgeBases,
    access_filter,
)
from tests.conftest import Harness, converse_response

KB_ID = "KBHANDBOOK1"
HANDBOOK = KnowledgeBaseRecord(
    name="handbook",
    knowledge_base_id=KB_ID,
    allowed=("support/summarizer",),
    embedding_model="titan-embed-v2",
    embedding_input_price=0.02,
    classification="internal",
)
PASSAGES = {
    "retrievalResults": [
        {
            "content": {"text": "Refunds are paid within 14 days of the request.", "type": "TEXT"},
            "location": {
                "type": "S3",
                "s3Location": {"uri": "s3://curated/documents/support/handbook/a.txt"},
            },
            "score": 0.83,
            "metadata": {"aif_classification": "internal", "aif_classification_rank": 1.0},
        },
        {
            "content": {"text": "Annual plans are refunded pro rata.", "type": "TEXT"},
            "location": {
                "type": "S3",
                "s3Location": {"uri": "s3://curated/documents/support/handbook/b.txt"},
            },
            "score": 0.61,
            "metadata": {"aif_classification": "public", "aif_classification_rank": 0.0},
        },
    ]
}


def internal_filter() -> dict[str, Any]:
    return {
        "andAll": [
            {"lessThanOrEquals": {"key": "aif_classification_rank", "value": 1}},
            {"in": {"key": "aif_classification", "value": ["public", "internal"]}},
        ]
    }


@pytest.fixture
def rag(harness: Harness) -> Iterator[tuple[Harness, Stubber]]:
    client = boto3.client(
        "bedrock-agent-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(client)
    stubber.activate()
    harness.gateway.retrieval = RetrievalService(
        StaticKnowledgeBases({"handbook": HANDBOOK}), BedrockRetriever(client_factory=lambda region: client)
    )
    yield harness, stubber
    stubber.deactivate()


def expect_retrieve(stubber: Stubber, query: str, top_k: int, filter_: dict[str, Any]) -> None:
    stubber.add_response(
        "retrieve",
        PASSAGES,
        {
            "knowledgeBaseId": KB_ID,
            "retrievalQuery": {"text": query},
            "retrievalConfiguration": {
                "vectorSearchConfiguration": {"numberOfResults": top_k, "filter": filter_}
            },
        },
    )


# -- document-level access -----------------------------------------------------------------------------


def test_retrieve_is_filtered_by_the_keys_clearance(rag: tuple[Harness, Stubber]) -> None:
    h, stubber = rag
    key = h.add_key(clearance="internal")
    expect_retrieve(stubber, "refunds?", 3, internal_filter())
    status, _, body = h.call(
        "POST", "/v1/retrieve", {"knowledge_base": "handbook", "query": "refunds?", "top_k": 3}, key
    )
    assert status == 200, body
    stubber.assert_no_pending_responses()
    assert body["data"][0]["metadata"]["aif_classification"] == "internal"


def test_a_key_without_recorded_clearance_is_filtered_as_restricted(rag: tuple[Harness, Stubber]) -> None:
    h, stubber = rag
    key = h.add_key()
    everything = access_filter("restricted")
    assert everything["andAll"][0]["lessThanOrEquals"]["value"] == 3
    expect_retrieve(stubber, "refunds?", 5, everything)
    status, _, body = h.call("POST", "/v1/retrieve", {"knowledge_base": "handbook", "query": "refunds?"}, key)
    assert status == 200, body
    stubber.assert_no_pending_responses()


def test_a_key_below_the_knowledge_bases_classification_is_refused_before_bedrock(
    rag: tuple[Harness, Stubber],
) -> None:
    h, stubber = rag
    key = h.add_key(clearance="public")
    status, _, body = h.call("POST", "/v1/retrieve", {"knowledge_base": "handbook", "query": "refunds?"}, key)
    assert status == 403
    assert body["error"]["code"] == "classification_not_allowed"
    assert body["error"]["param"] == "knowledge_base"
    assert "'public'" in body["error"]["message"] and "'internal'" in body["error"]["message"]
    stubber.assert_no_pending_responses()  # nothing was asked of Bedrock
    assert not h.ledger.records and h.audit[-1].error_type == "classification_not_allowed"


@pytest.mark.parametrize(
    ("clearance", "metadata", "expected"),
    [
        ("internal", {"aif_classification": "internal", "aif_classification_rank": 1}, True),
        ("internal", {"aif_classification": "public", "aif_classification_rank": 0}, True),
        ("internal", {"aif_classification": "confidential", "aif_classification_rank": 2}, False),
        ("internal", {"aif_classification": "public", "aif_classification_rank": 3}, False),  # both must hold
        ("internal", {}, False),  # a document without attributes is never returned
        ("restricted", {"aif_classification": "restricted", "aif_classification_rank": 3}, True),
        ("public", {"aif_classification": "internal", "aif_classification_rank": 1}, False),
    ],
)
def test_the_filter_admits_exactly_what_the_clearance_covers(
    clearance: str, metadata: dict[str, Any], expected: bool
) -> None:
    assert matches(access_filter(clearance), metadata) is expected


# -- retrieval inside a chat request -------------------------------------------------------------------


def chat(h: Harness, key: str, **fields: Any) -> tuple[int, dict[str, str], Any]:
    body = {"model": "echo", "messages": [{"role": "user", "content": "How are refunds paid?"}], **fields}
    return h.call("POST", "/v1/chat/completions", body, key)


def test_chat_with_retrieval_grounds_the_answer_and_returns_citations(rag: tuple[Harness, Stubber]) -> None:
    h, stubber = rag
    key = h.add_key(clearance="internal")
    expect_retrieve(stubber, "How are refunds paid?", 2, internal_filter())
    status, headers, body = chat(h, key, retrieval={"knowledge_base": "handbook", "top_k": 2})
    assert status == 200, body
    stubber.assert_no_pending_responses()
    answer = body["choices"][0]["message"]["content"]
    # The echo model answers the newest user turn: the numbered sources, then the question.
    assert answer.startswith("echo: Sources:\n[1] Refunds are paid within 14 days of the request.")
    assert "[2] Annual plans are refunded pro rata." in answer and "How are refunds paid?" in answer
    assert [c["index"] for c in body["citations"]] == [1, 2]
    assert body["citations"][0]["source"]["uri"] == "s3://curated/documents/support/handbook/a.txt"
    assert body["citations"][1]["text"] == "Annual plans are refunded pro rata."
    assert cited_indexes(answer, 2) == [1, 2]

    request_id = headers["x-request-id"]
    records = {r.request_id: r for r in h.ledger.records.values()}
    assert set(records) == {request_id, f"{request_id}-retrieval"}
    retrieval, answered = records[f"{request_id}-retrieval"], records[request_id]
    assert (retrieval.operation, retrieval.route, retrieval.model_id) == ("retrieve", "kb/handbook", KB_ID)
    assert retrieval.extra["chat_request_id"] == request_id and retrieval.cost_usd > 0
    assert (answered.operation, answered.route, answered.model_served) == ("chat", "echo", "echo")
    assert [r.operation for r in h.audit] == ["retrieve", "chat"]


def test_the_model_gets_the_instruction_and_the_sources_before_the_question(
    rag: tuple[Harness, Stubber],
) -> None:
    h, stubber = rag
    key = h.add_key(clearance="internal")
    expect_retrieve(stubber, "refund timing", 4, internal_filter())
    h.stubber.add_response(
        "converse",
        converse_response("Within 14 days [1]."),
        {
            "modelId": ANY,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"text": ANY},
                        {"text": "How are refunds paid?"},
                    ],
                }
            ],
            "system": [{"text": INSTRUCTION}],
            "guardrailConfig": ANY,
            "requestMetadata": ANY,
        },
    )
    status, _, body = chat(
        h, key, model="chat-solo", retrieval={"knowledge_base": "handbook", "query": "refund timing"}
    )
    assert status == 200, body
    h.stubber.assert_no_pending_responses()
    assert body["choices"][0]["message"]["content"] == "Within 14 days [1]."


def test_grounding_check_qualifies_sources_and_query_for_the_guardrail(rag: tuple[Harness, Stubber]) -> None:
    h, stubber = rag
    key = h.add_key(clearance="internal")
    expect_retrieve(stubber, "How are refunds paid?", 4, internal_filter())
    sent: dict[str, Any] = {}

    def capture(params: dict[str, Any], **_: Any) -> None:
        sent.update(params)

    h.gateway.providers["bedrock"].client(None).meta.events.register(
        "provide-client-params.*.Converse", capture
    )
    h.stubber.add_response("converse", converse_response("Blocked.", stop="guardrail_intervened"), None)
    status, _, body = chat(
        h, key, model="chat-solo", retrieval={"knowledge_base": "handbook", "grounding_check": True}
    )
    assert status == 200, body
    [turn] = sent["messages"]
    sources, question = turn["content"]
    assert sources["guardContent"]["text"]["qualifiers"] == ["grounding_source"]
    assert sources["guardContent"]["text"]["text"].startswith("Sources:\n[1] Refunds are paid")
    assert question == {"guardContent": {"text": {"text": "How are refunds paid?", "qualifiers": ["query"]}}}
    assert sent["guardrailConfig"]["guardrailIdentifier"] == "gr-123"
    assert body["choices"][0]["finish_reason"] == "content_filter"
    chat_record = next(r for r in h.ledger.records.values() if r.operation == "chat")
    assert chat_record.guardrail_action == "INTERVENED"


def test_streamed_answer_carries_the_citations_on_its_first_chunk(rag: tuple[Harness, Stubber]) -> None:
    h, stubber = rag
    key = h.add_key(clearance="internal")
    expect_retrieve(stubber, "How are refunds paid?", 4, internal_filter())
    status, _, text = chat(h, key, stream=True, retrieval={"knowledge_base": "handbook"})
    assert status == 200
    chunks = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [c["index"] for c in chunks[0]["citations"]] == [1, 2]
    assert all("citations" not in c for c in chunks[1:])
    streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert "[1] Refunds are paid within 14 days" in streamed
    assert {r.operation for r in h.ledger.records.values()} == {"retrieve", "chat"}


@pytest.mark.parametrize(
    ("retrieval", "param", "status", "code"),
    [
        ("handbook", "retrieval", 400, None),
        ({}, "retrieval.knowledge_base", 400, "missing_field"),
        ({"knowledge_base": "Hand Book"}, "retrieval.knowledge_base", 400, None),
        ({"knowledge_base": "handbook", "top_k": 0}, "retrieval.top_k", 400, None),
        ({"knowledge_base": "handbook", "top_k": True}, "retrieval.top_k", 400, None),
        ({"knowledge_base": "handbook", "query": "  "}, "retrieval.query", 400, None),
        ({"knowledge_base": "handbook", "grounding_check": "yes"}, "retrieval.grounding_check", 400, None),
        ({"knowledge_base": "handbook", "filter": {}}, "retrieval.filter", 400, "unknown_field"),
        ({"knowledge_base": "nope"}, "retrieval.knowledge_base", 404, "knowledge_base_not_found"),
    ],
)
def test_bad_retrieval_fields_name_the_field(
    rag: tuple[Harness, Stubber], retrieval: Any, param: str, status: int, code: str | None
) -> None:
    h, stubber = rag
    key = h.add_key(clearance="internal")
    got, _, body = chat(h, key, retrieval=retrieval)
    assert got == status, body
    assert body["error"]["param"] == param
    if code:
        assert body["error"]["code"] == code
    stubber.assert_no_pending_responses()
    assert not h.ledger.records


def test_chat_retrieval_below_the_classification_is_403_and_no_model_is_called(
    rag: tuple[Harness, Stubber],
) -> None:
    h, _ = rag
    key = h.add_key(clearance="public")
    status, _, body = chat(h, key, retrieval={"knowledge_base": "handbook"})
    assert status == 403 and body["error"]["code"] == "classification_not_allowed"
    assert body["error"]["param"] == "retrieval.knowledge_base"
    assert not h.ledger.records


def test_grounding_check_without_a_guardrail_is_400(rag: tuple[Harness, Stubber]) -> None:
    h, _ = rag
    from dataclasses import replace

    h.gateway.config = replace(h.gateway.config, guardrail=None)
    key = h.add_key(clearance="internal")
    status, _, body = chat(h, key, retrieval={"knowledge_base": "handbook", "grounding_check": True})
    assert status == 400 and body["error"]["param"] == "retrieval.grounding_check"


def test_retrieval_is_a_chat_completions_extension_only(rag: tuple[Harness, Stubber]) -> None:
    h, _ = rag
    key = h.add_key(clearance="internal")
    status, _, body = h.call(
        "POST",
        "/v1/responses",
        {"model": "echo", "input": "refunds?", "retrieval": {"knowledge_base": "handbook"}},
        key,
    )
    assert status == 400 and body["error"]["param"] == "retrieval"


def test_parser_and_citation_markers() -> None:
    parsed = parse_chat_retrieval({"knowledge_base": "kb", "top_k": 2, "query": "q", "grounding_check": True})
    assert parsed is not None and (parsed.top_k, parsed.query, parsed.grounding_check) == (2, "q", True)
    assert parse_chat_retrieval(None) is None
    assert cited_indexes("See [2], then [1] and [2] again; [9] is no source.", 3) == [2, 1]


def test_bedrock_rejecting_the_query_is_400_on_retrieval_query_and_a_throttle_503(
    rag: tuple[Harness, Stubber],
) -> None:
    h, stubber = rag
    key = h.add_key(clearance="internal")
    stubber.add_client_error("retrieve", "ValidationException", "query too long", 400)
    status, _, body = chat(h, key, retrieval={"knowledge_base": "handbook"})
    assert status == 400 and body["error"]["param"] == "retrieval.query"
    stubber.add_client_error("retrieve", "ThrottlingException", "slow down", 429)
    status, headers, body = chat(h, key, retrieval={"knowledge_base": "handbook"})
    assert status == 503 and body["error"]["code"] == "retrieve_failed" and headers["Retry-After"] == "5"
    assert not h.ledger.records  # neither the retrieval nor the model call happened


def test_apply_guardrail_gets_sources_and_query_with_the_answer_for_other_providers() -> None:
    """Models the guardrail checks through ApplyGuardrail (SageMaker, external providers) get the same
    contextual grounding check: the answer (guard_content) with its sources and question."""
    from aif_gateway.config import GuardrailRef
    from aif_gateway.grounding import Grounding
    from aif_gateway.guardrail_check import guardrail_block
    from aif_gateway.provider_types import CallContext

    client = boto3.client(
        "bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
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
            "apply_guardrail",
            {
                "usage": usage,
                "action": "GUARDRAIL_INTERVENED",
                "outputs": [{"text": "Not grounded."}],
                "assessments": [],
            },
            {
                "guardrailIdentifier": "gr-1",
                "guardrailVersion": "2",
                "source": "OUTPUT",
                "content": [
                    {"text": {"text": grounding.source, "qualifiers": ["grounding_source"]}},
                    {"text": {"text": "How are refunds paid?", "qualifiers": ["query"]}},
                    {"text": {"text": "Within a year.", "qualifiers": ["guard_content"]}},
                ],
            },
        )
        stub.add_response(
            "apply_guardrail",
            {"usage": usage, "action": "NONE", "outputs": [], "assessments": []},
            {
                "guardrailIdentifier": "gr-1",
                "guardrailVersion": "2",
                "source": "INPUT",
                "content": [{"text": {"text": "q"}}],
            },
        )
        assert guardrail_block(client, ctx, "OUTPUT", "Within a year.") == "Not grounded."
        assert guardrail_block(client, ctx, "INPUT", "q") is None  # the prompt is checked as always
        stub.assert_no_pending_responses()
