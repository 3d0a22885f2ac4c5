"""Observability: every feature found in the app gets its dashboard section and alarms, every alarm
notifies the KMS-encrypted on-call topic and links its runbook, overflow stacks stay small, and the
Bedrock invocation-logging custom resource is wired with least privilege."""

from __future__ import annotations

import importlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk.assertions import Match, Template

from ai_factory.constructs.ai_feature import AiFeature, find_features
from ai_factory.constructs.invocation_logging import RESOURCE_TYPE, BedrockInvocationLogging
from ai_factory.constructs.observability.facade import Observability
from ai_factory.constructs.observability.settings import MAX_DASHBOARD_WIDGETS, RUNBOOKS, AlarmDefaults
from features import TEAM_MODULES
from stacks.gateway_stack import GatewayStack
from stacks.governance_stack import GovernanceStack
from stacks.observability_stack import ObservabilityStack, add_observability
from stacks.team_stack import TeamStack, team_stack_id

ENV = cdk.Environment(account="111122223333", region="us-east-1")
REPO = Path(__file__).resolve().parents[2]
PER_FEATURE_ALARMS = (
    "Latency",
    "ErrorRate",
    "SpendPace",
    "BudgetExhausted",
    "GuardrailSpike",
    "FeedbackDrop",
    "CanaryPassRateDrop",
)
RUNBOOK_BASE = "https://example.com/ai-factory/docs/runbooks"


@dataclass
class Built:
    app: cdk.App
    gateway: GatewayStack
    platform: ObservabilityStack
    features: list[AiFeature]
    template: Template


