"""The assistant backend's own decisions: who the user is, which clearance their groups grant, which
knowledge bases that clearance may read, and how gateway refusals reach the page."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aif_assistant.app import AssistantBackend
from aif_assistant.config import AssistantConfig, KnowledgeBase
from aif_assistant.gateway_client import UpstreamError
from aif_assistant.grounding import citations_from_answer, readable
from aif_assistant.identity import User, clearance_for, parse_groups, user_from_event
from aif_gateway.errors import Forbidden, Unauthorized

KBS = (KnowledgeBase("handbook", "internal"), KnowledgeBase("salaries", "confidential"))
GROUPS = {"employees": "internal", "hr": "confidential"}


def event(
    claims: dict[str, Any] | None, path: str = "/api/me", method: str = "GET", body: Any = None
) -> dict:
    return {
        "httpMethod": method,
        "path": path,
        "body": json.dumps(body) if body is not None else None,
        "requestContext": {"authorizer": {"claims": claims} if claims is not None else {}},
    }


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, ()),
        ("hr", ("hr",)),
        ("employees,hr", ("employees", "hr")),
        ("[employees hr]", ("employees", "hr")),  # API Gateway REST authorizer's flattening of a list
        (["hr", "employees"], ("employees", "hr")),
    ],
)
def test_groups_claim_shapes(raw: Any, expected: tuple[str, ...]) -> None:
    assert parse_groups(raw) == expected


def test_the_highest_clearance_of_a_users_groups_wins() -> None:
    assert clearance_for(("employees", "hr"), GROUPS) == "confidential"
    assert clearance_for(("employees", "unmapped"), GROUPS) == "internal"
    assert clearance_for(("unmapped",), GROUPS) is None


def test_federated_groups_count_beside_cognito_groups() -> None:
    user = user_from_event(event({"sub": "u1", "email": "a@example.com", "custom:groups": "[hr]"}), GROUPS)
    assert user.clearance == "confidential" and user.name == "a@example.com"


def test_no_verified_identity_is_401_and_no_mapped_group_is_403() -> None:
    with pytest.raises(Unauthorized, match="Sign in first"):
        user_from_event(event(None), GROUPS)
    with pytest.raises(Forbidden, match=r"groups: contractors; groups with access: employees, hr"):
        user_from_event(event({"sub": "u2", "cognito:groups": "contractors"}), GROUPS)


def test_a_clearance_reads_the_knowledge_bases_at_or_below_it() -> None:
    internal = User("s", "n", ("employees",), "internal")
    assert [k.name for k in readable(internal, KBS)] == ["handbook"]
    restricted = User("s", "n", (), "restricted")
    assert [k.name for k in readable(restricted, KBS)] == ["handbook", "salaries"]
    public = User("s", "n", (), "public")
    assert readable(public, KBS) == ()


class RecordingGateway:
    """Stands in for the HTTP client: records what the backend asks the gateway for."""

    def __init__(self, refuse: UpstreamError | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.refuse = refuse

    def post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((path, body))
        if self.refuse is not None:
            raise self.refuse
        return {"data": [{"text": f"passage from {body['knowledge_base']}", "score": 0.5}]}


def backend(gateway: Any) -> AssistantBackend:
    config = AssistantConfig(
        gateway_url="https://gw/v1", model="chat-smart", knowledge_bases=KBS, clearance_groups=GROUPS
    )
    return AssistantBackend(config, gateway)


def test_an_internal_user_never_queries_a_confidential_knowledge_base() -> None:
    gateway = RecordingGateway(refuse=UpstreamError(429, {"message": "budget", "code": "budget_exhausted"}))
    response = backend(gateway).handle(
        event({"sub": "u", "cognito:groups": "employees"}, "/api/chat", "POST", {"message": "salary?"})
    )
    assert [body["knowledge_base"] for _, body in gateway.calls] == ["handbook"]
    # The gateway's refusal keeps its status and message.
    assert isinstance(response, dict) and response["statusCode"] == 429
    assert json.loads(response["body"])["error"]["code"] == "budget_exhausted"


def test_unknown_paths_and_methods_are_refused_before_identity() -> None:
    handler = backend(RecordingGateway())
    assert handler.handle(event(None, "/api/nope"))["statusCode"] == 404  # type: ignore[index]
    assert handler.handle(event(None, "/api/chat", "GET"))["statusCode"] == 405  # type: ignore[index]


def test_citations_returned_by_the_gateway_replace_the_backends_own() -> None:
    answer = {"citations": [{"index": 1, "text": "From the gateway", "source": {"uri": "s3://b/k/doc.md"}}]}
    [citation] = citations_from_answer(answer, [])
    assert (
        citation.title == "doc.md"
        and citation.uri == "s3://b/k/doc.md"
        and citation.excerpt == "From the gateway"
    )
    assert citations_from_answer({"choices": []}, []) == []


def test_a_passage_classified_above_the_user_is_dropped_whatever_its_knowledge_base() -> None:
    class MixedGateway(RecordingGateway):
        def post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
            self.calls.append((path, body))
            return {
                "data": [
                    {"text": "public note", "score": 0.9, "metadata": {"aif_classification": "internal"}},
                    {
                        "text": "copied by hand",
                        "score": 0.8,
                        "metadata": {"aif_classification": "restricted"},
                    },
                ]
            }

    from aif_assistant.grounding import retrieve

    user = User("s", "n", ("employees",), "internal")
    citations = retrieve(MixedGateway(), user, KBS, "q", 4)
    assert [c.excerpt for c in citations] == ["public note"]


def test_the_gateways_one_call_citation_shape_maps_to_the_page() -> None:
    chunk = {
        "choices": [{"delta": {"role": "assistant"}}],
        "citations": [
            {
                "index": 2,
                "text": "Laptops ship in five days.",
                "score": 0.7,
                "source": {"type": "S3", "uri": "s3://lake/documents/it/laptops.txt"},
                "document_id": None,
                "metadata": {"aif_classification": "internal"},
            }
        ],
    }
    [citation] = citations_from_answer(chunk, [])
    assert (citation.index, citation.title, citation.classification) == (2, "laptops.txt", "internal")


def test_the_backend_and_publisher_assets_import_without_powertools_boto3_or_the_library() -> None:
    """The backend function has only the Web Adapter layer and the runtime's boto3 (used lazily); the
    publisher's asset holds three files: nothing they import at start may need more."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    script = (
        "import builtins, sys\n"
        "real = builtins.__import__\n"
        "def guard(name, *a, **k):\n"
        "    if name.split('.')[0] in ('aws_lambda_powertools', 'boto3', 'botocore', 'yaml', 'ai_factory'):\n"
        "        raise ImportError('blocked ' + name)\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = guard\n"
        f"sys.path[:0] = [{str(root / 'lambdas/assistant')!r}, {str(root / 'lambdas/gateway')!r}]\n"
        "import aif_assistant.lambda_server, aif_assistant.site_publisher\n"
    )
    result = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_the_publisher_writes_the_page_and_its_sign_in_settings() -> None:
    import boto3
    from moto import mock_aws

    from aif_assistant.site_publisher import on_event

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="site")
        config = {"auth": {"mode": "cognito", "client_id": "abc"}}
        event = {
            "RequestType": "Create",
            "ResourceProperties": {"Bucket": "site", "Config": json.dumps(config)},
        }
        answer = on_event(event)
        assert answer["Data"] == {"Files": 4}
        page = s3.get_object(Bucket="site", Key="index.html")
        assert page["ContentType"] == "text/html; charset=utf-8" and b"app.js" in page["Body"].read()
        assert s3.get_object(Bucket="site", Key="app.js")["ContentType"].startswith("text/javascript")
        stored = s3.get_object(Bucket="site", Key="config.json")
        assert json.loads(stored["Body"].read()) == config and stored["CacheControl"] == "no-store"
        # Deleting the resource leaves the retained bucket as it is.
        on_event(
            {
                "RequestType": "Delete",
                "PhysicalResourceId": answer["PhysicalResourceId"],
                "ResourceProperties": event["ResourceProperties"],
            }
        )
        assert s3.list_objects_v2(Bucket="site")["KeyCount"] == 4
