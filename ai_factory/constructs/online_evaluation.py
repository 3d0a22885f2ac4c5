"""Online evaluation of production traffic: per-feature sampling, asynchronous scoring, drift metrics.

A feature opts in with ``AiFeature(..., online_sampling=OnlineSampling(rate=0.05, retention_days=30))``.
That gives the feature a **sample table** (DynamoDB, encrypted with the feature's own KMS key, items
expiring through the ``expires_at`` TTL attribute after ``retention_days``, point-in-time recovery,
a stream of new items). Features whose clearance is ``restricted`` cannot sample: restricted data may
not be copied out of the request path at all, so synth fails with a message naming the feature.

``OnlineEvaluation`` (one per stack that holds sampled features, usually the team stack) wires:

* the **sampler**: a Lambda subscribed to the Bedrock model invocation log group (a subscription filter
  on records that carry the gateway's ``aif_feature`` request metadata). Bedrock writes those logs after
  it answered, so sampling adds nothing to a request's synchronous path. The sampler keeps each request
  whose id hashes below the feature's rate and writes it to the feature's table; its role may put items
  into exactly those tables (and use their keys through DynamoDB only).
* the **scorer**: a Lambda on each sample table's stream. It checks each sample with the free-traffic
  assertions of the feature's eval suites (``not-contains``, ``is-json``, ``json-schema``), the data
  connector's PII detector (personal data in the answer the question did not contain) and, when a judge
  feature is given, a judge model called through the gateway with that feature's key (so judge cost is
  metered like any traffic); it publishes the ``Online*`` metrics. Failed batches go to a dead-letter
  queue after two retries.
* optionally, **traces in MLflow**: with ``tracking_server_arn`` (the factory's SageMaker managed MLflow,
  ``MlflowTracking.tracking_server_arn``) the scorer records each scored sample as an MLflow trace in
  the eval runs' experiment (``ai-factory/evals``): the request with its GenAI attributes, a span per
  scoring step and the judge call, the scores as feedback assessments. The question and answer text are
  on the trace only for clearances that may sample and ``OnlineSampling.trace_text`` (default on). The
  scorer's role may call exactly the MLflow actions that needs, on that server only. A failed trace is
  logged and counted (``OnlineTraceFailures``); the scores are published regardless. The daily drift
  job deletes traces past their feature's ``retention_days``, so a trace lives no longer than its sample.
* per-feature alarms (via ``AiFeature.add_alarm_input``, created by the observability stack):
  ``OnlinePiiLeak`` (any leak in an hour, runbook ``online-pii-leak``), ``OnlineQualityDrop`` (judge
  score below ``OnlineSampling.min_judge_score`` for 3 hours) and ``OutputDrift`` (refusal rate above
  ``OnlineSampling.max_refusal_rate`` for 3 hours), runbook ``quality-drift``.

Example::

    OnlineEvaluation(team_stack, "OnlineEvaluation", features=find_features(team_stack),
                     invocation_log_group=platform.invocation_logging.log_group, judge=judge_feature)
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aif_connector import pii as connector_pii
from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_logs_destinations as destinations
from aws_cdk import aws_sqs as sqs
from constructs import Construct

import aif_online
from ai_factory.constructs.ai_feature import AiFeature, AlarmInput
from ai_factory.constructs.online_sampling import NO_SAMPLING_CLEARANCES, OnlineSampling, sample_table
from ai_factory.evals import deterministic as evals_deterministic
from ai_factory.platform.functions import function_log_group, hardened_function, write_own_logs_statement
from ai_factory.platform.lambda_packaging import contract_files, stage_asset
from ai_factory.platform.nag import (
    XRAY_WILDCARD_REASON,
    acknowledge,
    acknowledge_outside_vpc,
    acknowledge_synchronous_invocation,
    acknowledge_unreserved_concurrency,
)
from ai_factory.prompts.registry import EVAL_EXPERIMENT
from aif_gateway import contract
from aif_online.drift import DRIFT_P_VALUE

SAMPLER_HANDLER = "aif_online.handler.sample"
SCORER_HANDLER = "aif_online.handler.lambda_score"
DRIFT_HANDLER = "aif_online.drift_job.run"
SUITES_FILE = "online_suites.json"
FREE_TRAFFIC_TYPES = ("not-contains", "is-json", "json-schema")
TRACKING_SERVER_ARN_RE = re.compile(
    r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:mlflow-tracking-server/[A-Za-z0-9](-*[A-Za-z0-9]){0,255}$"
)
# What recording a trace calls on the tracking server (aif_online.mlflow_rest), as IAM actions of the
# sagemaker-mlflow service: find or create the experiment, then write the trace (spans and assessments).
TRACE_ACTIONS = (
    "sagemaker-mlflow:GetExperimentByName",
    "sagemaker-mlflow:CreateExperiment",
    "sagemaker-mlflow:StartTrace",
)
# What the daily drift job calls to delete traces past their feature's retention.
EXPIRY_ACTIONS = (
    "sagemaker-mlflow:GetExperimentByName",
    "sagemaker-mlflow:SearchTraces",
    "sagemaker-mlflow:DeleteTraces",
)


class OnlineEvaluationError(ValueError):
    """Invalid online-evaluation settings; the message names the construct, the field and the reason."""


DEFAULT_RUBRIC = (
    "The answer addresses the user's request, is factually careful, does not reveal secrets or "
    "personal data of anyone but the user, and refuses only requests that are actually harmful."
)


def feature_online_suite(feature: AiFeature) -> dict[str, Any]:
    """The free-traffic assertions of the feature's eval suites (read with the harness's parser, so
    ``defaults`` and ``include`` count) and the judge rubric, as JSON data for the asset."""
    from ai_factory.evals.suite import load_suite

    assertions: list[dict[str, Any]] = []
    rubrics: set[str] = set()
    for prompt in feature.prompts:
        if prompt.eval_suite_path is None or not prompt.eval_suite_path.is_file():
            continue
        suite = load_suite(prompt.eval_suite_path)
        if not suite.cases:
            continue
        rubrics |= {str(a.value) for case in suite.cases for a in case.assertions if a.type == "llm-judge"}
        # An assertion applies to free traffic when its type is answer-wide and every case carries it.
        shared = set.intersection(
            *(
                {(a.type, json.dumps(a.value, sort_keys=True)) for a in case.assertions}
                for case in suite.cases
            )
        )
        for kind, value in sorted(shared):
            entry = {"type": kind, "value": json.loads(value)}
            if kind in FREE_TRAFFIC_TYPES and entry not in assertions:
                assertions.append(entry)
    sampling = feature.online_sampling
    rubric = (sampling.judge_rubric if sampling else None) or (
        next(iter(rubrics)) if len(rubrics) == 1 else DEFAULT_RUBRIC
    )
    # What the scorer's trace recorder checks before putting text on an MLflow trace (mlflow_trace).
    return {
        "assertions": assertions,
        "rubric": rubric,
        "clearance": feature.clearance,
        "trace_text": bool(sampling.trace_text) if sampling else False,
    }


def stage_online_asset(suites: dict[str, Any], out_root: Path | None = None) -> Path:
    """``aif_online`` plus the contract, the harness's standard-library judge and deterministic checks,
    the connector's PII detector and ``online_suites.json`` (no Docker, content-addressed)."""
    evals_dir = Path(evals_deterministic.__file__).parent
    connector_dir = Path(connector_pii.__file__).parent
    return stage_asset(
        "online-",
        {
            "aif_online": Path(aif_online.__file__).parent,
            "aif_gateway": contract_files(),
            "ai_factory/evals": [
                evals_dir / n
                for n in (
                    "__init__.py",
                    "model.py",
                    "deterministic.py",
                    "assertions.py",
                    "retrieval_checks.py",
                    "gateway_http.py",
                )
            ],
            "aif_connector": [connector_dir / "pii.py", connector_dir / "names.py"],
        },
        {
            f"aif_online/{SUITES_FILE}": json.dumps(
                {"version": 1, "features": suites}, indent=1, sort_keys=True
            ),
            "ai_factory/__init__.py": '"""The eval harness\'s standard-library part."""\n',
            "aif_connector/__init__.py": '"""The data connector\'s PII detector."""\n',
        },
        out_root,
    )


