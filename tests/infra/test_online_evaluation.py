"""Online evaluation infrastructure: sampling props refused where they must be, the sample table
(feature key, TTL, PITR, stream), the sampler's subscription and least-privilege roles, the scorer's
stream sources, and the per-feature alarms."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_logs as logs
from aws_cdk.assertions import Annotations, Match, Template

from ai_factory.constructs.ai_feature import AiFeature, AiFeatureError
from ai_factory.constructs.online_evaluation import (
    OnlineEvaluation,
    OnlineEvaluationError,
    OnlineSampling,
    find_sampled_features,
)
from stacks.gateway_stack import GatewayStack
from stacks.team_stack import TeamStack

ENV = cdk.Environment(account="111122223333", region="us-east-1")
ROOT = Path(__file__).resolve().parents[2]
LOG_GROUP_ARN = "arn:aws:logs:us-east-1:111122223333:log-group:/aws/bedrock/invocation-logs"


def only_gateway(namespace: str) -> str:
    """The sampler's subscription filter pattern for features of one gateway."""
    return '{ $.requestMetadata.aif_gateway = "' + namespace + '" }'


def feature(team: TeamStack, name: str, **props: Any) -> AiFeature:
    props.setdefault("clearance", "internal")
    props.setdefault("models", ["chat-fast"])
    return AiFeature(
        team,
        name.title().replace("-", ""),
        feature=name,
        owner="o@example.com",
        monthly_budget_usd=10,
        rate_limit_rpm=10,
        **props,
    )


def team_stack(app: cdk.App | None = None) -> TeamStack:
    app = app or cdk.App()
    gateway = GatewayStack(app, "Gw", env=ENV)
    return TeamStack(app, "TeamSupport", team="support", gateway_stack=gateway, env=ENV)


@pytest.fixture(scope="module")
def synth() -> dict[str, Any]:
    team = team_stack()
    sampled = feature(
        team,
        "ticket-summarizer",
        prompts=[ROOT / "features/support/prompts/summarize-ticket.yaml"],
        online_sampling=OnlineSampling(rate=0.05, retention_days=30),
    )
    feature(team, "not-sampled")
    feature(team, "switched-off", online_sampling=OnlineSampling(rate=0.5, enabled=False))
    judge = feature(team, "online-judge")
    log_group = logs.LogGroup.from_log_group_arn(team, "InvocationLogs", LOG_GROUP_ARN)
    online = OnlineEvaluation(
        team,
        "OnlineEvaluation",
        features=find_sampled_features(team),
        invocation_log_group=log_group,
        judge=judge,
    )
    return {"template": Template.from_stack(team), "online": online, "sampled": sampled}


def test_only_enabled_features_get_a_sample_table(synth: dict[str, Any]) -> None:
    synth["template"].resource_count_is("AWS::DynamoDB::Table", 1)
    assert [f.feature for f in synth["online"].sampled] == ["ticket-summarizer"]


def test_sample_table_uses_the_feature_key_expires_and_streams(synth: dict[str, Any]) -> None:
    template: Template = synth["template"]
    key_id = synth["sampled"].node.scope.resolve(synth["sampled"].encryption_key.key_arn)
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "SSESpecification": {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": key_id},
            "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "StreamSpecification": {"StreamViewType": "NEW_IMAGE"},
        },
    )


def test_sampler_reads_invocation_logs_and_knows_rate_retention_and_table(synth: dict[str, Any]) -> None:
    template: Template = synth["template"]
    template.has_resource_properties(
        "AWS::Logs::SubscriptionFilter",
        {
            "LogGroupName": "/aws/bedrock/invocation-logs",
            "FilterPattern": only_gateway(synth["sampled"].gateway.edge_namespace),
        },
    )
    functions = template.find_resources(
        "AWS::Lambda::Function", {"Properties": {"Handler": "aif_online.handler.sample"}}
    )
    (sampler,) = functions.values()
    raw = sampler["Properties"]["Environment"]["Variables"]["AIF_ONLINE_SAMPLING"]
    text = json.dumps(raw)
    assert '\\"rate\\":0.05' in text and '\\"retention_days\\":30' in text
    assert "support/ticket-summarizer" in text and "not-sampled" not in text
    assert synth["online"].sampler_settings["support/ticket-summarizer"]["gateway"] == (
        synth["sampled"].gateway.edge_namespace
    )


def _statements(template: Template, role_prefix: str) -> list[dict[str, Any]]:
    policies = template.find_resources("AWS::IAM::Policy")
    out = []
    for logical, policy in policies.items():
        if logical.startswith(role_prefix):
            out += policy["Properties"]["PolicyDocument"]["Statement"]
    return out


