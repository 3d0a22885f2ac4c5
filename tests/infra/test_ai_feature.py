"""AiFeature: the key custom resource and its least privilege, the secret, the caller role, tags,
prompt registration, observability hooks, and every validation error."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Template

from ai_factory.catalog.model_catalog import CatalogWarning, ModelCatalog
from ai_factory.constructs.ai_feature import (
    AiFeature,
    AiFeatureError,
    AlertThresholds,
    stage_provisioner_asset,
)
from aif_gateway.contract import PROMPTS_METADATA_TYPE
from stacks.gateway_stack import GatewayStack
from stacks.team_stack import TeamStack
from tests.catalog_evidence import PASSING_EVIDENCE

ENV = cdk.Environment(account="111122223333", region="us-east-1")
REPO = Path(__file__).resolve().parents[2]
SUPPORT_PROMPT = REPO / "features" / "support" / "prompts" / "summarize-ticket.yaml"
CALLER_ARN = "arn:aws:iam::111122223333:role/support-app"

FEATURE_PROPS: dict[str, Any] = {
    "feature": "ticket-summarizer",
    "owner": "support-leads@example.com",
    "clearance": "internal",
    "models": ["chat-fast"],
    "prompts": [str(SUPPORT_PROMPT)],
    "monthly_budget_usd": 250,
    "rate_limit_rpm": 120,
    "alert_thresholds": AlertThresholds(p99_latency_ms=8000, error_rate_pct=5, budget_pct=80),
}


@dataclass
class Built:
    app: cdk.App
    gateway_stack: GatewayStack
    team: TeamStack
    feature: AiFeature
    template: Template

    def logical_id(self, construct: Any) -> str:
        return logical_id(self.team, construct)


def logical_id(stack: cdk.Stack, construct: Any) -> str:
    """The logical ID of an L2 construct's CloudFormation resource in ``stack``."""
    return stack.get_logical_id(construct.node.default_child)


def new_team(app: cdk.App | None = None, team: str = "support") -> tuple[cdk.App, GatewayStack, TeamStack]:
    app = app or cdk.App()
    gateway = GatewayStack(app, "Gateway", env=ENV)
    return app, gateway, TeamStack(app, "Team", team=team, gateway_stack=gateway)


def build(**overrides: Any) -> Built:
    app, gateway, team = new_team()
    feature = AiFeature(team, "Summarizer", **{**FEATURE_PROPS, **overrides})
    return Built(app, gateway, team, feature, Template.from_stack(team))


@pytest.fixture(scope="module")
def built() -> Built:
    return build(callers=[iam.ArnPrincipal(CALLER_ARN)])


@pytest.fixture(scope="module")
def without_callers() -> Built:
    return build()


def policy_statements(resource: Mapping[str, Any]) -> list[dict[str, Any]]:
    props = resource["Properties"]
    if "PolicyDocument" in props:
        return list(props["PolicyDocument"]["Statement"])
    return [s for p in props.get("Policies", []) for s in p["PolicyDocument"]["Statement"]]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# ------------------------------------------------------------------------------- key custom resource


def test_the_custom_resource_carries_the_features_settings(built: Built) -> None:
    built.template.resource_count_is("Custom::AiFactoryFeatureKey", 1)
    props = next(iter(built.template.find_resources("Custom::AiFactoryFeatureKey").values()))["Properties"]
    assert props["Team"] == "support"
    assert props["Feature"] == "ticket-summarizer"
    assert props["AllowedModels"] == ["chat-fast"]
    assert (props["MonthlyBudgetUsd"], props["RateLimitRpm"], props["KeyGeneration"]) == ("250.0", "120", "1")
    assert props["Clearance"] == FEATURE_PROPS["clearance"]  # the gateway enforces it per route target
    assert (props["TokensPerMinute"], props["MaxConcurrency"]) == ("2000000", "32")  # the defaults
    assert props["SecretArn"] == {"Ref": built.logical_id(built.feature.secret)}
    # The gateway stack's keys table, imported across stacks.
    keys_table = built.gateway_stack.resolve(built.gateway_stack.gateway.keys_table.table_name)
    assert "Fn::ImportValue" in props["KeysTable"]
    assert keys_table["Ref"] in props["KeysTable"]["Fn::ImportValue"]


