"""``Observability``: one facade that monitors the gateway and every ``AiFeature`` it is handed.

In the style of cdk-monitoring-constructs: hand it the gateway and the features and it adds

* an on-call SNS topic encrypted with a KMS key of its own (CloudWatch may use the key to publish);
* a platform dashboard (traffic and status classes, latency p50/p90/p99, throttles and budget refusals,
  fallbacks and circuit-breaker opens, guardrail interventions, tokens and cost per team and per feature,
  budget burn, feedback score, canary and eval pass rate, an audit-log query) built from CloudWatch
  SEARCH expressions, so it needs no change when features come and go;
* a section per feature (its own ``dashboard_widgets()`` plus latency percentiles, tokens, budget burn,
  reliability, feedback, quality and the state of its alarms), ``features_per_dashboard`` per dashboard;
* alarms named ``AIFactory-<Severity>-<team>-<feature>-<What>`` whose descriptions link their runbook,
  each notifying the topic when it fires and when it recovers.

Every metric is in the ``AIFactory`` namespace with the (Team, Feature) dimension set the gateway emits
(``docs/gateway.md``); feedback and canary metrics come from the feedback endpoint and the canary.

Example::

    obs = Observability(stack, "Observability", gateway=gateway, features=find_features(app))
    obs.monitor_feature(another_feature)  # more can be added later
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from constructs import Construct, IConstruct

from ai_factory.ai_feature import AiFeature, AlarmInput
from ai_factory.llm_gateway import METRICS_NAMESPACE, LlmGateway

ALARM_PREFIX = "AIFactory"
FEATURE_SCHEMA = f"{{{METRICS_NAMESPACE},Feature,Team}}"
BUDGET_EXHAUSTED_METRIC = "BudgetExhausted"
RUNBOOKS = (
    "provider-outage",
    "budget-exhausted",
    "guardrail-spike",
    "quality-drift",
    "leaked-key",
    "high-latency",
)
# Which runbook each alarm links (feature alarms by their AlarmInput name, then the facade's own).
ALARM_RUNBOOKS = {
    "ErrorRate": "provider-outage",
    "Latency": "high-latency",
    "SpendPace": "budget-exhausted",
    "BudgetExhausted": "budget-exhausted",
    "GuardrailSpike": "guardrail-spike",
    "FeedbackDrop": "quality-drift",
    "CanaryPassRateDrop": "quality-drift",
    "FallbackStorm": "provider-outage",
    "GatewayErrors": "provider-outage",
}
FIVE_MINUTES = Duration.minutes(5)
ONE_HOUR = Duration.hours(1)
ONE_DAY = Duration.days(1)

# dashboard counters per app (construct-tree root), so facades in several stacks never reuse a name.
_DASHBOARD_COUNTERS: weakref.WeakKeyDictionary[Any, list[int]] = weakref.WeakKeyDictionary()


class Severity(Enum):
    """Alarm severity, the second part of every alarm name. Critical pages; Warning can wait for hours."""

    CRITICAL = "Critical"
    WARNING = "Warning"


@dataclass(frozen=True)
class AlarmDefaults:
    """App-wide thresholds for the alarms ``AiFeature.alert_thresholds`` does not cover.

    :param guardrail_intervention_pct: share of a feature's requests the guardrail intervened on, over
        15 minutes, in percent.
    :param guardrail_min_requests: requests in those 15 minutes below which the share is not judged.
    :param feedback_min_score: average ``FeedbackScore`` (0..1) over 3 hours below which feedback has
        dropped.
    :param feedback_min_count: feedback entries in those 3 hours below which the average is not judged.
    :param canary_min_pass_rate: ``CanaryPassRate`` (0..1) below which the canary has regressed (two
        consecutive hours).
    :param fallback_storm_count: fallbacks per 5 minutes across the whole platform (3 periods in a row).
    :param gateway_5xx_pct: share of the API's requests answered 5xx, platform-wide, over 5 minutes.
    :param features_per_dashboard: feature sections per dashboard (11 widgets each).
    """

    guardrail_intervention_pct: float = 10
    guardrail_min_requests: int = 20
    feedback_min_score: float = 0.6
    feedback_min_count: int = 10
    canary_min_pass_rate: float = 0.8
    fallback_storm_count: float = 50
    gateway_5xx_pct: float = 5
    features_per_dashboard: int = 10

    def __post_init__(self) -> None:
        for name in ("guardrail_intervention_pct", "fallback_storm_count", "gateway_5xx_pct"):
            if not getattr(self, name) > 0:
                raise ValueError(
                    f"AlarmDefaults: {name}: must be greater than 0, got {getattr(self, name)!r}"
                )
        for name in ("feedback_min_score", "canary_min_pass_rate"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"AlarmDefaults: {name}: must be in (0, 1], got {getattr(self, name)!r}")
        if not 1 <= self.features_per_dashboard <= 40:
            raise ValueError(
                f"AlarmDefaults: features_per_dashboard: must be 1..40, got {self.features_per_dashboard!r}"
            )


def find_features(scope: IConstruct) -> list[AiFeature]:
    """Every ``AiFeature`` under ``scope`` (e.g. the app), in construct-tree order."""
    return [c for c in scope.node.find_all() if isinstance(c, AiFeature)]


def feature_metric(
    feature: AiFeature, name: str, statistic: str = "Sum", period: Duration = FIVE_MINUTES, **props: Any
) -> cloudwatch.Metric:
    """Any ``AIFactory`` metric of ``feature`` (dimensions Team and Feature)."""
    return cloudwatch.Metric(
        namespace=METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map={"Team": feature.team, "Feature": feature.feature},
        statistic=statistic,
        period=period,
        **props,
    )


def search(metric_name: str, statistic: str, period: Duration, where: str = "") -> str:
    """A SEARCH over every feature's (Team, Feature) series of one metric."""
    query = f'{FEATURE_SCHEMA} MetricName="{metric_name}"' + (f" {where}" if where else "")
    return f"SEARCH('{query}', '{statistic}', {int(period.to_seconds())})"


