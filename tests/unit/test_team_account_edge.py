"""Team-account features get their own usage plan and inference profiles from the shared provisioner.

moto plays the platform and team accounts (DynamoDB, Secrets Manager, IAM, STS and API Gateway usage
plans and keys); Bedrock's inference-profile calls, which moto does not implement, go through
``botocore.stub.Stubber``, which checks every request against the real API model, and any call the test
did not expect fails it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from feature_key_provisioner.handler import KeyProvisioner, ProvisioningError
from feature_key_provisioner.team_accounts import FeatureRegistry, writer_secrets_client
from feature_key_provisioner.team_edge import TeamEdge, TeamEdgeSettings
from moto import mock_aws
from test_team_account_provisioning import KEYS, REGION, REGISTRY, T0, TEAM_A, TEAM_B, TeamAccount

from aif_gateway.authorizer import usage_key
from aif_gateway.contract import PROFILE_GATEWAY_TAG_KEY, usage_identifier
from aif_gateway.dynamo_store import DynamoKeyStore, create_tables
from aif_gateway.records import ApiKeyRecord, hash_key

PLATFORM = "111111111111"
NAMESPACE = "0123456789ab"
GATEWAY_TAG = "AiFactoryGatewayGateway1A2B3C4D"
CAP_RPM = 600
HAIKU = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
SONNET = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
TITAN = "amazon.titan-embed-text-v2:0"
ROUTES = {
    "chat-fast": [(HAIKU, "claude-haiku-4-5", "inference-profile")],
    # A fallback chain: both models are reached, so both get profiles.
    "chat-smart": [
        (SONNET, "claude-sonnet-4-5", "inference-profile"),
        (HAIKU, "claude-haiku-4-5", "inference-profile"),
    ],
    "embed": [(TITAN, "titan-embed-v2", "foundation-model")],
}


def profile_arn(n: int) -> str:
    return f"arn:aws:bedrock:{REGION}:{PLATFORM}:application-inference-profile/{n:012x}"


def source(model_id: str) -> str:
    if model_id == TITAN:
        return f"arn:aws:bedrock:{REGION}::foundation-model/{model_id}"
    return f"arn:aws:bedrock:{REGION}:{PLATFORM}:inference-profile/{model_id}"


class Bedrock:
    """A Bedrock client whose inference-profile calls are stubbed (and checked) one by one."""

    def __init__(self) -> None:
        self.client = boto3.client("bedrock", region_name=REGION)
        self.stub = Stubber(self.client)
        self.stub.activate()
        self.issued = 0

    def expect_create(
        self, team: str, feature: str, model_id: str, owner: str = "support-leads@example.com"
    ) -> str:
        self.issued += 1
        arn = profile_arn(self.issued)
        tags = [
            {"key": "Team", "value": team},
            {"key": "Feature", "value": feature},
            {"key": "Owner", "value": owner},
            {"key": PROFILE_GATEWAY_TAG_KEY, "value": GATEWAY_TAG},
        ]
        self.stub.add_response(
            "create_inference_profile",
            {"inferenceProfileArn": arn, "status": "ACTIVE"},
            {
                "inferenceProfileName": ANY,
                "description": ANY,
                "modelSource": {"copyFrom": source(model_id)},
                "tags": tags,
            },
        )
        return arn

    def expect_get(self, arn: str, model_id: str) -> None:
        self.stub.add_response(
            "get_inference_profile",
            {
                "inferenceProfileName": "x",
                "createdAt": T0,
                "updatedAt": T0,
                "inferenceProfileArn": arn,
                "models": [{"modelArn": source(model_id)}],
                "inferenceProfileId": arn.rsplit("/", 1)[1],
                "status": "ACTIVE",
                "type": "APPLICATION",
            },
            {"inferenceProfileIdentifier": arn},
        )

    def expect_delete(self, arn: str) -> None:
        self.stub.add_response("delete_inference_profile", {}, {"inferenceProfileIdentifier": arn})

    def done(self) -> None:
        self.stub.assert_no_pending_responses()


class Platform:
    def __init__(self, bedrock: Bedrock) -> None:
        self.ddb = boto3.client("dynamodb", region_name=REGION)
        self.apigw = boto3.client("apigateway", region_name=REGION)
        create_tables(self.ddb, keys_table=KEYS)
        self.ddb.create_table(
            TableName=REGISTRY,
            KeySchema=[{"AttributeName": "feature_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "feature_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        self.api_id = self.apigw.create_rest_api(name="gateway")["id"]
        self.registry = FeatureRegistry(self.ddb, REGISTRY)
        self.bedrock = bedrock
        self.settings = TeamEdgeSettings(
            rest_api_id=self.api_id,
            stage="prod",
            namespace=NAMESPACE,
            max_rate_limit_rpm=CAP_RPM,
            gateway_tag=GATEWAY_TAG,
            partition="aws",
            region=REGION,
            account=PLATFORM,
            routes=ROUTES,
        )
        sts = boto3.client("sts", region_name=REGION)
        self.provisioner = KeyProvisioner(
            self.ddb,
            boto3.client("secretsmanager", region_name=REGION),
            now=lambda: T0,
            sleep=lambda s: None,
            keys_table=KEYS,
            registry=self.registry,
            writer_client=lambda role: writer_secrets_client(sts, role, REGION),
            edge=TeamEdge(self.apigw, bedrock.client, self.settings),
        )
        self.store = DynamoKeyStore(KEYS, client=self.ddb)

    def plan(self, team: str, feature: str) -> dict[str, Any] | None:
        name = usage_identifier(NAMESPACE, team, feature)
        plans = [p for p in self.apigw.get_usage_plans()["items"] if p["name"] == name]
        assert len(plans) <= 1
        return plans[0] if plans else None

    def key(self, team: str, feature: str) -> dict[str, Any] | None:
        name = usage_identifier(NAMESPACE, team, feature)
        keys = [k for k in self.apigw.get_api_keys(includeValues=True)["items"] if k["name"] == name]
        assert len(keys) <= 1
        return keys[0] if keys else None

    def plan_key_ids(self, plan_id: str) -> list[str]:
        return [k["id"] for k in self.apigw.get_usage_plan_keys(usagePlanId=plan_id)["items"]]

    def record(self, team: TeamAccount) -> ApiKeyRecord:
        record = self.store.get_by_hash(hash_key(team.secret()["api_key"]))
        assert record is not None
        return record


@pytest.fixture
def platform() -> Iterator[Platform]:
    with mock_aws():
        bedrock = Bedrock()
        yield Platform(bedrock)
        bedrock.done()


def update(
    team: TeamAccount, key_id: str, old: dict[str, Any], request_id: str, **new: Any
) -> dict[str, Any]:
    event = team.event("Update", request_id=request_id, **new)
    event["PhysicalResourceId"] = key_id
    event["OldResourceProperties"] = old
    return event


def test_create_gives_the_feature_its_own_plan_and_a_tagged_profile_per_model(platform: Platform) -> None:
    team = TeamAccount(TEAM_A)
    sonnet = platform.bedrock.expect_create("support", "summarizer", SONNET)
    haiku = platform.bedrock.expect_create("support", "summarizer", HAIKU)

    key_id = platform.provisioner.handle(team.event(AllowedModels=["chat-smart"]))["PhysicalResourceId"]

    plan = platform.plan("support", "summarizer")
    key = platform.key("support", "summarizer")
    assert plan is not None and key is not None
    # 120 requests/min: 2 per second, a burst of ten seconds of it (at least 10).
    assert plan["throttle"] == {"rateLimit": 2, "burstLimit": 20}
    assert plan["apiStages"] == [{"apiId": platform.api_id, "stage": "prod"}]
    assert plan["tags"][PROFILE_GATEWAY_TAG_KEY] == GATEWAY_TAG
    assert (plan["tags"]["Team"], plan["tags"]["Feature"]) == ("support", "summarizer")
    assert key["value"] == usage_identifier(NAMESPACE, "support", "summarizer")
    assert platform.plan_key_ids(plan["id"]) == [key["id"]]
    # The key record sends the feature's requests to its plan and its Bedrock calls through its profiles.
    record = platform.record(team)
    assert record.key_id == key_id and record.edge_usage_plan is True
    assert usage_key(record, NAMESPACE) == key["value"]
    assert record.inference_profiles == {SONNET: sonnet, HAIKU: haiku}
    entry = platform.registry.get("support/summarizer")
    assert entry is not None
    assert entry["usage_plan_id"] == plan["id"]
    assert entry["inference_profiles"] == {SONNET: sonnet, HAIKU: haiku}
    assert entry["edge_rate_limit_rpm"] == 120


def test_the_platform_cap_limits_what_a_team_can_ask_for_at_the_edge(platform: Platform) -> None:
    team = TeamAccount(TEAM_A)
    platform.bedrock.expect_create("support", "summarizer", HAIKU)

    platform.provisioner.handle(team.event(RateLimitRpm="6000"))

    plan = platform.plan("support", "summarizer")
    assert plan is not None
    assert plan["throttle"] == {"rateLimit": CAP_RPM // 60, "burstLimit": 100}
    entry = platform.registry.get("support/summarizer")
    assert entry is not None
    assert (entry["rate_limit_rpm"], entry["edge_rate_limit_rpm"]) == (6000, CAP_RPM)


def test_an_update_changes_the_rate_in_place_and_keeps_plan_key_and_profiles(platform: Platform) -> None:
    team = TeamAccount(TEAM_A)
    haiku = platform.bedrock.expect_create("support", "summarizer", HAIKU)
    first = team.event()
    key_id = platform.provisioner.handle(first)["PhysicalResourceId"]
    plan = platform.plan("support", "summarizer")
    assert plan is not None
    platform.bedrock.expect_get(haiku, HAIKU)  # still there: kept, not created again

    platform.provisioner.handle(
        update(team, key_id, first["ResourceProperties"], "req-2", RateLimitRpm="300")
    )

    after = platform.plan("support", "summarizer")
    assert after is not None and after["id"] == plan["id"]
    assert after["throttle"] == {"rateLimit": 5, "burstLimit": 50}
    assert len(platform.apigw.get_api_keys()["items"]) == 1
    assert platform.record(team).inference_profiles == {HAIKU: haiku}


def test_a_model_added_gets_a_profile_and_a_model_removed_loses_its_own(platform: Platform) -> None:
    team = TeamAccount(TEAM_A)
    haiku = platform.bedrock.expect_create("support", "summarizer", HAIKU)
    first = team.event()
    key_id = platform.provisioner.handle(first)["PhysicalResourceId"]

    # chat-fast -> chat-fast + embed: Titan gets a profile, Haiku keeps its own.
    platform.bedrock.expect_get(haiku, HAIKU)
    titan = platform.bedrock.expect_create("support", "summarizer", TITAN)
    second = update(team, key_id, first["ResourceProperties"], "req-2", AllowedModels=["chat-fast", "embed"])
    platform.provisioner.handle(second)
    assert platform.record(team).inference_profiles == {HAIKU: haiku, TITAN: titan}

    # -> embed only: Haiku's profile is deleted once the key record no longer names it.
    platform.bedrock.expect_get(titan, TITAN)
    platform.bedrock.expect_delete(haiku)
    platform.provisioner.handle(
        update(team, key_id, second["ResourceProperties"], "req-3", AllowedModels=["embed"])
    )
    assert platform.record(team).inference_profiles == {TITAN: titan}
    entry = platform.registry.get("support/summarizer")
    assert entry is not None and entry["inference_profiles"] == {TITAN: titan}


def test_a_profile_deleted_outside_cloudformation_is_made_again(platform: Platform) -> None:
    team = TeamAccount(TEAM_A)
    haiku = platform.bedrock.expect_create("support", "summarizer", HAIKU)
    first = team.event()
    key_id = platform.provisioner.handle(first)["PhysicalResourceId"]
    platform.bedrock.stub.add_client_error(
        "get_inference_profile",
        "ResourceNotFoundException",
        expected_params={"inferenceProfileIdentifier": haiku},
    )
    again = platform.bedrock.expect_create("support", "summarizer", HAIKU)

    platform.provisioner.handle(update(team, key_id, first["ResourceProperties"], "req-2", Description="new"))

    assert platform.record(team).inference_profiles == {HAIKU: again}


def test_a_daily_quota_is_set_and_removed_with_the_feature_setting(platform: Platform) -> None:
    team = TeamAccount(TEAM_A)
    haiku = platform.bedrock.expect_create("support", "summarizer", HAIKU)
    first = team.event(DailyRequestQuota="5000")
    key_id = platform.provisioner.handle(first)["PhysicalResourceId"]
    plan = platform.plan("support", "summarizer")
    assert plan is not None and plan["quota"] == {"limit": 5000, "period": "DAY"}

    platform.bedrock.expect_get(haiku, HAIKU)
    platform.provisioner.handle(update(team, key_id, first["ResourceProperties"], "req-2"))
    plan = platform.plan("support", "summarizer")
    assert plan is not None and "quota" not in plan

    with pytest.raises(ProvisioningError, match=r"DailyRequestQuota must be a whole number >= 1, got '0\.5'"):
        platform.provisioner.handle(team.event(request_id="req-3", DailyRequestQuota="0.5"))


def test_delete_removes_plan_key_and_profiles_and_retires_the_feature(platform: Platform) -> None:
    team = TeamAccount(TEAM_A)
    sonnet = platform.bedrock.expect_create("support", "summarizer", SONNET)
    haiku = platform.bedrock.expect_create("support", "summarizer", HAIKU)
    key_id = platform.provisioner.handle(team.event(AllowedModels=["chat-smart"]))["PhysicalResourceId"]
    plaintext = team.secret()["api_key"]
    platform.bedrock.expect_delete(sonnet)
    platform.bedrock.expect_delete(haiku)
    delete = team.event("Delete", request_id="req-9", AllowedModels=["chat-smart"])
    delete["PhysicalResourceId"] = key_id

    platform.provisioner.handle(delete)

    assert platform.plan("support", "summarizer") is None
    assert platform.key("support", "summarizer") is None
    record = platform.store.get_by_hash(hash_key(plaintext))
    assert record is not None and record.revoked_at is not None
    entry = platform.registry.get("support/summarizer")
    assert entry is not None and entry["status"] == "retired"
    assert "usage_plan_id" not in entry and "inference_profiles" not in entry


def test_another_teams_feature_is_untouched_by_an_update_and_a_delete(platform: Platform) -> None:
    ours = TeamAccount(TEAM_A, team="support", feature="summarizer")
    theirs = TeamAccount(TEAM_B, team="claims", feature="triage")
    platform.bedrock.expect_create("support", "summarizer", HAIKU)
    platform.provisioner.handle(ours.event())
    their_haiku = platform.bedrock.expect_create("claims", "triage", HAIKU)
    their_first = theirs.event()
    their_key = platform.provisioner.handle(their_first)["PhysicalResourceId"]
    our_plan = platform.plan("support", "summarizer")
    our_key = platform.key("support", "summarizer")
    assert our_plan is not None and our_key is not None

    # The other team raises its rate, then deletes its feature: only its own plan and profile change.
    platform.bedrock.expect_get(their_haiku, HAIKU)
    platform.provisioner.handle(
        update(theirs, their_key, their_first["ResourceProperties"], "req-2", RateLimitRpm="600")
    )
    platform.bedrock.expect_delete(their_haiku)
    delete = theirs.event("Delete", request_id="req-3")
    delete["PhysicalResourceId"] = their_key
    platform.provisioner.handle(delete)

    assert platform.plan("support", "summarizer") == our_plan
    assert platform.plan_key_ids(our_plan["id"]) == [our_key["id"]]
    assert platform.plan("claims", "triage") is None
    assert platform.record(ours).edge_usage_plan is True
    # Its template cannot name our feature either: the registry keeps the name with our account.
    intruder = TeamAccount(TEAM_B, team="support", feature="summarizer")
    with pytest.raises(Exception, match="already registered to account 222222222222"):
        platform.provisioner.handle(intruder.event(request_id="req-4", RateLimitRpm="6000"))
    assert platform.plan("support", "summarizer") == our_plan


def test_a_team_template_cannot_point_its_key_at_profiles_of_its_choosing(platform: Platform) -> None:
    """``InferenceProfiles`` in a team's template (say, another feature's profile) is ignored."""
    team = TeamAccount(TEAM_A)
    haiku = platform.bedrock.expect_create("support", "summarizer", HAIKU)

    platform.provisioner.handle(team.event(InferenceProfiles={HAIKU: profile_arn(999)}))

    assert platform.record(team).inference_profiles == {HAIKU: haiku}


def test_rotation_deletes_only_the_old_key_and_the_feature_stays_active(platform: Platform) -> None:
    team = TeamAccount(TEAM_A)
    haiku = platform.bedrock.expect_create("support", "summarizer", HAIKU)
    first = team.event()
    old_key = platform.provisioner.handle(first)["PhysicalResourceId"]
    platform.bedrock.expect_get(haiku, HAIKU)
    new_key = platform.provisioner.handle(
        update(team, old_key, first["ResourceProperties"], "req-2", KeyGeneration="2")
    )["PhysicalResourceId"]
    assert new_key != old_key
    # CloudFormation then deletes the replaced key (with its old properties).
    delete = team.event("Delete", request_id="req-3")
    delete["PhysicalResourceId"] = old_key

    platform.provisioner.handle(delete)

    entry = platform.registry.get("support/summarizer")
    assert entry is not None and entry["status"] == "active" and entry["key_id"] == new_key
    assert platform.plan("support", "summarizer") is not None
    assert platform.record(team).inference_profiles == {HAIKU: haiku}


def test_a_plan_of_that_name_without_the_gateway_tag_is_left_alone(platform: Platform) -> None:
    name = usage_identifier(NAMESPACE, "support", "summarizer")
    platform.apigw.create_usage_plan(name=name, tags={"owner": "someone-else"})

    with pytest.raises(ProvisioningError, match="does not carry this gateway's ai-factory:gateway tag"):
        platform.provisioner.handle(TeamAccount(TEAM_A).event())

    (plan,) = platform.apigw.get_usage_plans()["items"]
    assert plan["tags"] == {"owner": "someone-else"}


def test_a_profile_an_interrupted_attempt_created_is_found_by_its_name(platform: Platform) -> None:
    team = TeamAccount(TEAM_A)
    edge = platform.provisioner.edge
    assert edge is not None
    name = edge.profile_name("support", "summarizer", "claude-haiku-4-5", source(HAIKU))
    platform.bedrock.stub.add_client_error("create_inference_profile", "ConflictException")
    platform.bedrock.stub.add_response(
        "list_inference_profiles",
        {
            "inferenceProfileSummaries": [
                {
                    "inferenceProfileName": name,
                    "inferenceProfileArn": profile_arn(42),
                    "models": [{"modelArn": source(HAIKU)}],
                    "inferenceProfileId": f"{42:012x}",
                    "status": "ACTIVE",
                    "type": "APPLICATION",
                }
            ]
        },
        {"typeEquals": "APPLICATION"},
    )

    platform.provisioner.handle(team.event())

    assert platform.record(team).inference_profiles == {HAIKU: profile_arn(42)}


def test_a_feature_against_an_imported_gateway_in_the_platform_account_gets_them_too(
    platform: Platform,
) -> None:
    """``from_gateway_attributes`` in the gateway's own account goes through the same provisioner."""
    same_account = TeamAccount(PLATFORM, team="ops", feature="digest")
    haiku = platform.bedrock.expect_create("ops", "digest", HAIKU)

    platform.provisioner.handle(same_account.event())

    plan = platform.plan("ops", "digest")
    assert plan is not None and plan["throttle"] == {"rateLimit": 2, "burstLimit": 20}
    record = platform.record(same_account)
    assert record.edge_usage_plan is True and record.inference_profiles == {HAIKU: haiku}


