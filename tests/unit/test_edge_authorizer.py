"""The edge authorizer (``aif_gateway.authorizer``) against a moto keys table with the construct's schema.

Every DynamoDB call the authorizer makes is recorded through botocore's ``before-call`` event, so the
tests can assert that an unknown key costs one ``GetItem`` (never a ``Scan`` or ``Query``) and that the
per-environment cache answers repeated requests without a read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from aif_gateway import authorizer, contract
from aif_gateway.access import KeyAuthenticator
from aif_gateway.dynamo_store import DynamoKeyStore, create_tables, key_to_item
from aif_gateway.records import ApiKeyRecord, generate_key
from tests.conftest import FakeClock

TABLE = "aif-keys"
NS = "3f2a9c1e0b7d"
METHOD_ARN = "arn:aws:execute-api:eu-west-1:123456789012:abc123/prod/POST/v1/chat/completions"
STAGE_WILDCARD = "arn:aws:execute-api:eu-west-1:123456789012:abc123/prod/*/*"


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, list[str]]]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="eu-west-1")
        create_tables(client, keys_table=TABLE)
        calls: list[str] = []
        client.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))
        yield client, calls


def _record(edge_usage_plan: bool = True, **changes: Any) -> tuple[str, ApiKeyRecord]:
    plaintext, key_id, key_hash = generate_key()
    record = ApiKeyRecord(
        key_id=key_id,
        key_hash=key_hash,
        team="support",
        feature="ticket-summarizer",
        allowed_models=("chat-fast",),
        monthly_budget_usd=100.0,
        rate_limit_rpm=120,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        edge_usage_plan=edge_usage_plan,
    )
    return plaintext, replace(record, **changes)


def _event(headers: dict[str, str] | None, resource: str = "/v1/chat/completions") -> dict[str, Any]:
    return {"type": "REQUEST", "methodArn": METHOD_ARN, "resource": resource, "headers": headers}


def _authenticator(client: Any, clock: FakeClock, ttl_s: float = 30.0) -> KeyAuthenticator:
    return KeyAuthenticator(DynamoKeyStore(TABLE, client), ttl_s, clock=clock)


def test_valid_key_is_allowed_on_the_whole_stage_with_its_feature_usage_identifier(
    table: tuple[Any, list[str]],
) -> None:
    client, calls = table
    plaintext, record = _record()
    client.put_item(TableName=TABLE, Item=key_to_item(record))
    calls.clear()

    answer = authorizer.decide(
        _event({"Authorization": f"Bearer {plaintext}"}), _authenticator(client, FakeClock()), NS
    )

    assert answer["principalId"] == record.key_id
    statement = answer["policyDocument"]["Statement"][0]
    assert statement == {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": STAGE_WILDCARD}
    assert answer["usageIdentifierKey"] == contract.usage_identifier(NS, "support", "ticket-summarizer")
    assert answer["context"] == {"team": "support", "feature": "ticket-summarizer", "keyId": record.key_id}
    assert calls == ["GetItem"]


def test_key_without_a_plan_of_its_own_is_metered_in_the_shared_plan(table: tuple[Any, list[str]]) -> None:
    client, _ = table
    plaintext, record = _record(edge_usage_plan=False)
    client.put_item(TableName=TABLE, Item=key_to_item(record))

    answer = authorizer.decide(
        _event({"authorization": f"Bearer {plaintext}"}), _authenticator(client, FakeClock()), NS
    )

    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert answer["usageIdentifierKey"] == contract.shared_usage_identifier(NS)


def test_unknown_key_is_denied_with_one_get_item_and_no_scan(table: tuple[Any, list[str]]) -> None:
    client, calls = table
    calls.clear()
    plaintext, _ = _record()  # never written

    answer = authorizer.decide(
        _event({"Authorization": f"Bearer {plaintext}"}), _authenticator(client, FakeClock()), NS
    )

    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert "usageIdentifierKey" not in answer
    assert answer["context"] == {"reason": "invalid_api_key"}
    assert calls == ["GetItem"]
    assert not {"Scan", "Query"} & set(calls)


def test_revoked_and_expired_keys_are_denied(table: tuple[Any, list[str]]) -> None:
    client, _ = table
    past = datetime.now(UTC) - timedelta(minutes=1)
    revoked_plain, revoked = _record(revoked_at=past)
    expired_plain, expired = _record(expires_at=past)
    for record in (revoked, expired):
        client.put_item(TableName=TABLE, Item=key_to_item(record))
    auth = _authenticator(client, FakeClock())

    for plaintext, reason in ((revoked_plain, "revoked_api_key"), (expired_plain, "expired_api_key")):
        answer = authorizer.decide(_event({"Authorization": f"Bearer {plaintext}"}), auth, NS)
        assert answer["policyDocument"]["Statement"][0]["Effect"] == "Deny"
        assert answer["context"] == {"reason": reason}


def test_cache_answers_repeated_requests_and_a_revocation_is_seen_after_the_ttl(
    table: tuple[Any, list[str]],
) -> None:
    client, calls = table
    plaintext, record = _record()
    client.put_item(TableName=TABLE, Item=key_to_item(record))
    clock = FakeClock()
    auth = _authenticator(client, clock, ttl_s=30.0)
    event = _event({"Authorization": f"Bearer {plaintext}"})
    calls.clear()

    for _ in range(5):
        assert authorizer.decide(event, auth, NS)["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert calls == ["GetItem"]  # one read for five requests

    revoked = replace(record, revoked_at=datetime.now(UTC) - timedelta(seconds=1))
    client.put_item(TableName=TABLE, Item=key_to_item(revoked))
    clock.advance(10)  # within the TTL: still the cached (allowed) record
    assert authorizer.decide(event, auth, NS)["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    clock.advance(60)  # beyond twice the TTL: read again, now denied
    assert authorizer.decide(event, auth, NS)["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert [c for c in calls if c != "PutItem"] == ["GetItem", "GetItem"]


def test_no_credential_is_unauthorized_without_any_read(table: tuple[Any, list[str]]) -> None:
    client, calls = table
    calls.clear()
    auth = _authenticator(client, FakeClock())
    for headers in (None, {}, {"Authorization": ""}, {"x-api-key": "aif-x"}):
        with pytest.raises(PermissionError, match="Unauthorized"):
            authorizer.decide(_event(headers), auth, NS)  # x-api-key counts only on the Messages routes
    assert calls == []


def test_malformed_authorization_is_denied(table: tuple[Any, list[str]]) -> None:
    client, _ = table
    answer = authorizer.decide(
        _event({"Authorization": "Basic abc"}), _authenticator(client, FakeClock()), NS
    )
    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert answer["context"] == {"reason": "invalid_authorization"}


@pytest.mark.parametrize("resource", authorizer.ANTHROPIC_RESOURCES)
def test_messages_routes_accept_x_api_key_first_like_the_gateway(
    table: tuple[Any, list[str]], resource: str
) -> None:
    client, _ = table
    plaintext, record = _record()
    client.put_item(TableName=TABLE, Item=key_to_item(record))
    auth = _authenticator(client, FakeClock())

    answer = authorizer.decide(_event({"X-Api-Key": plaintext}, resource), auth, NS)
    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    # Both headers: x-api-key wins on the Messages routes, as in the gateway (app.Gateway._authenticate).
    both = {"x-api-key": plaintext, "authorization": "Bearer aif-unknown"}
    assert authorizer.decide(_event(both, resource), auth, NS)["principalId"] == record.key_id
    bearer = authorizer.decide(_event({"Authorization": f"Bearer {plaintext}"}, resource), auth, NS)
    assert bearer["principalId"] == record.key_id


def test_lambda_handler_reads_the_table_from_the_environment_and_raises_unauthorized(
    table: tuple[Any, list[str]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    client, _ = table
    plaintext, record = _record()
    client.put_item(TableName=TABLE, Item=key_to_item(record))
    config = tmp_path / "gateway_config.json"
    config.write_text(json.dumps({"routes": {}, "key_cache_ttl_s": 5}))
    monkeypatch.setenv(contract.KEYS_TABLE_ENV, TABLE)
    monkeypatch.setenv(contract.CONFIG_PATH_ENV, str(config))
    monkeypatch.setenv(contract.EDGE_NAMESPACE_ENV, NS)
    monkeypatch.setattr(authorizer, "_authenticator", None)

    answer = authorizer.handler(_event({"Authorization": f"Bearer {plaintext}"}), None)
    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorizer.handler(_event({}), None)


def test_usage_identifier_is_stable_distinct_and_within_api_gateway_bounds() -> None:
    ids = {
        contract.usage_identifier(ns, t, f)
        for ns in (NS, "another-gw")
        for t in ("a", "support")
        for f in ("b", "ticket-summarizer")
    }
    ids |= {contract.shared_usage_identifier(NS), contract.shared_usage_identifier("another-gw")}
    assert len(ids) == 10  # per gateway, per feature: API key values are unique per account and region
    for value in ids:
        assert 20 <= len(value) <= 128 and value.replace("-", "").isalnum()
    assert contract.usage_identifier(NS, "a", "b") == contract.usage_identifier(NS, "a", "b")
    assert contract.usage_identifier(NS, "a-b", "c") != contract.usage_identifier(NS, "a", "b-c")