def team_search(metric_name: str, team: str, period: Duration) -> str:
    """``SUM`` of one metric over every feature of ``team``."""
    return f"SUM({search(metric_name, 'Sum', period, 'Team=' + chr(34) + team + chr(34))})"


def expression(
    expr: str, label: str, period: Duration = FIVE_MINUTES, **metrics: Any
) -> cloudwatch.MathExpression:
    return cloudwatch.MathExpression(expression=expr, using_metrics=metrics, label=label, period=period)


class Observability(Construct):
    """Dashboards and alarms for the gateway and every feature, notifying one encrypted on-call topic.

    :param gateway: the ``LlmGateway``; with ``platform=True`` it gets the platform dashboard and alarms,
        and the ``BudgetExhausted`` metric filter on its audit log.
    :param features: ``AiFeature``s to monitor now (``monitor_feature`` adds more).
    :param platform: create the platform dashboard and alarms. ``False`` for a facade that only holds
        feature sections (e.g. an overflow stack when there are many features).
    :param topic: an existing on-call topic. Default: a new topic with a new KMS key.
    :param runbook_base_url: where the ``docs/runbooks`` folder is published (e.g. the repository's
        URL ``.../blob/main/docs/runbooks``). Default: descriptions name the repository path.
    :param defaults: thresholds for the alarms that are not per-feature props.
    :param dashboard_prefix: dashboard names start with it.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        gateway: LlmGateway | None = None,
        features: Iterable[AiFeature] = (),
        platform: bool = True,
        topic: sns.ITopic | None = None,
        runbook_base_url: str | None = None,
        defaults: AlarmDefaults | None = None,
        dashboard_prefix: str = ALARM_PREFIX,
    ) -> None:
        super().__init__(scope, construct_id)
        if platform and gateway is None:
            raise ValueError(f"Observability {construct_id}: gateway: required when platform=True")
        self.gateway = gateway
        self.defaults = defaults or AlarmDefaults()
        self.runbook_base_url = runbook_base_url.rstrip("/") if runbook_base_url else None
        self.dashboard_prefix = dashboard_prefix
        self.key: kms.IKey | None = None
        if topic is None:
            self.key = self._topic_key()
            topic = sns.Topic(
                self,
                "OnCallTopic",
                display_name="AI Factory on-call",
                master_key=self.key,
                enforce_ssl=True,
            )
        self.topic: sns.ITopic = topic
        self.alarms: list[cloudwatch.Alarm] = []
        self.feature_alarms: dict[tuple[str, str], list[cloudwatch.Alarm]] = {}
        self.features: list[AiFeature] = []
        self.feature_dashboards: list[cloudwatch.Dashboard] = []
        self.platform_dashboard: cloudwatch.Dashboard | None = None
        self._sections_in_current = 0
        if platform and gateway is not None:
            self._platform(gateway)
        for feature in features:
            self.monitor_feature(feature)

    # ----------------------------------------------------------------------------------------- public

    def runbook_url(self, runbook: str) -> str:
        """The link to a runbook (``RUNBOOKS``)."""
        if runbook not in RUNBOOKS:
            raise ValueError(f"Observability: unknown runbook {runbook!r} (known: {', '.join(RUNBOOKS)})")
        if self.runbook_base_url:
            return f"{self.runbook_base_url}/{runbook}.md"
        return f"docs/runbooks/{runbook}.md (AI Factory repository)"

    def add_alarm(
        self,
        name: str,
        severity: Severity,
        metric: cloudwatch.IMetric,
        threshold: float,
        comparison: cloudwatch.ComparisonOperator,
        *,
        description: str,
        runbook: str,
        evaluation_periods: int = 1,
        datapoints_to_alarm: int | None = None,
        scope_id: str | None = None,
    ) -> cloudwatch.Alarm:
        """An alarm named ``AIFactory-<severity>-<name>`` that links its runbook and notifies the topic
        when it fires and when it recovers. Missing data never breaches (no traffic is not a fault)."""
        alarm = cloudwatch.Alarm(
            self,
            scope_id or f"{severity.value}{name.replace('-', '')}",
            alarm_name=f"{ALARM_PREFIX}-{severity.value}-{name}",
            alarm_description=f"{description}. Runbook: {self.runbook_url(runbook)}",
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=datapoints_to_alarm,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        action = cw_actions.SnsAction(self.topic)
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
        self.alarms.append(alarm)
        return alarm

    def _runbook_links(self) -> str:
        if not self.runbook_base_url:
            return "`docs/runbooks/` in the AI Factory repository"
        return " · ".join(f"[{r}]({self.runbook_url(r)})" for r in RUNBOOKS)

    def monitor_feature(self, feature: AiFeature) -> list[cloudwatch.Alarm]:
        """The feature's alarms, and its section on the current feature dashboard."""
        key = (feature.team, feature.feature)
        if key in self.feature_alarms:
            raise ValueError(f"Observability: {feature.team}/{feature.feature} is already monitored")
        alarms = self._feature_alarms(feature)
        self.feature_alarms[key] = alarms
        self.features.append(feature)
        if not self.feature_dashboards or self._sections_in_current >= self.defaults.features_per_dashboard:
            self._new_feature_dashboard()
            self._sections_in_current = 0
        dashboard = self.feature_dashboards[-1]
        for row in self._feature_section(feature, alarms):
            dashboard.add_widgets(*row)
        self._sections_in_current += 1
        return alarms

    # -------------------------------------------------------------------------------------- features

    def _feature_alarms(self, feature: AiFeature) -> list[cloudwatch.Alarm]:
        d = self.defaults
        label = f"{feature.team}/{feature.feature}"
        base = f"{feature.team}-{feature.feature}"
        ids = f"{_camel(feature.team)}{_camel(feature.feature)}"
        above = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
        below = cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD
        severities = {
            "ErrorRate": Severity.CRITICAL,
            "Latency": Severity.WARNING,
            "SpendPace": Severity.WARNING,
        }
        alarms = []
        for given in feature.alarm_inputs:
            alarms.append(self._from_input(feature, given, severities.get(given.name, Severity.WARNING)))
        requests = feature.metric_requests(period=Duration.minutes(15))
        guardrail = feature_metric(feature, "GuardrailInterventions", period=Duration.minutes(15))
        feedback = feature_metric(feature, "FeedbackScore", "Average", Duration.hours(3))
        feedback_count = feature_metric(feature, "FeedbackCount", "Sum", Duration.hours(3))
        alarms += [
            self.add_alarm(
                f"{base}-BudgetExhausted",
                Severity.CRITICAL,
                feature_metric(feature, BUDGET_EXHAUSTED_METRIC),
                0,
                above,
                description=(
                    f"{label}: the gateway refused requests because the ${feature.monthly_budget_usd:g} "
                    "monthly budget is spent (HTTP 429 budget_exhausted)"
                ),
                runbook="budget-exhausted",
                scope_id=f"{ids}BudgetExhausted",
            ),
            self.add_alarm(
                f"{base}-GuardrailSpike",
                Severity.WARNING,
                expression(
                    f"IF(requests >= {d.guardrail_min_requests}, 100 * guardrail / requests, 0)",
                    f"{label} guardrail interventions %",
                    Duration.minutes(15),
                    requests=requests,
                    guardrail=guardrail,
                ),
                d.guardrail_intervention_pct,
                above,
                description=(
                    f"{label}: the guardrail intervened on more than {d.guardrail_intervention_pct:g}% of "
                    f"requests in 15 minutes (at least {d.guardrail_min_requests} requests)"
                ),
                runbook="guardrail-spike",
                scope_id=f"{ids}GuardrailSpike",
            ),
            self.add_alarm(
                f"{base}-FeedbackDrop",
                Severity.WARNING,
                expression(
                    f"IF(count >= {d.feedback_min_count}, score, 1)",
                    f"{label} feedback score",
                    Duration.hours(3),
                    score=feedback,
                    count=feedback_count,
                ),
                d.feedback_min_score,
                below,
                description=(
                    f"{label}: average human feedback score below {d.feedback_min_score:g} over 3 hours "
                    f"(at least {d.feedback_min_count} ratings)"
                ),
                runbook="quality-drift",
                scope_id=f"{ids}FeedbackDrop",
            ),
            self.add_alarm(
                f"{base}-CanaryPassRateDrop",
                Severity.CRITICAL,
                feature_metric(feature, "CanaryPassRate", "Minimum", ONE_HOUR),
                d.canary_min_pass_rate,
                below,
                description=(
                    f"{label}: the scheduled canary suite passed fewer than {d.canary_min_pass_rate:.0%} of "
                    "its cases in two consecutive hours"
                ),
                runbook="quality-drift",
                evaluation_periods=2,
                datapoints_to_alarm=2,
                scope_id=f"{ids}CanaryPassRateDrop",
            ),
        ]
        return alarms

    def _from_input(self, feature: AiFeature, given: AlarmInput, severity: Severity) -> cloudwatch.Alarm:
        runbook = ALARM_RUNBOOKS.get(given.name, "provider-outage")
        return self.add_alarm(
            f"{feature.team}-{feature.feature}-{given.name}",
            severity,
            given.metric,
            given.threshold,
            given.comparison_operator,
            description=given.description,
            runbook=runbook,
            evaluation_periods=given.evaluation_periods,
            scope_id=f"{_camel(feature.team)}{_camel(feature.feature)}{given.name}",
        )

    def _new_feature_dashboard(self) -> None:
        counter = _DASHBOARD_COUNTERS.setdefault(self.node.root, [0])
        counter[0] += 1
        dashboard = cloudwatch.Dashboard(
            self,
            f"FeaturesDashboard{len(self.feature_dashboards) + 1}",
            dashboard_name=f"{self.dashboard_prefix}-Features-{counter[0]}",
            default_interval=Duration.days(1),
        )
        self.feature_dashboards.append(dashboard)

    def _feature_section(self, feature: AiFeature, alarms: Sequence[cloudwatch.Alarm]) -> list[list[Any]]:
        label = f"{feature.team}/{feature.feature}"
        budget = feature.monthly_budget_usd
        header = cloudwatch.TextWidget(
            markdown=(
                f"## {label}\nOwner {feature.owner} · clearance {feature.clearance} · models "
                f"{', '.join(feature.models)} · budget ${budget:g}/month · {feature.rate_limit_rpm} rpm · "
                f"runbooks: {self._runbook_links()}"
            ),
            width=24,
            height=2,
        )
        latency = cloudwatch.GraphWidget(
            title=f"{label}: latency p50 / p90 / p99 (ms)",
            left=[feature.metric_latency(statistic=s, label=s) for s in ("p50", "p90", "p99")],
            width=8,
        )
        tokens = cloudwatch.GraphWidget(
            title=f"{label}: tokens per hour",
            left=[
                feature_metric(feature, name, period=ONE_HOUR, label=name)
                for name in ("InputTokens", "OutputTokens", "CacheReadTokens", "CacheWriteTokens")
            ],
            width=8,
        )
        burn = cloudwatch.GraphWidget(
            title=f"{label}: budget burn (cumulative USD over the shown range)",
            left=[
                expression(
                    "RUNNING_SUM(cost)",
                    "spend since the start of the range",
                    ONE_DAY,
                    cost=feature.metric_cost(period=ONE_DAY),
                )
            ],
            left_annotations=[
                cloudwatch.HorizontalAnnotation(
                    value=budget * feature.alert_thresholds.budget_pct / 100,
                    label=f"{feature.alert_thresholds.budget_pct:g}% of budget",
                ),
                cloudwatch.HorizontalAnnotation(value=budget, label="monthly budget"),
            ],
            width=8,
        )
        reliability = cloudwatch.GraphWidget(
            title=f"{label}: fallbacks, breaker opens, guardrail, budget refusals",
            left=[
                feature_metric(feature, name, label=name)
                for name in (
                    "Fallbacks",
                    "CircuitBreakerOpened",
                    "GuardrailInterventions",
                    BUDGET_EXHAUSTED_METRIC,
                )
            ],
            width=8,
        )
        feedback = cloudwatch.GraphWidget(
            title=f"{label}: human feedback",
            left=[feature_metric(feature, "FeedbackScore", "Average", ONE_HOUR, label="score (0..1)")],
            right=[feature_metric(feature, "FeedbackCount", "Sum", ONE_HOUR, label="ratings")],
            left_y_axis=cloudwatch.YAxisProps(min=0, max=1),
            width=8,
        )
        quality = cloudwatch.GraphWidget(
            title=f"{label}: canary and eval pass rate",
            left=[
                feature_metric(feature, "CanaryPassRate", "Average", ONE_HOUR, label="canary"),
                feature_metric(feature, "EvalPassRate", "Average", ONE_HOUR, label="eval"),
            ],
            left_y_axis=cloudwatch.YAxisProps(min=0, max=1),
            left_annotations=[
                cloudwatch.HorizontalAnnotation(value=self.defaults.canary_min_pass_rate, label="alarm")
            ],
            width=8,
        )
        status = cloudwatch.AlarmStatusWidget(
            title=f"{label}: alarms", alarms=list(alarms), width=24, height=3
        )
        return [
            [header],
            feature.dashboard_widgets(),
            [latency, tokens, burn],
            [reliability, feedback, quality],
            [status],
        ]

    # -------------------------------------------------------------------------------------- platform

    def _platform(self, gateway: LlmGateway) -> None:
        d = self.defaults
        logs.MetricFilter(
            self,
            "BudgetExhaustedFilter",
            log_group=gateway.function.log_group,
            filter_pattern=logs.FilterPattern.string_value("$.audit.error_type", "=", "budget_exhausted"),
            metric_namespace=METRICS_NAMESPACE,
            metric_name=BUDGET_EXHAUSTED_METRIC,
            metric_value="1",
            dimensions={"Team": "$.audit.team", "Feature": "$.audit.feature"},
        )
        fallbacks = cloudwatch.MathExpression(
            expression=f'SELECT SUM(Fallbacks) FROM SCHEMA("{METRICS_NAMESPACE}", Feature, Team)',
            using_metrics={},
            label="fallbacks, all features",
            period=FIVE_MINUTES,
        )
        above = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
        platform_alarms = [
            self.add_alarm(
                "Platform-FallbackStorm",
                Severity.CRITICAL,
                fallbacks,
                d.fallback_storm_count,
                above,
                description=(
                    f"More than {d.fallback_storm_count:g} fallbacks per 5 minutes across all features for "
                    "15 minutes: a model or region is failing and traffic is moving down the chains"
                ),
                runbook="provider-outage",
                evaluation_periods=3,
                scope_id="PlatformFallbackStorm",
            ),
            self.add_alarm(
                "Platform-GatewayErrors",
                Severity.CRITICAL,
                expression(
                    "IF(requests > 0, 100 * errors / requests, 0)",
                    "gateway API 5xx %",
                    requests=gateway.api.deployment_stage.metric_count(statistic="Sum", period=FIVE_MINUTES),
                    errors=gateway.metric_errors(period=FIVE_MINUTES),
                ),
                d.gateway_5xx_pct,
                above,
                description=(
                    f"More than {d.gateway_5xx_pct:g}% of all gateway API requests answered 5xx "
                    "for 15 minutes"
                ),
                runbook="provider-outage",
                evaluation_periods=3,
                scope_id="PlatformGatewayErrors",
            ),
        ]
        self.platform_dashboard = cloudwatch.Dashboard(
            self,
            "PlatformDashboard",
            dashboard_name=f"{self.dashboard_prefix}-Platform",
            default_interval=Duration.days(1),
        )
        for row in self._platform_rows(gateway, platform_alarms):
            self.platform_dashboard.add_widgets(*row)

    def _platform_rows(self, gateway: LlmGateway, alarms: Sequence[cloudwatch.Alarm]) -> list[list[Any]]:
        runbooks = self._runbook_links()
        header = cloudwatch.TextWidget(
            markdown=(
                "# AI Factory platform\nEvery feature, from the gateway's metrics (namespace "
                f"`{METRICS_NAMESPACE}`). Feature sections: dashboards `{self.dashboard_prefix}-Features-*`. "
                f"Runbooks: {runbooks}. Month-to-date spend from the ledger: `ai-factory usage`."
            ),
            width=24,
            height=2,
        )

        def total(metric: str, label: str, statistic: str = "Sum", period: Duration = FIVE_MINUTES) -> Any:
            return expression(f"SUM({search(metric, statistic, period)})", label, period)

        def per_feature(metric: str, statistic: str = "Sum", period: Duration = FIVE_MINUTES) -> Any:
            return expression(search(metric, statistic, period), "", period)

        traffic = cloudwatch.GraphWidget(
            title="Requests and status classes",
            left=[total("Requests", "requests")] + [total(f"Status{c}xx", f"{c}xx") for c in (2, 4, 5)],
            width=12,
        )
        latency = cloudwatch.GraphWidget(
            title="Gateway API latency p50 / p90 / p99 (ms)",
            left=[gateway.metric_latency(statistic=s, label=s) for s in ("p50", "p90", "p99")],
            width=12,
        )
        throttles = cloudwatch.GraphWidget(
            title="Throttles: rate limit and budget refusals",
            left=[total("Throttled", "throttled (429)"), total(BUDGET_EXHAUSTED_METRIC, "budget exhausted")],
            width=8,
        )
        resilience = cloudwatch.GraphWidget(
            title="Fallbacks and circuit-breaker opens",
            left=[total("Fallbacks", "fallbacks"), total("CircuitBreakerOpened", "breaker opens")],
            left_annotations=[
                cloudwatch.HorizontalAnnotation(value=self.defaults.fallback_storm_count, label="storm")
            ],
            width=8,
        )
        guardrail = cloudwatch.GraphWidget(
            title="Guardrail interventions per feature", left=[per_feature("GuardrailInterventions")], width=8
        )
        teams = sorted({f.team for f in find_features(self.node.root)})
        cost_team = cloudwatch.GraphWidget(
            title="Cost per team (USD per day)",
            left=[expression(team_search("CostUSD", t, ONE_DAY), t, ONE_DAY) for t in teams[:100]]
            or [total("CostUSD", "all teams", period=ONE_DAY)],
            stacked=True,
            width=12,
        )
        cost_feature = cloudwatch.GraphWidget(
            title="Cost per feature (USD per day)", left=[per_feature("CostUSD", period=ONE_DAY)], width=12
        )
        tokens_team = cloudwatch.GraphWidget(
            title="Tokens per team (input + output, per hour)",
            left=[
                expression(
                    f"{team_search('InputTokens', t, ONE_HOUR)} + {team_search('OutputTokens', t, ONE_HOUR)}",
                    t,
                    ONE_HOUR,
                )
                for t in teams[:50]
            ]
            or [total("InputTokens", "input tokens", period=ONE_HOUR)],
            width=12,
        )
        tokens_feature = cloudwatch.GraphWidget(
            title="Output tokens per feature (per hour)",
            left=[per_feature("OutputTokens", period=ONE_HOUR)],
            width=12,
        )
        total_budget = sum(f.monthly_budget_usd for f in find_features(self.node.root))
        burn = cloudwatch.GraphWidget(
            title="Budget burn: cumulative spend over the shown range vs the sum of feature budgets",
            left=[
                expression(
                    f"RUNNING_SUM(SUM({search('CostUSD', 'Sum', ONE_DAY)}))",
                    "spend since the start of the range",
                    ONE_DAY,
                )
            ],
            left_annotations=[
                cloudwatch.HorizontalAnnotation(value=total_budget, label="sum of monthly budgets")
            ]
            if total_budget
            else None,
            width=12,
        )
        feedback = cloudwatch.GraphWidget(
            title="Feedback score per feature (0..1, hourly average)",
            left=[per_feature("FeedbackScore", "Average", ONE_HOUR)],
            left_y_axis=cloudwatch.YAxisProps(min=0, max=1),
            width=12,
        )
        quality = cloudwatch.GraphWidget(
            title="Canary and eval pass rate per feature (0..1)",
            left=[
                per_feature("CanaryPassRate", "Average", ONE_HOUR),
                per_feature("EvalPassRate", "Average", ONE_HOUR),
            ],
            left_y_axis=cloudwatch.YAxisProps(min=0, max=1),
            width=12,
        )
        audit = cloudwatch.LogQueryWidget(
            title="Gateway audit: failures by feature, model and error (last range)",
            log_group_names=[gateway.function.log_group.log_group_name],
            query_lines=[
                "fields audit.team as team, audit.feature as feature, audit.model_served as model, "
                "audit.error_type as error",
                "filter ispresent(audit.request_id) and audit.status >= 400",
                "stats count(*) as requests by team, feature, model, audit.status, error",
                "sort requests desc",
                "limit 50",
            ],
            width=24,
            height=6,
        )
        status = cloudwatch.AlarmStatusWidget(
            title="Platform alarms", alarms=list(alarms), width=24, height=2
        )
        return [
            [header],
            [status],
            [traffic, latency],
            [throttles, resilience, guardrail],
            [cost_team, cost_feature],
            [tokens_team, tokens_feature],
            [burn, feedback],
            [quality],
            [audit],
        ]

    # ----------------------------------------------------------------------------------------- setup

    def _topic_key(self) -> kms.Key:
        key = kms.Key(
            self,
            "OnCallTopicKey",
            description="AI Factory: on-call SNS topic",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        # Alarms publish to an encrypted topic only if CloudWatch may use its key (this account's alarms).
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {
                        "aws:SourceArn": f"arn:{Aws.PARTITION}:cloudwatch:{Aws.REGION}:{Aws.ACCOUNT_ID}:"
                        "alarm:*"
                    },
                },
            )
        )
        return key


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("-") if part)