def test_the_provisioner_is_python_3_14_on_arm64_with_a_plain_asset(built: Built) -> None:
    built.template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Runtime": "python3.14",
            "Architectures": ["arm64"],
            "Handler": "feature_key_provisioner.handler.on_event",
            "Role": {"Fn::GetAtt": [built.logical_id(built.feature.provisioner_function.role), "Arn"]},
        },
    )


def test_the_provisioner_has_least_privilege(built: Built) -> None:
    role_id = built.logical_id(built.feature.provisioner_function.role)
    role = built.template.find_resources("AWS::IAM::Role")[role_id]
    # Nothing else grants to the role: its only policy is inline.
    for policy in built.template.find_resources("AWS::IAM::Policy").values():
        assert {"Ref": role_id} not in policy["Properties"]["Roles"]
    assert "ManagedPolicyArns" not in role["Properties"]

    by_sid = {s["Sid"]: s for s in policy_statements(role)}
    secret = {"Ref": built.logical_id(built.feature.secret)}
    team_key = {"Fn::GetAtt": [built.logical_id(built.team.secrets_key), "Arn"]}
    actions = {sid: sorted(as_list(s["Action"])) for sid, s in by_sid.items()}
    assert actions == {
        "WriteOwnLogGroup": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "WriteKeyRecords": ["dynamodb:PutItem", "dynamodb:UpdateItem"],
        "FindKeyById": ["dynamodb:Query"],
        "UseGatewayKeyThroughDynamoDb": ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"],
        "WriteFeatureSecret": ["secretsmanager:PutSecretValue"],
        "ReadFeatureSecretForRollback": ["secretsmanager:GetSecretValue"],
        "EncryptFeatureSecret": ["kms:Decrypt", "kms:GenerateDataKey"],
    }
    assert by_sid["WriteFeatureSecret"]["Resource"] == secret
    assert by_sid["ReadFeatureSecretForRollback"]["Resource"] == secret
    assert by_sid["EncryptFeatureSecret"]["Resource"] == team_key
    assert "Fn::ImportValue" in by_sid["WriteKeyRecords"]["Resource"]  # the table ARN, nothing wider
    assert json.dumps(by_sid["FindKeyById"]["Resource"]).endswith('"/index/by-key-id"]]}')
    for sid in ("UseGatewayKeyThroughDynamoDb", "EncryptFeatureSecret"):
        assert set(by_sid[sid]["Condition"]["StringEquals"]) == {"kms:ViaService"}
    for statement in by_sid.values():
        assert statement["Effect"] == "Allow"
        assert "*" not in json.dumps(statement["Resource"])


def test_the_framework_may_invoke_only_the_provisioner(built: Built) -> None:
    provider_role = built.feature.node.find_child("ProviderRole")
    policy = built.template.find_resources("AWS::IAM::Policy")[
        built.logical_id(provider_role.node.find_child("DefaultPolicy"))
    ]
    function_arn = {"Fn::GetAtt": [built.logical_id(built.feature.provisioner_function), "Arn"]}
    for statement in policy_statements(policy):
        if any(a.startswith("lambda:") for a in as_list(statement["Action"])):
            for resource in as_list(statement["Resource"]):
                assert resource == function_arn or resource == {"Fn::Join": ["", [function_arn, ":*"]]}


