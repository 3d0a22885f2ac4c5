"""Application inference profiles: one per feature x Bedrock model, tagged for cost allocation, their ARNs
in the feature's key record, and the gateway's role limited to them (and the models they copy)."""

from __future__ import annotations

import re
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from ai_factory.constructs.ai_feature import AiFeature
from ai_factory.constructs.gateway.imported import GatewayAttributes
from ai_factory.constructs.gateway.llm_gateway import LlmGateway
from ai_factory.constructs.inference_profiles import GATEWAY_TAG_KEY, NAME_MAX_LENGTH, profile_name
from aif_gateway.contract import FEATURE_KEY_RESOURCE_TYPE, FeatureKeyProperties
from tests.infra.test_ai_feature import FEATURE_PROPS, new_team

PROFILE = "AWS::Bedrock::ApplicationInferenceProfile"
NAME_PATTERN = re.compile(r"^([0-9a-zA-Z][ _-]?)+$")  # Bedrock's InferenceProfileName
DESCRIPTION_PATTERN = re.compile(r"^([0-9a-zA-Z:.][ _-]?)+$")


class Built:
    def __init__(self) -> None:
        self.app, self.gateway_stack, self.team = new_team()
        props = {k: v for k, v in FEATURE_PROPS.items() if k != "prompts"}
        self.fast = AiFeature(self.team, "Summarizer", **props)  # chat-fast: claude-haiku-4-5, nova-lite
        self.smart = AiFeature(
            self.team, "Drafter", **{**props, "feature": "drafter", "models": ["chat-smart", "embed"]}
        )
        self.no_profiles = AiFeature(
            self.team, "Legacy", **{**props, "feature": "legacy", "inference_profiles": False}
        )
        self.template = Template.from_stack(self.team)
        self.gateway_template = Template.from_stack(self.gateway_stack)

    def resolve(self, value: Any) -> Any:
        return self.team.resolve(value)

    def profiles_of(self, feature: str) -> dict[str, dict[str, Any]]:
        found = self.template.find_resources(PROFILE)
        return {
            lid: res
            for lid, res in found.items()
            if {"Key": "Feature", "Value": feature} in res["Properties"]["Tags"]
        }


@pytest.fixture(scope="module")
def built() -> Built:
    return Built()


def source(res: dict[str, Any]) -> str:
    """The ``CopyFrom`` ARN with the pseudo parameters written out."""
    value = res["Properties"]["ModelSource"]["CopyFrom"]
    parts = value["Fn::Join"][1]
    return "".join(p if isinstance(p, str) else "${" + p["Ref"] + "}" for p in parts)


def test_one_profile_per_feature_and_bedrock_model_copying_what_the_gateway_calls(built: Built) -> None:
    fast = {source(r) for r in built.profiles_of("ticket-summarizer").values()}
    assert fast == {
        "arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}:inference-profile/"
        "us.anthropic.claude-haiku-4-5-20251001-v1:0",
        "arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}:inference-profile/us.amazon.nova-lite-v1:0",
    }
    smart = {source(r) for r in built.profiles_of("drafter").values()}
    # chat-smart (Sonnet, Haiku fallback) and embed (Titan, a foundation model in this region).
    assert smart == {
        "arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}:inference-profile/"
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}:inference-profile/"
        "us.anthropic.claude-haiku-4-5-20251001-v1:0",
        "arn:${AWS::Partition}:bedrock:${AWS::Region}::foundation-model/amazon.titan-embed-text-v2:0",
    }
    assert built.profiles_of("legacy") == {}
    built.template.resource_count_is(PROFILE, 5)


def test_profiles_carry_the_cost_allocation_tags_and_the_gateway_tag(built: Built) -> None:
    tag_value = built.gateway_stack.gateway.inference_profile_tag
    for res in built.profiles_of("ticket-summarizer").values():
        tags = {t["Key"]: t["Value"] for t in res["Properties"]["Tags"]}
        assert tags["Team"] == "support" and tags["Feature"] == "ticket-summarizer"
        assert tags["Owner"] == "support-leads@example.com"
        assert tags[GATEWAY_TAG_KEY] == tag_value


def test_profile_names_and_descriptions_fit_bedrocks_rules_and_are_unique(built: Built) -> None:
    names = []
    for res in built.template.find_resources(PROFILE).values():
        name, description = res["Properties"]["InferenceProfileName"], res["Properties"]["Description"]
        assert len(name) <= NAME_MAX_LENGTH and NAME_PATTERN.match(name), name
        assert len(description) <= 200 and DESCRIPTION_PATTERN.match(description), description
        names.append(name)
    assert len(set(names)) == len(names)
    assert any(n.startswith("ai-factory-support-ticket-summarizer-claude-haiku-4-5-") for n in names)


