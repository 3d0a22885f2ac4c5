"""The platform's shared key provisioner serving stacks in teams' own accounts (moto, several accounts).

The platform account runs the provisioner with its keys table and the feature registry; a team stack in
another account sends a ``Custom::AiFactoryFeatureKey`` event naming its secret and its writer role. The
key must land in the team account's secret (written through the assumed role), the registry must hold the
feature once, and a second account asking for the same feature name must be refused with a clear reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from feature_key_provisioner.handler import KeyProvisioner, ProvisioningError, on_event
from feature_key_provisioner.team_accounts import FeatureRegistry, RegistryRefused, writer_secrets_client
from moto import mock_aws

from aif_gateway.contract import FEATURE_REGISTRY_TABLE_ENV, KEY_WRITER_ROLE_PATH, KEYS_TABLE_ENV
from aif_gateway.dynamo_store import DynamoKeyStore, create_tables
from aif_gateway.records import hash_key

REGION = "us-east-1"
PLATFORM = "111111111111"
TEAM_A = "222222222222"
TEAM_B = "333333333333"
KEYS = "keys"
REGISTRY = "feature-registry"
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{PLATFORM}:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


def _as_account(account: str, service: str) -> Any:
    """A client acting in ``account`` (moto keeps one backend per account; an assumed role selects it)."""
    sts = boto3.client("sts", region_name=REGION)
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/setup", RoleSessionName="setup")[
        "Credentials"
    ]
    return boto3.client(
        service,
        region_name=REGION,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


class TeamAccount:
    """A team's account: its feature secret and the writer role the platform provisioner assumes."""

    def __init__(self, account: str, team: str = "support", feature: str = "summarizer") -> None:
        self.account = account
        self.sm = _as_account(account, "secretsmanager")
        iam = _as_account(account, "iam")
        self.secret_arn = self.sm.create_secret(Name=f"ai-factory/{team}/{feature}/api-key")["ARN"]
        self.role_arn = iam.create_role(
            RoleName=f"{team}-{feature}-writer", Path=KEY_WRITER_ROLE_PATH, AssumeRolePolicyDocument=TRUST
        )["Role"]["Arn"]
        self.team = team
        self.feature = feature

    def event(self, request: str = "Create", request_id: str = "req-1", **overrides: Any) -> dict[str, Any]:
        props: dict[str, Any] = {
            "ServiceToken": f"arn:aws:lambda:{REGION}:{PLATFORM}:function:provider",
            "SecretArn": self.secret_arn,
            "WriterRoleArn": self.role_arn,
            "Team": self.team,
            "Feature": self.feature,
            "Owner": "support-leads@example.com",
            "Clearance": "internal",
            "AllowedModels": ["chat-fast"],
            "MonthlyBudgetUsd": "250.0",
            "RateLimitRpm": "120",
            "Description": f"AiFeature {self.team}/{self.feature}",
            "KeyGeneration": "1",
        }
        props.update(overrides)
        return {
            "RequestType": request,
            "RequestId": request_id,
            "StackId": f"arn:aws:cloudformation:{REGION}:{self.account}:stack/SupportFeatures/abc",
            "LogicalResourceId": "SummarizerApiKey",
            "ResourceType": "Custom::AiFactoryFeatureKey",
            "ResourceProperties": props,
        }

    def secret(self) -> dict[str, str]:
        return json.loads(self.sm.get_secret_value(SecretId=self.secret_arn)["SecretString"])