def test_the_secret_is_named_per_feature_and_encrypted_with_the_teams_rotating_key(built: Built) -> None:
    key_id = built.logical_id(built.team.secrets_key)
    built.template.has_resource_properties(
        "AWS::SecretsManager::Secret",
        {"Name": "ai-factory/support/ticket-summarizer/api-key", "KmsKeyId": {"Fn::GetAtt": [key_id, "Arn"]}},
    )
    built.template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def test_a_feature_outside_a_team_stack_gets_its_own_key() -> None:
    app, gateway, _ = new_team()
    stack = cdk.Stack(app, "Plain", env=ENV)
    feature = AiFeature(stack, "F", team="ops", gateway=gateway.gateway, **{**FEATURE_PROPS, "prompts": []})
    template = Template.from_stack(stack)
    template.resource_count_is("AWS::KMS::Key", 1)
    key_id = logical_id(stack, feature.encryption_key)
    template.has_resource_properties(
        "AWS::SecretsManager::Secret", {"KmsKeyId": {"Fn::GetAtt": [key_id, "Arn"]}}
    )


# ------------------------------------------------------------------------------------ caller role


def test_the_caller_role_can_read_exactly_the_secret(built: Built) -> None:
    assert built.feature.caller_role is not None
    role_id = built.logical_id(built.feature.caller_role)
    role = built.template.find_resources("AWS::IAM::Role")[role_id]
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"] == [
        {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"AWS": CALLER_ARN}}
    ]
    policies = [
        p
        for p in built.template.find_resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    assert len(policies) == 1
    team_key = {"Fn::GetAtt": [built.logical_id(built.team.secrets_key), "Arn"]}
    assert policy_statements(policies[0]) == [
        {
            "Action": "secretsmanager:GetSecretValue",
            "Effect": "Allow",
            "Resource": {"Ref": built.logical_id(built.feature.secret)},
        },
        {
            "Action": "kms:Decrypt",
            "Condition": {
                "StringEquals": {
                    "kms:ViaService": {
                        "Fn::Join": ["", ["secretsmanager.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]
                    }
                }
            },
            "Effect": "Allow",
            "Resource": team_key,
        },
    ]


def test_no_caller_role_without_callers(without_callers: Built) -> None:
    assert without_callers.feature.caller_role is None
    roles = without_callers.template.find_resources("AWS::IAM::Role")
    assert not [k for k in roles if "CallerRole" in k]
    assert not [
        s
        for p in without_callers.template.find_resources("AWS::IAM::Policy").values()
        for s in policy_statements(p)
        if "secretsmanager:GetSecretValue" in as_list(s["Action"])
    ]


# ------------------------------------------------------------------------------------------- tags


def test_everything_taggable_carries_team_feature_owner_and_clearance(built: Built) -> None:
    expected = {
        "Team": "support",
        "Feature": "ticket-summarizer",
        "Owner": "support-leads@example.com",
        "Clearance": "internal",
    }
    taggable = (
        "AWS::SecretsManager::Secret",
        "AWS::IAM::Role",
        "AWS::Lambda::Function",
        "AWS::Logs::LogGroup",
    )
    checked = 0
    for resource_type in taggable:
        for logical_id, resource in built.template.find_resources(resource_type).items():
            tags = {t["Key"]: t["Value"] for t in resource["Properties"].get("Tags", [])}
            if logical_id.startswith("AiFactoryPromptPublisher"):
                # The team stack's one prompt publisher serves all its features: the team's cost.
                assert tags.get("Team") == "support", f"{logical_id} has tags {tags}"
                continue
            assert expected.items() <= tags.items(), f"{logical_id} has tags {tags}"
            checked += 1
    assert checked >= 8


# ------------------------------------------------------------------------------- prompts metadata


def test_prompts_are_validated_and_recorded_for_ci(built: Built) -> None:
    assert [p.name for p in built.feature.prompts] == ["summarize-ticket"]
    prompt = built.feature.prompts[0]
    assert prompt.model == "chat-fast"
    assert prompt.content_hash.startswith("sha256:")
    # Template.from_stack synthesized the app; read the cloud assembly as `ai-factory prompts` would.
    assembly = Path(built.app.outdir)
    manifest = json.loads((assembly / "manifest.json").read_text())
    artifact = manifest["artifacts"][built.team.artifact_id]
    metadata = dict(artifact.get("metadata", {}))
    if "additionalMetadataFile" in artifact:
        metadata.update(json.loads((assembly / artifact["additionalMetadataFile"]).read_text()))
    entries = [
        (path, m["data"]) for path, ms in metadata.items() for m in ms if m["type"] == PROMPTS_METADATA_TYPE
    ]
    assert len(entries) == 1
    assert entries[0][0] == "/Team/Summarizer"
    [entry] = entries[0][1]
    assert entry["team"] == "support" and entry["feature"] == "ticket-summarizer"
    assert entry["name"] == "summarize-ticket"
    assert entry["contentHash"] == prompt.content_hash
    assert entry["source"].endswith("summarize-ticket.yaml")
    assert entry["evalSuite"].endswith("evals/summarize-ticket.yaml")


# ----------------------------------------------------------------------------------- observability


def test_metrics_use_the_gateways_team_feature_dimension_set(built: Built) -> None:
    feature = built.feature
    expected = {
        feature.metric_requests: ("Requests", "Sum"),
        feature.metric_cost: ("CostUSD", "Sum"),
        feature.metric_latency: ("LatencyMs", "p99"),
        feature.metric_errors: ("Status5xx", "Sum"),
        feature.metric_client_errors: ("Status4xx", "Sum"),
        feature.metric_throttled: ("Throttled", "Sum"),
    }
    for method, (name, statistic) in expected.items():
        metric = method()
        assert (metric.namespace, metric.metric_name, metric.statistic) == ("AIFactory", name, statistic)
        assert metric.dimensions == {"Team": "support", "Feature": "ticket-summarizer"}
    assert feature.metric_latency(statistic="p50").statistic == "p50"


def test_alarm_inputs_follow_the_thresholds(built: Built) -> None:
    inputs = {a.name: a for a in built.feature.alarm_inputs}
    assert set(inputs) == {"Latency", "ErrorRate", "SpendPace"}
    assert inputs["Latency"].threshold == 8000
    assert inputs["ErrorRate"].threshold == 5
    assert inputs["SpendPace"].threshold == pytest.approx(250 * 0.80 / 30, rel=1e-5)
    assert "support/ticket-summarizer" in inputs["SpendPace"].description
    widgets = built.feature.dashboard_widgets()
    assert len(widgets) == 3
    stack = cdk.Stack(cdk.App(), "Dash")
    from aws_cdk import aws_cloudwatch as cloudwatch

    cloudwatch.Dashboard(stack, "D", widgets=[widgets])
    body = json.dumps(stack.resolve(Template.from_stack(stack).to_json()))
    assert "ticket-summarizer" in body and "LatencyMs" in body


# ---------------------------------------------------------------------------------------- packaging


def test_the_provisioner_asset_imports_without_the_construct_library(tmp_path: Path) -> None:
    asset = stage_provisioner_asset(out_root=tmp_path)
    assert sorted(p.name for p in (asset / "aif_gateway").iterdir()) == [
        "__init__.py",
        "contract.py",
        "dynamo_store.py",
        "records.py",
    ]
    code = (
        "import sys, feature_key_provisioner.handler as h; "
        "assert 'ai_factory' not in sys.modules and 'yaml' not in sys.modules; print(h.on_event.__name__)"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", code], cwd=asset, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "on_event"
    assert stage_provisioner_asset(out_root=tmp_path) == asset, "content-addressed: same inputs, same folder"


# ----------------------------------------------------------------------------------------- errors


def _suite_less_prompt(tmp: Path) -> str:
    prompt = tmp / "no-suite.yaml"
    prompt.write_text(
        "name: no-suite\nowner: a@example.com\nmodel: chat-fast\neval_suite: ../missing.yaml\n"
        "template: 'Hi {{name}}'\n"
    )
    return str(prompt)


def _smart_prompt(tmp: Path) -> str:
    (tmp / "suite.yaml").write_text("name: s\nprompt: smart\ncases: []\n")
    prompt = tmp / "smart.yaml"
    prompt.write_text(
        "name: smart\nowner: a@example.com\nmodel: chat-smart\neval_suite: suite.yaml\n"
        "template: 'Hi {{name}}'\n"
    )
    return str(prompt)


ERROR_CASES: list[tuple[str, Callable[[Path], dict[str, Any]], str]] = [
    ("unknown alias", lambda t: {"models": ["gpt-9"]}, "models: 'gpt-9' is not a route in the model catalog"),
    ("no models", lambda t: {"models": []}, "models: must be a non-empty list"),
    ("duplicate alias", lambda t: {"models": ["chat-fast", "chat-fast"]}, "models: lists an alias twice"),
    ("prompt without suite", lambda t: {"prompts": [_suite_less_prompt(t)]}, "prompts: .*eval_suite"),
    ("missing prompt file", lambda t: {"prompts": [str(t / "nope.yaml")]}, "prompts: .*nope.yaml"),
    (
        "prompt model not allowed",
        lambda t: {"prompts": [_smart_prompt(t)]},
        "prompts: .*model 'chat-smart' is not one of the feature's models",
    ),
    (
        "zero budget",
        lambda t: {"monthly_budget_usd": 0},
        "monthly_budget_usd: must be a number greater than 0",
    ),
    ("negative budget", lambda t: {"monthly_budget_usd": -5}, "monthly_budget_usd"),
    ("nan budget", lambda t: {"monthly_budget_usd": float("nan")}, "monthly_budget_usd"),
    ("zero rate", lambda t: {"rate_limit_rpm": 0}, "rate_limit_rpm: must be a whole number greater than 0"),
    ("fractional rate", lambda t: {"rate_limit_rpm": 1.5}, "rate_limit_rpm"),
    ("zero tokens per minute", lambda t: {"tokens_per_minute": 0}, "tokens_per_minute: must be a whole"),
    ("fractional concurrency", lambda t: {"max_concurrency": 2.5}, "max_concurrency"),
    (
        "bad feature name",
        lambda t: {"feature": "Ticket_Summarizer"},
        "feature: 'Ticket_Summarizer' is not valid",
    ),
    (
        "bad clearance",
        lambda t: {"clearance": "secret"},
        "clearance: 'secret' is not one of public, internal",
    ),
    (
        "data above a route target's ceiling",
        lambda t: {"clearance": "confidential", "models": ["chat-claude-any"], "prompts": []},
        "clearance: route 'chat-claude-any' target 'claude-sonnet-4-5-anthropic' .* may receive up to "
        "internal data, below clearance confidential",
    ),
    ("bad guardrail", lambda t: {"guardrail_policy": "lenient"}, "guardrail_policy: 'lenient' is not one of"),
    ("empty owner", lambda t: {"owner": " "}, "owner: must be a non-empty string"),
    ("datasets", lambda t: {"datasets": ["crm"]}, "datasets: 'crm' is not a GovernedDataset"),
    (
        "bad threshold",
        lambda t: {"alert_thresholds": AlertThresholds(error_rate_pct=0)},
        "alert_thresholds.error_rate_pct",
    ),
    ("bad key generation", lambda t: {"key_generation": 0}, "key_generation"),
]


@pytest.mark.parametrize(("case", "props", "message"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_invalid_configurations_fail_naming_the_feature_and_field(
    tmp_path: Path, case: str, props: Callable[[Path], dict[str, Any]], message: str
) -> None:
    _, _, team = new_team()
    overrides = props(tmp_path)
    feature = overrides.get("feature", FEATURE_PROPS["feature"])
    with pytest.raises(AiFeatureError, match=rf"^AiFeature support/{feature}: {message}"):
        AiFeature(team, "F", **{**FEATURE_PROPS, **overrides})


def test_an_invalid_team_name_is_refused() -> None:
    _, gateway, _ = new_team()
    stack = cdk.Stack(gateway.node.root, "Plain", env=ENV)  # type: ignore[arg-type]
    with pytest.raises(
        AiFeatureError, match=r"^AiFeature Support/ticket-summarizer: team: 'Support' is not valid"
    ):
        AiFeature(stack, "F", team="Support", gateway=gateway.gateway, **FEATURE_PROPS)


def test_outside_a_team_stack_team_and_gateway_are_required() -> None:
    stack = cdk.Stack(cdk.App(), "Plain", env=ENV)
    with pytest.raises(AiFeatureError, match="team: is required outside a TeamStack"):
        AiFeature(stack, "F", **FEATURE_PROPS)


def test_a_route_to_deprecated_models_only_is_refused(tmp_path: Path) -> None:
    with pytest.warns(CatalogWarning):
        catalog = ModelCatalog.from_dict(
            {
                "models": [
                    {
                        "name": "old",
                        "provider": "echo",
                        "modality": "chat",
                        "status": "deprecated",
                        "deprecated_on": "2026-01-31",
                        "prices": {},
                    },
                    {
                        "name": "new",
                        "provider": "echo",
                        "modality": "chat",
                        "status": "approved",
                        "evidence": PASSING_EVIDENCE,
                        "prices": {},
                    },
                ],
                "routes": [
                    {"alias": "legacy", "targets": ["old"]},
                    {"alias": "mixed", "targets": ["new", "old"]},
                ],
            }
        )
    _, _, team = new_team()
    base = {**FEATURE_PROPS, "prompts": []}
    with pytest.raises(AiFeatureError, match="models: 'legacy' routes only to models that are not approved"):
        AiFeature(team, "F", **{**base, "models": ["legacy"]}, catalog=catalog)
    AiFeature(team, "G", **{**base, "feature": "other", "models": ["mixed"]}, catalog=catalog)


def test_the_same_team_and_feature_twice_in_one_app_is_refused() -> None:
    app, gateway, team = new_team()
    AiFeature(team, "First", **FEATURE_PROPS)
    other_stack = TeamStack(app, "Team2", team="support", gateway_stack=gateway)
    with pytest.raises(
        AiFeatureError, match=r"feature: support/ticket-summarizer is already defined at Team/First"
    ):
        AiFeature(other_stack, "Second", **FEATURE_PROPS)
    # Another app is a separate registry.
    _, _, fresh = new_team()
    AiFeature(fresh, "First", **FEATURE_PROPS)


def test_relative_prompt_paths_start_at_the_callers_folder() -> None:
    _, _, team = new_team()
    # This file lives in tests/infra: the prompt is two folders up.
    feature = AiFeature(
        team, "F", **{**FEATURE_PROPS, "prompts": ["../../features/support/prompts/summarize-ticket.yaml"]}
    )
    assert feature.prompts[0].name == "summarize-ticket"


def test_a_feature_is_grantable_through_its_caller_role() -> None:
    from aws_cdk import aws_s3 as s3

    app = cdk.App()
    gateway = GatewayStack(app, "Gw", env=ENV)
    team = TeamStack(app, "Team", team="support", gateway_stack=gateway, env=ENV)
    props = {**FEATURE_PROPS, "prompts": []}
    feature = AiFeature(team, "Bot", **{**props, "callers": [iam.AccountPrincipal("111122223333")]})
    bucket = s3.Bucket(team, "Docs")
    grant = bucket.grant_read(feature)
    assert grant.success and feature.grant_principal is feature.caller_role
    policies = Template.from_stack(team).find_resources("AWS::IAM::Policy")
    assert any(
        "s3:GetObject*" in json.dumps(p["Properties"]["PolicyDocument"]) and "CallerRole" in json.dumps(p)
        for p in policies.values()
    )
    quiet = AiFeature(team, "Quiet", **{**props, "feature": "quiet"})
    with pytest.raises(AiFeatureError, match="callers: the feature has no caller role"):
        quiet.grant_principal  # noqa: B018
    # Raised inside a CDK call, jsii passes the same message on as a RuntimeError.
    with pytest.raises(
        RuntimeError, match="AiFeature support/quiet: callers: the feature has no caller role"
    ):
        bucket.grant_read(quiet)