def test_profile_name_is_cut_to_64_and_changes_with_stage_and_source() -> None:
    long = "a" * 63
    name = profile_name(long, "b--c" + "d" * 59, "claude-sonnet-4-5", source_id="x", scope_path="Prod/T/F")
    assert len(name) == NAME_MAX_LENGTH and NAME_PATTERN.match(name)
    same = profile_name(long, "b--c" + "d" * 59, "claude-sonnet-4-5", source_id="x", scope_path="Prod/T/F")
    staging = profile_name(long, "b--c" + "d" * 59, "claude-sonnet-4-5", source_id="x", scope_path="Stg/T/F")
    moved = profile_name(long, "b--c" + "d" * 59, "claude-sonnet-4-5", source_id="y", scope_path="Prod/T/F")
    assert name == same and len({name, staging, moved}) == 3
    assert NAME_PATTERN.match(profile_name("t", "f--g", "m", source_id="x", scope_path="p"))


def test_the_key_record_gets_the_profile_arns_by_model_id(built: Built) -> None:
    (key,) = [
        r
        for r in built.template.find_resources(FEATURE_KEY_RESOURCE_TYPE).values()
        if r["Properties"][FeatureKeyProperties.FEATURE] == "ticket-summarizer"
    ]
    profiles = key["Properties"][FeatureKeyProperties.INFERENCE_PROFILES]
    by_source = {source(res): lid for lid, res in built.profiles_of("ticket-summarizer").items()}
    haiku = by_source[
        "arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}:inference-profile/"
        "us.anthropic.claude-haiku-4-5-20251001-v1:0"
    ]
    assert profiles["us.anthropic.claude-haiku-4-5-20251001-v1:0"] == {
        "Fn::GetAtt": [haiku, "InferenceProfileArn"]
    }
    assert set(profiles) == {"us.anthropic.claude-haiku-4-5-20251001-v1:0", "us.amazon.nova-lite-v1:0"}
    (legacy,) = [
        r
        for r in built.template.find_resources(FEATURE_KEY_RESOURCE_TYPE).values()
        if r["Properties"][FeatureKeyProperties.FEATURE] == "legacy"
    ]
    assert FeatureKeyProperties.INFERENCE_PROFILES not in legacy["Properties"]


def gateway_statements(built: Built) -> list[dict[str, Any]]:
    role_id = built.gateway_stack.resolve(built.gateway_stack.gateway.function.role.role_name)["Ref"]
    policies = built.gateway_template.find_resources(
        "AWS::IAM::Policy", {"Properties": {"Roles": [{"Ref": role_id}]}}
    )
    return [s for p in policies.values() for s in p["Properties"]["PolicyDocument"]["Statement"]]


def test_gateway_may_invoke_only_its_tagged_profiles_and_the_catalog_models(built: Built) -> None:
    statements = gateway_statements(built)
    bedrock = [s for s in statements if any(str(a).startswith("bedrock:Invoke") for a in _list(s["Action"]))]
    by_sid = {s["Sid"]: s for s in bedrock}
    assert set(by_sid) == {"InvokeCatalogModels", "InvokeFeatureInferenceProfiles"}
    profiles = by_sid["InvokeFeatureInferenceProfiles"]
    assert sorted(profiles["Action"]) == ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]
    assert profiles["Resource"] == {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":bedrock:",
                {"Ref": "AWS::Region"},
                ":",
                {"Ref": "AWS::AccountId"},
                ":application-inference-profile/*",
            ],
        ]
    }
    tag = built.gateway_stack.gateway.inference_profile_tag
    assert profiles["Condition"] == {"StringEquals": {f"aws:ResourceTag/{GATEWAY_TAG_KEY}": tag}}
    # What a profile copies stays reachable (invoking through a profile needs the model too), and
    # nothing else: no wildcard on models or system profiles.
    models = _list(by_sid["InvokeCatalogModels"]["Resource"])
    flat = [
        m if isinstance(m, str) else "".join(p if isinstance(p, str) else "~" for p in m["Fn::Join"][1])
        for m in models
    ]
    assert any(f.endswith("inference-profile/us.anthropic.claude-haiku-4-5-20251001-v1:0") for f in flat)
    assert any(f.endswith("foundation-model/amazon.titan-embed-text-v2:0") for f in flat)
    assert not any(f.endswith("/*") for f in flat)


def test_a_feature_on_an_imported_gateway_gets_no_profiles() -> None:
    """A profile must live in the gateway's account and region; a team's own stack is elsewhere."""
    stack = cdk.Stack(cdk.App(), "Team", env=cdk.Environment(account="444455556666", region="us-east-1"))
    gateway = LlmGateway.from_gateway_attributes(
        stack,
        "Gateway",
        attributes=GatewayAttributes(
            url="https://x.execute-api.us-east-1.amazonaws.com/prod/v1",
            key_provisioning_service_token="arn:aws:lambda:us-east-1:111111111111:function:p",
            key_provisioner_role_arn="arn:aws:iam::111111111111:role/p",
        ),
    )
    props = {k: v for k, v in FEATURE_PROPS.items() if k != "prompts"}
    feature = AiFeature(stack, "Feature", team="claims", gateway=gateway, **props)
    assert feature.inference_profiles is None
    template = Template.from_stack(stack)
    template.resource_count_is(PROFILE, 0)
    (key,) = template.find_resources(FEATURE_KEY_RESOURCE_TYPE).values()
    assert FeatureKeyProperties.INFERENCE_PROFILES not in key["Properties"]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