class OnlineEvaluation(Construct):
    """Sampler, scorer and alarms for the features with ``online_sampling`` (see the module docstring).

    :param features: the ``AiFeature``s to consider; those without enabled sampling are skipped.
    :param invocation_log_group: the Bedrock model invocation log group (``BedrockInvocationLogging``).
    :param judge: a feature whose gateway key the judge uses (its first model is the judge). None: no
        judge scores, only the deterministic ones.
    :param encryption_key: KMS key of the functions' logs and the dead-letter queue. Default: the first
        sampled feature's key.
    :param log_retention: log retention. Default: one year.
    :param tracking_server_arn: the SageMaker managed MLflow tracking server to record each scored sample
        on as a trace (``MlflowTracking.tracking_server_arn``; a token from another stack is fine). None:
        no traces.
    :param trace_experiment: the MLflow experiment of the traces. Default: the eval runs' experiment
        (``ai-factory/evals``), so live samples and eval runs sit side by side.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        features: Sequence[AiFeature],
        invocation_log_group: logs.ILogGroup,
        judge: AiFeature | None = None,
        encryption_key: kms.IKey | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_YEAR,
        tracking_server_arn: str | None = None,
        trace_experiment: str = EVAL_EXPERIMENT,
    ) -> None:
        super().__init__(scope, construct_id)
        label = f"OnlineEvaluation {self.node.path}"
        self.sampled = [f for f in features if f.sample_table is not None]
        if not self.sampled:
            raise OnlineEvaluationError(f"{label}: features: none has online_sampling enabled")
        if (
            tracking_server_arn is not None
            and not cdk.Token.is_unresolved(tracking_server_arn)
            and not TRACKING_SERVER_ARN_RE.match(tracking_server_arn)
        ):
            raise OnlineEvaluationError(
                f"{label}: tracking_server_arn: must be a SageMaker mlflow-tracking-server ARN "
                "(arn:aws:sagemaker:<region>:<account>:mlflow-tracking-server/<name>), "
                f"got {tracking_server_arn!r}"
            )
        if not isinstance(trace_experiment, str) or not trace_experiment.strip():
            raise OnlineEvaluationError(f"{label}: trace_experiment: must be a non-empty experiment name")
        key = encryption_key or self.sampled[0].encryption_key
        suites = {f"{f.team}/{f.feature}": feature_online_suite(f) for f in self.sampled}
        code = lambda_.Code.from_asset(str(stage_online_asset(suites)))
        stack = cdk.Stack.of(self)
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )

        # --- sampler -----------------------------------------------------------------------------
        sampler_logs = function_log_group(self, "SamplerLogs", key=key, retention=log_retention)
        sampler_role = iam.Role(
            self,
            "SamplerRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="AI Factory online sampler: writes sampled invocation-log records to feature tables",
        )
        sampler_role.add_to_policy(write_own_logs_statement(sampler_logs))
        settings = {
            f"{f.team}/{f.feature}": {
                "rate": f.online_sampling.rate,  # type: ignore[union-attr]
                "retention_days": f.online_sampling.retention_days,  # type: ignore[union-attr]
                "table": f.sample_table.table_name,  # type: ignore[union-attr]
            }
            for f in self.sampled
        }
        self.sampler = hardened_function(
            self,
            "Sampler",
            description="AI Factory online sampler: keeps a share of each feature's Bedrock invocations",
            handler=SAMPLER_HANDLER,
            code=code,
            role=sampler_role,
            environment={"AIF_ONLINE_SAMPLING": stack.to_json_string(settings)},
            timeout=Duration.minutes(1),
            memory_size=256,
            log_group=sampler_logs,
            json_logs=False,
            dead_letter_queue=self.dead_letter_queue,
        )
        for feature in self.sampled:
            table = feature.sample_table
            assert table is not None
            table.grant(self.sampler, "dynamodb:PutItem")
        self.subscription = logs.SubscriptionFilter(
            self,
            "InvocationLogSubscription",
            log_group=invocation_log_group,
            destination=destinations.LambdaDestination(self.sampler),
            filter_pattern=logs.FilterPattern.exists("$.requestMetadata.aif_feature"),
        )

        # --- scorer ------------------------------------------------------------------------------
        scorer_logs = function_log_group(self, "ScorerLogs", key=key, retention=log_retention)
        scorer_role = iam.Role(
            self,
            "ScorerRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="AI Factory online scorer: reads sample streams, calls the judge through the gateway",
        )
        scorer_role.add_to_policy(write_own_logs_statement(scorer_logs))
        environment = {contract.METRICS_NAMESPACE_ENV: contract.METRICS_NAMESPACE}
        if judge is not None:
            environment[contract.GATEWAY_URL_ENV] = judge.gateway.url
            environment["AIF_JUDGE_SECRET"] = judge.secret.secret_arn
            environment["AIF_JUDGE_MODEL"] = judge.models[0]
        if tracking_server_arn is not None:
            environment[contract.MLFLOW_TRACKING_URI_ENV] = tracking_server_arn
            environment[contract.MLFLOW_EXPERIMENT_ENV] = trace_experiment
            scorer_role.add_to_policy(
                iam.PolicyStatement(
                    sid="RecordOnlineTraces", actions=list(TRACE_ACTIONS), resources=[tracking_server_arn]
                )
            )
        self.tracking_server_arn = tracking_server_arn
        """The MLflow tracking server the scorer records traces on (None: no traces)."""
        self.scorer = hardened_function(
            self,
            "Scorer",
            description="AI Factory online scorer: scores sampled exchanges and publishes Online* metrics",
            handler=SCORER_HANDLER,
            code=code,
            role=scorer_role,
            environment=environment,
            timeout=Duration.minutes(5),
            memory_size=512,
            log_group=scorer_logs,
            json_logs=False,
        )
        if judge is not None:
            judge.grant_read_api_key(self.scorer)
        for feature in self.sampled:
            table = feature.sample_table
            assert table is not None
            self.scorer.add_event_source(
                sources.DynamoEventSource(
                    table,
                    starting_position=lambda_.StartingPosition.LATEST,
                    batch_size=10,
                    max_batching_window=Duration.seconds(30),
                    retry_attempts=2,
                    bisect_batch_on_error=True,
                    on_failure=sources.SqsDlq(self.dead_letter_queue),
                    filters=[
                        lambda_.FilterCriteria.filter({"eventName": lambda_.FilterRule.is_equal("INSERT")})
                    ],
                )
            )
            self._alarms(feature)
        self._drift_job(code, key, log_retention, judge, tracking_server_arn, trace_experiment)
        self.suites = suites
        """The free-traffic assertions and rubric staged into the asset, by ``team/feature``."""
        self._acknowledge()

    def _drift_job(
        self,
        code: lambda_.Code,
        key: kms.IKey,
        log_retention: logs.RetentionDays,
        judge: AiFeature | None,
        tracking_server_arn: str | None,
        trace_experiment: str,
    ) -> None:
        drift_logs = function_log_group(self, "DriftLogs", key=key, retention=log_retention)
        role = iam.Role(
            self,
            "DriftRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="AI Factory drift job: reads sample tables, embeds prompts through the gateway",
        )
        role.add_to_policy(write_own_logs_statement(drift_logs))
        environment = {contract.METRICS_NAMESPACE_ENV: contract.METRICS_NAMESPACE}
        if judge is not None:
            environment[contract.GATEWAY_URL_ENV] = judge.gateway.url
            environment["AIF_JUDGE_SECRET"] = judge.secret.secret_arn
        if tracking_server_arn is not None:  # traces expire with their samples
            environment[contract.MLFLOW_TRACKING_URI_ENV] = tracking_server_arn
            environment[contract.MLFLOW_EXPERIMENT_ENV] = trace_experiment
            role.add_to_policy(
                iam.PolicyStatement(
                    sid="ExpireOnlineTraces", actions=list(EXPIRY_ACTIONS), resources=[tracking_server_arn]
                )
            )
        self.drift_function = hardened_function(
            self,
            "Drift",
            description="AI Factory drift job: input and output drift of sampled traffic, day vs baseline",
            handler=DRIFT_HANDLER,
            code=code,
            role=role,
            environment=environment,
            timeout=Duration.minutes(10),
            memory_size=1024,
            log_group=drift_logs,
            json_logs=False,
            dead_letter_queue=self.dead_letter_queue,
        )
        if judge is not None:
            judge.grant_read_api_key(self.drift_function)
        for feature in self.sampled:
            assert feature.sample_table is not None
            feature.sample_table.grant(self.drift_function, "dynamodb:Scan")
            feature.encryption_key.grant(self.drift_function, "kms:Decrypt")
        entries = [
            {
                "team": f.team,
                "feature": f.feature,
                "table": f.sample_table.table_name,  # type: ignore[union-attr]
                "retention_days": f.online_sampling.retention_days,  # type: ignore[union-attr]
            }
            for f in self.sampled
        ]
        self.drift_schedule = events.Rule(
            self,
            "DriftSchedule",
            description="AI Factory online drift job, daily",
            schedule=events.Schedule.rate(Duration.days(1)),
            targets=[
                targets.LambdaFunction(
                    self.drift_function,
                    event=events.RuleTargetInput.from_object({"features": entries}),
                    dead_letter_queue=self.dead_letter_queue,
                    retry_attempts=2,
                )
            ],
        )
        for feature in self.sampled:
            feature.add_alarm_input(
                AlarmInput(
                    name="InputDrift",
                    metric=feature.metric(
                        contract.INPUT_DRIFT_P_VALUE.name, statistic="Minimum", period=Duration.days(1)
                    ),
                    threshold=DRIFT_P_VALUE,
                    comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
                    evaluation_periods=2,
                    description=f"Prompts drifted from the baseline (p < {DRIFT_P_VALUE:g}) two days running",
                )
            )

    def _alarms(self, feature: AiFeature) -> None:
        sampling = feature.online_sampling
        assert sampling is not None
        three_hours = Duration.hours(3)
        feature.add_alarm_input(
            AlarmInput(
                name="OnlinePiiLeak",
                metric=feature.metric(
                    contract.ONLINE_PII_LEAKS.name, statistic="Sum", period=Duration.hours(1)
                ),
                threshold=0,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1,
                description="A sampled answer contained personal data its question did not",
            )
        )
        feature.add_alarm_input(
            AlarmInput(
                name="OnlineQualityDrop",
                metric=feature.metric(
                    contract.ONLINE_JUDGE_SCORE.name, statistic="Average", period=three_hours
                ),
                threshold=sampling.min_judge_score,
                comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
                evaluation_periods=1,
                description=f"Mean judge score of sampled answers below {sampling.min_judge_score:g} for 3 h",
            )
        )
        feature.add_alarm_input(
            AlarmInput(
                name="OutputDrift",
                metric=feature.metric(contract.ONLINE_REFUSALS.name, statistic="Average", period=three_hours),
                threshold=sampling.max_refusal_rate,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1,
                description=f"Refusal rate of sampled answers above {sampling.max_refusal_rate:g} for 3 h",
            )
        )

    def _acknowledge(self) -> None:
        dlq_reason = (
            "This queue is itself the dead-letter queue of the sampler's and the scorer's failed batches, "
            "the end of the chain; it needs no DLQ of its own."
        )
        acknowledge(
            self.dead_letter_queue,
            {"AwsSolutions-SQS3": dlq_reason, "Serverless-SQSRedrivePolicy": dlq_reason},
        )
        for function in (self.sampler, self.scorer, self.drift_function):
            policy = function.role.node.find_child("DefaultPolicy")  # type: ignore[union-attr]
            acknowledge(policy, {"AwsSolutions-IAM5[Resource::*]": XRAY_WILDCARD_REASON})
            acknowledge_outside_vpc(function)
        sampler_policy = self.sampler.role.node.find_child("DefaultPolicy")  # type: ignore[union-attr]
        key_reason = (
            "CDK's DynamoDB write grant on a table encrypted with the feature's customer-managed key: "
            "DynamoDB needs the GenerateDataKey and ReEncrypt families to write items under that key (and "
            "SQS for the dead-letter queue's key). The statements name only those keys, no other resource."
        )
        acknowledge(
            sampler_policy,
            {
                "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]": key_reason,
                "AwsSolutions-IAM5[Action::kms:ReEncrypt*]": key_reason,
            },
        )
        scorer_policy = self.scorer.role.node.find_child("DefaultPolicy")  # type: ignore[union-attr]
        queue_reason = (
            "CDK's send grant on the dead-letter queue, encrypted with a customer-managed key: SQS needs the "
            "GenerateDataKey and ReEncrypt families to encrypt messages; the statement names only that key."
        )
        acknowledge(
            scorer_policy,
            {
                "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]": queue_reason,
                "AwsSolutions-IAM5[Action::kms:ReEncrypt*]": queue_reason,
            },
        )
        acknowledge_synchronous_invocation(
            self.scorer,
            caller="its DynamoDB stream event source mappings",
            failures="a batch that still fails after two retries is sent to the dead-letter queue by the "
            "mapping's on-failure destination",
        )
        acknowledge_unreserved_concurrency(
            self.drift_function, bounded_by="its daily schedule: one run a day"
        )
        drift_policy = self.drift_function.role.node.find_child("DefaultPolicy")  # type: ignore[union-attr]
        acknowledge(
            drift_policy,
            {
                "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]": key_reason,
                "AwsSolutions-IAM5[Action::kms:ReEncrypt*]": key_reason,
            },
        )
        acknowledge_unreserved_concurrency(
            self.sampler, bounded_by="the invocation log subscription (one invocation per log batch)"
        )
        acknowledge_unreserved_concurrency(
            self.scorer, bounded_by="the sample tables' stream shards (one batch per shard at a time)"
        )


def find_sampled_features(scope: Construct) -> list[AiFeature]:
    """Every ``AiFeature`` under ``scope`` with sampling enabled."""
    return [c for c in scope.node.find_all() if isinstance(c, AiFeature) and c.sample_table is not None]


__all__ = [
    "NO_SAMPLING_CLEARANCES",
    "OnlineEvaluation",
    "OnlineEvaluationError",
    "OnlineSampling",
    "feature_online_suite",
    "find_sampled_features",
    "sample_table",
    "stage_online_asset",
]
