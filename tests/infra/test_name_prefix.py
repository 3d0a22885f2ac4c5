"""Two factories in one account: every account-wide physical name starts with the factory's name prefix.

The app below holds the default factory, a second one with another prefix and a pipeline stage's, each
with its MLOps stack; their synthesized templates must not share one fixed physical name (stack names
included). Names are collected generically: every literal ``Name``/``*Name``/``TagKey`` property and the
Glue database name, minus the properties that only reference another resource or are scoped to one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest

from ai_factory.platform.name_prefix import (
    DEFAULT_PREFIX,
    NamePrefixError,
    bounded,
    name_prefix,
    stage_prefix,
    validate_prefix,
)
from features import TEAM_MODULES
from stacks.factory import Factory, build_factory
from stacks.mlops_stack import MlopsStack

ENV = cdk.Environment(account="111122223333", region="us-east-1")

# (resource type, property): names that point at another resource, or are unique only inside their parent.
NOT_ACCOUNT_WIDE = {
    ("AWS::ApiGateway::Stage", "StageName"),
    ("AWS::ApiGateway::Deployment", "StageName"),
    ("AWS::Glue::Table", "DatabaseName"),
    ("AWS::Logs::LogStream", "LogGroupName"),
    ("AWS::Logs::LogStream", "LogStreamName"),
    ("AWS::Logs::SubscriptionFilter", "LogGroupName"),
    ("AWS::SNS::Topic", "DisplayName"),
    ("AWS::CloudWatch::Alarm", "MetricName"),
    ("AWS::Bedrock::DataSource", "Name"),
    ("AWS::Cognito::UserPoolGroup", "GroupName"),
    ("AWS::ApiGateway::Authorizer", "Name"),
}
INLINE = ("PolicyName",)  # inline policies belong to their role


def physical_names(template: dict[str, Any]) -> dict[str, set[str]]:
    """Fixed (literal) physical names in a template: name -> the ``type.property`` that hold it."""
    found: dict[str, set[str]] = {}
    for resource in template.get("Resources", {}).values():
        kind, props = resource["Type"], resource.get("Properties", {})
        for key, value in props.items():
            is_name = key == "Name" or key.endswith("Name") or key == "TagKey"
            if not is_name or key in INLINE or (kind, key) in NOT_ACCOUNT_WIDE or not isinstance(value, str):
                continue
            if kind.startswith("Custom::") or kind in ("AWS::Lambda::Permission",):
                continue  # properties of custom resources and permissions reference, never name
            if kind != "AWS::Lambda::Function" and key == "FunctionName":
                continue  # event source mappings, invoke configs: references to the function
            found.setdefault(value, set()).add(f"{kind}.{key}")
        database = props.get("DatabaseInput", {}).get("Name") if kind == "AWS::Glue::Database" else None
        if isinstance(database, str):
            found.setdefault(database, set()).add(f"{kind}.DatabaseInput.Name")
    return found


def _stacks(factory: Factory, mlops: MlopsStack) -> list[cdk.Stack]:
    enforcement = [factory.enforcement] if factory.enforcement is not None else []
    return [factory.gateway, factory.governance, *factory.teams, factory.observability, *enforcement, mlops]


@pytest.fixture(scope="module")
def factories(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, set[str]]]]:
    """Every fixed name of each factory (and its stack names), keyed by the factory's label."""
    context = json.loads((Path(__file__).resolve().parents[2] / "cdk.json").read_text())["context"]
    app = cdk.App(outdir=str(tmp_path_factory.mktemp("two-factories")), context=context)
    built: dict[str, list[cdk.Stack]] = {}
    first = build_factory(app, team_modules=TEAM_MODULES, env=ENV)
    built["default"] = _stacks(first, MlopsStack(app, "AiFactoryMlops", env=ENV))
    # The second factory in the account: its own prefix; the account's invocation logging stays the first's.
    second = build_factory(
        app, team_modules=TEAM_MODULES, env=ENV, name_prefix="ai-factory-b", invocation_logging=False
    )
    built["ai-factory-b"] = _stacks(
        second, MlopsStack(app, "AiFactoryBMlops", env=ENV, name_prefix="ai-factory-b")
    )
    # A pipeline stage in the same account: the stage's name is appended to the prefix.
    stage = cdk.Stage(app, "Staging", env=ENV)
    staged = build_factory(stage, team_modules=TEAM_MODULES, invocation_logging=False)
    built["staging"] = _stacks(
        staged, MlopsStack(stage, "AiFactoryMlops", name_prefix=staged.gateway.name_prefix)
    )
    assembly = app.synth()
    names: dict[str, dict[str, set[str]]] = {}
    for label, stacks in built.items():
        names[label] = {}
        for stack in stacks:
            artifact = assembly.get_stack_artifact(stack.artifact_id)
            for name, kinds in physical_names(artifact.template).items():
                names[label].setdefault(name, set()).update(kinds)
            names[label].setdefault(artifact.stack_name, set()).add("stack name")
    yield names


