"""``FeatureCanary``: drift detection. A schedule runs each feature's small canary suite through the
gateway with the feature's own key and publishes the pass rate, so a quality drop (a model update, a
prompt alias moved, a guardrail change) shows up as a metric the observability stack alarms on.

Example (in a team stack, after the team's features are defined)::

    FeatureCanary(team_stack, "Canary", features=find_features(team_stack), every=Duration.hours(1))

What it creates:

* one canary Lambda (Python 3.14, arm64, a plain directory asset: ``aif_canary`` plus
  ``canary_suites.json``, the features' suites converted from YAML at synth time, since the Lambda
  has no YAML parser), allowed ``secretsmanager:GetSecretValue`` on exactly the features' key secrets;
* one EventBridge Scheduler schedule per feature (flexible time window off, retries and a
  dead-letter queue) whose role may invoke exactly that Lambda and send to exactly that queue.

Where a feature's suite comes from: its ``canary_suite`` file (``AiFeature(canary_suite=...)``) or,
without one, the first ``max_cases`` cases of its prompts' eval suites. Only the deterministic
assertion types run in the canary (``equals``, ``contains``, ``icontains``, ``not-contains``, ``regex``,
``is-json``, ``json-schema``, ``latency_ms``); others (judges, similarity, cost) belong to the eval
gate and are left out, noted as synth-time info. A feature with no runnable case gets no schedule
(and a warning).

Canary requests are ordinary gateway traffic of the feature: they count against its rate limit and
budget and appear in its usage and cost (hourly x 5 cases is 120 requests a day).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aws_cdk as cdk
from aws_cdk import Aws, Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from ai_factory.constructs.ai_feature import AiFeature, find_features
from ai_factory.evals import deterministic as evals_deterministic
from ai_factory.evals.suite import SuiteError, load_suite
from ai_factory.platform.functions import function_log_group, hardened_function, write_own_logs_statement
from ai_factory.platform.lambda_packaging import contract_files, stage_asset
from ai_factory.platform.nag import (
    XRAY_WILDCARD_REASON,
    acknowledge,
    acknowledge_outside_vpc,
    acknowledge_unreserved_concurrency,
)
from ai_factory.platform.naming import camel
from aif_gateway import contract

if TYPE_CHECKING:
    from ai_factory.constructs.gateway.imported import ILlmGateway

CANARY_HANDLER = "aif_canary.handler.lambda_handler"
SUITES_FILE = "canary_suites.json"
# The deterministic assertions that need only the answer text and its latency.
SUPPORTED_ASSERTIONS = (
    "equals", "contains", "icontains", "not-contains", "regex", "is-json", "json-schema", "latency_ms",
)  # fmt: skip
DEFAULT_MAX_CASES = 5
MAX_CASES_LIMIT = 8  # 8 cases x 30 s per call stays inside the Lambda's 5 minutes


class CanaryError(ValueError):
    """An invalid canary configuration or suite; the message names the construct, feature and field."""


def canary_source_dir() -> Path:
    """``lambdas/canary/aif_canary`` (installed as ``aif_canary`` when the package maps it)."""
    try:
        import aif_canary

        return Path(aif_canary.__file__).resolve().parent
    except ImportError:
        return Path(__file__).resolve().parents[2] / "lambdas" / "canary" / "aif_canary"


# --- suites -----------------------------------------------------------------------------------------


def load_canary_suite(path: Path, *, max_cases: int | None = None, note: Any = None) -> dict[str, Any]:
    """An eval suite (YAML) as the canary's JSON form: ``{"name", "prompt"|"model"+"messages", "cases"}``.

    Read by the eval harness's own parser (``ai_factory.evals.suite.load_suite``): the same format, the
    same errors (``<file>:<line>: <reason>``, raised here as ``CanaryError``), and ``include:`` of a
    shipped suite resolved the same way. Assertions the canary cannot run (they need a model, a cost or
    a reference answer) are left out by design, and so are cases left without any; each omission is
    reported through ``note(message)``.
    """
    note = note or (lambda message: None)
    try:
        parsed = load_suite(path)
    except SuiteError as exc:
        raise CanaryError(str(exc)) from exc
    suite: dict[str, Any] = {"name": parsed.name, "source": path.name}
    if parsed.prompt is not None:
        ref: dict[str, Any] = {"name": parsed.prompt.name}
        if parsed.prompt.version is not None:
            ref["version"] = parsed.prompt.version
        else:
            ref["alias"] = parsed.prompt.alias or "production"
        suite["prompt"] = ref
    else:
        suite["messages"] = [dict(message) for message in parsed.messages]
    if parsed.model is not None:
        suite["model"] = parsed.model
    cases: list[dict[str, Any]] = []
    dropped: set[str] = set()
    for case in parsed.cases:
        if max_cases is not None and len(cases) >= max_cases:
            note(f"{path}: only the first {max_cases} runnable cases run in the canary")
            break
        asserts = []
        for assertion in case.assertions:
            if assertion.type not in SUPPORTED_ASSERTIONS:
                dropped.add(assertion.type)
                continue
            value = assertion.threshold if assertion.type == "latency_ms" else assertion.value
            asserts.append({"type": assertion.type, "value": value})
        if not asserts:
            note(f"{path}: case {case.id}: no assertion the canary can run; left out")
            continue
        entry: dict[str, Any] = {
            "id": case.id,
            "vars": dict(case.vars),
            "messages": [dict(message) for message in case.messages],
            "assert": asserts,
        }
        if case.request:
            entry["request"] = dict(case.request)
        cases.append(entry)
    if dropped:
        note(f"{path}: assertion types {', '.join(sorted(dropped))} run in the eval gate, not the canary")
    suite["cases"] = cases
    return suite


def feature_suite(feature: AiFeature, max_cases: int, warn: Any, note: Any) -> dict[str, Any] | None:
    """The feature's canary suite: its ``canary_suite`` file, else cases from its prompts' eval suites.

    ``warn`` gets what a team should fix (a missing suite); ``note`` what the canary leaves out by design.
    """
    explicit = getattr(feature, "canary_suite", None)
    if explicit is not None:
        return load_canary_suite(Path(explicit), max_cases=max_cases, note=note)
    merged: dict[str, Any] | None = None
    for prompt in feature.prompts:
        path = prompt.eval_suite_path or Path(prompt.eval_suite)
        if not path.is_file():
            warn(f"eval suite {path} of prompt {prompt.name} not found")
            continue
        remaining = max_cases - (len(merged["cases"]) if merged else 0)
        if remaining <= 0:
            break
        suite = load_canary_suite(path, max_cases=remaining, note=note)
        # Eval suites test a candidate (often the staging alias); the canary watches what serves.
        suite["prompt"] = {"name": prompt.name, "alias": "production"}
        if merged is None:
            merged = suite
        elif suite["cases"]:
            # Several prompts: each case keeps its own prompt reference.
            for case in suite["cases"]:
                merged["cases"].append({**case, "prompt": suite.get("prompt"), "model": suite.get("model")})
    return merged


# --- asset ------------------------------------------------------------------------------------------


def stage_canary_asset(suites: dict[str, Any], out_root: Path | None = None) -> Path:
    """The canary package plus ``canary_suites.json`` in a content-addressed folder (no Docker), with
    the runtime contract and the evaluation harness's deterministic assertions it imports."""
    suites_json = json.dumps({"version": 1, "features": suites}, indent=1, sort_keys=True)
    evals_dir = Path(evals_deterministic.__file__).parent
    return stage_asset(
        "canary-",
        {
            "aif_canary": canary_source_dir(),
            "aif_gateway": contract_files(),
            "ai_factory/evals": [evals_dir / n for n in ("__init__.py", "model.py", "deterministic.py")],
        },
        {
            f"aif_canary/{SUITES_FILE}": suites_json,
            # Only the harness's standard-library part ships: a package marker, not the library.
            "ai_factory/__init__.py": '"""The eval harness\'s deterministic assertions (canary asset)."""\n',
        },
        out_root,
    )