def test_sampler_may_only_put_items_into_sample_tables(synth: dict[str, Any]) -> None:
    statements = _statements(synth["template"], "OnlineEvaluationSamplerRole")
    actions = {
        a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert "dynamodb:PutItem" in actions
    assert not {a for a in actions if a.startswith("dynamodb:") and a != "dynamodb:PutItem"}
    assert not any(a.endswith("*") and a.startswith("dynamodb") for a in actions)


def _actions(statement: dict[str, Any]) -> set[str]:
    action = statement["Action"]
    return {action} if isinstance(action, str) else set(action)


def _key_statements(template: Template, role_prefix: str, key_arn: Any) -> list[dict[str, Any]]:
    return [s for s in _statements(template, role_prefix) if s["Resource"] == key_arn]


def test_table_writers_and_readers_use_the_feature_key_only_through_dynamodb(synth: dict[str, Any]) -> None:
    """DynamoDB calls KMS with the caller's permissions for a table under a customer-managed key: the
    sampler cannot put an item without them. They hold only through DynamoDB (not, say, to decrypt the
    feature's API-key secret, which the same key encrypts)."""
    template: Template = synth["template"]
    key_arn = synth["sampled"].node.scope.resolve(synth["sampled"].encryption_key.key_arn)
    via = {
        "StringEquals": {
            "kms:ViaService": {"Fn::Join": ["", ["dynamodb.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}
        }
    }
    (writer,) = _key_statements(template, "OnlineEvaluationSamplerRole", key_arn)
    assert {"kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*"} <= _actions(writer)
    assert writer["Condition"] == via
    # (The judge feature's key is the same team key: the drift job reads the judge's secret through
    # Secrets Manager, a statement of its own.)
    statements = _key_statements(template, "OnlineEvaluationDriftRole", key_arn)
    (reader,) = [s for s in statements if "dynamodb." in json.dumps(s.get("Condition"))]
    assert _actions(reader) == {"kms:Decrypt", "kms:DescribeKey"} and reader["Condition"] == via
    assert all("Condition" in s for s in statements), "no use of the feature key outside a service"


@pytest.mark.parametrize("role", ["OnlineEvaluationSamplerRole", "OnlineEvaluationDriftRole"])
def test_asynchronous_functions_can_write_their_encrypted_dead_letter_queue(
    synth: dict[str, Any], role: str
) -> None:
    """Lambda sends a failed asynchronous event to the dead-letter queue with the function's role: without
    the queue key the event is lost instead of kept."""
    template: Template = synth["template"]
    key_arn = synth["online"].node.scope.resolve(synth["online"].encryption_key.key_arn)
    actions = set().union(*(_actions(s) for s in _key_statements(template, role, key_arn)))
    assert {"kms:GenerateDataKey*", "kms:Decrypt"} <= actions


def test_scorer_reads_streams_inserts_only_and_has_a_dead_letter_queue(synth: dict[str, Any]) -> None:
    template: Template = synth["template"]
    template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "StartingPosition": "LATEST",
            "BisectBatchOnFunctionError": True,
            "MaximumRetryAttempts": 2,
            "FilterCriteria": {
                "Filters": [{"Pattern": json.dumps({"eventName": ["INSERT"]}, separators=(",", ":"))}]
            },
            "DestinationConfig": {"OnFailure": {"Destination": Match.any_value()}},
        },
    )
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "aif_online.handler.lambda_score",
            "Environment": {"Variables": Match.object_like({"AIF_JUDGE_MODEL": "chat-fast"})},
        },
    )


def test_free_traffic_assertions_come_from_the_suites(synth: dict[str, Any]) -> None:
    suite = synth["online"].suites["support/ticket-summarizer"]
    assert all(a["type"] in ("not-contains", "is-json", "json-schema") for a in suite["assertions"])
    assert suite["rubric"]


ONLINE_ALARMS = {
    "OnlinePiiLeak",
    "OnlineQualityDrop",
    "OutputRefusalRate",
    "InputDrift",
    "OutputLengthDrop",
    "OutputLengthGrowth",
    "OutputLanguageShift",
    "OutputToolCallShift",
    "OutputGuardrailShift",
    "OnlineSamplesStuck",
}


def test_alarms_per_sampled_feature(synth: dict[str, Any]) -> None:
    names = [a.name for a in synth["sampled"].alarm_inputs]
    assert set(names) >= ONLINE_ALARMS and len(names) == len(set(names))


def test_every_online_alarm_has_its_own_runbook_entry() -> None:
    """An alarm name missing from ALARM_RUNBOOKS would silently link the provider-outage runbook."""
    from ai_factory.constructs.observability.settings import ALARM_RUNBOOKS
    from ai_factory.constructs.online_alarms import (
        DRIFT_ALARM_NAMES,
        PLUMBING_ALARM_NAMES,
        SCORER_ALARM_NAMES,
    )

    assert set(SCORER_ALARM_NAMES) | set(DRIFT_ALARM_NAMES) | set(PLUMBING_ALARM_NAMES) == ONLINE_ALARMS
    for name in ONLINE_ALARMS:
        runbook = ALARM_RUNBOOKS[name]
        page = (ROOT / "docs" / "runbooks" / f"{runbook}.md").read_text(encoding="utf-8")
        assert f"{name}`" in page, f"docs/runbooks/{runbook}.md does not describe {name}"
    assert {ALARM_RUNBOOKS[n] for n in ONLINE_ALARMS if n.startswith("Output")} == {"output-drift"}