def build_app(extra_features: int = 0, per_stack: int = 40) -> Built:
    """The real teams (plus ``extra_features`` generated ones) and observability, without cdk-nag."""
    app = cdk.App(context={"ai-factory:runbookBaseUrl": RUNBOOK_BASE})
    gateway = GatewayStack(app, "AiFactoryGateway", env=ENV)
    governance = GovernanceStack(app, "AiFactoryGovernance", env=ENV)  # as app.py: features may read datasets
    for module_name in TEAM_MODULES:
        module = importlib.import_module(module_name)
        stack_id = team_stack_id(module.TEAM)
        module.build(TeamStack(app, stack_id, team=module.TEAM, gateway_stack=gateway, governance=governance))
    # Generated features in team stacks of up to 25 (a feature adds about 12 resources to its team's
    # stack, whose limit is 500).
    load_teams = [
        TeamStack(app, f"AiFactoryTeamLoad{n}", team=f"load{n}", gateway_stack=gateway)
        for n in range(math.ceil(extra_features / 25))
    ]
    if extra_features:
        for i in range(extra_features):
            AiFeature(
                load_teams[i // 25],
                f"F{i}",
                feature=f"f{i}",
                owner="load@example.com",
                clearance="internal",
                models=["chat-fast"],
                monthly_budget_usd=10,
                rate_limit_rpm=10,
            )
    platform = add_observability(app, gateway, features_per_stack=per_stack)
    return Built(app, gateway, platform, find_features(app), Template.from_stack(platform))


@pytest.fixture(scope="module")
def built() -> Built:
    return build_app()


def alarms(template: Template) -> dict[str, dict[str, Any]]:
    return {
        v["Properties"]["AlarmName"]: v["Properties"]
        for v in template.find_resources("AWS::CloudWatch::Alarm").values()
    }


def dashboard_bodies(stack: cdk.Stack, template: Template) -> dict[str, str]:
    """Dashboard name -> body with tokens resolved to a readable string."""
    out = {}
    for resource in template.find_resources("AWS::CloudWatch::Dashboard").values():
        body = resource["Properties"]["DashboardBody"]
        text = body if isinstance(body, str) else json.dumps(body)
        out[resource["Properties"]["DashboardName"]] = text
    return out


def widgets(template: Template) -> dict[str, list[dict[str, Any]]]:
    """Dashboard name -> its widgets, from the DashboardBody JSON (tokens such as the region become
    ``TOKEN``)."""
    out = {}
    for resource in template.find_resources("AWS::CloudWatch::Dashboard").values():
        body = resource["Properties"]["DashboardBody"]
        if isinstance(body, dict):
            body = "".join(p if isinstance(p, str) else "TOKEN" for p in body["Fn::Join"][1])
        out[resource["Properties"]["DashboardName"]] = json.loads(body)["widgets"]
    return out


def test_the_app_finds_every_feature_of_every_team(built: Built) -> None:
    names = {(f.team, f.feature) for f in built.features}
    assert len(names) >= 2
    assert {f.team for f in built.features} == {importlib.import_module(m).TEAM for m in TEAM_MODULES}
    assert set(built.platform.observability.feature_alarms) == names


def _alarm_count(feature: Any) -> int:
    """7 per feature, plus the alarms its constructs added (a RagFeature's sync)."""
    return 7 + len({a.name for a in feature.alarm_inputs} - set(PER_FEATURE_ALARMS))


def test_every_feature_has_all_its_alarms_named_by_severity(built: Built) -> None:
    found = alarms(built.template)
    for feature in built.features:
        prefix = f"{feature.team}-{feature.feature}-"
        mine = {name: props for name, props in found.items() if prefix in name}
        kinds = {name.rsplit("-", 1)[1] for name in mine}
        # Plus what the feature's constructs added (a RagFeature's KnowledgeBaseSyncFailed).
        extra = {a.name for a in feature.alarm_inputs} - set(PER_FEATURE_ALARMS)
        assert kinds == set(PER_FEATURE_ALARMS) | extra, feature.feature
        for name in mine:
            assert re.fullmatch(rf"ai-factory-(Critical|Warning)-{re.escape(prefix)}\w+", name)
    assert "ai-factory-Critical-Platform-FallbackStorm" in found
    assert "ai-factory-Critical-Platform-GatewayErrors" in found
    assert "ai-factory-Warning-Platform-UsageRecovery" in found


def test_alarm_thresholds_come_from_the_feature(built: Built) -> None:
    found = alarms(built.template)
    for feature in built.features:
        latency = found[f"ai-factory-Warning-{feature.team}-{feature.feature}-Latency"]
        assert latency["Threshold"] == feature.alert_thresholds.p99_latency_ms
        assert latency["ExtendedStatistic"] == "p99"
        canary = found[f"ai-factory-Critical-{feature.team}-{feature.feature}-CanaryPassRateDrop"]
        assert canary["MetricName"] == "CanaryPassRate"
        assert canary["ComparisonOperator"] == "LessThanThreshold"
        assert canary["Threshold"] == AlarmDefaults().canary_min_pass_rate
        assert {"Name": "Feature", "Value": feature.feature} in canary["Dimensions"]


def test_every_alarm_notifies_the_topic_and_links_its_runbook(built: Built) -> None:
    topics = built.template.find_resources("AWS::SNS::Topic")
    assert len(topics) == 1
    topic_id = next(iter(topics))
    found = alarms(built.template)
    assert len(found) == sum(_alarm_count(f) for f in built.features) + 3  # + the platform's three
    for name, props in found.items():
        assert props["AlarmActions"] == [{"Ref": topic_id}], name
        assert props["OKActions"] == [{"Ref": topic_id}], name
        assert props["TreatMissingData"] == "notBreaching", name
        link = re.search(r"Runbook: (\S+)$", props["AlarmDescription"])
        assert link, name
        assert link.group(1).startswith(RUNBOOK_BASE + "/")
        runbook = link.group(1).removeprefix(RUNBOOK_BASE + "/").removesuffix(".md")
        assert runbook in RUNBOOKS
        assert (REPO / "docs" / "runbooks" / f"{runbook}.md").is_file(), runbook


def test_topic_is_encrypted_with_a_rotating_key_cloudwatch_may_use(built: Built) -> None:
    t = built.template
    t.has_resource_properties(
        "AWS::SNS::Topic",
        {"KmsMasterKeyId": {"Fn::GetAtt": [Match.string_like_regexp("OnCallTopicKey"), "Arn"]}},
    )
    t.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
                        )
                    ]
                )
            }
        },
    )
    t.has_resource_properties(
        "AWS::KMS::Key",
        {
            "EnableKeyRotation": True,
            "KeyPolicy": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Sid": "CloudWatchAlarmsPublish",
                                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                            }
                        )
                    ]
                )
            },
        },
    )