# --- construct --------------------------------------------------------------------------------------


class FeatureCanary(Construct):
    """Scheduled canary runs of features' suites through the gateway (see the module docstring).

    :param features: the ``AiFeature``s to watch (usually all of a team stack's).
    :param gateway: the gateway (``LlmGateway`` or an imported ``ILlmGateway``). Default: the first
        feature's.
    :param every: how often each feature's suite runs. Default: one hour (minimum 5 minutes).
    :param max_cases: cases per feature per run, 1..8. Default 5.
    :param encryption_key: KMS key of the Lambda's log group. Default: the first feature's key.
    :param log_retention: log retention. Default: one year.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        features: Sequence[AiFeature],
        gateway: ILlmGateway | None = None,
        every: Duration | None = None,
        max_cases: int = DEFAULT_MAX_CASES,
        encryption_key: kms.IKey | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_YEAR,
    ) -> None:
        super().__init__(scope, construct_id)
        label = f"FeatureCanary {self.node.path}"
        features = list(features)
        if not features:
            raise CanaryError(f"{label}: features: give at least one AiFeature")
        if (
            isinstance(max_cases, bool)
            or not isinstance(max_cases, int)
            or not 1 <= max_cases <= MAX_CASES_LIMIT
        ):
            raise CanaryError(f"{label}: max_cases: must be an integer from 1 to {MAX_CASES_LIMIT}")
        every = every or Duration.hours(1)
        minutes = every.to_minutes()
        if minutes < 5 or minutes != int(minutes):
            raise CanaryError(f"{label}: every: must be a whole number of minutes, at least 5")
        gateway = gateway or features[0].gateway

        suites: dict[str, Any] = {}
        self.watched: list[AiFeature] = []
        for feature in features:
            name = f"{feature.team}/{feature.feature}"

            def warn(message: str, name: str = name) -> None:
                cdk.Annotations.of(self).add_warning_v2("ai-factory:canary", f"{name}: {message}")

            def note(message: str, name: str = name) -> None:
                cdk.Annotations.of(self).add_info(f"{name}: {message}")

            try:
                suite = feature_suite(feature, max_cases, warn, note)
            except CanaryError as exc:
                raise CanaryError(f"{label}: {name}: canary suite: {exc}") from exc
            if suite is None or not suite["cases"]:
                warn("no runnable canary case (give the feature a canary_suite); no schedule")
                continue
            suites[name] = suite
            self.watched.append(feature)

        if not suites:
            raise CanaryError(f"{label}: features: none has a runnable canary case")
        key = encryption_key or features[0].encryption_key
        self.log_group = function_log_group(self, "Logs", key=key, retention=log_retention)
        role = iam.Role(
            self,
            "FunctionRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="AI Factory canary: reads its features' API keys and calls the gateway",
        )
        role.add_to_policy(write_own_logs_statement(self.log_group))
        # Failed schedule deliveries and failed (asynchronous) canary runs both land here.
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        self.function = hardened_function(
            self,
            "Function",
            description="AI Factory drift canary: runs features' canary suites through the gateway",
            handler=CANARY_HANDLER,
            code=lambda_.Code.from_asset(str(stage_canary_asset(suites))),
            role=role,
            environment={
                contract.GATEWAY_URL_ENV: gateway.url,
                contract.METRICS_NAMESPACE_ENV: contract.METRICS_NAMESPACE,
            },
            timeout=Duration.minutes(5),
            memory_size=256,
            log_group=self.log_group,
            # Text log format: the handler prints its EMF record and a summary line itself.
            json_logs=False,
            dead_letter_queue=self.dead_letter_queue,
        )
        for feature in self.watched:
            feature.grant_read_api_key(self.function)
            # The suite renders the feature's prompts: no run before they are in the gateway's view.
            publication = getattr(feature, "prompt_publication", None)
            if publication is not None:
                self.node.add_dependency(publication)

        self.scheduler_role = iam.Role(
            self,
            "SchedulerRole",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}}
            ),
            description="AI Factory canary schedules: invoke the canary Lambda",
        )
        self.scheduler_role.add_to_policy(
            iam.PolicyStatement(
                sid="InvokeCanary", actions=["lambda:InvokeFunction"], resources=[self.function.function_arn]
            )
        )
        self.scheduler_role.add_to_policy(
            iam.PolicyStatement(
                sid="DeadLetters", actions=["sqs:SendMessage"], resources=[self.dead_letter_queue.queue_arn]
            )
        )
        rate = f"rate({int(minutes)} minute{'s' if minutes != 1 else ''})"
        if minutes % 60 == 0:
            hours = int(minutes // 60)
            rate = f"rate({hours} hour{'s' if hours != 1 else ''})"
        self.schedules: dict[str, scheduler.CfnSchedule] = {}
        for feature in self.watched:
            name = f"{feature.team}/{feature.feature}"
            self.schedules[name] = scheduler.CfnSchedule(
                self,
                f"Schedule{camel(feature.feature)}",
                description=f"AI Factory canary of {name}",
                schedule_expression=rate,
                flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
                state="ENABLED",
                target=scheduler.CfnSchedule.TargetProperty(
                    arn=self.function.function_arn,
                    role_arn=self.scheduler_role.role_arn,
                    input=cdk.Stack.of(self).to_json_string(
                        {
                            "team": feature.team,
                            "feature": feature.feature,
                            "secret_id": feature.secret.secret_arn,
                        }
                    ),
                    retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(
                        maximum_retry_attempts=2, maximum_event_age_in_seconds=int(min(3600, minutes * 60))
                    ),
                    dead_letter_config=scheduler.CfnSchedule.DeadLetterConfigProperty(
                        arn=self.dead_letter_queue.queue_arn
                    ),
                ),
            )
        self.suites = suites
        """The suites as staged into the asset, by ``team/feature`` (for tests and docs)."""
        self._acknowledge()

    def _acknowledge(self) -> None:
        dlq_reason = (
            "This queue is itself the dead-letter queue of the schedules and of the canary function's "
            "asynchronous invocations, the end of the chain; it needs no DLQ of its own."
        )
        acknowledge(
            self.dead_letter_queue,
            {"AwsSolutions-SQS3": dlq_reason, "Serverless-SQSRedrivePolicy": dlq_reason},
        )
        role_policy = self.function.role.node.find_child("DefaultPolicy")  # type: ignore[union-attr]
        acknowledge(role_policy, {"AwsSolutions-IAM5[Resource::*]": XRAY_WILDCARD_REASON})
        acknowledge_unreserved_concurrency(
            self.function, bounded_by="its schedules: one run per watched feature per interval"
        )
        acknowledge_outside_vpc(self.function)


def add_canary(scope: Construct, construct_id: str = "Canary", **props: Any) -> FeatureCanary | None:
    """A ``FeatureCanary`` for every ``AiFeature`` under ``scope`` that has a canary suite or prompts
    and not ``canary=False``, or None when none has (app.py calls it for each team stack)."""
    features = [f for f in find_features(scope) if f.canary and (f.canary_suite is not None or f.prompts)]
    return FeatureCanary(scope, construct_id, features=features, **props) if features else None


__all__ = [
    "CanaryError",
    "FeatureCanary",
    "add_canary",
    "feature_suite",
    "load_canary_suite",
    "stage_canary_asset",
]
