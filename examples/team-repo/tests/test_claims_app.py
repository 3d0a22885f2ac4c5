"""The claims team's app: synthesizes against the imported platform gateway with the cdk-nag packs clean,
and grants the platform exactly what it needs to write the feature's key into this account.

Run from this folder with ``pytest`` (the platform repo's ``make test`` runs it too).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

HERE = Path(__file__).resolve().parents[1]
# Appended, not put first: in the platform repo's test run the platform's own ``app`` module must stay
# the one ``import app`` finds (this app is loaded by path, under its own name).
if str(HERE) not in sys.path:
    sys.path.append(str(HERE))
os.environ.setdefault("CDK_VALIDATION", "false")

from claims_team.stack import ClaimsFeaturesStack  # noqa: E402

from ai_factory import GatewayAttributes  # noqa: E402

PLATFORM_ROLE = (
    "arn:aws:iam::111111111111:role/AiFactoryGateway-GatewayTeamAccountsProvisionerRol-9QbV2sT7wZ3D"
)
TEAM_ENV = cdk.Environment(account="222222222222", region="us-east-1")


def _context() -> dict[str, Any]:
    """cdk.json's context plus the cached lookups (what the CDK CLI hands the app)."""
    context = json.loads((HERE / "cdk.json").read_text(encoding="utf-8"))["context"]
    context.update(json.loads((HERE / "cdk.context.json").read_text(encoding="utf-8")))
    return context


def _team_app_module() -> Any:
    # Loaded by path under its own name: the platform repo has an app.py of its own.
    spec = importlib.util.spec_from_file_location("claims_team_app", HERE / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.synth
def test_the_app_synthesizes_from_cached_lookups_with_the_nag_packs_clean(tmp_path: Path) -> None:
    app = _team_app_module().build_app(outdir=str(tmp_path), context=_context())

    assembly = app.synth()  # raises on any unacknowledged cdk-nag finding

    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert manifest.get("missing", []) == []  # every lookup came from cdk.context.json
    report = tmp_path / "validation-report.json"
    if report.exists():
        violations = [v for p in json.loads(report.read_text())["pluginReports"] for v in p["violations"]]
        assert violations == []
    warnings = [
        entry
        for artifact in manifest["artifacts"].values()
        for entries in (artifact.get("metadata") or {}).values()
        for entry in entries
        if entry["type"] in ("aws:cdk:warning", "aws:cdk:error")
    ]
    assert warnings == []
    # The platform gateway's edge namespace, so the team could sample its features online.
    stack = app.node.find_child("ClaimsFeatures")
    assert isinstance(stack, ClaimsFeaturesStack)
    assert stack.gateway.edge_namespace == "96d988c2401a"
    template = assembly.get_stack_by_name("ClaimsFeatures").template
    token = next(r for r in template["Resources"].values() if r["Type"] == "Custom::AiFactoryFeatureKey")
    assert token["Properties"]["ServiceToken"].startswith("arn:aws:lambda:us-east-1:111111111111:function:")


@pytest.fixture(scope="module")
def template() -> Template:
    stack = ClaimsFeaturesStack(
        cdk.App(),
        "ClaimsFeatures",
        env=TEAM_ENV,
        gateway_attributes=GatewayAttributes(
            url="https://abc123defg.execute-api.us-east-1.amazonaws.com/prod/v1",
            key_provisioning_service_token="arn:aws:lambda:us-east-1:111111111111:function:provisioner",
            key_provisioner_role_arn=PLATFORM_ROLE,
        ),
    )
    return Template.from_stack(stack)


def test_only_the_platform_provisioner_role_may_assume_the_key_writer_role(template: Template) -> None:
    template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "Path": "/ai-factory/key-writer/",
            "AssumeRolePolicyDocument": {
                "Statement": [
                    {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"AWS": PLATFORM_ROLE}}
                ]
            },
        },
    )


def test_the_key_writer_may_only_put_this_feature_s_secret(template: Template) -> None:
    roles = template.find_resources("AWS::IAM::Role", {"Properties": {"Path": "/ai-factory/key-writer/"}})
    (role,) = roles.values()
    statements = role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    actions = sorted(
        a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    )
    assert actions == ["kms:Decrypt", "kms:GenerateDataKey", "secretsmanager:PutSecretValue"]
    assert all("*" not in json.dumps(s["Resource"]) for s in statements)
    secret = next(s for s in statements if s["Action"] == "secretsmanager:PutSecretValue")
    assert set(secret["Resource"]) == {"Ref"}  # this stack's secret, nothing else


def test_the_key_lives_in_this_account_s_secret_and_the_platform_gets_the_feature_s_registry_data(
    template: Template,
) -> None:
    template.resource_count_is("AWS::SecretsManager::Secret", 1)
    template.resource_count_is("AWS::Lambda::Function", 0)  # the platform's provisioner does the work
    template.has_resource_properties(
        "Custom::AiFactoryFeatureKey",
        {
            "ServiceToken": "arn:aws:lambda:us-east-1:111111111111:function:provisioner",
            "Team": "claims",
            "Feature": "claim-triage",
            "Owner": "claims-leads@example.com",
            "Clearance": "internal",
            "WriterRoleArn": {"Fn::GetAtt": [Match.string_like_regexp("KeyWriterRole"), "Arn"]},
            "KeysTable": Match.absent(),
        },
    )
