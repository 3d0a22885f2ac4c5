"""The feature-key custom resource handler against moto's DynamoDB and Secrets Manager."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from feature_key_provisioner.handler import KeyProvisioner, ProvisioningError, derive_key_id
from moto import mock_aws

from aif_gateway.dynamo_store import DynamoKeyStore, create_tables
from aif_gateway.records import hash_key

TABLE = "keys"
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class Env:
    def __init__(self) -> None:
        self.ddb = boto3.client("dynamodb", region_name="us-east-1")
        self.sm = boto3.client("secretsmanager", region_name="us-east-1")
        create_tables(self.ddb, keys_table=TABLE)
        self.secret_arn = self.sm.create_secret(Name="ai-factory/support/summarizer/api-key")["ARN"]
        self.now = T0
        self.provisioner = KeyProvisioner(self.ddb, self.sm, now=lambda: self.now, sleep=lambda s: None)
        self.store = DynamoKeyStore(TABLE, client=self.ddb)  # the gateway's own reader

    def props(self, **overrides: Any) -> dict[str, Any]:
        props: dict[str, Any] = {
            "ServiceToken": "arn:aws:lambda:us-east-1:111122223333:function:provider",
            "KeysTable": TABLE,
            "SecretArn": self.secret_arn,
            "Team": "support",
            "Feature": "summarizer",
            "AllowedModels": ["chat-fast"],
            # CloudFormation hands custom resources their scalars as strings.
            "MonthlyBudgetUsd": "250.0",
            "RateLimitRpm": "120",
            "Description": "AiFeature support/summarizer",
            "KeyGeneration": "1",
            "Clearance": "internal",
        }
        props.update(overrides)
        return props

    def event(self, request: str, request_id: str = "req-1", **extra: Any) -> dict[str, Any]:
        return {
            "RequestType": request,
            "RequestId": request_id,
            "StackId": "arn:aws:cloudformation:us-east-1:111122223333:stack/AiFactoryTeamSupport/abc",
            "LogicalResourceId": "SummarizerApiKey",
            "ResourceType": "Custom::AiFactoryFeatureKey",
            "ResourceProperties": self.props(),
            **extra,
        }

    def secret(self) -> dict[str, str]:
        return json.loads(self.sm.get_secret_value(SecretId=self.secret_arn)["SecretString"])

    def items(self) -> list[dict[str, Any]]:
        return self.ddb.scan(TableName=TABLE)["Items"]


@pytest.fixture
def env() -> Iterator[Env]:
    with mock_aws():
        yield Env()


def test_create_issues_a_key_stores_its_hash_and_puts_the_plaintext_in_the_secret(env: Env) -> None:
    response = env.provisioner.handle(env.event("Create"))

    key_id = response["PhysicalResourceId"]
    assert response["Data"] == {"KeyId": key_id}
    secret = env.secret()
    assert secret["key_id"] == key_id
    assert secret["api_key"].startswith(f"aif-{key_id}-")
    # The gateway finds the key by the hash of the plaintext, with the feature's limits.
    record = env.store.get_by_hash(hash_key(secret["api_key"]))
    assert record is not None
    assert (record.key_id, record.team, record.feature) == (key_id, "support", "summarizer")
    assert record.allowed_models == ("chat-fast",)
    assert (record.monthly_budget_usd, record.rate_limit_rpm) == (250.0, 120)
    assert record.clearance == "internal"  # what the gateway checks each route target against
    assert record.created_at == T0
    assert record.state(T0) == "active"
    # Only the hash is stored.
    assert secret["api_key"] not in json.dumps(env.items())


def test_a_retried_create_returns_the_key_the_first_attempt_issued(env: Env) -> None:
    first = env.provisioner.handle(env.event("Create"))
    secret = env.secret()

    again = env.provisioner.handle(env.event("Create"))

    assert again["PhysicalResourceId"] == first["PhysicalResourceId"]
    assert len(env.items()) == 1
    assert env.secret() == secret


def test_distinct_create_requests_issue_distinct_keys(env: Env) -> None:
    a = env.provisioner.handle(env.event("Create", request_id="req-1"))
    b = env.provisioner.handle(env.event("Create", request_id="req-2"))
    assert a["PhysicalResourceId"] != b["PhysicalResourceId"]
    assert derive_key_id(env.event("Create", request_id="req-2")) == b["PhysicalResourceId"]


def test_update_changes_the_settings_and_keeps_the_key(env: Env) -> None:
    key_id = env.provisioner.handle(env.event("Create"))["PhysicalResourceId"]
    secret = env.secret()
    new_props = env.props(
        Feature="ticket-summarizer",
        AllowedModels=["chat-fast", "chat-smart"],
        MonthlyBudgetUsd="99.5",
        RateLimitRpm="30",
        Clearance="confidential",
        TokensPerMinute="50000",
        MaxConcurrency="4",
    )

    response = env.provisioner.handle(
        env.event(
            "Update",
            request_id="req-2",
            PhysicalResourceId=key_id,
            ResourceProperties=new_props,
            OldResourceProperties=env.props(),
        )
    )

    assert response["PhysicalResourceId"] == key_id
    assert env.secret() == secret
    record = env.store.get_by_hash(hash_key(secret["api_key"]))
    assert record is not None
    assert record.feature == "ticket-summarizer"
    assert record.allowed_models == ("chat-fast", "chat-smart")
    assert (record.monthly_budget_usd, record.rate_limit_rpm) == (99.5, 30)
    assert record.clearance == "confidential"
    assert (record.tokens_per_minute, record.max_concurrency) == (50_000, 4)
    assert record.created_at == T0
    assert len(env.items()) == 1


def test_a_new_key_generation_issues_a_new_key_and_delete_revokes_the_old_one(env: Env) -> None:
    old_id = env.provisioner.handle(env.event("Create"))["PhysicalResourceId"]
    old_secret = env.secret()

    rotated = env.provisioner.handle(
        env.event(
            "Update",
            request_id="req-2",
            PhysicalResourceId=old_id,
            ResourceProperties=env.props(KeyGeneration="2"),
            OldResourceProperties=env.props(),
        )
    )
    new_id = rotated["PhysicalResourceId"]
    assert new_id != old_id
    assert env.secret()["key_id"] == new_id
    # CloudFormation then deletes the old physical resource (with the old properties).
    env.now = T0 + timedelta(minutes=5)
    env.provisioner.handle(env.event("Delete", request_id="req-3", PhysicalResourceId=old_id))

    old = env.store.get_by_hash(hash_key(old_secret["api_key"]))
    new = env.store.get_by_hash(hash_key(env.secret()["api_key"]))
    assert old is not None and old.state(env.now) == "revoked"
    assert new is not None and new.state(env.now) == "active"


def test_delete_revokes_and_keeps_the_record(env: Env) -> None:
    key_id = env.provisioner.handle(env.event("Create"))["PhysicalResourceId"]
    env.now = T0 + timedelta(days=3)

    response = env.provisioner.handle(env.event("Delete", request_id="req-2", PhysicalResourceId=key_id))

    assert response["PhysicalResourceId"] == key_id
    items = env.items()
    assert len(items) == 1, "the record stays for the audit trail"
    record = env.store.get_by_hash(items[0]["key_hash"]["S"])
    assert record is not None and record.revoked_at == env.now


def test_delete_keeps_an_earlier_revocation_time(env: Env) -> None:
    key_id = env.provisioner.handle(env.event("Create"))["PhysicalResourceId"]
    revoked = T0 + timedelta(hours=1)
    env.store.revoke(key_id, revoked)
    env.now = T0 + timedelta(days=1)

    env.provisioner.handle(env.event("Delete", request_id="req-2", PhysicalResourceId=key_id))

    record = env.store.get_by_hash(env.items()[0]["key_hash"]["S"])
    assert record is not None and record.revoked_at == revoked


def test_delete_after_a_failed_create_is_a_no_op(env: Env) -> None:
    # The provider framework reports a failed Create with a physical ID that is no key ID.
    response = env.provisioner.handle(
        env.event("Delete", request_id="req-2", PhysicalResourceId="2024/11/25/[$LATEST]abc")
    )
    assert response["PhysicalResourceId"] == "2024/11/25/[$LATEST]abc"
    assert env.items() == []


def test_update_of_a_key_missing_from_the_table_fails_with_a_clear_reason(env: Env) -> None:
    with pytest.raises(ProvisioningError, match="key_generation"):
        env.provisioner.handle(
            env.event(
                "Update",
                PhysicalResourceId="0123456789ab",
                ResourceProperties=env.props(),
                OldResourceProperties=env.props(),
            )
        )


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("KeysTable", "", "KeysTable"),
        ("AllowedModels", "chat-fast", "AllowedModels"),
        ("MonthlyBudgetUsd", "lots", "MonthlyBudgetUsd"),
        ("Clearance", "secret", "Clearance"),
    ],
)
def test_invalid_properties_fail_before_anything_is_written(
    env: Env, field: str, value: Any, match: str
) -> None:
    event = env.event("Create", ResourceProperties=env.props(**{field: value}))
    with pytest.raises(ProvisioningError, match=match):
        env.provisioner.handle(event)
    assert env.items() == []


def test_unknown_request_type_fails(env: Env) -> None:
    with pytest.raises(ProvisioningError, match="RequestType"):
        env.provisioner.handle(env.event("Replace"))


def test_create_without_token_and_concurrency_limits_gives_the_defaults(env: Env) -> None:
    env.provisioner.handle(env.event("Create"))
    record = env.store.get_by_hash(hash_key(env.secret()["api_key"]))
    assert record is not None and (record.tokens_per_minute, record.max_concurrency) == (2_000_000, 32)


def _valid_key_ids(env: Env) -> set[str]:
    records = [env.store.get_by_hash(item["key_hash"]["S"]) for item in env.items()]
    return {r.key_id for r in records if r is not None and r.state(env.now) == "active"}


def _rotate(env: Env, from_id: str, generation: str, request_id: str) -> str:
    previous = str(int(generation) - 1)
    return str(
        env.provisioner.handle(
            env.event(
                "Update",
                request_id=request_id,
                PhysicalResourceId=from_id,
                ResourceProperties=env.props(KeyGeneration=generation),
                OldResourceProperties=env.props(KeyGeneration=previous),
            )
        )["PhysicalResourceId"]
    )


def test_a_rolled_back_rotation_restores_the_previous_key_and_revokes_the_new_one(env: Env) -> None:
    old_id = env.provisioner.handle(env.event("Create"))["PhysicalResourceId"]
    old_secret = env.secret()
    new_id = _rotate(env, old_id, "2", "req-2")  # the update that later fails elsewhere in the stack
    env.now = T0 + timedelta(minutes=5)

    # CloudFormation rolls back: an Update of the new physical resource with the old properties.
    rolled_back = env.provisioner.handle(
        env.event(
            "Update",
            request_id="req-3",
            PhysicalResourceId=new_id,
            ResourceProperties=env.props(KeyGeneration="1"),
            OldResourceProperties=env.props(KeyGeneration="2"),
        )
    )

    assert rolled_back["PhysicalResourceId"] == old_id
    assert rolled_back["Data"] == {"KeyId": old_id}
    assert env.secret() == old_secret, "the secret holds the previous key again"
    assert len(env.items()) == 2, "no third key is issued"
    assert _valid_key_ids(env) == {old_id}
    # The rollback's cleanup then deletes the failed update's resource: nothing left to revoke.
    env.now = T0 + timedelta(minutes=6)
    env.provisioner.handle(
        env.event(
            "Delete",
            request_id="req-4",
            PhysicalResourceId=new_id,
            ResourceProperties=env.props(KeyGeneration="2"),
        )
    )
    assert _valid_key_ids(env) == {old_id}
    assert env.secret() == old_secret


def test_a_repeated_rollback_request_gives_the_same_answer(env: Env) -> None:
    old_id = env.provisioner.handle(env.event("Create"))["PhysicalResourceId"]
    new_id = _rotate(env, old_id, "2", "req-2")
    rollback = env.event(
        "Update",
        request_id="req-3",
        PhysicalResourceId=new_id,
        ResourceProperties=env.props(KeyGeneration="1"),
        OldResourceProperties=env.props(KeyGeneration="2"),
    )
    first = env.provisioner.handle(rollback)
    secret = env.secret()

    again = env.provisioner.handle(rollback)

    assert again == first
    assert env.secret() == secret
    assert _valid_key_ids(env) == {old_id}


def test_returning_to_an_earlier_generation_after_a_completed_rotation_issues_a_new_key(env: Env) -> None:
    old_id = env.provisioner.handle(env.event("Create"))["PhysicalResourceId"]
    new_id = _rotate(env, old_id, "2", "req-2")
    env.now = T0 + timedelta(minutes=5)
    env.provisioner.handle(env.event("Delete", request_id="req-3", PhysicalResourceId=old_id))

    # A later deploy sets key_generation back to 1: the old key was revoked, so it is not restored.
    back = env.provisioner.handle(
        env.event(
            "Update",
            request_id="req-4",
            PhysicalResourceId=new_id,
            ResourceProperties=env.props(KeyGeneration="1"),
            OldResourceProperties=env.props(KeyGeneration="2"),
        )
    )["PhysicalResourceId"]

    assert back not in (old_id, new_id)
    assert env.secret()["key_id"] == back


def test_a_rollback_whose_previous_plaintext_is_gone_issues_one_key_and_revokes_both_others(env: Env) -> None:
    old_id = env.provisioner.handle(env.event("Create"))["PhysicalResourceId"]
    new_id = _rotate(env, old_id, "2", "req-2")
    # Someone wrote the secret by hand in between: its previous version is no longer the old key.
    env.sm.put_secret_value(SecretId=env.secret_arn, SecretString=json.dumps(env.secret()))
    env.now = T0 + timedelta(minutes=5)

    third = env.provisioner.handle(
        env.event(
            "Update",
            request_id="req-3",
            PhysicalResourceId=new_id,
            ResourceProperties=env.props(KeyGeneration="1"),
            OldResourceProperties=env.props(KeyGeneration="2"),
        )
    )["PhysicalResourceId"]

    assert third not in (old_id, new_id)
    assert env.secret()["key_id"] == third
    assert _valid_key_ids(env) == {third}, "the key the stack no longer owns is revoked too"


def test_the_edge_usage_plan_flag_reaches_the_record_and_follows_updates(env: Env) -> None:
    create = env.event("Create", ResourceProperties=env.props(EdgeUsagePlan="true"))
    key_id = env.provisioner.handle(create)["PhysicalResourceId"]
    key_hash = hash_key(env.secret()["api_key"])
    record = env.store.get_by_hash(key_hash)
    assert record is not None and record.edge_usage_plan is True

    env.provisioner.handle(
        env.event(
            "Update",
            request_id="req-2",
            PhysicalResourceId=key_id,
            ResourceProperties=env.props(),  # the plan was removed: the shared plan meters the key
            OldResourceProperties=env.props(EdgeUsagePlan="true"),
        )
    )
    record = env.store.get_by_hash(key_hash)
    assert record is not None and record.edge_usage_plan is False


def test_the_gateway_sampling_rate_reaches_the_record_and_follows_updates(env: Env) -> None:
    """``OnlineEvaluation`` sets it on features whose routes reach targets outside Bedrock's log; the
    gateway reads it from the key record (``online_samples``)."""
    create = env.event("Create", ResourceProperties=env.props(GatewaySamplingRate="0.05"))
    key_id = env.provisioner.handle(create)["PhysicalResourceId"]
    key_hash = hash_key(env.secret()["api_key"])
    record = env.store.get_by_hash(key_hash)
    assert record is not None and record.sampling_rate == 0.05

    env.provisioner.handle(
        env.event(
            "Update",
            request_id="req-2",
            PhysicalResourceId=key_id,
            ResourceProperties=env.props(),  # sampling removed: the gateway stops sending samples
            OldResourceProperties=env.props(GatewaySamplingRate="0.05"),
        )
    )
    record = env.store.get_by_hash(key_hash)
    assert record is not None and record.sampling_rate == 0.0


@pytest.mark.parametrize("value", ["1.5", "-0.1", "often", "nan"])
def test_an_invalid_gateway_sampling_rate_fails_before_anything_is_written(env: Env, value: str) -> None:
    event = env.event("Create", ResourceProperties=env.props(GatewaySamplingRate=value))
    with pytest.raises(ProvisioningError, match=r"GatewaySamplingRate must be a number from 0 to 1"):
        env.provisioner.handle(event)
    assert env.items() == []
