"""FeatureCanary: one Lambda, one schedule per feature, least privilege, suites staged as JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from ai_factory.constructs.ai_feature import AiFeature, find_features
from ai_factory.constructs.canary import (
    CanaryError,
    FeatureCanary,
    add_canary,
    stage_canary_asset,
)
from stacks.gateway_stack import GatewayStack
from stacks.team_stack import TeamStack

ENV = cdk.Environment(account="111122223333", region="us-east-1")
ROOT = Path(__file__).resolve().parents[2]
CANARY_YAML = """
suite: refunds-canary
model: chat-fast
messages: [{role: user, content: "Summarize: {{ ticket }}"}]
cases:
  - id: mentions-refund
    vars: {ticket: "refund please"}
    assert: [{type: icontains, value: refund}, {type: latency_ms, threshold: 8000}]
"""


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("canary")
    (folder / "canary.yaml").write_text(CANARY_YAML, encoding="utf-8")
    app = cdk.App()
    gateway = GatewayStack(app, "Gw", env=ENV)
    team = TeamStack(app, "TeamSupport", team="support", gateway_stack=gateway, env=ENV)
    explicit = AiFeature(
        team,
        "Refunds",
        feature="refunds",
        owner="o@example.com",
        clearance="internal",
        models=["chat-fast"],
        monthly_budget_usd=10,
        rate_limit_rpm=10,
        canary_suite=folder / "canary.yaml",
    )
    derived = AiFeature(
        team,
        "Summarizer",
        feature="ticket-summarizer",
        owner="o@example.com",
        clearance="internal",
        models=["chat-fast"],
        prompts=[ROOT / "features/support/prompts/summarize-ticket.yaml"],
        monthly_budget_usd=10,
        rate_limit_rpm=10,
    )
    # No prompts and no canary suite: not watched, and its secret is not readable by the canary.
    AiFeature(
        team,
        "Quiet",
        feature="quiet",
        owner="o@example.com",
        clearance="internal",
        models=["chat-fast"],
        monthly_budget_usd=10,
        rate_limit_rpm=10,
    )
    # Opted out: has prompts, but no schedule and no canary traffic.
    AiFeature(
        team,
        "OptedOut",
        feature="opted-out",
        owner="o@example.com",
        clearance="internal",
        models=["chat-fast"],
        prompts=[ROOT / "features/support/prompts/summarize-ticket.yaml"],
        monthly_budget_usd=10,
        rate_limit_rpm=10,
        canary=False,
    )
    canary = add_canary(team, every=cdk.Duration.minutes(30))
    assert canary is not None
    assert [f.feature for f in canary.watched] == ["refunds", "ticket-summarizer"]
    return {
        "team": team,
        "canary": canary,
        "explicit": explicit,
        "derived": derived,
        "template": Template.from_stack(team),
    }


def lid(stack: cdk.Stack, construct: Any) -> str:
    """The logical ID of an L2's CloudFormation resource."""
    return stack.get_logical_id(construct.node.default_child)


def ref(stack: cdk.Stack, construct: Any) -> dict[str, str]:
    return {"Ref": lid(stack, construct)}