def test_the_settings_come_from_the_environment_and_the_routes_file(tmp_path: Any) -> None:
    from aif_gateway.contract import TeamEdgeEnv

    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps({"chat-fast": [[HAIKU, "claude-haiku-4-5", "inference-profile"]]}))
    env = {
        TeamEdgeEnv.REST_API_ID: "a1b2c3",
        TeamEdgeEnv.STAGE: "prod",
        TeamEdgeEnv.NAMESPACE: NAMESPACE,
        TeamEdgeEnv.MAX_RATE_LIMIT_RPM: "600",
        TeamEdgeEnv.GATEWAY_TAG: GATEWAY_TAG,
        TeamEdgeEnv.PARTITION: "aws",
        TeamEdgeEnv.ACCOUNT: PLATFORM,
        "AWS_REGION": REGION,
    }
    settings = TeamEdgeSettings.from_environment(env, routes)
    assert settings is not None and settings.max_rate_limit_rpm == 600
    edge = TeamEdge(None, None, settings)
    assert edge.targets(["chat-fast", "unknown"]) == {HAIKU: ("claude-haiku-4-5", source(HAIKU))}
    assert TeamEdgeSettings.from_environment({}, routes) is None  # a feature's own provisioner
    name = edge.profile_name("support", "a" * 80, "claude-haiku-4-5", source(HAIKU))
    assert len(name) == 64 and name.startswith("support-aaa")