def test_cloudwatch_alarms_may_publish_to_the_topic_from_this_account_only(built: Built) -> None:
    """With only enforce_ssl's Deny, SNS refuses every alarm action ("no resource-based policy allows
    SNS:Publish"): the topic policy must allow CloudWatch, scoped to this account's alarms."""
    policies = built.template.find_resources("AWS::SNS::TopicPolicy")
    assert len(policies) == 1
    statements = next(iter(policies.values()))["Properties"]["PolicyDocument"]["Statement"]
    allow = [s for s in statements if s["Effect"] == "Allow"]
    assert len(allow) == 1
    statement = allow[0]
    assert statement["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert statement["Action"] == "sns:Publish"
    topic_id = next(iter(built.template.find_resources("AWS::SNS::Topic")))
    assert statement["Resource"] == {"Ref": topic_id}
    condition = built.platform.resolve(statement["Condition"])
    assert condition["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    source_arn = json.dumps(condition["ArnLike"]["aws:SourceArn"])
    assert ":cloudwatch:" in source_arn and ":alarm:*" in source_arn


def test_oncall_subscription_from_context_and_a_warning_without_one() -> None:
    from aws_cdk.assertions import Annotations

    app = cdk.App(context={"ai-factory:oncallEmail": "oncall@example.com, sre@example.com"})
    gateway = GatewayStack(app, "Gw", env=ENV)
    stack = ObservabilityStack(app, "Obs", gateway_stack=gateway, env=ENV)
    template = Template.from_stack(stack)
    subscriptions = template.find_resources("AWS::SNS::Subscription")
    assert sorted(s["Properties"]["Endpoint"] for s in subscriptions.values()) == [
        "oncall@example.com",
        "sre@example.com",
    ]
    assert {s["Properties"]["Protocol"] for s in subscriptions.values()} == {"email"}
    assert not Annotations.from_stack(stack).find_warning("*", Match.string_like_regexp("notify nobody"))

    app = cdk.App()
    gateway = GatewayStack(app, "Gw", env=ENV)
    stack = ObservabilityStack(app, "Obs", gateway_stack=gateway, env=ENV)
    Template.from_stack(stack).resource_count_is("AWS::SNS::Subscription", 0)
    assert Annotations.from_stack(stack).find_warning("*", Match.string_like_regexp("notify nobody"))


def test_invalid_oncall_email_names_the_field() -> None:
    app = cdk.App()
    gateway = GatewayStack(app, "Gw", env=ENV)
    with pytest.raises(ValueError, match="oncall_emails: 'pager' is not an email address"):
        ObservabilityStack(app, "Obs", gateway_stack=gateway, env=ENV, oncall_emails=["pager"])


def test_every_feature_has_a_dashboard_section(built: Built) -> None:
    bodies = dashboard_bodies(built.platform, built.template)
    assert "ai-factory-Platform" in bodies
    features_text = "".join(text for name, text in bodies.items() if name.startswith("ai-factory-Features-"))
    for feature in built.features:
        label = f"{feature.team}/{feature.feature}"
        for title in (
            f"## {label}",
            f"{label}: requests",  # AiFeature.dashboard_widgets()
            f"{label}: latency p50 / p90 / p99",
            f"{label}: budget burn",
            f"{label}: human feedback",
            f"{label}: pass rates: eval gate (per suite), canary"
            + (", online" if feature.sample_table is not None else ""),
            f"{label}: alarms",
        ):
            assert title in features_text, title


def test_online_scores_are_graphed_only_for_sampled_features(built: Built) -> None:
    """An unsampled feature has no online scores: no always-empty lines on its pass-rate graph."""
    graphs = [
        w
        for name, found in widgets(built.template).items()
        if name.startswith("ai-factory-Features-")
        for w in found
        if "pass rates" in w.get("properties", {}).get("title", "")
    ]
    by_feature = {w["properties"]["title"].split(":")[0]: json.dumps(w) for w in graphs}
    sampled = {f"{f.team}/{f.feature}" for f in built.features if f.sample_table is not None}
    assert sampled and set(by_feature) - sampled
    for label, widget in by_feature.items():
        assert ("OnlineAssertionPassRate" in widget) == (label in sampled), label


def test_the_three_pass_rates_sit_side_by_side_named_distinctly(built: Built) -> None:
    """Each feature's quality widget: the eval gate's GatePassRate per suite (a SEARCH over the gate's
    (Team, Feature, Suite) series of that feature), the canary's two rates, labelled as the canary's."""
    bodies = {
        name: body.replace("\\", "")
        for name, body in dashboard_bodies(built.platform, built.template).items()
    }
    features_text = "".join(text for name, text in bodies.items() if name.startswith("ai-factory-Features-"))
    for feature in built.features:
        query = (
            'SEARCH(\'{AIFactory,Team,Feature,Suite} MetricName="GatePassRate" '
            f'Team="{feature.team}" Feature="{feature.feature}"\', \'Minimum\', 86400)'
        )
        assert query in features_text, query
    assert '"label":"eval gate [${PROP(\'Dim.Suite\')}]"' in features_text
    assert '"label":"canary cases"' in features_text
    assert '"label":"canary assertions"' in features_text
    assert '"label":"eval"' not in features_text  # the canary's EvalPassRate is not "eval" any more
    platform = bodies["ai-factory-Platform"]
    assert (
        "Pass rates per feature (0..1): eval gate per suite, canary cases, canary assertions, online"
        in platform
    )
    assert (
        "SEARCH('{AIFactory,Team,Feature,Suite} MetricName=\"GatePassRate\"', 'Minimum', 86400)" in platform
    )


def test_platform_dashboard_covers_the_whole_platform(built: Built) -> None:
    body = dashboard_bodies(built.platform, built.template)["ai-factory-Platform"]
    for metric in (
        "Requests",
        "Status5xx",
        "Throttled",
        "BudgetExhausted",
        "Fallbacks",
        "CircuitBreakerOpened",
        "GuardrailInterventions",
        "CostUSD",
        "InputTokens",
        "FeedbackScore",
        "CanaryPassRate",
        "EvalPassRate",
        "GatePassRate",
        "LeadTimeDays",
    ):
        assert f'MetricName=\\\\\\"{metric}\\\\\\"' in body or f'MetricName=\\"{metric}\\"' in body, metric
    for team in {f.team for f in built.features}:
        assert f'Team=\\\\\\"{team}\\\\\\"' in body or f'Team=\\"{team}\\"' in body, team
    for stat in ("p50", "p90", "p99"):
        assert f'"stat\\":\\"{stat}\\"' in body or f'\\"stat\\":\\"{stat}\\"' in body, stat
    assert "audit.error_type" in body  # the Logs Insights widget over the audit lines


def test_budget_alarm_reads_the_metric_the_gateway_emits(built: Built) -> None:
    """The runtime emits BudgetExhausted itself (per Team/Feature): no metric filter reads it from logs."""
    built.template.resource_count_is("AWS::Logs::MetricFilter", 0)
    alarms = built.template.find_resources(
        "AWS::CloudWatch::Alarm", {"Properties": {"MetricName": "BudgetExhausted"}}
    )
    assert alarms
    for alarm in alarms.values():
        props = alarm["Properties"]
        assert props["Namespace"] == "AIFactory"
        assert {d["Name"] for d in props["Dimensions"]} == {"Team", "Feature"}


def test_many_features_split_across_small_stacks() -> None:
    b = build_app(extra_features=45, per_stack=20)
    count = len(b.features)  # the app's own features plus the 45 generated ones
    assert count >= 47
    shares = [min(20, count - start) for start in range(0, count, 20)]  # features per stack
    stacks = [
        s
        for s in b.app.node.children
        if isinstance(s, cdk.Stack) and s.stack_name.startswith("AiFactoryObservability")
    ]
    assert len(stacks) == len(shares)
    total = 0
    dashboard_names: set[str] = set()
    for stack in stacks:
        template = Template.from_stack(stack)
        resources = template.to_json()["Resources"]
        assert len(resources) < 200, stack.stack_name
        total += len(template.find_resources("AWS::CloudWatch::Alarm"))
        dashboard_names |= {
            d["Properties"]["DashboardName"]
            for d in template.find_resources("AWS::CloudWatch::Dashboard").values()
        }
    assert total == sum(_alarm_count(f) for f in b.features) + 3
    # The platform dashboard plus one per 10 features of each stack, all names unique.
    assert len(dashboard_names) == 1 + sum(math.ceil(share / 10) for share in shares)


def test_dashboards_stay_within_cloudwatchs_limits(built: Built) -> None:
    """At most 500 widgets a dashboard, and at most 100 metrics and expressions a graph (the per-team
    lines are capped for that), on every dashboard of the app."""
    for name, found in widgets(built.template).items():
        assert len(found) <= MAX_DASHBOARD_WIDGETS, name
        for widget in found:
            assert len(widget["properties"].get("metrics", [])) <= 100, (name, widget["properties"]["title"])


class _WideFeature(AiFeature):
    """A feature with many widgets of its own (``own_widgets``)."""

    own_widgets = 150

    def dashboard_widgets(self) -> list[cloudwatch.IWidget]:
        return [
            cloudwatch.TextWidget(markdown=f"{self.feature} {i}", width=1, height=1)
            for i in range(self.own_widgets)
        ]


def _wide_team() -> TeamStack:
    app = cdk.App()
    gateway = GatewayStack(app, "Gw", env=ENV)
    return TeamStack(app, "TeamWide", team="wide", gateway_stack=gateway, env=ENV)


def _wide(team: TeamStack, name: str) -> _WideFeature:
    return _WideFeature(
        team,
        name,
        feature=name,
        owner="o@example.com",
        clearance="internal",
        models=["chat-fast"],
        monthly_budget_usd=10,
        rate_limit_rpm=10,
    )


def test_a_dashboard_never_holds_more_widgets_than_cloudwatch_allows() -> None:
    """Sections of 158 widgets: three fit in a dashboard (474), the fourth starts the next one, though
    ``features_per_dashboard`` (10) would allow more."""
    team = _wide_team()
    obs = Observability(
        team, "Observability", features=[_wide(team, f"f{i}") for i in range(4)], platform=False
    )
    found = widgets(Template.from_stack(team))
    assert len(obs.feature_dashboards) == 2
    assert sorted(len(ws) for ws in found.values()) == [158, 3 * 158]
    assert all(len(ws) <= MAX_DASHBOARD_WIDGETS for ws in found.values())


def test_a_section_larger_than_a_dashboard_is_refused_naming_the_feature() -> None:
    team = _wide_team()
    huge = _wide(team, "huge")
    huge.own_widgets = MAX_DASHBOARD_WIDGETS
    with pytest.raises(ValueError, match=r"wide/huge: its dashboard section has 508 widgets, more than"):
        Observability(team, "Observability", features=[huge], platform=False)


def test_monitoring_a_feature_twice_is_refused(built: Built) -> None:
    stack = cdk.Stack(cdk.App(), "X", env=ENV)
    obs = Observability(stack, "Obs", features=built.features[:1], platform=False, topic=built.platform.topic)
    with pytest.raises(ValueError, match="already monitored"):
        obs.monitor_feature(built.features[0])
    with pytest.raises(ValueError, match="gateway: required"):
        Observability(stack, "Obs2")
    with pytest.raises(ValueError, match="canary_min_pass_rate"):
        AlarmDefaults(canary_min_pass_rate=90)


# ------------------------------------------------------------------------------- invocation logging


def test_invocation_logging_resource_and_destinations(built: Built) -> None:
    t = built.template
    t.has_resource_properties(
        RESOURCE_TYPE, {"OverwriteExisting": "false", "LoggingConfig": Match.any_value()}
    )
    t.has_resource_properties("AWS::Logs::LogGroup", {"KmsKeyId": Match.any_value(), "RetentionInDays": 365})
    t.has_resource(
        "AWS::S3::Bucket",
        {
            "DeletionPolicy": "Retain",
            "Properties": Match.object_like(
                {
                    "BucketEncryption": {
                        "ServerSideEncryptionConfiguration": [
                            Match.object_like(
                                {
                                    "ServerSideEncryptionByDefault": Match.object_like(
                                        {"SSEAlgorithm": "aws:kms"}
                                    )
                                }
                            )
                        ]
                    },
                    "LoggingConfiguration": Match.object_like({"LogFilePrefix": "payload-bucket/"}),
                }
            ),
        },
    )
    logging = built.platform.invocation_logging
    assert isinstance(logging, BedrockInvocationLogging)
    config = built.platform.resolve(logging.logging_config)
    assert config["cloudWatchConfig"]["largeDataDeliveryS3Config"]["bucketName"]
    assert config["textDataDeliveryEnabled"] is True


def test_bedrock_may_assume_the_logging_role_only_for_this_account(built: Built) -> None:
    built.template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": {
                "Statement": [
                    Match.object_like(
                        {
                            "Principal": {"Service": "bedrock.amazonaws.com"},
                            "Condition": {
                                "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
                                "ArnLike": {"aws:SourceArn": Match.any_value()},
                            },
                        }
                    )
                ]
            }
        },
    )
    built.template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Sid": "BedrockWritesLargePayloads",
                                "Action": "s3:PutObject",
                                "Condition": Match.object_like(
                                    {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
                                ),
                            }
                        )
                    ]
                )
            }
        },
    )


