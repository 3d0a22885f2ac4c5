"""Online evaluation of production traffic: per-feature sampling, asynchronous scoring, drift metrics.

A feature opts in with ``AiFeature(..., online_sampling=OnlineSampling(rate=0.05, retention_days=30))``.
That gives the feature a **sample table** (DynamoDB, encrypted with the feature's own KMS key, items
expiring through the ``expires_at`` TTL attribute after ``retention_days``, point-in-time recovery,
a stream of new items). Features whose clearance is ``restricted`` cannot sample: restricted data may
not be copied out of the request path at all, so synth fails with a message naming the feature.

``OnlineEvaluation`` (**one per invocation log group**, so in practice one per factory: the app puts it in
the observability stack, next to the log group, for every sampled feature; see "One per log group") wires:

* the **sampler**: a Lambda subscribed to the Bedrock model invocation log group (a subscription filter
  on records whose ``aif_gateway`` request metadata names a sampled feature's gateway). Bedrock writes
  those logs after it answered, so sampling adds nothing to a request's synchronous path. The sampler
  keeps each request of a sampled feature, made by that feature's own gateway, whose id hashes below the
  feature's rate, and writes it to the feature's table; its role may put items into exactly those tables
  (and use their keys through DynamoDB only).
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
* the **drift job**: a daily Lambda that compares each feature's last day of samples with the days before
  and publishes input drift and every output-drift signal (``aif_online.drift_job``).
* per-feature alarms (via ``AiFeature.add_alarm_input``, created by the observability stack; names,
  thresholds and runbooks in ``online_alarms``): ``OnlinePiiLeak``, ``OnlineQualityDrop`` (with a judge),
  ``OutputRefusalRate``, ``InputDrift``, ``OutputLengthDrop``, ``OutputLengthGrowth``,
  ``OutputLanguageShift``, ``OutputToolCallShift``, ``OutputGuardrailShift``. Create it before the
  ``Observability`` that monitors the features, or the alarms are not there when it reads them.

**Whose traffic.** The invocation log group is one per account and region, shared by every gateway
there: a pipeline's staging and production stages, or two factories, whose features may have the same
team and feature names. The gateway names itself in each call's request metadata (``aif_gateway``: its
``LlmGateway.edge_namespace``); the subscription filter passes only the sampled features' gateways'
records (every gateway's record when the pattern would exceed CloudWatch Logs' 1,024 characters: more
than 19 gateways) and the sampler keeps a record for a feature only when it comes from that feature's
gateway; a record without a gateway (a gateway from before this check, ``ai-factory serve``) is no
feature's traffic. A feature whose gateway's namespace is unknown (imported without
``GatewayAttributes.edge_namespace``) is refused at synth, and so are two sampled features of the same
``team/feature`` (the sampler's and scorer's settings are keyed by it).

**One per log group.** CloudWatch Logs allows two subscription filters per log group (a third fails the
deployment). The factory takes one and leaves the other for the account's own consumers (a SIEM, say), so a
second ``OnlineEvaluation`` on the same log group in the same app is refused at synth: give the one
``OnlineEvaluation`` every sampled feature instead (``find_sampled_features(app)``). A filter that something
outside this app put on the log group is invisible to synth; ``docs/evaluation.md`` says how to check.

Example::

    OnlineEvaluation(observability_stack, "OnlineEvaluation", features=find_sampled_features(app),
                     invocation_log_group=invocation_logging.log_group, judge=judge_feature)
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
from ai_factory.constructs.ai_feature import AiFeature
from ai_factory.constructs.gateway.llm_gateway import LlmGateway
from ai_factory.constructs.gateway.online_samples import (
    SAMPLER_TIMEOUT,
    GatewaySampleQueue,
    acknowledge_consumer_mapping,
)
from ai_factory.constructs.observability.facade import Observability
from ai_factory.constructs.online_alarms import (
    drift_alarm_inputs,
    scorer_alarm_inputs,
    stuck_samples_alarm_input,
)
from ai_factory.constructs.online_sampling import NO_SAMPLING_CLEARANCES, OnlineSampling, sample_table
from ai_factory.evals import deterministic as evals_deterministic
from ai_factory.platform.functions import function_log_group, hardened_function, write_own_logs_statement
from ai_factory.platform.lambda_packaging import contract_files, gateway_source_dir, stage_asset
from ai_factory.platform.nag import (
    XRAY_WILDCARD_REASON,
    acknowledge,
    acknowledge_outside_vpc,
    acknowledge_synchronous_invocation,
    acknowledge_unreserved_concurrency,
)
from ai_factory.platform.name_prefix import prefixed_unique_name
from ai_factory.platform.secure_defaults import encrypted_queue, logs_kms_key, via_services
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


FILTER_PATTERN_MAX_CHARS = 1024
"""CloudWatch Logs' limit on a subscription filter pattern."""
GATEWAY_FIELD = f"$.requestMetadata.{contract.REQUEST_METADATA_GATEWAY}"