def test_drift_job_runs_daily_and_may_only_read_the_sample_tables(synth: dict[str, Any]) -> None:
    template: Template = synth["template"]
    (rule,) = template.find_resources("AWS::Events::Rule").values()
    assert rule["Properties"]["ScheduleExpression"] == "rate(1 day)"
    (target,) = rule["Properties"]["Targets"]
    assert "ticket-summarizer" in json.dumps(target["Input"]) and "DeadLetterConfig" in target
    statements = _statements(template, "OnlineEvaluationDriftRole")
    actions = {
        a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert {a for a in actions if a.startswith("dynamodb:")} == {"dynamodb:Scan"}


def test_restricted_features_cannot_sample() -> None:
    team = team_stack()
    with pytest.raises(
        AiFeatureError, match=r"support/secret: online_sampling: clearance 'restricted' forbids"
    ):
        feature(team, "secret", clearance="restricted", online_sampling=OnlineSampling(rate=0.1))


@pytest.mark.parametrize(
    ("sampling", "message"),
    [
        (OnlineSampling(rate=1.5), r"online_sampling\.rate: must be a number from 0 to 1"),
        (
            OnlineSampling(rate=0.1, retention_days=0),
            r"online_sampling\.retention_days: must be a whole number",
        ),
        (OnlineSampling(rate=0.1, retention_days=400), r"from 1 to 365"),
    ],
)
def test_bad_sampling_props_name_the_field(sampling: OnlineSampling, message: str) -> None:
    with pytest.raises(AiFeatureError, match=message):
        feature(team_stack(), "bad", online_sampling=sampling)


def test_online_evaluation_needs_a_sampled_feature() -> None:
    team = team_stack()
    plain = feature(team, "plain")
    log_group = logs.LogGroup.from_log_group_arn(team, "Logs", LOG_GROUP_ARN)
    with pytest.raises(OnlineEvaluationError, match="none has online_sampling enabled"):
        OnlineEvaluation(team, "Online", features=[plain], invocation_log_group=log_group)


def test_cdk_nag_packs_pass_with_online_evaluation() -> None:
    from ai_factory.platform.nag import apply_nag_packs

    app = cdk.App()
    apply_nag_packs(app)
    team = team_stack(app)
    feature(team, "sampled", online_sampling=OnlineSampling(rate=0.1))
    judge = feature(team, "judge")
    log_group = logs.LogGroup.from_log_group_arn(team, "InvocationLogs", LOG_GROUP_ARN)
    OnlineEvaluation(
        team,
        "OnlineEvaluation",
        features=find_sampled_features(team),
        invocation_log_group=log_group,
        judge=judge,
        tracking_server_arn="arn:aws:sagemaker:us-east-1:111122223333:mlflow-tracking-server/ai-factory",
    )
    app.synth()  # raises ValidationFailed on any unacknowledged finding of the three packs


def test_staged_asset_imports_on_its_own(tmp_path: Path) -> None:
    """The asset carries everything the handlers import (standard library plus boto3 at run time)."""
    import subprocess
    import sys

    from ai_factory.constructs.online_evaluation import stage_online_asset

    asset = stage_online_asset({"t/f": {"assertions": [], "rubric": "r"}}, out_root=tmp_path)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import aif_online.handler as h, aif_online.judge, aif_online.drift;"
        "import aif_online.mlflow_trace, aif_online.mlflow_rest;"
        "print(sorted(h.load_suites()))"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", code, str(asset)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['t/f']"


SUITE_YAML = """
suite: summaries
model: chat-fast
messages: [{role: user, content: "Summarize: {{ ticket }}"}]
defaults:
  assert: [{type: not-contains, value: "sk-live"}]
cases:
  - id: refund
    vars: {ticket: "refund please"}
    assert:
      - {type: icontains, value: refund}
      - {type: llm-judge, value: "Summarizes faithfully", threshold: 0.5}
  - id: delivery
    vars: {ticket: "parcel late"}
    assert: [{type: is-json}, {type: llm-judge, value: "Summarizes faithfully", threshold: 0.5}]
"""


def test_online_suite_keeps_assertions_every_case_carries_and_the_shared_rubric(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from ai_factory.constructs.online_evaluation import DEFAULT_RUBRIC, feature_online_suite

    suite = tmp_path / "summaries.eval.yaml"
    suite.write_text(SUITE_YAML, encoding="utf-8")
    fake = SimpleNamespace(
        prompts=[SimpleNamespace(eval_suite_path=suite)],
        online_sampling=OnlineSampling(rate=0.1),
        clearance="internal",
    )
    # not-contains comes from defaults (every case); is-json only on one case; icontains is case-specific.
    assert feature_online_suite(fake) == {  # type: ignore[arg-type]
        "assertions": [{"type": "not-contains", "value": "sk-live"}],
        "rubric": "Summarizes faithfully",
        "clearance": "internal",
        "trace_text": True,
    }
    fake.online_sampling = OnlineSampling(rate=0.1, judge_rubric="Own rubric", trace_text=False)
    assert feature_online_suite(fake)["rubric"] == "Own rubric"  # type: ignore[arg-type]
    fake.prompts = []
    assert feature_online_suite(fake) == {  # type: ignore[arg-type]
        "assertions": [],
        "rubric": "Own rubric",
        "clearance": "internal",
        "trace_text": False,
    }
    fake.online_sampling = None
    assert feature_online_suite(fake)["rubric"] == DEFAULT_RUBRIC  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- traces in MLflow

SERVER_ARN = "arn:aws:sagemaker:us-east-1:111122223333:mlflow-tracking-server/ai-factory"


def _online_with_tracking(team: TeamStack, **props: Any) -> OnlineEvaluation:
    feature(team, "sampled", online_sampling=OnlineSampling(rate=0.1))
    log_group = logs.LogGroup.from_log_group_arn(team, "InvocationLogs", LOG_GROUP_ARN)
    return OnlineEvaluation(
        team,
        "OnlineEvaluation",
        features=find_sampled_features(team),
        invocation_log_group=log_group,
        **props,
    )


def test_scorer_records_traces_with_exactly_the_mlflow_actions_on_the_one_server() -> None:
    team = team_stack()
    _online_with_tracking(team, tracking_server_arn=SERVER_ARN)
    template = Template.from_stack(team)
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "aif_online.handler.lambda_score",
            "Environment": {
                "Variables": Match.object_like(
                    {"AIF_MLFLOW_TRACKING_URI": SERVER_ARN, "AIF_MLFLOW_EXPERIMENT": "ai-factory/evals"}
                )
            },
        },
    )
    mlflow = [
        s for s in _statements(template, "OnlineEvaluationScorerRole") if s.get("Sid") == "RecordOnlineTraces"
    ]
    assert mlflow == [
        {
            "Sid": "RecordOnlineTraces",
            "Effect": "Allow",
            "Action": [
                "sagemaker-mlflow:GetExperimentByName",
                "sagemaker-mlflow:CreateExperiment",
                "sagemaker-mlflow:StartTrace",
            ],
            "Resource": SERVER_ARN,
        }
    ]
    # Nothing else of MLflow or its artifact store: spans and scores go through the REST API.
    actions = json.dumps(_statements(template, "OnlineEvaluationScorerRole"))
    assert "sagemaker-mlflow:*" not in actions and "s3:" not in actions
    # The sampler gets nothing of it; the drift job may only find and delete traces (their expiry).
    assert "sagemaker-mlflow" not in json.dumps(_statements(template, "OnlineEvaluationSamplerRole"))
    expiry = [
        s for s in _statements(template, "OnlineEvaluationDriftRole") if s.get("Sid") == "ExpireOnlineTraces"
    ]
    assert expiry == [
        {
            "Sid": "ExpireOnlineTraces",
            "Effect": "Allow",
            "Action": [
                "sagemaker-mlflow:GetExperimentByName",
                "sagemaker-mlflow:SearchTraces",
                "sagemaker-mlflow:DeleteTraces",
            ],
            "Resource": SERVER_ARN,
        }
    ]
    drift = template.find_resources(
        "AWS::Lambda::Function", {"Properties": {"Handler": "aif_online.drift_job.run"}}
    )
    (function,) = drift.values()
    assert function["Properties"]["Environment"]["Variables"]["AIF_MLFLOW_TRACKING_URI"] == SERVER_ARN
    (rule,) = template.find_resources("AWS::Events::Rule").values()
    assert '"retention_days":30' in json.dumps(rule["Properties"]["Targets"][0]["Input"]).replace("\\", "")