def test_handler_role_is_least_privilege(built: Built) -> None:
    logging = built.platform.invocation_logging
    assert logging is not None
    roles = built.template.find_resources(
        "AWS::IAM::Role", {"Properties": {"Policies": [{"PolicyName": "ManageInvocationLogging"}]}}
    )
    assert len(roles) == 1
    statements = next(iter(roles.values()))["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    by_sid = {s["Sid"]: s for s in statements}
    assert set(by_sid) == {
        "WriteOwnLogGroup",
        "ManageInvocationLoggingConfiguration",
        "PassOnlyTheLoggingRoleToBedrock",
    }
    assert sorted(by_sid["ManageInvocationLoggingConfiguration"]["Action"]) == [
        "bedrock:DeleteModelInvocationLoggingConfiguration",
        "bedrock:GetModelInvocationLoggingConfiguration",
        "bedrock:PutModelInvocationLoggingConfiguration",
    ]
    passrole = by_sid["PassOnlyTheLoggingRoleToBedrock"]
    assert passrole["Action"] == "iam:PassRole"
    logging_role_id = built.platform.get_logical_id(logging.logging_role.node.default_child)  # type: ignore[arg-type]
    assert passrole["Resource"] == {"Fn::GetAtt": [logging_role_id, "Arn"]}
    assert passrole["Condition"] == {"StringEquals": {"iam:PassedToService": "bedrock.amazonaws.com"}}
    built.template.has_resource_properties(
        "AWS::Lambda::Function",
        {"Handler": "handler.on_event", "Runtime": "python3.14", "Architectures": ["arm64"]},
    )


def test_overwrite_and_opt_out_come_from_context() -> None:
    app = cdk.App(context={"ai-factory:invocationLoggingOverwrite": "true"})
    gateway = GatewayStack(app, "Gw", env=ENV)
    stack = ObservabilityStack(app, "Obs", gateway_stack=gateway, env=ENV)
    Template.from_stack(stack).has_resource_properties(RESOURCE_TYPE, {"OverwriteExisting": "true"})

    app = cdk.App(context={"ai-factory:invocationLogging": False})
    gateway = GatewayStack(app, "Gw", env=ENV)
    stack = ObservabilityStack(app, "Obs", gateway_stack=gateway, env=ENV)
    Template.from_stack(stack).resource_count_is(RESOURCE_TYPE, 0)
