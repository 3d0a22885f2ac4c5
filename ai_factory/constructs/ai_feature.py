"""``AiFeature``: what a product team writes to ship one AI feature on the factory.

One construct gives a feature its gateway identity (an API key issued at deploy time and kept in a
KMS-encrypted Secrets Manager secret, plus an optional IAM role for AWS callers), checks its models and
prompts against the catalog at synth time, tags everything it creates for cost attribution, and exposes
``metric_*`` methods, alarm inputs and dashboard widgets for observability.

Example (inside a ``TeamStack``, which supplies team, gateway and catalog)::

    AiFeature(team, "TicketSummarizer",
        feature="ticket-summarizer", owner="support-leads@example.com", clearance="internal",
        models=["chat-fast"], prompts=["prompts/summarize-ticket.yaml"],
        monthly_budget_usd=250, rate_limit_rpm=120,
        alert_thresholds=AlertThresholds(p99_latency_ms=8000, error_rate_pct=5, budget_pct=80))

Why this module is longer than ~400 lines: about half of it is the construction-time validation of
every prop (each error names the feature, the field and the reason) and the key provisioning (secret,
custom resource and its asset); the rest is the ``grant_*``/``metric*`` API product teams call.
"""

from __future__ import annotations

import math
import os
import re
import sys
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aws_cdk as cdk
import jsii
from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct, IConstruct

from ai_factory.catalog.model_catalog import ModelCatalog
from ai_factory.constructs.gateway.imported import ILlmGateway
from ai_factory.constructs.gateway.llm_gateway import LlmGateway
from ai_factory.constructs.governance import GovernedDataset
from ai_factory.constructs.inference_profiles import FeatureInferenceProfiles, bedrock_targets
from ai_factory.constructs.online_sampling import NO_SAMPLING_CLEARANCES, OnlineSampling, sample_table
from ai_factory.constructs.prompt_publication import PromptPublication
from ai_factory.platform.custom_resources import secure_provider
from ai_factory.platform.functions import function_log_group, hardened_function, write_own_logs_statement
from ai_factory.platform.lambda_packaging import stage_provisioner_asset
from ai_factory.platform.nag import acknowledge_custom_resource_handler
from ai_factory.platform.name_prefix import name_prefix
from ai_factory.platform.secure_defaults import logs_kms_key, via_services
from aif_gateway import contract
from aif_gateway.contract import CLEARANCE_LEVELS, FeatureKeyProperties, TeamFeatureKeyProperties
from aif_gateway.records import DEFAULT_MAX_CONCURRENCY, DEFAULT_TOKENS_PER_MINUTE

if TYPE_CHECKING:
    from ai_factory.prompts.spec import PromptSpec

GUARDRAIL_POLICIES = ("default",)
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
PROVISIONER_HANDLER = "feature_key_provisioner.handler.on_event"
TAG_KEYS = ("Team", "Feature", "Owner", "Clearance")

# team/feature pairs already used in each app (keyed by the construct tree's root).
_REGISTRIES: weakref.WeakKeyDictionary[Any, dict[tuple[str, str, str], str]] = weakref.WeakKeyDictionary()


class AiFeatureError(ValueError):
    """An invalid ``AiFeature`` configuration. The message names the feature and the field."""


@dataclass(frozen=True)
class AlertThresholds:
    """When the feature's alarms should fire (inputs for the observability stack).

    :param p99_latency_ms: p99 gateway latency over 5 minutes, in milliseconds.
    :param error_rate_pct: share of requests answered 5xx over 5 minutes, in percent.
    :param budget_pct: percent of the monthly budget; the daily-cost alarm fires when a day's spend
        would, at that pace for 30 days, reach this share of the budget.
    """

    p99_latency_ms: float = 10_000
    error_rate_pct: float = 5
    budget_pct: float = 80


@dataclass(frozen=True)
class AlarmInput:
    """One alarm the observability stack should create for a feature."""

    name: str
    metric: cloudwatch.IMetric
    threshold: float
    comparison_operator: cloudwatch.ComparisonOperator
    evaluation_periods: int
    description: str


@dataclass(frozen=True)
class RegisteredPrompt:
    """A prompt file the feature ships; CI registers it in the prompt registry (synth never does), and
    the deploy publishes its content into the gateway's prompt view when the view lacks it."""

    name: str
    model: str
    content_hash: str
    source: str  # relative to the working directory of the synth when possible
    eval_suite: str  # likewise, for people and metadata
    eval_suite_path: Path | None = None  # absolute, for code that reads the suite
    view_entry: Mapping[str, Any] | None = dataclass_field(default=None, compare=False)
    """This content as the gateway's prompt view stores a version (what the deploy publishes)."""

    def to_metadata(self, team: str, feature: str) -> dict[str, str]:
        return {
            "team": team,
            "feature": feature,
            "name": self.name,
            "model": self.model,
            "contentHash": self.content_hash,
            "source": self.source,
            "evalSuite": self.eval_suite,
        }


