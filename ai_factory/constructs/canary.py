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
``latency_ms``); others (judges, similarity, schemas) belong to the eval gate and are left out with
a synth-time warning. A feature with no runnable case gets no schedule (and a warning).

Canary requests are ordinary gateway traffic of the feature: they count against its rate limit and
budget and appear in its usage and cost (hourly x 5 cases is 120 requests a day).
"""

from __future__ import annotations

import json
import re
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
SUPPORTED_ASSERTIONS = ("equals", "contains", "icontains", "not-contains", "regex", "latency_ms")
DEFAULT_MAX_CASES = 5
MAX_CASES_LIMIT = 8  # 8 cases x 30 s per call stays inside the Lambda's 5 minutes
_SCALAR_TYPES = (str, int, float)


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


def load_canary_suite(path: Path, *, max_cases: int | None = None, warn: Any = None) -> dict[str, Any]:
    """A YAML suite as the canary's JSON form: ``{"name", "prompt"|"model"+"messages", "cases"}``.

    Cases take ``id`` or ``name``, ``vars``, optional ``messages`` and ``assert`` (a list of
    ``{type: value}`` shorthands or ``{type, value}`` maps). Unsupported assertions are dropped with
    ``warn(message)``; so are cases left without any. Raises CanaryError for anything malformed.
    """
    import yaml

    warn = warn or (lambda message: None)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CanaryError(f"{path}: cannot read the suite: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        raise CanaryError(f"{path}: a suite is a mapping with a 'cases' list")
    name = data.get("name") or data.get("suite") or path.stem
    suite: dict[str, Any] = {"name": str(name), "source": path.name}
    prompt = data.get("prompt")
    if isinstance(prompt, str):
        suite["prompt"] = {"name": prompt, "alias": "production"}
    elif isinstance(prompt, dict) and isinstance(prompt.get("name"), str):
        suite["prompt"] = {k: prompt[k] for k in ("name", "alias", "version") if prompt.get(k) is not None}
        if "version" not in suite["prompt"]:
            suite["prompt"].setdefault("alias", "production")
    elif prompt is not None:
        raise CanaryError(f"{path}: 'prompt' must be a prompt name or {{name, alias|version}}")
    if data.get("model") is not None:
        suite["model"] = str(data["model"])
    if "prompt" not in suite:
        if "model" not in suite or not isinstance(data.get("messages"), list):
            raise CanaryError(f"{path}: a suite without 'prompt' needs 'model' and 'messages'")
        suite["messages"] = data["messages"]
    defaults = data.get("defaults") or {}
    default_asserts = defaults.get("assert") if isinstance(defaults, dict) else None
    if default_asserts is not None and not isinstance(default_asserts, list):
        raise CanaryError(f"{path}: defaults.assert must be a list")
    cases: list[dict[str, Any]] = []
    dropped: set[str] = set()
    for index, raw in enumerate(data["cases"]):
        if max_cases is not None and len(cases) >= max_cases:
            warn(f"{path}: only the first {max_cases} runnable cases run in the canary")
            break
        case = _case(path, index, raw, default_asserts or [], dropped, data.get("request"))
        if case is not None:
            cases.append(case)
        else:
            label = raw.get("id") or raw.get("name") or ""
            warn(f"{path}: cases[{index}] {label}: no assertion the canary can run; left out")
    if dropped:
        warn(f"{path}: assertion types {', '.join(sorted(dropped))} do not run in the canary; left out")
    suite["cases"] = cases
    return suite


def _case(
    path: Path,
    index: int,
    raw: Any,
    default_asserts: list[Any],
    dropped: set[str],
    suite_request: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    where = f"{path}: cases[{index}]"
    if not isinstance(raw, dict):
        raise CanaryError(f"{where}: a case is a mapping")
    case_id = str(raw.get("id") or raw.get("name") or f"case-{index + 1}")
    variables = raw.get("vars") or {}
    if not isinstance(variables, dict):
        raise CanaryError(f"{where}.vars: must be a mapping")
    messages = raw.get("messages") or []
    if not isinstance(messages, list):
        raise CanaryError(f"{where}.messages: must be a list")
    asserts = []
    own = raw.get("assert") or raw.get("assertions") or []
    if not isinstance(own, list):
        raise CanaryError(f"{where}.assert: must be a list")
    for j, entry in enumerate([*own, *default_asserts]):
        kind, value = _assertion(f"{where}.assert[{j}]", entry)
        if kind not in SUPPORTED_ASSERTIONS:
            dropped.add(kind)
            continue
        if kind == "regex":
            try:
                re.compile(str(value))
            except re.error as exc:
                raise CanaryError(f"{where}.assert[{j}]: invalid regex: {exc}") from exc
        if kind == "latency_ms" and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise CanaryError(f"{where}.assert[{j}]: latency_ms takes a number of milliseconds")
        if not isinstance(value, _SCALAR_TYPES):
            raise CanaryError(f"{where}.assert[{j}]: '{kind}' takes a string or number")
        asserts.append({"type": kind, "value": value})
    if not asserts:
        return None
    # The suite's request options, then the case's own (response_format, tools, temperature, ...).
    request = {**(suite_request or {}), **(raw.get("request") or {})}
    case = {"id": case_id, "vars": variables, "messages": messages, "assert": asserts}
    return {**case, "request": request} if request else case


def _assertion(where: str, entry: Any) -> tuple[str, Any]:
    if isinstance(entry, dict) and "type" in entry:
        return str(entry["type"]), entry.get("value", entry.get("threshold"))
    if isinstance(entry, dict) and len(entry) == 1:
        ((kind, value),) = entry.items()
        return str(kind), value
    raise CanaryError(f"{where}: an assertion is {{type: value}} or {{type, value}}")


def feature_suite(feature: AiFeature, max_cases: int, warn: Any) -> dict[str, Any] | None:
    """The feature's canary suite: its ``canary_suite`` file, else cases from its prompts' eval suites."""
    explicit = getattr(feature, "canary_suite", None)
    if explicit is not None:
        return load_canary_suite(Path(explicit), max_cases=max_cases, warn=warn)
    merged: dict[str, Any] | None = None
    for prompt in feature.prompts:
        path = prompt.eval_suite_path or Path(prompt.eval_suite)
        if not path.is_file():
            warn(f"eval suite {path} of prompt {prompt.name} not found")
            continue
        remaining = max_cases - (len(merged["cases"]) if merged else 0)
        if remaining <= 0:
            break
        suite = load_canary_suite(path, max_cases=remaining, warn=warn)
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

            try:
                suite = feature_suite(feature, max_cases, warn)
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