def sampler_filter_pattern(namespaces: Sequence[str]) -> str:
    """The sampler's subscription filter: invocation-log records of the gateways ``namespaces`` (their
    ``edge_namespace``). Beyond ``FILTER_PATTERN_MAX_CHARS`` (more than 19 gateways), every gateway's
    records: the sampler checks each record's gateway against its feature's anyway."""
    patterns = [logs.FilterPattern.string_value(GATEWAY_FIELD, "=", ns) for ns in sorted(set(namespaces))]
    pattern = logs.FilterPattern.any(*patterns).log_pattern_string
    if len(pattern) > FILTER_PATTERN_MAX_CHARS:
        return logs.FilterPattern.exists(GATEWAY_FIELD).log_pattern_string
    return pattern


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
            # The contract, and the gateway's OTLP/JSON attribute encoding for the MLflow traces.
            "aif_gateway": [*contract_files(), gateway_source_dir() / "trace_export.py"],
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
    :param encryption_key: KMS key of the functions' logs and the dead-letter queue (which holds failed
        batches of invocation-log records: prompts and answers). Default: a new key (rotation on) in this
        construct's stack, which CloudWatch Logs and, for the drift schedule's dead letters, EventBridge
        may use. A key you pass must allow the same (statements are added to a ``kms.Key``, not to an
        imported key).
    :param log_retention: log retention. Default: one year.
    :param tracking_server_arn: the SageMaker managed MLflow tracking server to record each scored sample
        on as a trace (``MlflowTracking.tracking_server_arn``; a token from another stack is fine). None:
        no traces.
    :param trace_experiment: the MLflow experiment of the traces. Default: the eval runs' experiment
        (``ai-factory/evals``), so live samples and eval runs sit side by side.
    :raises OnlineEvaluationError: no feature samples, or another ``OnlineEvaluation`` in the app already
        subscribes to ``invocation_log_group``.
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
        namespaces = _gateway_namespaces(label, self.sampled)
        monitored = _already_monitored(self, self.sampled)
        if monitored:
            raise OnlineEvaluationError(
                f"{label}: features: {monitored}; create OnlineEvaluation before the Observability that "
                "monitors its features, or their online alarms are never created"
            )
        other = _other_subscriber(self, invocation_log_group)
        if other is not None:
            raise OnlineEvaluationError(
                f"{label}: invocation_log_group: OnlineEvaluation {other.node.path} already subscribes to "
                "this log group. CloudWatch Logs allows 2 subscription filters per log group and the factory "
                "uses one; give that OnlineEvaluation all sampled features (find_sampled_features(app))"
            )
        self.invocation_log_group = invocation_log_group
        """The log group the sampler subscribes to (at most one ``OnlineEvaluation`` per log group)."""
        key = encryption_key or logs_kms_key(
            self, "Key", "AI Factory online evaluation: its functions' logs and its dead-letter queue"
        )
        self.encryption_key: kms.IKey = key
        """Encrypts the functions' logs and the dead-letter queue."""
        suites = {f"{f.team}/{f.feature}": feature_online_suite(f) for f in self.sampled}
        code = lambda_.Code.from_asset(str(stage_online_asset(suites)))
        stack = cdk.Stack.of(self)
        self.dead_letter_queue = encrypted_queue(
            self,
            "DeadLetterQueue",
            key=key,
        )

        # --- sampler -----------------------------------------------------------------------------
        sampler_logs, sampler_role = self._logs_and_role(
            "Sampler",
            "AI Factory online sampler: writes sampled invocation-log records to feature tables",
            key,
            log_retention,
        )
        settings = {
            f"{f.team}/{f.feature}": {
                "rate": f.online_sampling.rate,  # type: ignore[union-attr]
                "retention_days": f.online_sampling.retention_days,  # type: ignore[union-attr]
                "table": f.sample_table.table_name,  # type: ignore[union-attr]
                "gateway": namespace,
            }
            for f, namespace in zip(self.sampled, namespaces, strict=True)
        }
        self.sampler_settings: dict[str, dict[str, Any]] = settings
        """The sampler's settings by ``team/feature``: rate, retention, table and the feature's gateway."""
        self.sampler = hardened_function(
            self,
            "Sampler",
            description="AI Factory online sampler: keeps a share of each feature's Bedrock invocations",
            handler=SAMPLER_HANDLER,
            code=code,
            role=sampler_role,
            environment={"AIF_ONLINE_SAMPLING": stack.to_json_string(settings)},
            timeout=SAMPLER_TIMEOUT,
            memory_size=256,
            log_group=sampler_logs,
            json_logs=False,
            dead_letter_queue=self.dead_letter_queue,
        )
        # Lambda sends failed asynchronous events to the queue with the function's role: it needs the key.
        self.dead_letter_queue.grant_send_messages(self.sampler)
        for feature in self.sampled:
            table = feature.sample_table
            assert table is not None
            table.grant(self.sampler, "dynamodb:PutItem")
            # DynamoDB uses a table's customer-managed key with the caller's permissions.
            _grant_key_via_dynamodb(
                self.sampler,
                feature.encryption_key,
                ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*"],
            )
        through_gateway = self._consume_gateway_samples()
        self.gateway_sample_queues = list({id(q.queue): q.queue for q in through_gateway.values()}.values())
        """The sample queues of the gateways whose sampled features reach targets outside Bedrock's
        invocation log (the gateway sends those exchanges itself); the sampler consumes each."""
        self.subscription_filter_pattern = sampler_filter_pattern(namespaces)
        """Which invocation-log records invoke the sampler: the sampled features' gateways'."""
        self.subscription = logs.SubscriptionFilter(
            self,
            "InvocationLogSubscription",
            log_group=invocation_log_group,
            destination=destinations.LambdaDestination(self.sampler),
            filter_pattern=logs.FilterPattern.literal(self.subscription_filter_pattern),
        )

        # --- scorer ------------------------------------------------------------------------------
        scorer_logs, scorer_role = self._logs_and_role(
            "Scorer",
            "AI Factory online scorer: reads sample streams, calls the judge through the gateway",
            key,
            log_retention,
        )
        environment = _environment(judge, tracking_server_arn, trace_experiment)
        if judge is not None:
            environment["AIF_JUDGE_MODEL"] = judge.models[0]
        if tracking_server_arn is not None:
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
            for alarm in scorer_alarm_inputs(feature, judged=judge is not None):
                feature.add_alarm_input(alarm)
            dead_letters: list[sqs.IQueue] = [self.dead_letter_queue]
            if id(feature) in through_gateway:
                dead_letters.append(through_gateway[id(feature)].dead_letter_queue)
            feature.add_alarm_input(stuck_samples_alarm_input(feature, dead_letters))
        self._drift_job(code, key, log_retention, judge, tracking_server_arn, trace_experiment)
        self.suites = suites
        """The free-traffic assertions and rubric staged into the asset, by ``team/feature``."""
        self._acknowledge()

    def _consume_gateway_samples(self) -> dict[int, GatewaySampleQueue]:
        """For each sampled feature whose routes reach targets outside Bedrock's invocation log: its
        gateway's sample queue (one per gateway) as an event source of the sampler, and the feature's
        rate in its key record, so the gateway sends those exchanges. Returns those features' queues by
        ``id(feature)``. A gateway imported from another app cannot be given a queue here; synth warns
        (``ai-factory:online-sampling-unlogged-targets``)."""
        through_gateway: dict[int, GatewaySampleQueue] = {}
        consumed: set[int] = set()
        for feature in self.sampled:
            unlogged = _unlogged_targets(feature)
            if not unlogged:
                continue
            gateway = feature.gateway
            if not isinstance(gateway, LlmGateway):
                _warn_unlogged_targets(self, feature, unlogged)
                continue
            samples = gateway.enable_online_samples(self)  # the same queue for every feature of gateway
            if id(samples.queue) not in consumed:
                consumed.add(id(samples.queue))
                self.sampler.add_event_source(
                    sources.SqsEventSource(
                        samples.queue,
                        batch_size=10,
                        max_batching_window=Duration.seconds(5),
                        report_batch_item_failures=True,
                    )
                )
            feature.sample_through_gateway(feature.online_sampling.rate)  # type: ignore[union-attr]
            through_gateway[id(feature)] = samples
        for mapping in self.sampler.node.find_all():  # the sampler's only mappings: sample queues
            if isinstance(mapping, lambda_.CfnEventSourceMapping):
                acknowledge_consumer_mapping(mapping)
        return through_gateway

    def _logs_and_role(
        self, name: str, description: str, key: kms.IKey, retention: logs.RetentionDays
    ) -> tuple[logs.LogGroup, iam.Role]:
        """A function's own encrypted log group (``<name>Logs``) and its role (``<name>Role``), which may
        write exactly that log group."""
        log_group = function_log_group(self, f"{name}Logs", key=key, retention=retention)
        role = iam.Role(
            self,
            f"{name}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=description,
        )
        role.add_to_policy(write_own_logs_statement(log_group))
        return log_group, role

    def _drift_job(
        self,
        code: lambda_.Code,
        key: kms.IKey,
        log_retention: logs.RetentionDays,
        judge: AiFeature | None,
        tracking_server_arn: str | None,
        trace_experiment: str,
    ) -> None:
        drift_logs, role = self._logs_and_role(
            "Drift",
            "AI Factory drift job: reads sample tables, embeds prompts through the gateway",
            key,
            log_retention,
        )
        environment = _environment(judge, tracking_server_arn, trace_experiment)
        if tracking_server_arn is not None:  # traces expire with their samples
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
        self.dead_letter_queue.grant_send_messages(self.drift_function)
        for feature in self.sampled:
            assert feature.sample_table is not None
            feature.sample_table.grant(self.drift_function, "dynamodb:Scan")
            _grant_key_via_dynamodb(
                self.drift_function, feature.encryption_key, ["kms:Decrypt", "kms:DescribeKey"]
            )
        entries = [
            {
                "team": f.team,
                "feature": f.feature,
                "table": f.sample_table.table_name,  # type: ignore[union-attr]
                "retention_days": f.online_sampling.retention_days,  # type: ignore[union-attr]
            }
            for f in self.sampled
        ]
        # A fixed name: the key policy below names the rule's ARN, and a reference to the rule would be a
        # dependency cycle (rule -> function -> role policy -> log group -> key).
        rule_name = prefixed_unique_name(self, 64)
        self.drift_schedule = events.Rule(
            self,
            "DriftSchedule",
            rule_name=rule_name,
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
        # EventBridge puts the events it could not deliver into the encrypted dead-letter queue: it needs
        # the key, for this rule only.
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowEventBridgeDeadLetters",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],  # in a key policy, "*" is this key
                conditions={
                    "ArnEquals": {
                        "aws:SourceArn": cdk.Stack.of(self).format_arn(
                            service="events", resource="rule", resource_name=rule_name
                        )
                    }
                },
            )
        )
        for feature in self.sampled:
            for alarm in drift_alarm_inputs(feature, p_value=DRIFT_P_VALUE):
                feature.add_alarm_input(alarm)

    def _acknowledge(self) -> None:
        dlq_reason = (
            "This queue is itself the dead-letter queue of the sampler's, the scorer's and the drift job's "
            "failed events, the end of the chain; it needs no DLQ of its own."
        )
        acknowledge(
            self.dead_letter_queue,
            {"AwsSolutions-SQS3": dlq_reason, "Serverless-SQSRedrivePolicy": dlq_reason},
        )
        for function in (self.sampler, self.scorer, self.drift_function):
            # On the role, not its DefaultPolicy: with many sampled features CDK moves statements into
            # OverflowPolicy<n> managed policies under the role (IAM's inline-policy size limit).
            acknowledge(_role(function), {"AwsSolutions-IAM5[Resource::*]": XRAY_WILDCARD_REASON})
            acknowledge_outside_vpc(function)
        sampler_role = _role(self.sampler)
        queue_reason = (
            "CDK's send grant on the dead-letter queue, encrypted with this construct's customer-managed "
            "key: SQS needs the GenerateDataKey and ReEncrypt families to encrypt messages; the statement "
            "names only that key."
        )
        table_reason = (
            "Writing items into the sample tables, encrypted with each feature's customer-managed key: "
            "DynamoDB calls KMS with the caller's permissions (GenerateDataKey and ReEncrypt families, as "
            "CDK's write grant). The statements name only those keys and hold only through DynamoDB "
            f"(kms:ViaService); and {queue_reason}"
        )
        acknowledge(
            sampler_role,
            {
                "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]": table_reason,
                "AwsSolutions-IAM5[Action::kms:ReEncrypt*]": table_reason,
            },
        )
        scorer_role = _role(self.scorer)
        acknowledge(
            scorer_role,
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
        drift_role = _role(self.drift_function)
        acknowledge(
            drift_role,
            {
                "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]": queue_reason,
                "AwsSolutions-IAM5[Action::kms:ReEncrypt*]": queue_reason,
            },
        )
        acknowledge_unreserved_concurrency(
            self.sampler, bounded_by="the invocation log subscription (one invocation per log batch)"
        )
        acknowledge_unreserved_concurrency(
            self.scorer, bounded_by="the sample tables' stream shards (one batch per shard at a time)"
        )


def _role(function: lambda_.IFunction) -> iam.IRole:
    role = function.role
    assert role is not None, "hardened_function always has a role"
    return role


def _grant_key_via_dynamodb(function: lambda_.IFunction, key: kms.IKey, actions: list[str]) -> None:
    """``actions`` on a sample table's key, only in calls DynamoDB makes for ``function``: the same key
    encrypts the feature's API-key secret, which the online functions must not be able to decrypt."""
    function.add_to_role_policy(
        iam.PolicyStatement(
            actions=actions,
            resources=[key.key_arn],
            conditions=via_services("dynamodb"),
        )
    )


def _gateway_namespaces(label: str, features: Sequence[AiFeature]) -> list[str]:
    """Each feature's gateway's ``edge_namespace``, the identity its Bedrock calls carry.

    :raises OnlineEvaluationError: a gateway has none (an imported gateway without it: sampling it would
        mean taking any gateway's features of that name), or two features share a ``team/feature``.
    """
    namespaces: list[str] = []
    seen: dict[str, AiFeature] = {}
    for feature in features:
        name = f"{feature.team}/{feature.feature}"
        gateway = feature.gateway
        namespace = getattr(gateway, "edge_namespace", None)
        if not isinstance(namespace, str) or not namespace:
            path = gateway.node.path if isinstance(gateway, Construct) else repr(gateway)
            raise OnlineEvaluationError(
                f"{label}: features: {name}: its gateway {path} has no edge_namespace, so its Bedrock "
                "invocation-log records cannot be told from another gateway's feature of the same name; "
                "import the gateway with GatewayAttributes(edge_namespace=<the gateway's "
                "LlmGateway.edge_namespace>); with LlmGateway.from_lookup, redeploy the platform's gateway "
                "stack so it publishes the edge-namespace parameter, then remove the cached edge-namespace "
                "entry from cdk.context.json; or do not sample the feature"
            )
        other = seen.get(name)
        if other is not None:
            raise OnlineEvaluationError(
                f"{label}: features: {name} is sampled twice ({other.node.path} and {feature.node.path}); "
                "one OnlineEvaluation samples one feature of a name: give each stage or factory its own"
            )
        seen[name] = feature
        namespaces.append(namespace)
    return namespaces


def _already_monitored(me: Construct, features: Sequence[AiFeature]) -> str:
    """``"<team>/<feature> is already monitored by <path>"`` for the first of ``features`` an
    ``Observability`` in the app has already built alarms for, else ``""``. By identity, not by name: a
    pipeline app holds several factories (stages) whose features share their names."""
    for construct in me.node.root.node.find_all():
        if isinstance(construct, Observability):
            for feature in features:
                if any(feature is monitored for monitored in construct.features):
                    return f"{feature.team}/{feature.feature} is already monitored by {construct.node.path}"
    return ""


def _log_group_identity(log_group: logs.ILogGroup) -> str:
    """The same string for the same log group within an app: a log group defined in the app by its
    construct path; an imported one by its ARN (equal for equal ARNs, or the same token)."""
    if log_group.node.default_child is not None:
        return log_group.node.path
    return log_group.log_group_arn


def _other_subscriber(me: OnlineEvaluation, log_group: logs.ILogGroup) -> OnlineEvaluation | None:
    """Another ``OnlineEvaluation`` in the app that subscribes to ``log_group``, if any."""
    identity = _log_group_identity(log_group)
    for construct in me.node.root.node.find_all():
        if (
            isinstance(construct, OnlineEvaluation)
            and construct is not me
            and hasattr(construct, "invocation_log_group")
            and _log_group_identity(construct.invocation_log_group) == identity
        ):
            return construct
    return None


def find_sampled_features(scope: Construct) -> list[AiFeature]:
    """Every ``AiFeature`` under ``scope`` with sampling enabled."""
    return [c for c in scope.node.find_all() if isinstance(c, AiFeature) and c.sample_table is not None]


__all__ = [
    "FILTER_PATTERN_MAX_CHARS",
    "NO_SAMPLING_CLEARANCES",
    "OnlineEvaluation",
    "OnlineEvaluationError",
    "OnlineSampling",
    "feature_online_suite",
    "find_sampled_features",
    "sample_table",
    "sampler_filter_pattern",
    "stage_online_asset",
]


def _unlogged_targets(feature: AiFeature) -> list[str]:
    """``"<route> -> <target> (<provider>)"`` for each target of the feature's routes whose answers
    Bedrock's invocation log never holds (external providers, SageMaker endpoints). An imported gateway's
    routes are its catalog's (the providers of a route's targets do not depend on the region)."""
    config = getattr(feature.gateway, "config", None) or feature.gateway.catalog.gateway_config()
    return sorted(
        {
            f"{alias} -> {target.name} ({target.provider})"
            for alias in feature.models
            if alias in config.routes
            for target in config.routes[alias].targets
            if target.provider not in contract.LOGGED_BY_BEDROCK
        }
    )


def _warn_unlogged_targets(scope: Construct, feature: AiFeature, unlogged: list[str]) -> None:
    """Warn at synth that a sampled feature of an imported gateway reaches targets whose answers only
    that gateway's own app can sample (its sample queue is made there)."""
    cdk.Annotations.of(scope).add_warning_v2(
        "ai-factory:online-sampling-unlogged-targets",
        f"{feature.team}/{feature.feature} samples online, but answers from "
        + ", ".join(unlogged)
        + " are not in Bedrock's invocation log, and its gateway is imported from another app, whose "
        "sample queue only an OnlineEvaluation in that app can consume: they are never sampled, scored "
        "or counted in drift",
    )


def _environment(
    judge: AiFeature | None, tracking_server_arn: str | None, trace_experiment: str
) -> dict[str, str]:
    """What the scorer and the drift job both read: the metrics namespace, the judge's gateway and key
    (the drift job embeds prompts through it), and the MLflow server and experiment of the traces."""
    environment = {contract.METRICS_NAMESPACE_ENV: contract.METRICS_NAMESPACE}
    if judge is not None:
        environment[contract.GATEWAY_URL_ENV] = judge.gateway.url
        environment["AIF_JUDGE_SECRET"] = judge.secret.secret_arn
    if tracking_server_arn is not None:
        environment[contract.MLFLOW_TRACKING_URI_ENV] = tracking_server_arn
        environment[contract.MLFLOW_EXPERIMENT_ENV] = trace_experiment
    return environment