@jsii.implements(iam.IGrantable)
class AiFeature(Construct):
    """One product feature on the AI Factory gateway: identity, limits, prompts, cost tags, metrics.

    An ``iam.IGrantable``: ``bucket.grant_read(feature)`` grants to its caller role (a feature with
    callers), so other constructs' ``grant_*`` methods work on features directly.

    Inside a ``TeamStack`` the ``team``, ``gateway`` and ``catalog`` props default to the stack's.

    What it creates:

    * the feature's gateway API key, issued by a custom resource at deploy time: its hash and limits go
      to the gateway's keys table, the plaintext to a Secrets Manager secret
      (``<prefix>/<team>/<feature>/api-key``, JSON ``{"api_key", "key_id"}``) encrypted with the team's
      KMS key. Removing the feature revokes the key; the record stays for the audit trail. Changing the
      settings updates the record and keeps the key; bumping ``key_generation`` issues a new key and
      revokes the old one (rotation);
    * when ``callers`` are given, an IAM role they may assume that can read exactly that secret;
    * a Bedrock application inference profile per Bedrock model its routes reach (``inference_profiles``),
      which the gateway invokes for this feature, so Cost Explorer splits the Bedrock bill by feature;
    * when it has prompts and its gateway is in the same app, their publication into the gateway's
      prompt view on every deploy (``PromptPublication``; the canary waits for it);
    * the tags ``Team``, ``Feature``, ``Owner`` and ``Clearance`` on every taggable resource (the
      gateway's ledger attributes each request's cost to the key's team and feature as well).

    :param feature: feature name, ``^[a-z0-9][a-z0-9-]{0,62}$``; unique within its team in the app.
    :param owner: who answers for the feature (an e-mail address or team alias).
    :param clearance: the most sensitive data classification the feature may handle: ``public``,
        ``internal``, ``confidential`` or ``restricted``.
    :param models: catalog route aliases the feature's key may call.
    :param prompts: prompt files (relative to the folder of the file that creates the feature, or
        absolute). Each must be valid, use one of ``models`` and name an existing eval suite.
    :param monthly_budget_usd: the gateway refuses requests once the month's spend reaches it.
    :param rate_limit_rpm: requests per minute the gateway allows the feature.
    :param tokens_per_minute: input + output tokens per minute across every gateway instance (a request
        reserves its input estimate + ``max_tokens``). Default 2,000,000.
    :param max_concurrency: requests of the feature in flight at once, across every instance. Default 32.
    :param daily_request_quota: requests per UTC day the feature's API Gateway usage plan lets through
        (answered 429 ``edge_quota_exceeded`` beyond it). Default: no quota. Every feature gets its own
        usage plan (edge throttle from ``rate_limit_rpm``): with an ``LlmGateway`` of the same app in its
        own stack; against an imported gateway from the platform's shared provisioner, which caps the
        throttle at the platform's ``max_feature_rate_limit_rpm`` (``docs/gateway.md``, "The edge").
    :param guardrail_policy: the gateway guardrail policy to apply; only ``"default"`` exists today.
    :param alert_thresholds: alarm thresholds (``alarm_inputs``). Default ``AlertThresholds()``.
    :param callers: IAM principals that may assume the feature's caller role. Default: none (no role;
        grant access to existing roles with ``grant_read_api_key``).
    :param datasets: ``GovernedDataset``s the feature reads. Synth fails when ``clearance`` is below a
        dataset's classification; otherwise each is granted to the feature's caller role through Lake
        Formation (``GovernedDataset.grant_read``), so datasets need ``callers``.
    :param team: owning team, ``^[a-z0-9][a-z0-9-]{0,62}$``. Default: the enclosing ``TeamStack``'s.
    :param gateway: the gateway: an ``LlmGateway`` in this app, or one imported with
        ``LlmGateway.from_lookup`` / ``from_gateway_attributes`` (a team's own app, maybe in another
        account: the key then comes from the platform's shared provisioner, written into this feature's
        secret through a key-writer role in this stack). Default: the enclosing ``TeamStack``'s.
    :param catalog: the model catalog. Default: the gateway's.
    :param encryption_key: KMS key for the secret and the provisioner's logs. Default: the enclosing
        ``TeamStack``'s key, else a new key for this feature.
    :param key_generation: bump to rotate the key (new key in the secret, the old one revoked).
    :param prompt_base_dir: folder relative prompt paths start from. Default: the caller's folder.
    :param canary: run the feature's canary (default True): hourly, up to 5 cases of its suites against
        the ``production`` alias, billed to its budget (``ai_factory.constructs.canary``). False: no canary.
    :param inference_profiles: give the feature a Bedrock application inference profile per Bedrock
        model its routes reach, tagged ``Team``/``Feature``/``Owner``, and have the gateway invoke
        through them, so AWS's bill splits Bedrock cost by feature (default True). A profile must live
        in the gateway's account and region: against an imported gateway the platform's shared
        provisioner makes them there, whatever this flag says.
    :param canary_suite: a small eval suite (YAML, relative like ``prompts``) that ``FeatureCanary`` runs
        on a schedule for drift detection. Default: the first cases of the prompts' eval suites.
    :param online_sampling: opt-in sampling of live requests and answers for online evaluation and drift
        (``ai_factory.constructs.online_evaluation``): a sample table encrypted with ``encryption_key``
        whose items expire after ``retention_days``. Refused for ``restricted`` clearance. Default: none.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        feature: str,
        owner: str,
        clearance: str,
        models: Sequence[str],
        monthly_budget_usd: float,
        rate_limit_rpm: int,
        tokens_per_minute: int = DEFAULT_TOKENS_PER_MINUTE,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        daily_request_quota: int | None = None,
        prompts: Sequence[str | os.PathLike[str]] = (),
        guardrail_policy: str = "default",
        alert_thresholds: AlertThresholds | None = None,
        callers: Sequence[iam.IPrincipal] | None = None,
        datasets: Sequence[GovernedDataset] = (),
        team: str | None = None,
        gateway: ILlmGateway | None = None,
        catalog: ModelCatalog | None = None,
        encryption_key: kms.IKey | None = None,
        key_generation: int = 1,
        prompt_base_dir: str | os.PathLike[str] | None = None,
        canary_suite: str | os.PathLike[str] | None = None,
        canary: bool = True,
        inference_profiles: bool = True,
        online_sampling: OnlineSampling | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        team_stack = _enclosing_team_stack(self)
        team = team if team is not None else getattr(team_stack, "team", None)
        gateway = gateway if gateway is not None else getattr(team_stack, "gateway", None)
        self._label = f"AiFeature {team or '?'}/{feature}"
        if team is None:
            raise self._fail("team", "is required outside a TeamStack")
        if gateway is None:
            raise self._fail("gateway", "is required outside a TeamStack")
        catalog = catalog if catalog is not None else gateway.catalog
        base_dir = Path(prompt_base_dir) if prompt_base_dir is not None else _caller_dir(self)

        self._validate_names(team, feature)
        self.team = team
        self.feature = feature
        self.owner = self._non_empty("owner", owner)
        self.clearance = self._choice("clearance", clearance, CLEARANCE_LEVELS)
        self.online_sampling = self._validate_sampling(online_sampling)
        self.guardrail_policy = self._choice("guardrail_policy", guardrail_policy, GUARDRAIL_POLICIES)
        self.models: tuple[str, ...] = self._validate_models(models, catalog)
        self._check_destinations(catalog)
        self.monthly_budget_usd = float(self._positive("monthly_budget_usd", monthly_budget_usd))
        self.rate_limit_rpm = int(self._positive("rate_limit_rpm", rate_limit_rpm, integer=True))
        self.tokens_per_minute = int(self._positive("tokens_per_minute", tokens_per_minute, integer=True))
        self.max_concurrency = int(self._positive("max_concurrency", max_concurrency, integer=True))
        self.daily_request_quota = (
            None
            if daily_request_quota is None
            else int(self._positive("daily_request_quota", daily_request_quota, integer=True))
        )
        self.alert_thresholds = self._validate_thresholds(alert_thresholds or AlertThresholds())
        self._extra_alarm_inputs: list[AlarmInput] = []
        self._positive("key_generation", key_generation, integer=True)
        self.datasets: tuple[GovernedDataset, ...] = self._validate_datasets(datasets, callers)
        self.prompts: tuple[RegisteredPrompt, ...] = self._register_prompts(prompts, base_dir, catalog)
        self.canary = canary  # False: add_canary leaves the feature out (no schedule, no canary traffic)
        self.canary_suite: Path | None = None
        if canary_suite is not None:
            path = Path(canary_suite)
            self.canary_suite = path if path.is_absolute() else base_dir / path
            if not self.canary_suite.is_file():
                raise self._fail("canary_suite", f"{self.canary_suite} does not exist")
        self._claim_name()
        self.gateway = gateway

        self.encryption_key: kms.IKey = (
            encryption_key or getattr(team_stack, "secrets_key", None) or new_secrets_key(self, "Key")
        )
        self.sample_table = (
            sample_table(self, self.encryption_key, self.online_sampling) if self.online_sampling else None
        )
        """The online-evaluation sample table (``online_sampling``), or None."""
        self.secret = secretsmanager.Secret(
            self,
            "ApiKeySecret",
            # Secret names are account-wide: the factory's name prefix keeps two factories apart.
            secret_name=f"{name_prefix(self)}/{team}/{feature}/api-key",
            description=f"AI Factory gateway API key of {team}/{feature} (written by CloudFormation)",
            encryption_key=self.encryption_key,
        )
        # In the gateway's own app: a provisioner of the feature's own, writing the gateway's keys table.
        # Against an imported gateway: the platform's shared provisioner, which writes the key into this
        # secret through a key-writer role that trusts only the provisioner's role.
        self.provisioner_function: lambda_.Function | None = None
        self.key_writer_role: iam.Role | None = None
        key_properties: dict[str, Any]
        self.inference_profiles: FeatureInferenceProfiles | None = None
        """The feature's Bedrock application inference profiles (gateway in this app, ``inference_profiles``
        on): the gateway invokes its Bedrock models through them, so the bill is split by feature."""
        self.usage_plan = None
        if isinstance(gateway, LlmGateway):
            # The feature's own edge throttle; its key record says so, and the authorizer then meters
            # the feature's requests under this plan's API key (aif_gateway.authorizer).
            self.usage_plan = gateway.add_feature_usage_plan(
                self,
                team=team,
                feature=feature,
                rate_limit_rpm=self.rate_limit_rpm,
                daily_request_quota=self.daily_request_quota,
            )
            self.provisioner_function = self._provisioner_function()
            self.inference_profiles = self._inference_profiles(gateway) if inference_profiles else None
            provider = secure_provider(
                self,
                self.provisioner_function,
                key=self.encryption_key,
                role_description=f"AI Factory feature {team}/{feature}: custom-resource framework",
                handler_noun="this feature's provisioner function",
            )
            service_token = provider.service_token
            key_properties = {
                FeatureKeyProperties.KEYS_TABLE: gateway.keys_table_name,
                FeatureKeyProperties.EDGE_USAGE_PLAN: "true",
            }
            if self.inference_profiles is not None and self.inference_profiles.profiles:
                key_properties[FeatureKeyProperties.INFERENCE_PROFILES] = self.inference_profiles.arns
        else:
            service_token, key_properties = self._shared_provisioner(gateway)
        # The custom resource's properties reference the secret, so the secret exists before the key is
        # written into it.
        self.api_key = cdk.CustomResource(
            self,
            "ApiKey",
            service_token=service_token,
            resource_type=contract.FEATURE_KEY_RESOURCE_TYPE,
            properties={
                **key_properties,
                FeatureKeyProperties.SECRET_ARN: self.secret.secret_arn,
                FeatureKeyProperties.TEAM: team,
                FeatureKeyProperties.FEATURE: feature,
                FeatureKeyProperties.ALLOWED_MODELS: list(self.models),
                FeatureKeyProperties.MONTHLY_BUDGET_USD: str(self.monthly_budget_usd),
                FeatureKeyProperties.RATE_LIMIT_RPM: str(self.rate_limit_rpm),
                FeatureKeyProperties.TOKENS_PER_MINUTE: str(self.tokens_per_minute),
                FeatureKeyProperties.MAX_CONCURRENCY: str(self.max_concurrency),
                FeatureKeyProperties.CLEARANCE: self.clearance,
                FeatureKeyProperties.DESCRIPTION: (
                    f"AiFeature {team}/{feature}, owner {self.owner} (managed by CloudFormation)"
                ),
                FeatureKeyProperties.KEY_GENERATION: str(key_generation),
            },
        )
        if self.usage_plan is not None:
            self.api_key.node.add_dependency(self.usage_plan)  # the plan exists before the key says so
        self.key_id: str = self.api_key.ref
        """The gateway key ID (not secret): appears in usage records and ``ai-factory keys list``."""

        # The feature's prompts in the gateway's prompt view on every deploy (its canary depends on it).
        # Against an imported gateway the view is in the platform's account: its CI publishes it.
        self.prompt_publication: PromptPublication | None = None
        if isinstance(gateway, LlmGateway) and self.prompts:
            self.prompt_publication = PromptPublication(
                self,
                "Prompts",
                gateway=gateway,
                team=team,
                feature=feature,
                prompts=[{"name": p.name, **(p.view_entry or {})} for p in self.prompts],
                key=self.encryption_key,
            )

        self.caller_role: iam.Role | None = None
        if callers:
            self.caller_role = iam.Role(
                self,
                "CallerRole",
                assumed_by=iam.CompositePrincipal(*callers),
                description=f"AI Factory feature {team}/{feature}: reads the feature's gateway API key",
                max_session_duration=Duration.hours(1),
            )
            self.grant_read_api_key(self.caller_role)
        # The feature's AWS identity reads its datasets too: one role per feature to audit.
        self.data_role: iam.Role | None = self.caller_role
        for dataset in self.datasets:
            dataset.grant_read(self)

        for key, value in zip(TAG_KEYS, (team, feature, self.owner, self.clearance), strict=True):
            cdk.Tags.of(self).add(key, value)
        if self.datasets:
            self.node.add_metadata(
                contract.DATASETS_METADATA_TYPE,
                [
                    {
                        "team": team,
                        "feature": feature,
                        "dataset": d.qualified_name,
                        "classification": d.classification,
                    }
                    for d in self.datasets
                ],
            )
        if self.prompts:
            self.node.add_metadata(
                contract.PROMPTS_METADATA_TYPE, [p.to_metadata(team, feature) for p in self.prompts]
            )
        self._acknowledge_design_findings()

    # ----------------------------------------------------------------------------------------- grants

    @property
    def grant_principal(self) -> iam.IPrincipal:
        """The principal grants to this feature go to: its caller role (``iam.IGrantable``).

        Raises ``AiFeatureError`` for a feature without callers (it has no AWS identity to grant to).
        """
        if self.caller_role is None:
            raise self._fail("callers", "the feature has no caller role to grant to: give it callers")
        return self.caller_role

    def sample_through_gateway(self, rate: float) -> None:
        """Have the gateway itself send this feature's sampled exchanges with targets whose answers
        Bedrock's invocation log does not hold (external providers, SageMaker endpoints): ``rate`` goes
        into the key record (``GatewaySamplingRate``). ``OnlineEvaluation`` calls it for the features
        it samples; the gateway's sample queue must have a consumer before this is worth doing."""
        resource = self.api_key.node.default_child
        assert isinstance(resource, cdk.CfnResource)
        resource.add_property_override(FeatureKeyProperties.GATEWAY_SAMPLING_RATE, str(rate))

    def grant_read_api_key(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` read the feature's API key: ``secretsmanager:GetSecretValue`` on the secret
        and ``kms:Decrypt`` on its key through Secrets Manager only."""
        grant = iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["secretsmanager:GetSecretValue"],
            resource_arns=[self.secret.secret_arn],
        )
        # The KMS part belongs to the grant too, so callers can depend on (or inspect) all of it.
        return grant.combine(
            iam.Grant.add_to_principal(
                grantee=grantee,
                actions=["kms:Decrypt"],
                resource_arns=[self.encryption_key.key_arn],
                conditions=via_services("secretsmanager"),
            )
        )

    # ---------------------------------------------------------------------------------------- metrics

    def metric(self, metric_name: str, **props: Any) -> cloudwatch.Metric:
        """Any metric of this feature in the ``AIFactory`` namespace with its (Team, Feature) dimensions
        (``aif_gateway.contract.METRICS`` lists them; ``docs/observability.md`` describes them).

        Default statistic ``Sum`` over 5 minutes; ``props`` are ``cloudwatch.Metric``'s options.
        """
        props.setdefault("statistic", "Sum")
        props.setdefault("period", Duration.minutes(5))
        return cloudwatch.Metric(
            namespace=contract.METRICS_NAMESPACE,
            metric_name=metric_name,
            dimensions_map={contract.TEAM: self.team, contract.FEATURE: self.feature},
            **props,
        )

    def _metric(self, metric: contract.Metric, statistic: str, props: dict[str, Any]) -> cloudwatch.Metric:
        props.setdefault("statistic", statistic)
        return self.metric(metric.name, **props)

    def metric_requests(self, **props: Any) -> cloudwatch.Metric:
        """Requests the gateway answered for this feature (``Requests``, sum over 5 minutes)."""
        return self._metric(contract.REQUESTS, "Sum", props)

    def metric_cost(self, **props: Any) -> cloudwatch.Metric:
        """Model cost in USD (``CostUSD``, sum over 5 minutes)."""
        return self._metric(contract.COST_USD, "Sum", props)

    def metric_latency(self, **props: Any) -> cloudwatch.Metric:
        """Gateway latency in milliseconds (``LatencyMs``, p99 over 5 minutes)."""
        return self._metric(contract.LATENCY_MS, "p99", props)

    def metric_errors(self, **props: Any) -> cloudwatch.Metric:
        """Requests answered 5xx: platform or model failures (``Status5xx``, sum over 5 minutes)."""
        return self._metric(contract.STATUS_5XX, "Sum", props)

    def metric_client_errors(self, **props: Any) -> cloudwatch.Metric:
        """Requests answered 4xx: bad requests, keys, budget or rate refusals (``Status4xx``)."""
        return self._metric(contract.STATUS_4XX, "Sum", props)

    def metric_throttled(self, **props: Any) -> cloudwatch.Metric:
        """Requests refused by the feature's rate limit or budget (``Throttled``, sum over 5 minutes)."""
        return self._metric(contract.THROTTLED, "Sum", props)

    def metric_error_rate(self, period: Duration | None = None) -> cloudwatch.MathExpression:
        """Percent of requests answered 5xx (0 when there is no traffic)."""
        period = period or Duration.minutes(5)
        return cloudwatch.MathExpression(
            expression="IF(requests > 0, 100 * errors / requests, 0)",
            using_metrics={
                "errors": self.metric_errors(period=period),
                "requests": self.metric_requests(period=period),
            },
            label=f"{self.team}/{self.feature} 5xx %",
            period=period,
        )

    def add_alarm_input(self, alarm: AlarmInput) -> None:
        """Add an alarm the observability stack creates for this feature (e.g. its knowledge base's
        sync failures); ``alarm.name`` also selects the runbook linked from the alarm."""
        self._extra_alarm_inputs.append(alarm)

    @property
    def alarm_inputs(self) -> list[AlarmInput]:
        """The alarms this feature wants (latency, error rate, spend pace), from ``alert_thresholds``."""
        t = self.alert_thresholds
        daily_cost = self.monthly_budget_usd * t.budget_pct / 100 / 30
        above = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
        label = f"{self.team}/{self.feature}"
        return [
            AlarmInput(
                "Latency",
                self.metric_latency(),
                t.p99_latency_ms,
                above,
                3,
                f"{label}: p99 latency above {t.p99_latency_ms:g} ms",
            ),
            AlarmInput(
                "ErrorRate",
                self.metric_error_rate(),
                t.error_rate_pct,
                above,
                3,
                f"{label}: more than {t.error_rate_pct:g}% of requests failed (5xx)",
            ),
            AlarmInput(
                "SpendPace",
                self.metric_cost(period=Duration.days(1)),
                round(daily_cost, 6),
                above,
                1,
                f"{label}: a day's spend above {t.budget_pct:g}% of the ${self.monthly_budget_usd:g} "
                "monthly budget / 30",
            ),
            *self._extra_alarm_inputs,
        ]

    def dashboard_widgets(self) -> list[cloudwatch.IWidget]:
        """A row of widgets for the feature: traffic and failures, latency, cost."""
        label = f"{self.team}/{self.feature}"
        return [
            cloudwatch.GraphWidget(
                title=f"{label}: requests",
                left=[self.metric_requests(), self.metric_client_errors(), self.metric_errors()],
                right=[self.metric_throttled()],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title=f"{label}: p99 latency (ms)",
                left=[self.metric_latency()],
                left_annotations=[
                    cloudwatch.HorizontalAnnotation(value=self.alert_thresholds.p99_latency_ms, label="alarm")
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title=f"{label}: cost (USD per day)",
                left=[self.metric_cost(period=Duration.days(1))],
                width=8,
            ),
        ]

    # ------------------------------------------------------------------------------------- resources

    def _provisioner_function(self) -> lambda_.Function:
        assert isinstance(self.gateway, LlmGateway)  # only in the gateway's own app
        log_group = function_log_group(
            self, "ProvisionerLogs", key=self.encryption_key, retention=logs.RetentionDays.ONE_YEAR
        )
        statements = [
            write_own_logs_statement(log_group),
            *self.gateway.key_provisioning_statements(),
            iam.PolicyStatement(
                sid="WriteFeatureSecret",
                actions=["secretsmanager:PutSecretValue"],
                resources=[self.secret.secret_arn],
            ),
            # A rolled-back rotation restores the previous key from the secret's AWSPREVIOUS version
            # (docs/security.md): the key this function wrote itself, in this one secret.
            iam.PolicyStatement(
                sid="ReadFeatureSecretForRollback",
                actions=["secretsmanager:GetSecretValue"],
                resources=[self.secret.secret_arn],
            ),
            iam.PolicyStatement(
                sid="EncryptFeatureSecret",
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=[self.encryption_key.key_arn],
                conditions=via_services("secretsmanager"),
            ),
        ]
        # An inline policy (not a separate AWS::IAM::Policy): one resource less per feature, and the
        # function can never run before its permissions exist.
        role = iam.Role(
            self,
            "ProvisionerRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"AI Factory feature {self.team}/{self.feature}: issues and revokes its API key",
            inline_policies={"ProvisionFeatureKey": iam.PolicyDocument(statements=statements)},
        )
        return hardened_function(
            self,
            "Provisioner",
            description=f"AI Factory: API key of feature {self.team}/{self.feature}",
            handler=PROVISIONER_HANDLER,
            code=lambda_.Code.from_asset(str(stage_provisioner_asset())),
            role=role,
            timeout=Duration.seconds(60),
            memory_size=256,
            log_group=log_group,
            # A custom-resource handler runs a few times per deployment; its log lines say enough.
            tracing=False,
        )

    def _inference_profiles(self, gateway: LlmGateway) -> FeatureInferenceProfiles:
        return FeatureInferenceProfiles(
            self,
            "InferenceProfiles",
            team=self.team,
            feature=self.feature,
            owner=self.owner,
            models=bedrock_targets(gateway.config, self.models),
            catalog=gateway.catalog,
            gateway_tag=gateway.inference_profile_tag,
        )

    def _shared_provisioner(self, gateway: ILlmGateway) -> tuple[str, dict[str, Any]]:
        """Service token and extra properties for the platform's shared provisioner, and the key-writer
        role it assumes: ``secretsmanager:PutSecretValue`` on this secret and the KMS use that needs."""
        token = gateway.key_provisioning_service_token
        provisioner_role = gateway.key_provisioner_role_arn
        if not token or not provisioner_role:
            raise self._fail(
                "gateway",
                "the imported gateway has no key-provisioning service token and provisioner role: the "
                "platform must call LlmGateway.enable_team_accounts for this account",
            )
        self.key_writer_role = iam.Role(
            self,
            "KeyWriterRole",
            assumed_by=iam.ArnPrincipal(provisioner_role),
            path=contract.KEY_WRITER_ROLE_PATH,
            description=f"AI Factory feature {self.team}/{self.feature}: the platform writes its key here",
            max_session_duration=Duration.hours(1),
            inline_policies={
                "WriteFeatureKey": iam.PolicyDocument(
                    statements=[
                        iam.PolicyStatement(
                            sid="WriteFeatureSecret",
                            actions=["secretsmanager:PutSecretValue"],
                            resources=[self.secret.secret_arn],
                        ),
                        iam.PolicyStatement(
                            sid="EncryptFeatureSecret",
                            actions=["kms:GenerateDataKey", "kms:Decrypt"],
                            resources=[self.encryption_key.key_arn],
                            conditions=via_services("secretsmanager"),
                        ),
                    ]
                )
            },
        )
        properties: dict[str, Any] = {
            TeamFeatureKeyProperties.WRITER_ROLE_ARN: self.key_writer_role.role_arn,
            TeamFeatureKeyProperties.OWNER: self.owner,
            TeamFeatureKeyProperties.CLEARANCE: self.clearance,
        }
        if self.daily_request_quota is not None:
            # The platform's provisioner makes the feature's usage plan, with this quota.
            properties[FeatureKeyProperties.DAILY_REQUEST_QUOTA] = str(self.daily_request_quota)
        return token, properties

    def _acknowledge_design_findings(self) -> None:
        """cdk-nag findings that are deliberate, acknowledged on the construct they concern."""
        rotation_reason = (
            "The secret holds a gateway API key, not a database credential, so there is no Secrets "
            "Manager rotation template for it. Rotation is a deploy with the feature's "
            "key_generation bumped: the custom resource issues a new key into this secret and "
            "revokes the old one (keys outside CDK rotate with 'ai-factory keys rotate')."
        )
        for rule in ("AwsSolutions-SMG4", "NIST.800.53.R5-SecretsManagerRotationEnabled"):
            cdk.Validations.of(self.secret).acknowledge(cdk.Acknowledgment(id=rule, reason=rotation_reason))
        if self.provisioner_function is not None:
            acknowledge_custom_resource_handler(
                self.provisioner_function,
                what="issues the feature's API key into its secret and revokes old ones",
            )

    # ------------------------------------------------------------------------------------ validation

    def _fail(self, field: str, why: str) -> AiFeatureError:
        return AiFeatureError(f"{self._label}: {field}: {why}")

    def _non_empty(self, field: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self._fail(field, f"must be a non-empty string, got {value!r}")
        return value

    def _validate_sampling(self, sampling: OnlineSampling | None) -> OnlineSampling | None:
        if sampling is None or not sampling.enabled:
            return None
        problems = sampling.problems()
        if problems:
            raise AiFeatureError(f"{self._label}: " + "; ".join(problems))
        if self.clearance in NO_SAMPLING_CLEARANCES:
            raise self._fail(
                "online_sampling",
                f"clearance {self.clearance!r} forbids keeping copies of requests and answers; "
                "remove online_sampling or lower the clearance",
            )
        return sampling

    def _choice(self, field: str, value: Any, allowed: tuple[str, ...]) -> str:
        if value not in allowed:
            raise self._fail(field, f"{value!r} is not one of {', '.join(allowed)}")
        return str(value)

    def _positive(self, field: str, value: Any, *, integer: bool = False) -> float:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not math.isfinite(value) or value <= 0 or (integer and value != int(value)):
            kind = "a whole number" if integer else "a number"
            raise self._fail(field, f"must be {kind} greater than 0, got {value!r}")
        return float(value)

    def _validate_names(self, team: Any, feature: Any) -> None:
        for field, value in (("team", team), ("feature", feature)):
            if not isinstance(value, str) or not NAME_PATTERN.match(value):
                raise self._fail(
                    field,
                    f"{value!r} is not valid: use 1-63 lowercase letters, digits and hyphens, starting with "
                    "a letter or digit (it becomes a metric dimension, a tag and a secret name)",
                )

    def check_clearance(self, dataset: GovernedDataset) -> None:
        """Raise ``AiFeatureError`` when the feature's clearance is below ``dataset``'s classification."""
        if not contract.cleared_for(self.clearance, dataset.classification):
            raise self._fail(
                "datasets",
                f"clearance {self.clearance!r} is below dataset {dataset.name!r} classification "
                f"{dataset.classification!r}",
            )

    def _validate_datasets(
        self, datasets: Sequence[GovernedDataset], callers: Sequence[iam.IPrincipal] | None
    ) -> tuple[GovernedDataset, ...]:
        if isinstance(datasets, str) or not isinstance(datasets, Sequence):
            raise self._fail("datasets", "must be a list of GovernedDataset")
        for dataset in datasets:
            if not isinstance(dataset, GovernedDataset):
                raise self._fail("datasets", f"{dataset!r} is not a GovernedDataset")
            self.check_clearance(dataset)
        names = [d.qualified_name for d in datasets]
        if len(set(names)) != len(names):
            raise self._fail("datasets", f"lists a dataset twice: {names!r}")
        if datasets and not callers:
            raise self._fail(
                "datasets",
                "need callers: Lake Formation grants the datasets to the feature's caller role, which only "
                "exists when callers are given",
            )
        return tuple(datasets)

    def _validate_models(self, models: Sequence[str], catalog: ModelCatalog) -> tuple[str, ...]:
        if isinstance(models, str) or not models:
            raise self._fail("models", "must be a non-empty list of model aliases, e.g. ['chat-fast']")
        for alias in models:
            route = catalog.routes.get(alias) if isinstance(alias, str) else None
            if route is None:
                routes = ", ".join(sorted(catalog.routes))
                raise self._fail(
                    "models", f"{alias!r} is not a route in the model catalog (routes: {routes})"
                )
            # The catalog refuses routes to blocked or preview models and to candidates without a waiver;
            # a route whose every target is deprecated would still load (with a warning), but new
            # features must not build on it.
            if not any(_servable(catalog.models[t]) for t in route.targets):
                raise self._fail(
                    "models",
                    f"{alias!r} routes only to models that are not approved ({', '.join(route.targets)})",
                )
        if len(set(models)) != len(models):
            raise self._fail("models", f"lists an alias twice: {list(models)!r}")
        return tuple(models)

    def _check_destinations(self, catalog: ModelCatalog) -> None:
        """Synth-time form of the gateway's request-time rule: every target of every route the feature
        may call (fallbacks included) must be allowed to receive data of the feature's clearance."""
        violations = catalog.clearance_violations(self.clearance, self.models)
        if violations:
            raise self._fail("clearance", "; ".join(str(v) for v in violations))

    def _validate_thresholds(self, thresholds: AlertThresholds) -> AlertThresholds:
        if not isinstance(thresholds, AlertThresholds):
            raise self._fail("alert_thresholds", f"must be an AlertThresholds, got {thresholds!r}")
        for name in ("p99_latency_ms", "error_rate_pct", "budget_pct"):
            self._positive(f"alert_thresholds.{name}", getattr(thresholds, name))
        if thresholds.error_rate_pct > 100:
            raise self._fail("alert_thresholds.error_rate_pct", "must be at most 100")
        return thresholds

    def _register_prompts(
        self, prompts: Sequence[str | os.PathLike[str]], base_dir: Path, catalog: ModelCatalog
    ) -> tuple[RegisteredPrompt, ...]:
        from ai_factory.prompts.spec import PromptFileError, check_model, load_prompt_file

        if isinstance(prompts, str | os.PathLike):
            raise self._fail("prompts", "must be a list of prompt file paths")
        registered: list[RegisteredPrompt] = []
        for entry in prompts:
            path = Path(entry)
            path = path if path.is_absolute() else base_dir / path
            try:
                spec: PromptSpec = load_prompt_file(path)
                check_model(spec, catalog)
            except PromptFileError as exc:
                raise self._fail("prompts", str(exc)) from exc
            if spec.model not in self.models:
                allowed = ", ".join(self.models)
                raise self._fail(
                    "prompts", f"{path}: model {spec.model!r} is not one of the feature's models ({allowed})"
                )
            if any(p.name == spec.name for p in registered):
                raise self._fail("prompts", f"prompt name {spec.name!r} is listed twice")
            registered.append(
                RegisteredPrompt(
                    name=spec.name,
                    model=spec.model,
                    content_hash=spec.content_hash,
                    source=_display_path(spec.source),
                    eval_suite=_display_path(spec.eval_suite),
                    eval_suite_path=spec.eval_suite.resolve(),
                    view_entry={
                        "hash": spec.content_hash,
                        "model": spec.model,
                        "parameters": dict(spec.parameters),
                        "messages": [dict(m) for m in spec.messages],
                        "variables": list(spec.variables),
                    },
                )
            )
        return tuple(registered)

    def _claim_name(self) -> None:
        """Fail when another AiFeature in the same app already uses this team/feature.

        Per stage and per factory (name prefix): a pipeline deploys the same features once per stage
        (staging, production), and two factories in one app each have their own gateway.
        """
        registry = _REGISTRIES.setdefault(cdk.Stage.of(self) or self.node.root, {})
        claim = (name_prefix(self), self.team, self.feature)
        other = registry.get(claim)
        if other is not None:
            raise self._fail("feature", f"{self.team}/{self.feature} is already defined at {other}")
        registry[claim] = self.node.path


def new_secrets_key(scope: Construct, construct_id: str, description: str = "") -> kms.Key:
    """A KMS key (rotation on) for feature secrets and their provisioners' log groups.

    CloudWatch Logs may use it only for log groups in this account and region.
    """
    return logs_kms_key(
        scope, construct_id, description or "AI Factory: feature API-key secrets and provisioner logs"
    )


# ------------------------------------------------------------------------------------------ helpers


def find_features(scope: IConstruct) -> list[AiFeature]:
    """Every ``AiFeature`` under ``scope`` (the app, a team stack ...), in construct-tree order."""
    return [c for c in scope.node.find_all() if isinstance(c, AiFeature)]


def _enclosing_team_stack(scope: Construct) -> Any:
    """The nearest ``TeamStack`` above ``scope`` (duck-typed on its ``team``/``gateway`` attributes)."""
    node: Any = scope.node.scope
    while node is not None:
        if isinstance(node, cdk.Stack) and hasattr(node, "team") and hasattr(node, "gateway"):
            return node
        node = node.node.scope
    return None


def _caller_dir(feature: AiFeature) -> Path:
    """The folder of the file that created ``feature``: the first frame up the stack that is not one of
    the feature's own ``__init__`` methods (a subclass's included). Relative prompt paths start there."""
    jsii_dir = os.path.dirname(jsii.__file__)
    frame = sys._getframe(1)
    # jsii's metaclass __call__ sits between the caller and __init__.
    while frame is not None and (
        frame.f_locals.get("self") is feature or frame.f_code.co_filename.startswith(jsii_dir)
    ):
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return Path.cwd()
    return Path(frame.f_code.co_filename).resolve().parent


def _display_path(path: Path) -> str:
    try:
        return Path(os.path.relpath(path, Path.cwd())).as_posix()
    except ValueError:  # another drive on Windows
        return path.as_posix()


def _servable(model: Any) -> bool:
    """Approved, or a candidate routed under a recorded waiver (``ai_factory.catalog.evidence``)."""
    return bool(model.status == "approved" or (model.status == "candidate" and model.waiver is not None))
