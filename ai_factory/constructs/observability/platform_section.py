"""The platform section of ``Observability``: alarms on the whole gateway and a dashboard over every
feature, built from CloudWatch SEARCH expressions so it needs no change when features come and go."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from ai_factory.constructs.ai_feature import AiFeature, find_features
from ai_factory.constructs.gateway.llm_gateway import LlmGateway
from ai_factory.constructs.observability.drift_section import platform_drift_widget
from ai_factory.constructs.observability.queries import expression, gate_search, search, team_search
from ai_factory.constructs.observability.settings import (
    FIVE_MINUTES,
    ONE_DAY,
    ONE_HOUR,
    ONLINE_SCORE_METRICS,
    AlarmHost,
    Severity,
)
from aif_gateway import contract


def build_platform(scope: Construct, host: AlarmHost, gateway: LlmGateway) -> cloudwatch.Dashboard:
    """The platform alarms (fallback storm, gateway 5xx, through ``host``) and the dashboard (in
    ``scope``, the facade)."""
    d = host.defaults
    fallbacks = cloudwatch.MathExpression(
        expression=(
            f"SELECT SUM({contract.FALLBACKS.name}) "
            f'FROM SCHEMA("{contract.METRICS_NAMESPACE}", {contract.FEATURE}, {contract.TEAM})'
        ),
        using_metrics={},
        label="fallbacks, all features",
        period=FIVE_MINUTES,
    )
    above = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
    platform_alarms = [
        host.add_alarm(
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
        host.add_alarm(
            "Platform-GatewayErrors",
            Severity.CRITICAL,
            expression(
                "IF(requests > 0, 100 * errors / requests, 0)",
                "gateway API 5xx %",
                requests=gateway.metric_requests(period=FIVE_MINUTES),
                errors=gateway.metric_errors(period=FIVE_MINUTES),
            ),
            d.gateway_5xx_pct,
            above,
            description=(
                f"More than {d.gateway_5xx_pct:g}% of all gateway API requests answered 5xx for 15 minutes"
            ),
            runbook="provider-outage",
            evaluation_periods=3,
            scope_id="PlatformGatewayErrors",
        ),
        host.add_alarm(
            "Platform-UsageRecovery",
            Severity.WARNING,
            gateway.metric_usage_recovery_failures(),
            0,
            above,
            description=(
                "A usage-recovery run failed, or a run or a spilled usage record waits in a dead-letter "
                "queue: some usage records are not reaching the ledger on their own (they are still whole "
                "in the gateway's audit lines)"
            ),
            runbook="usage-recovery",
            scope_id="PlatformUsageRecovery",
        ),
    ]
    dashboard = cloudwatch.Dashboard(
        scope,
        "PlatformDashboard",
        dashboard_name=f"{host.dashboard_prefix}-Platform",
        default_interval=Duration.days(1),
    )
    for row in _platform_rows(host, gateway, platform_alarms, find_features(scope.node.root)):
        dashboard.add_widgets(*row)
    return dashboard


def _platform_rows(
    host: AlarmHost,
    gateway: LlmGateway,
    alarms: Sequence[cloudwatch.Alarm],
    features: Sequence[AiFeature],
) -> list[list[Any]]:
    runbooks = host.runbook_links()
    header = cloudwatch.TextWidget(
        markdown=(
            "# AI Factory platform\nEvery feature, from the gateway's metrics (namespace "
            f"`{contract.METRICS_NAMESPACE}`). "
            f"Feature sections: dashboards `{host.dashboard_prefix}-Features-*`. "
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
        left=[total(contract.REQUESTS.name, "requests")]
        + [total(f"Status{c}xx", f"{c}xx") for c in (2, 4, 5)],
        width=12,
    )
    latency = cloudwatch.GraphWidget(
        title="Gateway API latency p50 / p90 / p99 (ms)",
        left=[gateway.metric_latency(statistic=s, label=s) for s in ("p50", "p90", "p99")],
        width=12,
    )
    throttles = cloudwatch.GraphWidget(
        title="Throttles: rate limit and budget refusals",
        left=[
            total(contract.THROTTLED.name, "throttled (429)"),
            total(contract.BUDGET_EXHAUSTED.name, "budget exhausted"),
        ],
        width=8,
    )
    resilience = cloudwatch.GraphWidget(
        title="Fallbacks and circuit-breaker opens",
        left=[
            total(contract.FALLBACKS.name, "fallbacks"),
            total(contract.CIRCUIT_BREAKER_OPENED.name, "breaker opens"),
        ],
        left_annotations=[
            cloudwatch.HorizontalAnnotation(value=host.defaults.fallback_storm_count, label="storm")
        ],
        width=8,
    )
    guardrail = cloudwatch.GraphWidget(
        title="Guardrail interventions per feature",
        left=[per_feature(contract.GUARDRAIL_INTERVENTIONS.name)],
        width=8,
    )
    teams = sorted({f.team for f in features})
    cost_team = cloudwatch.GraphWidget(
        title="Cost per team (USD per day)",
        left=[expression(team_search(contract.COST_USD.name, t, ONE_DAY), t, ONE_DAY) for t in teams[:100]]
        or [total(contract.COST_USD.name, "all teams", period=ONE_DAY)],
        stacked=True,
        width=12,
    )
    cost_feature = cloudwatch.GraphWidget(
        title="Cost per feature (USD per day)",
        left=[per_feature(contract.COST_USD.name, period=ONE_DAY)],
        width=12,
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
        or [total(contract.INPUT_TOKENS.name, "input tokens", period=ONE_HOUR)],
        width=12,
    )
    tokens_feature = cloudwatch.GraphWidget(
        title="Output tokens per feature (per hour)",
        left=[per_feature(contract.OUTPUT_TOKENS.name, period=ONE_HOUR)],
        width=12,
    )
    total_budget = sum(f.monthly_budget_usd for f in features)
    burn = cloudwatch.GraphWidget(
        title="Budget burn: cumulative spend over the shown range vs the sum of feature budgets",
        left=[
            expression(
                f"RUNNING_SUM(SUM({search('CostUSD', 'Sum', ONE_DAY)}))",
                "spend since the start of the range",
                ONE_DAY,
            )
        ],
        left_annotations=[cloudwatch.HorizontalAnnotation(value=total_budget, label="sum of monthly budgets")]
        if total_budget
        else None,
        width=12,
    )
    feedback = cloudwatch.GraphWidget(
        title="Feedback score per feature (0..1, hourly average)",
        left=[per_feature(contract.FEEDBACK_SCORE.name, "Average", ONE_HOUR)],
        left_y_axis=cloudwatch.YAxisProps(min=0, max=1),
        width=12,
    )
    quality = cloudwatch.GraphWidget(
        title="Pass rates per feature (0..1): eval gate per suite, canary cases, canary assertions, online",
        left=[
            expression(gate_search("Minimum", ONE_DAY), "", ONE_DAY),
            per_feature(contract.CANARY_PASS_RATE.name, "Average", ONE_HOUR),
            # EvalPassRate is the canary's assertion pass rate (the name predates GatePassRate).
            per_feature(contract.EVAL_PASS_RATE.name, "Average", ONE_HOUR),
            *(per_feature(name, "Average", ONE_HOUR) for name in ONLINE_SCORE_METRICS),
        ],
        left_y_axis=cloudwatch.YAxisProps(min=0, max=1),
        width=12,
    )
    lead_time = cloudwatch.GraphWidget(
        title="Lead time to production per feature (days, from ai-factory lead-time --publish)",
        left=[per_feature(contract.LEAD_TIME_DAYS.name, "Maximum", ONE_DAY)],
        left_y_axis=cloudwatch.YAxisProps(min=0),
        width=12,
    )
    audit = cloudwatch.LogQueryWidget(
        title="Gateway audit: failures by feature, model and error (last range)",
        log_group_names=[gateway.audit_log_group.log_group_name],
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
    status = cloudwatch.AlarmStatusWidget(title="Platform alarms", alarms=list(alarms), width=24, height=2)
    drift = platform_drift_widget(features)
    return [
        [header],
        [status],
        [traffic, latency],
        [throttles, resilience, guardrail],
        [cost_team, cost_feature],
        [tokens_team, tokens_feature],
        [burn, feedback],
        [quality, lead_time],
        *([[drift]] if drift else []),
        [audit],
    ]