def test_function_is_a_plain_python_314_arm64_asset_with_the_suites_as_json(synth: dict[str, Any]) -> None:
    template: Template = synth["template"]
    canary: FeatureCanary = synth["canary"]
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Runtime": "python3.14",
            "Architectures": ["arm64"],
            "Handler": "aif_canary.handler.lambda_handler",
            "Environment": {
                "Variables": {"AIF_GATEWAY_URL": Match.any_value(), "AIF_METRICS_NAMESPACE": "AIFactory"}
            },
        },
    )
    assert sorted(canary.suites) == ["support/refunds", "support/ticket-summarizer"]
    derived = canary.suites["support/ticket-summarizer"]
    assert derived["prompt"] == {"name": "summarize-ticket", "alias": "production"}
    assert 1 <= len(derived["cases"]) <= 5
    # The staged folder is content-addressed: staging the same suites again gives the construct's folder.
    staged = stage_canary_asset(canary.suites)
    assert json.loads((staged / "aif_canary" / "canary_suites.json").read_text())["features"] == canary.suites
    assert (staged / "aif_canary" / "handler.py").is_file()
    assert not list(staged.rglob("*.yaml")) and not list(staged.rglob("__pycache__"))
    # The asset ships the runtime contract it imports: the handler loads without site-packages.
    # Of the library, only the eval harness's standard-library part is in it (and gets imported).
    code = (
        "import aif_canary.handler as h, sys; print(h.DEFAULT_NAMESPACE); "
        "print(sorted(m for m in sys.modules if m.startswith('ai_factory')))"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", code], cwd=staged, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    namespace, modules = result.stdout.strip().splitlines()
    assert namespace == "AIFactory"
    assert modules == str(
        ["ai_factory", "ai_factory.evals", "ai_factory.evals.deterministic", "ai_factory.evals.model"]
    )
    assert sorted(p.name for p in (staged / "ai_factory" / "evals").iterdir()) == [
        "__init__.py",
        "deterministic.py",
        "model.py",
    ]


def test_one_schedule_per_watched_feature_with_retries_dlq_and_no_flexible_window(
    synth: dict[str, Any],
) -> None:
    template: Template = synth["template"]
    team: TeamStack = synth["team"]
    schedules = template.find_resources("AWS::Scheduler::Schedule")
    assert len(schedules) == 2
    inputs = []
    for schedule in schedules.values():
        props = schedule["Properties"]
        assert props["ScheduleExpression"] == "rate(30 minutes)"
        assert props["FlexibleTimeWindow"] == {"Mode": "OFF"}
        target = props["Target"]
        assert target["RetryPolicy"] == {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 1800}
        assert "DeadLetterConfig" in target
        assert target["Arn"] == {"Fn::GetAtt": [lid(team, synth["canary"].function), "Arn"]}
        inputs.append(json.dumps(team.resolve(target["Input"])))
    assert any('\\"feature\\":\\"refunds\\"' in i or '"feature":"refunds"' in i for i in inputs)


def test_least_privilege(synth: dict[str, Any]) -> None:
    template: Template = synth["template"]
    team: TeamStack = synth["team"]
    canary: FeatureCanary = synth["canary"]
    function_role = lid(team, canary.function.role)
    policies = template.find_resources(
        "AWS::IAM::Policy", {"Properties": {"Roles": [{"Ref": function_role}]}}
    )
    statements = [s for p in policies.values() for s in p["Properties"]["PolicyDocument"]["Statement"]]
    secret_reads = [s for s in statements if s["Action"] == "secretsmanager:GetSecretValue"]
    assert sorted(json.dumps(s["Resource"]) for s in secret_reads) == sorted(
        json.dumps(ref(team, f.secret)) for f in (synth["explicit"], synth["derived"])
    )
    # X-Ray's PutTraceSegments/PutTelemetryRecords support no resource-level permissions (AWS requires '*').
    xray = [s for s in statements if all(a.startswith("xray:") for a in _actions(s))]
    assert xray and all("*" not in json.dumps(s["Resource"]) for s in statements if s not in xray)

    scheduler_role = lid(team, canary.scheduler_role)
    template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": {
                "Statement": [
                    Match.object_like(
                        {
                            "Principal": {"Service": "scheduler.amazonaws.com"},
                            "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}},
                        }
                    )
                ]
            }
        },
    )
    [scheduler_policy] = template.find_resources(
        "AWS::IAM::Policy", {"Properties": {"Roles": [{"Ref": scheduler_role}]}}
    ).values()
    statements = scheduler_policy["Properties"]["PolicyDocument"]["Statement"]
    assert {s["Action"]: s["Resource"] for s in statements} == {
        "lambda:InvokeFunction": {"Fn::GetAtt": [lid(team, canary.function), "Arn"]},
        "sqs:SendMessage": {"Fn::GetAtt": [lid(team, canary.dead_letter_queue), "Arn"]},
    }


def test_invalid_props_name_the_field(synth: dict[str, Any]) -> None:
    team: TeamStack = synth["team"]
    features = find_features(team)
    with pytest.raises(CanaryError, match="features"):
        FeatureCanary(team, "NoFeatures", features=[])
    with pytest.raises(CanaryError, match="max_cases"):
        FeatureCanary(team, "TooMany", features=features, max_cases=50)
    with pytest.raises(CanaryError, match="every"):
        FeatureCanary(team, "TooOften", features=features, every=cdk.Duration.minutes(1))


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return actions if isinstance(actions, list) else [actions]


def test_failed_runs_are_traced_and_dead_lettered(synth: dict[str, Any]) -> None:
    """Scheduler invokes the canary asynchronously: a run failing after Lambda's retries goes to the DLQ."""
    template: Template = synth["template"]
    team: TeamStack = synth["team"]
    canary: FeatureCanary = synth["canary"]
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": Match.string_like_regexp("canary"),
            "TracingConfig": {"Mode": "Active"},
            "DeadLetterConfig": {"TargetArn": {"Fn::GetAtt": [lid(team, canary.dead_letter_queue), "Arn"]}},
        },
    )