def test_without_a_tracking_server_the_scorer_records_no_traces() -> None:
    team = team_stack()
    _online_with_tracking(team)
    template = Template.from_stack(team)
    (scorer,) = template.find_resources(
        "AWS::Lambda::Function", {"Properties": {"Handler": "aif_online.handler.lambda_score"}}
    ).values()
    assert "AIF_MLFLOW_TRACKING_URI" not in scorer["Properties"]["Environment"]["Variables"]
    assert "sagemaker-mlflow" not in json.dumps(_statements(template, "OnlineEvaluationScorerRole"))


def test_tracking_server_from_the_mlops_stack_is_a_cross_stack_reference() -> None:
    from stacks.mlops_stack import MlopsStack

    app = cdk.App()
    mlops = MlopsStack(app, "Mlops", env=ENV)
    team = team_stack(app)
    online = _online_with_tracking(team, tracking_server_arn=mlops.tracking.tracking_server_arn)
    assert online.tracking_server_arn is not None
    template = Template.from_stack(team)
    (statement,) = [
        s for s in _statements(template, "OnlineEvaluationScorerRole") if s.get("Sid") == "RecordOnlineTraces"
    ]
    assert "Fn::ImportValue" in statement["Resource"]


# --- the alarms as the observability stack creates them ---------------------------------------------

RUNBOOK_BASE = "https://example.com/docs/runbooks"
CUSTOM = OnlineSampling(
    rate=0.1,
    max_refusal_rate=0.3,
    min_length_ratio=0.6,
    max_length_ratio=1.8,
    max_language_share_drop=0.25,
    max_tool_call_rate_change=0.15,
    max_guardrail_rate_change=0.05,
)


@pytest.fixture(scope="module")
def alarms() -> Template:
    """A sampled feature with custom thresholds, no judge, monitored by an Observability facade."""
    from ai_factory.constructs.observability.facade import Observability

    app = cdk.App()
    team = team_stack(app)
    sampled = feature(team, "ticket-summarizer", online_sampling=CUSTOM)
    log_group = logs.LogGroup.from_log_group_arn(team, "InvocationLogs", LOG_GROUP_ARN)
    OnlineEvaluation(team, "OnlineEvaluation", features=[sampled], invocation_log_group=log_group)
    Observability(team, "Observability", features=[sampled], platform=False, runbook_base_url=RUNBOOK_BASE)
    return Template.from_stack(team)


def _alarm(template: Template, name: str, feature: str = "ticket-summarizer") -> dict[str, Any]:
    found = template.find_resources(
        "AWS::CloudWatch::Alarm",
        {"Properties": {"AlarmName": f"ai-factory-Warning-support-{feature}-{name}"}},
    )
    assert len(found) == 1, f"{name}: {list(found)}"
    return next(iter(found.values()))["Properties"]


DAY = 86_400


def _dead_letter_queues_watched(props: dict[str, Any]) -> list[Any]:
    """The queues an ``OnlineSamplesStuck`` alarm's expression sums (their QueueName dimensions)."""
    (expression,) = [m for m in props["Metrics"] if "Expression" in m]
    queues = [m["MetricStat"]["Metric"] for m in props["Metrics"] if "MetricStat" in m]
    assert expression["Expression"] == " + ".join(m["Id"] for m in props["Metrics"] if "MetricStat" in m)
    assert all(q["MetricName"] == "ApproximateNumberOfMessagesVisible" for q in queues)
    assert all(m["MetricStat"]["Stat"] == "Maximum" for m in props["Metrics"] if "MetricStat" in m)
    return [q["Dimensions"][0]["Value"] for q in queues]


