"""POST /v1/retrieve: knowledge-base allow-lists (404/403), validation (400), Bedrock Retrieve through a
Stubber (moto has no bedrock-agent-runtime), metering into the ledger, the SSM registry (moto), and no
5xx on random bodies."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from aif_gateway.app import Gateway
from aif_gateway.records import StoreError
from aif_gateway.retrieval import (
    PARAMETER_PREFIX_ENV,
    BedrockRetriever,
    KnowledgeBaseRecord,
    RetrievalService,
    RetrieveRequest,
    RetrieveResult,
    SsmKnowledgeBases,
    StaticKnowledgeBases,
    access_filter,
    estimate_tokens,
    parse_retrieve_request,
)
from tests.conftest import FakeClock, Harness, make_config

KB_ID = "KB12345678"
HANDBOOK = KnowledgeBaseRecord(
    name="handbook",
    knowledge_base_id=KB_ID,
    allowed=("support/summarizer",),
    embedding_model="titan-embed-v2",
    embedding_input_price=0.02,
    classification="internal",
)
SECRET = KnowledgeBaseRecord(name="secret-docs", knowledge_base_id="KBSECRET01", allowed=("legal/contracts",))
PREFIX = "/ai-factory/Gateway/knowledge-bases/"


def retrieve_response(n: int = 2) -> dict[str, Any]:
    return {
        "retrievalResults": [
            {
                "content": {"text": f"Passage {i} about refunds.", "type": "TEXT"},
                "location": {
                    "type": "S3",
                    "s3Location": {"uri": f"s3://curated/support/handbook/doc{i}.json"},
                },
                "score": 0.9 - i / 10,
                "metadata": {"x-amz-bedrock-kb-source-uri": f"s3://curated/support/handbook/doc{i}.json"},
            }
            for i in range(n)
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
        StaticKnowledgeBases({"handbook": HANDBOOK, "secret-docs": SECRET}),
        BedrockRetriever(client_factory=lambda region: client),
    )
    yield harness, stubber
    stubber.deactivate()


def post(h: Harness, body: Any, key: str, raw: str | None = None) -> tuple[int, dict[str, str], Any]:
    return h.call("POST", "/v1/retrieve", body, key, raw=raw)


def test_allowed_feature_gets_passages_with_sources_and_is_metered(rag: tuple[Harness, Stubber]) -> None:
    h, stubber = rag
    key = h.add_key()
    query = "How do refunds work for annual plans?"
    stubber.add_response(
        "retrieve",
        retrieve_response(2),
        {
            "knowledgeBaseId": KB_ID,
            "retrievalQuery": {"text": query},
            # A key without a recorded clearance reads as restricted: every classification, still filtered.
            "retrievalConfiguration": {
                "vectorSearchConfiguration": {"numberOfResults": 3, "filter": access_filter("restricted")}
            },
        },
    )
    status, headers, body = post(h, {"knowledge_base": "handbook", "query": query, "top_k": 3}, key)
    assert status == 200, body
    stubber.assert_no_pending_responses()
    assert body["object"] == "list" and body["knowledge_base"] == "handbook"
    assert [p["text"] for p in body["data"]] == ["Passage 0 about refunds.", "Passage 1 about refunds."]
    assert body["data"][0]["source"] == {"type": "S3", "uri": "s3://curated/support/handbook/doc0.json"}
    assert body["data"][0]["score"] == pytest.approx(0.9)
    tokens = estimate_tokens(query)
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}

    [record] = h.ledger.records.values()
    assert record.operation == "retrieve"
    assert record.route == "kb/handbook"
    assert record.status == 200
    assert (record.team, record.feature) == ("support", "summarizer")
    assert record.model_served == "titan-embed-v2" and record.model_id == KB_ID
    assert record.input_tokens == tokens and record.output_tokens == 0
    assert record.cost_usd == pytest.approx(tokens * 0.02 / 1_000_000)
    assert record.extra["tokens_estimated"] == "true"
    assert headers["x-aif-cost-usd"] == f"{record.cost_usd:.10f}"
    assert h.audit[-1].operation == "retrieve"


def test_reported_token_count_wins_over_the_estimate(rag: tuple[Harness, Stubber]) -> None:
    h, _ = rag
    key = h.add_key()

    class Reporting:
        def retrieve(self, kb: KnowledgeBaseRecord, request: RetrieveRequest) -> RetrieveResult:
            response = {**retrieve_response(1)}
            response["ResponseMetadata"] = {"HTTPHeaders": {"x-amzn-bedrock-input-token-count": "42"}}
            client = type("C", (), {"retrieve": lambda self, **kw: response})()
            return BedrockRetriever(client_factory=lambda region: client).retrieve(kb, request)

    h.gateway.retrieval.retriever = Reporting()
    status, _, body = post(h, {"knowledge_base": "handbook", "query": "refunds"}, key)
    assert status == 200 and body["usage"]["prompt_tokens"] == 42
    [record] = h.ledger.records.values()
    assert record.input_tokens == 42 and "tokens_estimated" not in record.extra


def test_feature_not_on_the_allow_list_is_refused_403(rag: tuple[Harness, Stubber]) -> None:
    h, stubber = rag
    key = h.add_key()
    status, _, body = post(h, {"knowledge_base": "secret-docs", "query": "contract terms"}, key)
    assert status == 403
    assert body["error"]["code"] == "knowledge_base_not_allowed"
    assert body["error"]["param"] == "knowledge_base"
    assert "support/summarizer" in body["error"]["message"]
    assert h.ledger.records == {}  # refused before any model call: no ledger write
    stubber.assert_no_pending_responses()


def test_unknown_knowledge_base_is_404(rag: tuple[Harness, Stubber]) -> None:
    h, _ = rag
    status, _, body = post(h, {"knowledge_base": "nope", "query": "q"}, h.add_key())
    assert status == 404 and body["error"]["code"] == "knowledge_base_not_found"


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"query": "q"}, "knowledge_base", "missing_field"),
        ({"knowledge_base": "handbook"}, "query", "missing_field"),
        ({"knowledge_base": "handbook", "query": "   "}, "query", None),
        ({"knowledge_base": "handbook", "query": "q", "top_k": 0}, "top_k", None),
        ({"knowledge_base": "handbook", "query": "q", "top_k": 101}, "top_k", None),
        ({"knowledge_base": "handbook", "query": "q", "top_k": True}, "top_k", None),
        ({"knowledge_base": "handbook", "query": "q", "top_k": 2.5}, "top_k", None),
        ({"knowledge_base": "Hand Book", "query": "q"}, "knowledge_base", None),
        ({"knowledge_base": "handbook", "query": "q", "filter": {}}, "filter", "unknown_field"),
        ({"knowledge_base": "handbook", "query": "x" * 8001}, "query", None),
        ([1, 2], None, None),
    ],
)
def test_bad_bodies_are_400_naming_the_field(
    rag: tuple[Harness, Stubber], body: Any, param: str | None, code: str | None
) -> None:
    h, _ = rag
    status, _, answer = post(h, body, h.add_key())
    assert status == 400, answer
    assert answer["error"]["param"] == param
    if code is not None:
        assert answer["error"]["code"] == code


def test_body_that_is_not_json_is_400(rag: tuple[Harness, Stubber]) -> None:
    h, _ = rag
    status, _, answer = post(h, None, h.add_key(), raw="{not json")
    assert status == 400 and answer["error"]["type"] == "invalid_request_error"


def test_missing_key_is_401_and_wrong_method_405(rag: tuple[Harness, Stubber]) -> None:
    h, _ = rag
    assert post(h, {"knowledge_base": "handbook", "query": "q"}, None)[0] == 401  # type: ignore[arg-type]
    assert h.call("GET", "/v1/retrieve", key=h.add_key())[0] == 405


def test_bedrock_validation_error_is_400_and_throttling_503(rag: tuple[Harness, Stubber]) -> None:
    h, stubber = rag
    key = h.add_key()
    stubber.add_client_error("retrieve", "ValidationException", "query too long for the model")
    status, _, body = post(h, {"knowledge_base": "handbook", "query": "q"}, key)
    assert status == 400 and body["error"]["param"] == "query"
    stubber.add_client_error("retrieve", "ThrottlingException", "slow down", http_status_code=429)
    status, headers, body = post(h, {"knowledge_base": "handbook", "query": "q"}, key)
    assert status == 503 and headers["Retry-After"] == "5"
    assert body["error"]["code"] == "retrieve_failed"
    assert h.ledger.records == {}


def test_budget_is_checked_before_retrieving(rag: tuple[Harness, Stubber]) -> None:
    h, stubber = rag
    key = h.add_key(monthly_budget_usd=0.001)
    h.ledger._month[("support", "summarizer", h.now.strftime("%Y-%m"))] = 5.0  # already over
    status, _, body = post(h, {"knowledge_base": "handbook", "query": "q"}, key)
    assert status == 429 and body["error"]["code"] == "budget_exhausted"
    stubber.assert_no_pending_responses()  # Bedrock never called


# -- the SSM registry ----------------------------------------------------------------------------------


def registration(record: KnowledgeBaseRecord) -> str:
    return json.dumps(
        {
            "schema": 1,
            "name": record.name,
            "knowledge_base_id": record.knowledge_base_id,
            "allowed": list(record.allowed),
            "embedding_model": record.embedding_model,
            "embedding_input_price": record.embedding_input_price,
            "region": None,
            "classification": record.classification,
        }
    )


@pytest.fixture
def ssm() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("ssm", region_name="us-east-1")
        client.put_parameter(Name=PREFIX + "handbook", Value=registration(HANDBOOK), Type="String")
        yield client


def test_ssm_registry_reads_caches_and_forgets_unknown_names(ssm: Any) -> None:
    clock = FakeClock()
    registry = SsmKnowledgeBases(PREFIX, client_factory=lambda: ssm, clock=clock)
    assert registry.get("handbook") == HANDBOOK
    assert registry.get("missing") is None
    # Cached: a change is seen only after the TTL.
    changed = KnowledgeBaseRecord(**{**HANDBOOK.__dict__, "allowed": ("support/other",)})
    ssm.put_parameter(Name=PREFIX + "handbook", Value=registration(changed), Type="String", Overwrite=True)
    assert registry.get("handbook") == HANDBOOK
    clock.advance(61)
    assert registry.get("handbook") == changed


def test_ssm_access_denied_reads_as_not_registered_and_other_errors_as_store_errors() -> None:
    client = boto3.client("ssm", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        registry = SsmKnowledgeBases(PREFIX, client_factory=lambda: client)
        stubber.add_client_error("get_parameter", "AccessDeniedException", "not granted")
        assert registry.get("unregistered") is None
        stubber.add_client_error("get_parameter", "InternalServerError", "boom", http_status_code=500)
        with pytest.raises(StoreError):
            registry.get("other")
        stubber.add_response(
            "get_parameter",
            {"Parameter": {"Name": PREFIX + "broken", "Value": "{not json", "Type": "String"}},
        )
        with pytest.raises(StoreError):
            registry.get("broken")


def test_gateway_from_env_uses_the_ssm_registry(ssm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PARAMETER_PREFIX_ENV, PREFIX)
    service = RetrievalService.from_env()
    assert isinstance(service.directory, SsmKnowledgeBases)
    assert service.directory.get("handbook") == HANDBOOK
    monkeypatch.delenv(PARAMETER_PREFIX_ENV)
    assert isinstance(RetrievalService.from_env().directory, StaticKnowledgeBases)


def test_unreadable_registry_is_503(rag: tuple[Harness, Stubber]) -> None:
    h, _ = rag

    class Broken:
        def get(self, name: str) -> KnowledgeBaseRecord | None:
            raise StoreError("ssm down")

    h.gateway.retrieval.directory = Broken()
    status, headers, body = post(h, {"knowledge_base": "handbook", "query": "q"}, h.add_key())
    assert status == 503 and body["error"]["code"] == "store_unavailable" and headers["Retry-After"]


# -- robustness ----------------------------------------------------------------------------------------


class FixedRetriever:
    def retrieve(self, kb: KnowledgeBaseRecord, request: RetrieveRequest) -> RetrieveResult:
        return RetrieveResult(
            [{"text": "t", "score": 1.0, "source": {}}], estimate_tokens(request.query), True
        )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "knowledge_base": st.sampled_from(["handbook", "secret-docs", "nope", "", "A"]) | json_values,
            "query": st.text(max_size=50) | json_values,
            "top_k": st.integers(-5, 200) | json_values,
        },
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies)
def test_random_bodies_never_give_5xx(harness: Harness, body: Any) -> None:
    gateway: Gateway = harness.gateway
    gateway.retrieval = RetrievalService(
        StaticKnowledgeBases({"handbook": HANDBOOK, "secret-docs": SECRET}), FixedRetriever()
    )
    key = harness.__dict__.setdefault("_key", harness.add_key())
    status, _, answer = harness.call("POST", "/v1/retrieve", body, key)
    assert status < 500, answer
    assert status in (200, 400, 403, 404), answer


@settings(max_examples=100, deadline=None)
@given(raw=st.text(max_size=60))
def test_parser_only_raises_invalid_request(raw: str) -> None:
    from aif_gateway.errors import InvalidRequest

    with contextlib.suppress(ValueError, InvalidRequest):
        parse_retrieve_request(json.loads(raw))


def test_make_config_has_no_knowledge_bases_by_default() -> None:
    # A gateway built without retrieval and without the env var knows no knowledge bases (local mode).
    from aif_gateway.memory_store import MemoryKeyStore, MemoryLedger

    gateway = Gateway(make_config(), MemoryKeyStore(), MemoryLedger())
    assert gateway.retrieval.directory.get("handbook") is None