class Platform:
    def __init__(self) -> None:
        self.ddb = boto3.client("dynamodb", region_name=REGION)
        self.sm = boto3.client("secretsmanager", region_name=REGION)
        create_tables(self.ddb, keys_table=KEYS)
        self.ddb.create_table(
            TableName=REGISTRY,
            KeySchema=[{"AttributeName": "feature_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "feature_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        self.registry = FeatureRegistry(self.ddb, REGISTRY)
        sts = boto3.client("sts", region_name=REGION)
        self.now = T0
        self.provisioner = KeyProvisioner(
            self.ddb,
            self.sm,
            now=lambda: self.now,
            sleep=lambda s: None,
            keys_table=KEYS,
            registry=self.registry,
            writer_client=lambda role: writer_secrets_client(sts, role, REGION),
        )
        self.store = DynamoKeyStore(KEYS, client=self.ddb)


@pytest.fixture
def platform() -> Iterator[Platform]:
    with mock_aws():
        yield Platform()


def test_a_team_account_gets_its_key_in_its_own_secret_and_a_registry_entry(platform: Platform) -> None:
    team = TeamAccount(TEAM_A)

    key_id = platform.provisioner.handle(team.event())["PhysicalResourceId"]

    secret = team.secret()  # read in the team's account
    assert secret["key_id"] == key_id
    record = platform.store.get_by_hash(hash_key(secret["api_key"]))
    assert record is not None and (record.team, record.feature) == ("support", "summarizer")
    # The platform account holds no copy of the key.
    assert platform.sm.list_secrets()["SecretList"] == []
    entry = platform.registry.get("support/summarizer")
    assert entry is not None
    assert entry["account_id"] == TEAM_A
    assert entry["owner"] == "support-leads@example.com"
    assert entry["clearance"] == "internal"
    assert entry["allowed_models"] == ["chat-fast"]
    assert (entry["monthly_budget_usd"], entry["rate_limit_rpm"]) == (250.0, 120)
    assert entry["key_id"] == key_id
    assert entry["first_deployed_at"] == T0.isoformat()


def test_the_same_feature_name_from_another_account_is_refused_with_the_owner_named(
    platform: Platform,
) -> None:
    first = TeamAccount(TEAM_A)
    platform.provisioner.handle(first.event())
    intruder = TeamAccount(TEAM_B)

    with pytest.raises(RegistryRefused) as refused:
        platform.provisioner.handle(intruder.event(request_id="req-9"))

    message = str(refused.value)
    assert "support/summarizer is already registered to account 222222222222" in message
    assert "account 333333333333 cannot use that name" in message
    # Nothing was issued or written for the second account, and the entry still names the first.
    assert len(platform.ddb.scan(TableName=KEYS)["Items"]) == 1
    assert intruder.sm.describe_secret(SecretId=intruder.secret_arn).get("VersionIdsToStages") in (None, {})
    entry = platform.registry.get("support/summarizer")
    assert entry is not None and entry["account_id"] == TEAM_A


def test_the_lambda_entry_point_reports_a_refusal_as_a_provisioning_error(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEYS_TABLE_ENV, KEYS)
    monkeypatch.setenv(FEATURE_REGISTRY_TABLE_ENV, REGISTRY)
    monkeypatch.setenv("AWS_REGION", REGION)
    on_event(TeamAccount(TEAM_A).event())

    with pytest.raises(ProvisioningError, match="already registered to account 222222222222"):
        on_event(TeamAccount(TEAM_B, feature="summarizer").event(request_id="req-2"))


def test_a_redeploy_from_the_owning_account_updates_the_entry_and_keeps_first_deployed_at(
    platform: Platform,
) -> None:
    team = TeamAccount(TEAM_A)
    key_id = platform.provisioner.handle(team.event())["PhysicalResourceId"]
    platform.now = datetime(2026, 11, 30, tzinfo=UTC)
    update = team.event("Update", request_id="req-2", RateLimitRpm="300")
    update["PhysicalResourceId"] = key_id
    update["OldResourceProperties"] = team.event()["ResourceProperties"]

    assert platform.provisioner.handle(update)["PhysicalResourceId"] == key_id

    entry = platform.registry.get("support/summarizer")
    assert entry is not None
    assert entry["rate_limit_rpm"] == 300
    assert entry["first_deployed_at"] == T0.isoformat()
    assert entry["updated_at"] == platform.now.isoformat()


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("SecretArn", f"arn:aws:secretsmanager:{REGION}:{TEAM_B}:secret:x", "is in account 333333333333"),
        (
            "WriterRoleArn",
            f"arn:aws:iam::{TEAM_B}:role/ai-factory/key-writer/x",
            "is in account 333333333333",
        ),
        ("WriterRoleArn", f"arn:aws:iam::{TEAM_A}:role/admin", "must be a role under the path"),
        ("WriterRoleArn", "not-an-arn", "must be an ARN with an account ID"),
    ],
)
def test_a_key_is_only_written_into_the_requesting_account(
    platform: Platform, field: str, value: str, reason: str
) -> None:
    team = TeamAccount(TEAM_A)

    with pytest.raises(RegistryRefused, match=reason):
        platform.provisioner.handle(team.event(**{field: value}))

    assert platform.ddb.scan(TableName=KEYS)["Items"] == []
    assert platform.registry.entries() == []


def test_delete_revokes_the_key_and_retires_the_entry_but_keeps_the_name_with_its_account(
    platform: Platform,
) -> None:
    team = TeamAccount(TEAM_A)
    key_id = platform.provisioner.handle(team.event())["PhysicalResourceId"]
    plaintext = team.secret()["api_key"]
    delete = team.event("Delete", request_id="req-3")
    delete["PhysicalResourceId"] = key_id

    platform.provisioner.handle(delete)

    record = platform.store.get_by_hash(hash_key(plaintext))
    assert record is not None and record.revoked_at is not None
    entry = platform.registry.get("support/summarizer")
    assert entry is not None and entry["status"] == "retired" and entry["account_id"] == TEAM_A
    with pytest.raises(RegistryRefused, match="already registered to account 222222222222"):
        platform.provisioner.handle(TeamAccount(TEAM_B).event(request_id="req-4"))


def test_a_delete_from_another_account_revokes_nothing(platform: Platform) -> None:
    team = TeamAccount(TEAM_A)
    key_id = platform.provisioner.handle(team.event())["PhysicalResourceId"]
    plaintext = team.secret()["api_key"]
    forged = TeamAccount(TEAM_B).event("Delete", request_id="req-5")
    forged["PhysicalResourceId"] = key_id

    platform.provisioner.handle(forged)

    record = platform.store.get_by_hash(hash_key(plaintext))
    assert record is not None and record.revoked_at is None


def test_a_team_account_cannot_put_its_key_into_a_usage_plan_of_its_choosing(platform: Platform) -> None:
    """The shared plan meters team-account features: the flag in a team's template is ignored."""
    team = TeamAccount(TEAM_A)
    key_id = platform.provisioner.handle(team.event(EdgeUsagePlan="true"))["PhysicalResourceId"]
    record = platform.store.get_by_hash(hash_key(team.secret()["api_key"]))
    assert record is not None and record.key_id == key_id
    assert record.edge_usage_plan is False


def test_a_team_account_cannot_make_the_platforms_gateway_copy_its_traffic(platform: Platform) -> None:
    """Which exchanges the gateway sends to its sample queue is the platform app's choice."""
    team = TeamAccount(TEAM_A)
    platform.provisioner.handle(team.event(GatewaySamplingRate="1"))
    record = platform.store.get_by_hash(hash_key(team.secret()["api_key"]))
    assert record is not None and record.sampling_rate == 0.0


def test_a_rotation_leaves_the_feature_active(platform: Platform) -> None:
    """CloudFormation deletes the replaced key after a rotation: the feature is not retired by it."""
    team = TeamAccount(TEAM_A)
    first = team.event()
    old_key = platform.provisioner.handle(first)["PhysicalResourceId"]
    rotate = team.event("Update", request_id="req-2", KeyGeneration="2")
    rotate["PhysicalResourceId"] = old_key
    rotate["OldResourceProperties"] = first["ResourceProperties"]
    new_key = platform.provisioner.handle(rotate)["PhysicalResourceId"]
    delete = team.event("Delete", request_id="req-3")
    delete["PhysicalResourceId"] = old_key

    platform.provisioner.handle(delete)

    entry = platform.registry.get("support/summarizer")
    assert entry is not None and entry["status"] == "active" and entry["key_id"] == new_key