def test_dead_letters_of_a_features_online_evaluation_alarm(alarms: Template) -> None:
    """Failed log batches, stream batches and drift runs wait in the OnlineEvaluation's dead-letter
    queue; nothing retries them, so a person is told."""
    props = _alarm(alarms, "OnlineSamplesStuck")
    assert _dead_letter_queues_watched(props) == [
        {
            "Fn::GetAtt": [
                _logical_id(alarms, "AWS::SQS::Queue", "OnlineEvaluationDeadLetterQueue"),
                "QueueName",
            ]
        }
    ]
    assert (props["Threshold"], props["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    assert props["AlarmDescription"].endswith(f"Runbook: {RUNBOOK_BASE}/online-evaluation.md")


def test_a_feature_sampled_through_its_gateway_also_watches_the_sample_dead_letters() -> None:
    from ai_factory.constructs.observability.facade import Observability

    _app, team, online = mixed_setup()
    Observability(
        team, "Observability", features=online.sampled, platform=False, runbook_base_url=RUNBOOK_BASE
    )
    template = Template.from_stack(team)
    watched = _dead_letter_queues_watched(_alarm(template, "OnlineSamplesStuck", feature="mixed"))
    assert len(watched) == 2 and "GatewayOnlineSamplesDeadLetterQueue" in json.dumps(watched[1])
    assert (
        len(_dead_letter_queues_watched(_alarm(template, "OnlineSamplesStuck", feature="bedrock-only"))) == 1
    )


def _logical_id(template: Template, resource_type: str, prefix: str) -> str:
    (found,) = [k for k in template.find_resources(resource_type) if k.startswith(prefix)]
    return found


@pytest.mark.parametrize(
    ("name", "metric", "threshold", "comparison", "period", "periods", "says"),
    [
        ("OutputRefusalRate", "OnlineRefusals", 0.3, "GreaterThanThreshold", 3 * 3600, 1, "more than 30%"),
        ("OutputLengthDrop", "OutputLengthRatio", 0.6, "LessThanThreshold", DAY, 1, "shorter than 0.6 x"),
        ("OutputLengthGrowth", "OutputLengthRatio", 1.8, "GreaterThanThreshold", DAY, 1, "longer than 1.8 x"),
        ("OutputLanguageShift", "LanguageShareChange", -0.25, "LessThanThreshold", DAY, 1, "fell by more"),
        ("InputDrift", "InputDriftPValue", 0.01, "LessThanThreshold", DAY, 2, "two days running"),
    ],
)
def test_drift_alarm_watches_its_metric_at_the_feature_threshold(
    alarms: Template,
    name: str,
    metric: str,
    threshold: float,
    comparison: str,
    period: int,
    periods: int,
    says: str,
) -> None:
    props = _alarm(alarms, name)
    assert props["MetricName"] == metric and props["Namespace"] == "AIFactory"
    dimensions = {d["Name"]: d["Value"] for d in props["Dimensions"]}
    assert dimensions == {"Team": "support", "Feature": "ticket-summarizer"}
    assert (props["Threshold"], props["ComparisonOperator"]) == (threshold, comparison)
    assert (props["Period"], props["EvaluationPeriods"]) == (period, periods)
    assert props["TreatMissingData"] == "notBreaching"
    description = props["AlarmDescription"]
    assert description.startswith("support/ticket-summarizer: ") and says in description
    runbook = "output-drift" if name.startswith("Output") else "online-evaluation"
    assert description.endswith(f"Runbook: {RUNBOOK_BASE}/{runbook}.md")
    assert props["AlarmActions"] and props["OKActions"]


@pytest.mark.parametrize(
    ("name", "metric", "threshold"),
    [
        ("OutputToolCallShift", "ToolCallRateChange", 0.15),
        ("OutputGuardrailShift", "GuardrailRateChange", 0.05),
    ],
)
def test_rate_shift_alarms_fire_on_a_change_either_way(
    alarms: Template, name: str, metric: str, threshold: float
) -> None:
    props = _alarm(alarms, name)
    assert (props["Threshold"], props["ComparisonOperator"]) == (threshold, "GreaterThanThreshold")
    expression, source = sorted(props["Metrics"], key=lambda m: "Expression" not in m)
    assert expression["Expression"] == "ABS(change)" and expression["ReturnData"] is True
    assert source["Id"] == "change" and source["ReturnData"] is False
    stat = source["MetricStat"]
    assert stat["Metric"]["MetricName"] == metric and stat["Period"] == DAY
    assert "up or down" in props["AlarmDescription"]
    assert props["AlarmDescription"].endswith(f"Runbook: {RUNBOOK_BASE}/output-drift.md")


def test_without_a_judge_there_is_no_judge_score_alarm(alarms: Template) -> None:
    names = [a["Properties"]["AlarmName"] for a in alarms.find_resources("AWS::CloudWatch::Alarm").values()]
    assert not [n for n in names if n.endswith("-OnlineQualityDrop")]
    assert len(names) == len(set(names))
    assert {n.rsplit("-", 1)[1] for n in names} >= ONLINE_ALARMS - {"OnlineQualityDrop"}


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"tracking_server_arn": "arn:aws:sagemaker:us-east-1:111122223333:model/x"}, "tracking_server_arn"),
        ({"tracking_server_arn": "http://127.0.0.1:5000"}, "mlflow-tracking-server ARN"),
        ({"tracking_server_arn": SERVER_ARN, "trace_experiment": " "}, "trace_experiment"),
    ],
)
def test_bad_tracking_props_name_the_field(props: dict[str, Any], message: str) -> None:
    with pytest.raises(OnlineEvaluationError, match=message):
        _online_with_tracking(team_stack(), **props)


def test_trace_text_must_be_a_boolean() -> None:
    with pytest.raises(AiFeatureError, match=r"online_sampling\.trace_text: must be True or False"):
        feature(team_stack(), "bad", online_sampling=OnlineSampling(rate=0.1, trace_text="yes"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"min_length_ratio": 1.0}, r"online_sampling\.min_length_ratio: must be above 0 and below 1"),
        ({"max_length_ratio": 0.9}, r"online_sampling\.max_length_ratio: must be a number above 1"),
        ({"max_length_ratio": float("inf")}, r"max_length_ratio"),
        (
            {"max_language_share_drop": 0},
            r"online_sampling\.max_language_share_drop: must be a share above 0",
        ),
        ({"max_tool_call_rate_change": 1.5}, r"online_sampling\.max_tool_call_rate_change"),
        ({"max_guardrail_rate_change": True}, r"online_sampling\.max_guardrail_rate_change"),
    ],
)
def test_bad_drift_thresholds_name_the_field(props: dict[str, Any], message: str) -> None:
    with pytest.raises(AiFeatureError, match=message):
        feature(team_stack(), "bad", online_sampling=OnlineSampling(rate=0.1, **props))


# --- one OnlineEvaluation per invocation log group ----------------------------------------------------


def test_a_second_online_evaluation_on_the_same_log_group_fails_at_synth() -> None:
    from ai_factory.constructs.invocation_logging import BedrockInvocationLogging

    app = cdk.App()
    team = team_stack(app)
    first = feature(team, "first", online_sampling=OnlineSampling(rate=0.1))
    second = feature(team, "second", online_sampling=OnlineSampling(rate=0.1))
    platform = cdk.Stack(app, "Platform", env=ENV)
    owned = BedrockInvocationLogging(platform, "InvocationLogging").log_group
    OnlineEvaluation(platform, "Online", features=[first], invocation_log_group=owned)
    with pytest.raises(OnlineEvaluationError, match=r"OnlineEvaluation Platform/Online already subscribes"):
        OnlineEvaluation(team, "Online", features=[second], invocation_log_group=owned)
    # The same log group imported twice by ARN is still the same log group.
    imported = logs.LogGroup.from_log_group_arn(team, "A", LOG_GROUP_ARN)
    OnlineEvaluation(team, "Imported", features=[second], invocation_log_group=imported)
    again = logs.LogGroup.from_log_group_arn(team, "B", LOG_GROUP_ARN)
    with pytest.raises(OnlineEvaluationError, match=r"2 subscription filters per log group"):
        OnlineEvaluation(team, "Again", features=[second], invocation_log_group=again)