def test_a_rolled_back_rotation_puts_the_edge_and_profiles_back_with_the_key(platform: Platform) -> None:
    """A deploy bumps key_generation and drops a model, then fails: CloudFormation rolls back."""
    team = TeamAccount(TEAM_A)
    haiku = platform.bedrock.expect_create("support", "summarizer", HAIKU)
    first = team.event()
    old_key = platform.provisioner.handle(first)["PhysicalResourceId"]
    old_plaintext = team.secret()["api_key"]
    titan = platform.bedrock.expect_create("support", "summarizer", TITAN)
    platform.bedrock.expect_delete(haiku)
    rotate = update(
        team, old_key, first["ResourceProperties"], "req-2", KeyGeneration="2", AllowedModels=["embed"]
    )
    new_key = platform.provisioner.handle(rotate)["PhysicalResourceId"]
    # The rollback: an update of the new key back to the first properties.
    again = platform.bedrock.expect_create("support", "summarizer", HAIKU)
    platform.bedrock.expect_delete(titan)
    rollback = update(team, new_key, rotate["ResourceProperties"], "req-3", **first["ResourceProperties"])

    assert platform.provisioner.handle(rollback)["PhysicalResourceId"] == old_key

    restored = platform.store.get_by_hash(hash_key(old_plaintext))
    assert restored is not None and restored.revoked_at is None
    assert restored.edge_usage_plan is True and restored.inference_profiles == {HAIKU: again}
    entry = platform.registry.get("support/summarizer")
    assert entry is not None and entry["key_id"] == old_key and entry["inference_profiles"] == {HAIKU: again}
