"""The gateway's service to team accounts: who may call the shared provisioner, what it may do, the
registry, the published SSM parameters, and the platform app with team accounts under the nag packs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match

from ai_factory.catalog.model_catalog import ModelCatalog
from ai_factory.constructs.gateway.llm_gateway import LlmGateway
from aif_gateway import contract
from app import build_app

from .conftest import ENV, Synthesized

TEAM_A, TEAM_B = "222222222222", "333333333333"
ORG = "o-a1b2c3d4e5"


@pytest.fixture(scope="module")
def synthesized(build_gateway: Callable[..., Synthesized]) -> Synthesized:
    def extra(stack: cdk.Stack, gateway: LlmGateway) -> None:
        gateway.enable_team_accounts(accounts=[TEAM_A, TEAM_B], organization_id=ORG)
        gateway.publish_parameters()

    return build_gateway(extra=extra)


def test_only_the_listed_accounts_may_invoke_the_provisioner_and_only_inside_the_organization(
    synthesized: Synthesized,
) -> None:
    permissions = synthesized.template.find_resources("AWS::Lambda::Permission")
    by_principal = {p["Properties"]["Principal"]: p["Properties"] for p in permissions.values()}
    team_permissions = {k: v for k, v in by_principal.items() if k in (TEAM_A, TEAM_B)}
    assert sorted(team_permissions) == [TEAM_A, TEAM_B]
    for props in team_permissions.values():
        assert props["Action"] == "lambda:InvokeFunction"
        assert props["PrincipalOrgID"] == ORG
    # No wildcard principal is allowed anything anywhere in the stack (the only "*" principals are the
    # Deny-insecure-transport statements of queue and bucket policies).
    assert "*" not in by_principal
    resources = synthesized.template.to_json()["Resources"]
    allows = [
        statement
        for resource in resources.values()
        for statement in _statements(resource.get("Properties", {}))
        if statement.get("Effect") == "Allow"
    ]
    assert allows
    assert all(s.get("Principal") not in ("*", {"AWS": "*"}) for s in allows)


def _statements(value: Any) -> list[dict[str, Any]]:
    """Every IAM statement anywhere under ``value`` (policy documents, trust policies, key policies)."""
    if isinstance(value, dict):
        found = [value] if "Effect" in value and ("Action" in value or "NotAction" in value) else []
        return found + [s for v in value.values() for s in _statements(v)]
    if isinstance(value, list):
        return [s for v in value for s in _statements(v)]
    return []


def test_the_provisioner_may_assume_only_key_writer_roles_in_the_listed_accounts(
    synthesized: Synthesized,
) -> None:
    policies = synthesized.template.find_resources(
        "AWS::IAM::Policy",
        {
            "Properties": {
                "PolicyDocument": {
                    "Statement": Match.array_with([Match.object_like({"Sid": "AssumeTeamKeyWriterRoles"})])
                }
            }
        },
    )
    (policy,) = policies.values()
    statement = next(
        s
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if s.get("Sid") == "AssumeTeamKeyWriterRoles"
    )
    assert statement["Action"] == "sts:AssumeRole"
    resources = [synthesized.resolve(r) for r in statement["Resource"]]
    rendered = sorted(json.dumps(r) for r in resources)
    assert len(rendered) == 2
    for account, text in zip((TEAM_A, TEAM_B), rendered, strict=True):
        assert f":iam::{account}:role{contract.KEY_WRITER_ROLE_PATH}*" in text


def test_the_provisioner_runs_with_the_keys_table_and_the_registry(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "feature_key_provisioner.handler.on_event",
            "Environment": {
                "Variables": {
                    contract.KEYS_TABLE_ENV: Match.any_value(),
                    contract.FEATURE_REGISTRY_TABLE_ENV: Match.any_value(),
                }
            },
        },
    )
    synthesized.template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [{"AttributeName": "feature_id", "KeyType": "HASH"}],
            "SSESpecification": {"SSEEnabled": True, "SSEType": "KMS"},
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        },
    )


def test_the_gateway_publishes_what_from_lookup_reads(synthesized: Synthesized) -> None:
    params = synthesized.template.find_resources("AWS::SSM::Parameter")
    names = sorted(p["Properties"]["Name"] for p in params.values())
    assert names == sorted(f"{contract.GATEWAY_PARAMETER_PREFIX}/{n}" for n in contract.GatewayParameters.ALL)
    assert {p["Properties"]["Tier"] for p in params.values()} == {"Advanced"}
    by_name = {p["Properties"]["Name"]: p["Properties"]["Value"] for p in params.values()}
    edge = f"{contract.GATEWAY_PARAMETER_PREFIX}/{contract.GatewayParameters.EDGE_NAMESPACE}"
    # A concrete value (the online sampler's filter is built from it at the team's synth).
    assert by_name[edge] == synthesized.gateway.edge_namespace
    assert contract.EDGE_NAMESPACE_RE.fullmatch(by_name[edge])


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"accounts": []}, "accounts: list at least one team account ID"),
        ({"accounts": "222222222222"}, "accounts: list at least one team account ID"),
        ({"accounts": ["*"]}, r"accounts: \['\*'\] are not 12-digit AWS account IDs"),
        (
            {"accounts": [TEAM_A], "organization_id": "acme"},
            "organization_id: 'acme' is not an organization ID",
        ),
    ],
)
def test_bad_team_account_settings_are_refused_with_the_field(props: dict[str, Any], message: str) -> None:
    stack = cdk.Stack(cdk.App(), "TestGateway", env=ENV)
    gateway = LlmGateway(stack, "Gateway", catalog=ModelCatalog.load())
    with pytest.raises(ValueError, match=message):
        gateway.enable_team_accounts(**props)


def test_imported_gateway_without_team_access_is_refused_by_ai_feature() -> None:
    from ai_factory.constructs.ai_feature import AiFeature, AiFeatureError
    from ai_factory.constructs.gateway.imported import GatewayAttributes

    stack = cdk.Stack(cdk.App(), "Team", env=ENV)
    with pytest.raises(ValueError, match="url: must be an https:// URL"):
        LlmGateway.from_gateway_attributes(
            stack,
            "Bad",
            attributes=GatewayAttributes(
                url="http://x", key_provisioning_service_token="arn:x", key_provisioner_role_arn="arn:y"
            ),
        )
    with pytest.raises(ValueError, match="key_provisioner_role_arn: is required"):
        LlmGateway.from_gateway_attributes(
            stack,
            "Missing",
            attributes=GatewayAttributes(
                url="https://x", key_provisioning_service_token="arn:x", key_provisioner_role_arn=""
            ),
        )
    gateway = LlmGateway.from_gateway_attributes(
        stack,
        "Gateway",
        attributes=GatewayAttributes(
            url="https://x.execute-api.us-east-1.amazonaws.com/prod/v1",
            key_provisioning_service_token="arn:aws:lambda:us-east-1:111111111111:function:p",
            key_provisioner_role_arn="arn:aws:iam::111111111111:role/p",
        ),
    )
    feature = AiFeature(
        stack,
        "Feature",
        team="claims",
        gateway=gateway,
        feature="triage",
        owner="a@example.com",
        clearance="internal",
        models=["chat-fast"],
        monthly_budget_usd=10,
        rate_limit_rpm=10,
    )
    assert feature.provisioner_function is None and feature.key_writer_role is not None
    assert AiFeatureError  # the error type teams catch


@pytest.mark.synth
def test_the_platform_app_with_team_accounts_passes_the_nag_packs(tmp_path: Path) -> None:
    app = build_app(
        outdir=str(tmp_path),
        context={"ai-factory:teamAccounts": [TEAM_A, TEAM_B], "ai-factory:organizationId": ORG},
    )
    error: Exception | None = None
    try:
        app.synth()
    except Exception as exc:  # ValidationFailed arrives as a jsii RuntimeError
        error = exc
    report = tmp_path / "validation-report.json"
    findings = []
    if report.exists():
        findings = [
            (v["ruleName"], c.get("constructPath"))
            for p in json.loads(report.read_text())["pluginReports"]
            for v in p["violations"]
            for c in v.get("violatingConstructs", [])
        ]
    assert error is None and findings == [], findings
    template = json.loads((tmp_path / "AiFactoryGateway.template.json").read_text())
    assert any(
        r["Type"] == "AWS::Lambda::Permission" and r["Properties"].get("PrincipalOrgID") == ORG
        for r in template["Resources"].values()
    )


def _provisioner(synthesized: Synthesized) -> dict[str, Any]:
    functions = synthesized.template.find_resources(
        "AWS::Lambda::Function",
        {
            "Properties": {
                "Environment": {"Variables": {contract.FEATURE_REGISTRY_TABLE_ENV: Match.any_value()}}
            }
        },
    )
    (function,) = functions.values()
    return dict(function["Properties"])


def _provisioner_statements(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    policies = synthesized.template.find_resources(
        "AWS::IAM::Policy",
        {
            "Properties": {
                "PolicyDocument": {
                    "Statement": Match.array_with([Match.object_like({"Sid": "AssumeTeamKeyWriterRoles"})])
                }
            }
        },
    )
    (policy,) = policies.values()
    return {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"] if "Sid" in s}


def test_the_provisioner_knows_the_api_stage_namespace_cap_and_profile_tag(synthesized: Synthesized) -> None:
    env = _provisioner(synthesized)["Environment"]["Variables"]
    gateway = synthesized.gateway
    edge = contract.TeamEdgeEnv
    assert env[edge.REST_API_ID] == synthesized.resolve(gateway.api.rest_api_id)
    assert env[edge.STAGE] == synthesized.resolve(gateway.api.deployment_stage.stage_name)
    assert env[edge.NAMESPACE] == gateway.edge_namespace
    assert env[edge.MAX_RATE_LIMIT_RPM] == "600"
    assert env[edge.GATEWAY_TAG] == gateway.inference_profile_tag


def test_every_create_change_and_delete_of_plans_keys_and_profiles_needs_the_gateway_tag(
    synthesized: Synthesized,
) -> None:
    statements = _provisioner_statements(synthesized)
    tag = synthesized.gateway.inference_profile_tag
    request = {"StringEquals": {"aws:RequestTag/ai-factory:gateway": tag}}
    resource = {"StringEquals": {"aws:ResourceTag/ai-factory:gateway": tag}}
    expected = {
        "CreateTaggedUsagePlansAndKeys": (["apigateway:POST"], request),
        "TagNewUsagePlansAndKeys": (["apigateway:PUT"], request),
        "ChangeTaggedUsagePlansAndKeys": (
            ["apigateway:PATCH", "apigateway:DELETE", "apigateway:POST"],
            resource,
        ),
        "CreateTaggedInferenceProfiles": (["bedrock:CreateInferenceProfile", "bedrock:TagResource"], request),
        "ManageTaggedInferenceProfiles": (
            ["bedrock:GetInferenceProfile", "bedrock:DeleteInferenceProfile"],
            resource,
        ),
    }
    for sid, (actions, condition) in expected.items():
        statement = statements[sid]
        assert sorted(_list(statement["Action"])) == sorted(actions), sid
        assert statement["Condition"] == condition, sid
    # A wildcard on API Gateway or Bedrock without a condition: only the list call, which has no
    # resource type to name.
    unconditioned = {
        sid: s
        for sid, s in statements.items()
        if "Condition" not in s
        and any(str(a).split(":")[0] in ("apigateway", "bedrock") for a in _list(s["Action"]))
        and any("*" in json.dumps(synthesized.resolve(r)) for r in _list(s["Resource"]))
    }
    assert sorted(unconditioned) == ["FindInferenceProfilesByName"]
    assert unconditioned["FindInferenceProfilesByName"]["Action"] == "bedrock:ListInferenceProfiles"
    # Reads of plans and keys: the two collections, by exact ARN.
    find = [json.dumps(synthesized.resolve(r)) for r in statements["FindUsagePlansAndKeys"]["Resource"]]
    assert len(find) == 2 and all("*" not in r for r in find)
    # What a profile may copy: the catalog's models and system profiles, never a model wildcard.
    sources = [
        json.dumps(synthesized.resolve(r)) for r in statements["CreateTaggedInferenceProfiles"]["Resource"]
    ]
    wildcards = [r for r in sources if "*" in r]
    assert len(wildcards) == 1 and "application-inference-profile/*" in wildcards[0]
    assert any("inference-profile/us.anthropic.claude-haiku-4-5" in r for r in sources)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_the_gateway_may_invoke_the_profiles_the_provisioner_tags(synthesized: Synthesized) -> None:
    """The gateway role's invoke permission and the provisioner's tag name the same value."""
    env = _provisioner(synthesized)["Environment"]["Variables"]
    synthesized.template.has_resource_properties(
        "AWS::IAM::Policy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Sid": "InvokeFeatureInferenceProfiles",
                                "Condition": {
                                    "StringEquals": {
                                        "aws:ResourceTag/ai-factory:gateway": env[
                                            contract.TeamEdgeEnv.GATEWAY_TAG
                                        ]
                                    }
                                },
                            }
                        )
                    ]
                )
            }
        },
    )


def test_the_provisioner_asset_ships_the_routes_the_gateway_calls(synthesized: Synthesized) -> None:
    from ai_factory.constructs.inference_profiles import bedrock_targets

    asset = _provisioner(synthesized)["Code"]
    assert asset  # a staged directory asset: read the routes file from the cloud assembly
    outdir = Path(cdk.Stage.of(synthesized.stack).outdir)  # type: ignore[union-attr]
    files = list(outdir.glob(f"asset.*/feature_key_provisioner/{contract.TEAM_EDGE_ROUTES_FILE}"))
    assert len(files) == 1
    routes = json.loads(files[0].read_text())
    config = synthesized.gateway.config
    assert routes["chat-fast"] == [
        [invoke_id, name, "inference-profile"]
        for invoke_id, name in bedrock_targets(config, ["chat-fast"]).items()
    ]
    assert routes["embed"] == [["amazon.titan-embed-text-v2:0", "titan-embed-v2", "foundation-model"]]


@pytest.mark.parametrize("cap", [0, 1.5, True, 600_001, "600"])
def test_a_bad_rate_cap_is_refused_with_the_field(cap: Any) -> None:
    stack = cdk.Stack(cdk.App(), "TestGateway", env=ENV)
    gateway = LlmGateway(stack, "Gateway", catalog=ModelCatalog.load())
    with pytest.raises(
        ValueError, match="max_feature_rate_limit_rpm: must be a whole number of requests per minute"
    ):
        gateway.enable_team_accounts(accounts=[TEAM_A], max_feature_rate_limit_rpm=cap)


def test_a_team_account_feature_asks_the_platform_for_its_daily_quota() -> None:
    from aws_cdk.assertions import Template

    from ai_factory.constructs.ai_feature import AiFeature
    from ai_factory.constructs.gateway.imported import GatewayAttributes

    stack = cdk.Stack(cdk.App(), "Team", env=ENV)
    gateway = LlmGateway.from_gateway_attributes(
        stack,
        "Gateway",
        attributes=GatewayAttributes(
            url="https://x.execute-api.us-east-1.amazonaws.com/prod/v1",
            key_provisioning_service_token="arn:aws:lambda:us-east-1:111111111111:function:p",
            key_provisioner_role_arn="arn:aws:iam::111111111111:role/p",
        ),
    )
    AiFeature(
        stack,
        "Feature",
        team="claims",
        gateway=gateway,
        feature="triage",
        owner="a@example.com",
        clearance="internal",
        models=["chat-fast"],
        monthly_budget_usd=10,
        rate_limit_rpm=10,
        daily_request_quota=5000,
    )
    Template.from_stack(stack).has_resource_properties(
        contract.FEATURE_KEY_RESOURCE_TYPE,
        {
            contract.FeatureKeyProperties.DAILY_REQUEST_QUOTA: "5000",
            contract.FeatureKeyProperties.RATE_LIMIT_RPM: "10",
            contract.TeamFeatureKeyProperties.OWNER: "a@example.com",
        },
    )