def test_drift_dead_letters_may_use_the_key_for_that_rule_only(synth: dict[str, Any]) -> None:
    template: Template = synth["template"]
    (rule,) = template.find_resources("AWS::Events::Rule").values()
    name = rule["Properties"]["Name"]
    assert name.startswith("ai-factory-") and len(name) <= 64
    keys = template.find_resources("AWS::KMS::Key")
    statements = [
        st
        for key in keys.values()
        for st in key["Properties"]["KeyPolicy"]["Statement"]
        if st.get("Sid") == "AllowEventBridgeDeadLetters"
    ]
    (statement,) = statements
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert sorted(statement["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert name in json.dumps(statement["Condition"]["ArnEquals"]["aws:SourceArn"])


def test_online_evaluation_after_the_monitoring_of_its_features_fails_at_synth() -> None:
    """Its alarms are alarm inputs the Observability reads when it monitors a feature: created later,
    they would silently never exist."""
    from ai_factory.constructs.observability.facade import Observability

    app = cdk.App()
    team = team_stack(app)
    sampled = feature(team, "late", online_sampling=OnlineSampling(rate=0.1))
    Observability(team, "Observability", features=[sampled], platform=False)
    log_group = logs.LogGroup.from_log_group_arn(team, "InvocationLogs", LOG_GROUP_ARN)
    with pytest.raises(OnlineEvaluationError, match=r"support/late is already monitored by .*Observability"):
        OnlineEvaluation(team, "OnlineEvaluation", features=[sampled], invocation_log_group=log_group)


def mixed_setup(app: cdk.App | None = None) -> tuple[cdk.App, TeamStack, OnlineEvaluation]:
    """A sampled feature whose routes reach Bedrock and external providers, and one Bedrock-only."""
    app = app or cdk.App()
    team = team_stack(app)
    mixed = feature(
        team,
        "mixed",
        clearance="public",
        models=["chat-fast", "chat-claude-any"],
        online_sampling=OnlineSampling(rate=0.1),
    )
    bedrock_only = feature(team, "bedrock-only", online_sampling=OnlineSampling(rate=0.2))
    log_group = logs.LogGroup.from_log_group_arn(team, "InvocationLogs", LOG_GROUP_ARN)
    online = OnlineEvaluation(
        team, "OnlineEvaluation", features=[mixed, bedrock_only], invocation_log_group=log_group
    )
    return app, team, online


def _gateway_stack(app: cdk.App) -> cdk.Stack:
    stack = app.node.find_child("Gw")
    assert isinstance(stack, cdk.Stack)
    return stack


def test_targets_outside_bedrock_are_sampled_through_the_gateways_queue() -> None:
    """Answers of external providers never reach Bedrock's invocation log: the gateway sends those
    samples to a queue of its own, which the sampler consumes, and only for the features that need it."""
    app, team, online = mixed_setup()
    assert not [
        w
        for w in Annotations.from_stack(team).find_warning("*", Match.any_value())
        if "online-sampling-unlogged-targets" in str(w.entry.data)
    ]
    gateway = Template.from_stack(_gateway_stack(app))
    team_template = Template.from_stack(team)
    # The queue: its own rotating key, a dead-letter queue after 5 receives, TLS only.
    (key_id,) = [
        k
        for k, v in gateway.find_resources("AWS::KMS::Key").items()
        if "online-evaluation samples" in v["Properties"]["Description"]
    ]
    gateway.has_resource_properties(
        "AWS::KMS::Key",
        {"Description": Match.string_like_regexp("online-evaluation"), "EnableKeyRotation": True},
    )
    queues = gateway.find_resources(
        "AWS::SQS::Queue", {"Properties": {"KmsMasterKeyId": {"Fn::GetAtt": [key_id, "Arn"]}}}
    )
    (queue_id,) = [k for k, v in queues.items() if "RedrivePolicy" in v["Properties"]]
    assert queues[queue_id]["Properties"]["RedrivePolicy"]["maxReceiveCount"] == 5
    assert len(queues) == 2  # the queue and its dead-letter queue, nothing else on this key
    # The gateway function is told the URL and may send there.
    (function,) = [
        f
        for f in gateway.find_resources("AWS::Lambda::Function").values()
        if f["Properties"].get("Handler") == "aif_gateway/run.sh"
    ]
    assert function["Properties"]["Environment"]["Variables"]["AIF_SAMPLE_QUEUE_URL"] == {"Ref": queue_id}
    statements = {
        st.get("Sid"): st
        for policy in gateway.find_resources("AWS::IAM::Policy").values()
        for st in policy["Properties"]["PolicyDocument"]["Statement"]
        if queue_id in json.dumps(st["Resource"]) or key_id in json.dumps(st["Resource"])
    }
    assert set(statements) == {"SendOnlineSamples", "EncryptOnlineSamples"}
    assert statements["SendOnlineSamples"]["Action"] == "sqs:SendMessage"
    assert statements["EncryptOnlineSamples"]["Action"] == ["kms:GenerateDataKey", "kms:Decrypt"]
    assert "sqs." in json.dumps(
        statements["EncryptOnlineSamples"]["Condition"]["StringEquals"]["kms:ViaService"]
    )
    # The sampler consumes it (partial batch failures), decrypting with that key only.
    (mapping,) = team_template.find_resources(
        "AWS::Lambda::EventSourceMapping",
        {"Properties": {"FunctionResponseTypes": ["ReportBatchItemFailures"]}},
    ).values()
    assert "Fn::ImportValue" in mapping["Properties"]["EventSourceArn"]
    assert len(online.gateway_sample_queues) == 1
    imported = [
        st
        for st in _statements(team_template, "OnlineEvaluationSamplerRole")
        if "Fn::ImportValue" in json.dumps(st)
    ]
    assert sorted(json.dumps(st["Action"]) for st in imported) == [
        '"kms:Decrypt"',
        '["sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueUrl", "sqs:DeleteMessage", '
        '"sqs:GetQueueAttributes"]',
    ]
    queue_statement, key_statement = sorted(imported, key=lambda st: json.dumps(st["Action"]), reverse=True)
    assert queue_statement["Resource"] == mapping["Properties"]["EventSourceArn"]
    assert f"FnGetAtt{key_id}Arn" in key_statement["Resource"]["Fn::ImportValue"]
    # The rate reaches the key record of the feature that needs it, not of the Bedrock-only one.
    keys = {
        v["Properties"]["Feature"]: v["Properties"]
        for v in team_template.find_resources("Custom::AiFactoryFeatureKey").values()
    }
    assert keys["mixed"]["GatewaySamplingRate"] == "0.1"
    assert "GatewaySamplingRate" not in keys["bedrock-only"]


def test_a_gateway_without_sampled_external_targets_has_no_sample_queue() -> None:
    app = cdk.App()
    team = team_stack(app)
    sampled = feature(team, "bedrock-only", online_sampling=OnlineSampling(rate=0.2))
    log_group = logs.LogGroup.from_log_group_arn(team, "InvocationLogs", LOG_GROUP_ARN)
    online = OnlineEvaluation(team, "OnlineEvaluation", features=[sampled], invocation_log_group=log_group)
    assert online.gateway_sample_queues == []
    gateway = Template.from_stack(_gateway_stack(app))
    for function in gateway.find_resources("AWS::Lambda::Function").values():
        assert "AIF_SAMPLE_QUEUE_URL" not in json.dumps(function["Properties"].get("Environment", {}))
    Template.from_stack(team).resource_count_is("AWS::Lambda::EventSourceMapping", 1)  # the scorer's


def test_a_second_consumer_of_a_gateways_sample_queue_is_refused() -> None:
    """SQS gives each message to one reader: a second sampler would see part of the samples."""
    app = cdk.App()
    team = team_stack(app)
    one = feature(
        team, "one", clearance="public", models=["chat-claude-any"], online_sampling=OnlineSampling(rate=0.1)
    )
    two = feature(
        team, "two", clearance="public", models=["chat-claude-any"], online_sampling=OnlineSampling(rate=0.1)
    )
    first = logs.LogGroup.from_log_group_arn(team, "InvocationLogs", LOG_GROUP_ARN)
    OnlineEvaluation(team, "OnlineEvaluation", features=[one], invocation_log_group=first)
    other = logs.LogGroup.from_log_group_arn(
        team, "OtherLogs", LOG_GROUP_ARN.replace("us-east-1", "eu-west-1")
    )
    with pytest.raises(ValueError, match=r"enable_online_samples: .*OnlineEvaluation already consumes"):
        OnlineEvaluation(team, "Second", features=[two], invocation_log_group=other)


def test_an_imported_gateways_external_targets_warn_at_synth() -> None:
    """Only the gateway's own app can give it a sample queue: a team app importing the gateway is told
    which of its routes' answers are not sampled."""
    stack = cdk.Stack(cdk.App(), "Team", env=ENV)
    imported = _imported_feature(stack, "0123456789ab", models=["chat-fast", "chat-claude-any"])
    log_group = logs.LogGroup.from_log_group_arn(stack, "InvocationLogs", LOG_GROUP_ARN)
    OnlineEvaluation(stack, "Online", features=[imported], invocation_log_group=log_group)
    warnings = [
        str(w.entry.data)
        for w in Annotations.from_stack(stack).find_warning("*", Match.any_value())
        if "online-sampling-unlogged-targets" in str(w.entry.data)
    ]
    assert len(warnings) == 1, warnings
    assert "claims/triage samples online" in warnings[0]
    assert "chat-claude-any -> gpt-4o (openai)" in warnings[0]
    assert "imported from another app" in warnings[0]
    assert "chat-fast" not in warnings[0]


# --- whose traffic: a feature's own gateway's only --------------------------------------


def _stage(app: cdk.App, stage: str) -> TeamStack:
    """One pipeline stage's gateway and team stack, in the same account and region as the other's."""
    scope = cdk.Stage(app, stage)
    gateway = GatewayStack(scope, "Gw", env=ENV)
    return TeamStack(scope, "TeamSupport", team="support", gateway_stack=gateway, env=ENV)


def _sampler(template: Template) -> tuple[dict[str, Any], str]:
    (sampler,) = template.find_resources(
        "AWS::Lambda::Function", {"Properties": {"Handler": "aif_online.handler.sample"}}
    ).values()
    (subscription,) = template.find_resources("AWS::Logs::SubscriptionFilter").values()
    raw = sampler["Properties"]["Environment"]["Variables"]["AIF_ONLINE_SAMPLING"]
    return json.loads(raw) if isinstance(raw, str) else raw, subscription["Properties"]["FilterPattern"]


def test_productions_sampler_takes_only_productions_gateway() -> None:
    """Staging and production share the account's invocation log group and have features of the same
    names: production's sampler is subscribed to, and configured for, production's gateway only."""
    app = cdk.App()
    production, staging = _stage(app, "Prod"), _stage(app, "Staging")
    prod_feature = feature(production, "ticket-summarizer", online_sampling=OnlineSampling(rate=0.1))
    staging_feature = feature(staging, "ticket-summarizer", online_sampling=OnlineSampling(rate=0.1))
    prod_ns, staging_ns = prod_feature.gateway.edge_namespace, staging_feature.gateway.edge_namespace
    assert prod_ns != staging_ns
    log_group = logs.LogGroup.from_log_group_arn(production, "InvocationLogs", LOG_GROUP_ARN)
    online = OnlineEvaluation(
        production, "OnlineEvaluation", features=[prod_feature], invocation_log_group=log_group
    )
    assert online.sampler_settings["support/ticket-summarizer"]["gateway"] == prod_ns
    _, pattern = _sampler(Template.from_stack(production))
    assert pattern == only_gateway(prod_ns)
    assert staging_ns not in pattern


def test_features_of_several_gateways_share_one_filter() -> None:
    app = cdk.App()
    production, staging = _stage(app, "Prod"), _stage(app, "Staging")
    first = feature(production, "first", online_sampling=OnlineSampling(rate=0.1))
    second = feature(staging, "second", online_sampling=OnlineSampling(rate=0.1))
    platform = cdk.Stack(app, "Platform", env=ENV)
    log_group = logs.LogGroup.from_log_group_arn(platform, "InvocationLogs", LOG_GROUP_ARN)
    online = OnlineEvaluation(platform, "Online", features=[first, second], invocation_log_group=log_group)
    namespaces = sorted([first.gateway.edge_namespace, second.gateway.edge_namespace])
    terms = [f'($.requestMetadata.aif_gateway = "{ns}")' for ns in namespaces]
    assert online.subscription_filter_pattern == "{ " + " || ".join(terms) + " }"
    assert {v["gateway"] for v in online.sampler_settings.values()} == set(namespaces)


def test_the_same_feature_name_on_two_gateways_in_one_online_evaluation_fails_at_synth() -> None:
    """The sampler's and scorer's settings are keyed by team/feature: two features of one name would
    share them (one's traffic in the other's table)."""
    app = cdk.App()
    production, staging = _stage(app, "Prod"), _stage(app, "Staging")
    first = feature(production, "same", online_sampling=OnlineSampling(rate=0.1))
    second = feature(staging, "same", online_sampling=OnlineSampling(rate=0.1))
    platform = cdk.Stack(app, "Platform", env=ENV)
    log_group = logs.LogGroup.from_log_group_arn(platform, "InvocationLogs", LOG_GROUP_ARN)
    with pytest.raises(
        OnlineEvaluationError, match=r"features: support/same is sampled twice .*Staging/TeamSupport"
    ):
        OnlineEvaluation(platform, "Online", features=[first, second], invocation_log_group=log_group)


def test_a_filter_over_cloudwatchs_limit_falls_back_to_any_gateway_record() -> None:
    """19 gateways fit CloudWatch Logs' 1,024 characters; beyond, the filter passes every gateway's
    records and the sampler's own check (settings) keeps each feature to its gateway."""
    from ai_factory.constructs.online_evaluation import FILTER_PATTERN_MAX_CHARS, sampler_filter_pattern
    from aif_gateway import contract

    namespaces = [contract.edge_namespace(f"Stage{i}/Gateway") for i in range(40)]
    fits = sampler_filter_pattern(namespaces[:19])
    assert len(fits) <= FILTER_PATTERN_MAX_CHARS == 1024
    assert all(f'"{ns}"' in fits for ns in namespaces[:19])
    for many in (namespaces[:20], namespaces):
        assert sampler_filter_pattern(many) == '{ $.requestMetadata.aif_gateway = "*" }'
    assert sampler_filter_pattern(namespaces[:1] * 3) == only_gateway(namespaces[0])


def _imported_feature(
    stack: cdk.Stack, edge_namespace: str | None, models: list[str] | None = None
) -> AiFeature:
    from ai_factory.constructs.gateway.imported import GatewayAttributes
    from ai_factory.constructs.gateway.llm_gateway import LlmGateway

    gateway = LlmGateway.from_gateway_attributes(
        stack,
        "Gateway",
        attributes=GatewayAttributes(
            url="https://x.execute-api.us-east-1.amazonaws.com/prod/v1",
            key_provisioning_service_token="arn:aws:lambda:us-east-1:111122223333:function:p",
            key_provisioner_role_arn="arn:aws:iam::111122223333:role/p",
            edge_namespace=edge_namespace,
        ),
    )
    return AiFeature(
        stack,
        "Feature",
        team="claims",
        gateway=gateway,
        feature="triage",
        owner="a@example.com",
        clearance="public" if models else "internal",
        models=models or ["chat-fast"],
        monthly_budget_usd=10,
        rate_limit_rpm=10,
        online_sampling=OnlineSampling(rate=0.1),
    )


def test_an_imported_gateway_must_name_its_namespace_to_be_sampled() -> None:
    """Without the gateway's namespace the sampler could not tell its traffic from another gateway's
    features of the same name: refused at synth rather than sampling anyone's traffic."""
    stack = cdk.Stack(cdk.App(), "Team", env=ENV)
    unnamed = _imported_feature(stack, None)
    log_group = logs.LogGroup.from_log_group_arn(stack, "InvocationLogs", LOG_GROUP_ARN)
    with pytest.raises(
        OnlineEvaluationError,
        match=r"features: claims/triage: its gateway Team/Gateway has no edge_namespace",
    ):
        OnlineEvaluation(stack, "Online", features=[unnamed], invocation_log_group=log_group)

    stack = cdk.Stack(cdk.App(), "Team", env=ENV)
    named = _imported_feature(stack, "0123456789ab")
    log_group = logs.LogGroup.from_log_group_arn(stack, "InvocationLogs", LOG_GROUP_ARN)
    online = OnlineEvaluation(stack, "Online", features=[named], invocation_log_group=log_group)
    assert online.sampler_settings["claims/triage"]["gateway"] == "0123456789ab"


@pytest.mark.parametrize("value", ["Prod-Gateway", "0123456789AB", "0123456789a", "token"])
def test_an_imported_gateways_namespace_is_checked(value: str) -> None:
    """Concrete and of LlmGateway.edge_namespace's form: the filter and settings are built at synth."""
    stack = cdk.Stack(cdk.App(), "Team", env=ENV)
    if value == "token":  # made here: a token's text differs between test collections (pytest-xdist)
        value = cdk.Fn.import_value("Ns")
    with pytest.raises(ValueError, match=r"edge_namespace: must be the gateway's LlmGateway.edge_namespace"):
        _imported_feature(stack, value)