def test_each_factory_names_every_account_wide_resource(factories: dict[str, dict[str, set[str]]]) -> None:
    """The collector sees each kind of account-wide name (so the disjointness below means something)."""
    kinds = set().union(*factories["default"].values())
    for kind in (
        "AWS::LakeFormation::Tag.TagKey",
        "AWS::Glue::Database.DatabaseInput.Name",
        "AWS::SageMaker::MlflowTrackingServer.TrackingServerName",
        "AWS::SecretsManager::Secret.Name",
        "AWS::Bedrock::Guardrail.Name",
        "AWS::ApiGateway::RestApi.Name",
        "AWS::CloudWatch::Alarm.AlarmName",
        "AWS::CloudWatch::Dashboard.DashboardName",
        "AWS::SSM::Parameter.Name",
        "AWS::Bedrock::KnowledgeBase.Name",
        "AWS::Lambda::Function.FunctionName",
        "AWS::Events::Rule.Name",
    ):
        assert kind in kinds, f"no {kind} found"
    default = factories["default"]
    assert "AWS::LakeFormation::Tag.TagKey" in default["ai-factory-classification"]
    assert "AWS::Glue::Database.DatabaseInput.Name" in default["ai_factory_support"]
    assert "AWS::SageMaker::MlflowTrackingServer.TrackingServerName" in default["ai-factory"]
    assert "AWS::SSM::Parameter.Name" in default["/ai-factory/gateway/api-url"]
    second = factories["ai-factory-b"]
    assert "AWS::SecretsManager::Secret.Name" in second["ai-factory-b/support/ticket-summarizer/api-key"]
    assert "AWS::Glue::Database.DatabaseInput.Name" in factories["staging"]["ai_factory_staging_support"]


@pytest.mark.parametrize(
    ("a", "b"), [("default", "ai-factory-b"), ("default", "staging"), ("ai-factory-b", "staging")]
)
def test_two_factories_in_one_account_share_no_physical_name(
    factories: dict[str, dict[str, set[str]]], a: str, b: str
) -> None:
    shared = {name: factories[a][name] for name in set(factories[a]) & set(factories[b])}
    assert shared == {}


def test_every_fixed_name_starts_with_the_prefix(factories: dict[str, dict[str, set[str]]]) -> None:
    """Not only disjoint: recognisably the factory's (a stack name starts with the prefix's CamelCase)."""
    for name, kinds in factories["ai-factory-b"].items():
        if kinds == {"stack name"}:
            assert name.startswith("AiFactoryB"), name
        else:
            assert "ai-factory-b" in name or "ai_factory_b" in name, f"{kinds} {name!r}"


@pytest.mark.parametrize(
    "bad", ["", "AI", "1factory", "ai_factory", "ai--factory", "ai-factory-", "a" * 33, 7]
)
def test_an_invalid_prefix_is_refused_with_the_setting_named(bad: object) -> None:
    with pytest.raises(NamePrefixError, match=r"ai-factory:prefix: .* is not a valid name prefix"):
        validate_prefix(bad)
    app = cdk.App(context={"ai-factory:prefix": bad})
    with pytest.raises(NamePrefixError, match="ai-factory:prefix"):
        name_prefix(cdk.Stack(app, "S"))


def test_prefix_sources_and_derived_names() -> None:
    assert name_prefix(cdk.Stack(cdk.App(), "S")) == DEFAULT_PREFIX
    assert name_prefix(cdk.Stack(cdk.App(context={"ai-factory:prefix": "team-x"}), "S")) == "team-x"
    assert name_prefix(cdk.Stack(cdk.App(), "S"), "given") == "given"
    assert stage_prefix("ai-factory", "Staging") == "ai-factory-staging"
    assert stage_prefix("ai-factory", "Prod_EU 1") == "ai-factory-prod-eu-1"
    assert bounded("short", 64) == "short"
    long_a, long_b = "x" * 70 + "a", "x" * 70 + "b"
    assert len(bounded(long_a, 64)) == 64 and bounded(long_a, 64) != bounded(long_b, 64)
