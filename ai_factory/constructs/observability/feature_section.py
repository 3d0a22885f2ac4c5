"""The alarms and dashboard section ``Observability`` adds for each ``AiFeature``.

Alarms are named ``<prefix>-<Severity>-<team>-<feature>-<What>``; the section shows the feature's own
widgets, latency percentiles, tokens, budget burn, reliability, feedback, quality and its alarms' state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch

from ai_factory.constructs.ai_feature import AiFeature, AlarmInput
from ai_factory.constructs.observability.drift_section import feature_drift_widgets
from ai_factory.constructs.observability.queries import expression, gate_search
from ai_factory.constructs.observability.settings import (
    ALARM_RUNBOOKS,
    ONE_DAY,
    ONE_HOUR,
    ONLINE_SCORE_METRICS,
    AlarmHost,
    Severity,
)
from ai_factory.platform.naming import camel
from aif_gateway import contract

FIXED_FEATURE_ALARMS = ("BudgetExhausted", "GuardrailSpike", "FeedbackDrop", "CanaryPassRateDrop")
"""The alarms every feature gets besides its ``alarm_inputs`` (at the host's app-wide thresholds)."""


def feature_alarm_count(feature: AiFeature) -> int:
    """How many alarms ``feature_alarms`` creates for ``feature``: one per alarm input (those its
    constructs and ``OnlineEvaluation`` added included, so ask after they are built) plus the fixed ones."""
    return len(feature.alarm_inputs) + len(FIXED_FEATURE_ALARMS)


def feature_alarms(host: AlarmHost, feature: AiFeature) -> list[cloudwatch.Alarm]:
    """The feature's own alarms (from ``AiFeature.alarm_inputs``) plus budget, guardrail, feedback and
    canary alarms at the host's app-wide thresholds (``FIXED_FEATURE_ALARMS``)."""
    d = host.defaults
    label = f"{feature.team}/{feature.feature}"
    base = f"{feature.team}-{feature.feature}"
    ids = f"{camel(feature.team)}{camel(feature.feature)}"
    above = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
    below = cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD
    severities = {
        "ErrorRate": Severity.CRITICAL,
        "Latency": Severity.WARNING,
        "SpendPace": Severity.WARNING,
        "OnlinePiiLeak": Severity.CRITICAL,  # personal data in answers is an incident, not a trend
    }
    alarms = []
    for given in feature.alarm_inputs:
        alarms.append(_from_input(host, feature, given, severities.get(given.name, Severity.WARNING)))
    requests = feature.metric_requests(period=Duration.minutes(15))
    guardrail = feature.metric(contract.GUARDRAIL_INTERVENTIONS.name, period=Duration.minutes(15))
    feedback = feature.metric(contract.FEEDBACK_SCORE.name, statistic="Average", period=Duration.hours(3))
    feedback_count = feature.metric(contract.FEEDBACK_COUNT.name, statistic="Sum", period=Duration.hours(3))
    alarms += [
        host.add_alarm(
            f"{base}-BudgetExhausted",
            Severity.CRITICAL,
            feature.metric(contract.BUDGET_EXHAUSTED.name),
            0,
            above,
            description=(
                f"{label}: the gateway refused requests because the ${feature.monthly_budget_usd:g} "
                "monthly budget is spent (HTTP 429 budget_exhausted)"
            ),
            runbook="budget-exhausted",
            scope_id=f"{ids}BudgetExhausted",
        ),
        host.add_alarm(
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
        host.add_alarm(
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
        host.add_alarm(
            f"{base}-CanaryPassRateDrop",
            Severity.CRITICAL,
            feature.metric(contract.CANARY_PASS_RATE.name, statistic="Minimum", period=ONE_HOUR),
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


def _from_input(
    host: AlarmHost, feature: AiFeature, given: AlarmInput, severity: Severity
) -> cloudwatch.Alarm:
    runbook = ALARM_RUNBOOKS.get(given.name, "provider-outage")
    return host.add_alarm(
        f"{feature.team}-{feature.feature}-{given.name}",
        severity,
        given.metric,
        given.threshold,
        given.comparison_operator,
        description=given.description,
        runbook=runbook,
        evaluation_periods=given.evaluation_periods,
        scope_id=f"{camel(feature.team)}{camel(feature.feature)}{given.name}",
    )


def feature_section(
    host: AlarmHost, feature: AiFeature, alarms: Sequence[cloudwatch.Alarm]
) -> list[list[Any]]:
    """The feature's dashboard rows: header, its own widgets, latency, tokens, budget burn, reliability,
    feedback, quality, drift (only when the drift job watches the feature) and the state of its
    alarms."""
    label = f"{feature.team}/{feature.feature}"
    budget = feature.monthly_budget_usd
    header = cloudwatch.TextWidget(
        markdown=(
            f"## {label}\nOwner {feature.owner} · clearance {feature.clearance} · models "
            f"{', '.join(feature.models)} · budget ${budget:g}/month · {feature.rate_limit_rpm} rpm · "
            f"runbooks: {host.runbook_links()}"
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
            feature.metric(name, period=ONE_HOUR, label=name)
            for name in (
                contract.INPUT_TOKENS.name,
                contract.OUTPUT_TOKENS.name,
                contract.CACHE_READ_TOKENS.name,
                contract.CACHE_WRITE_TOKENS.name,
            )
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
            feature.metric(name, label=name)
            for name in (
                contract.FALLBACKS.name,
                contract.CIRCUIT_BREAKER_OPENED.name,
                contract.GUARDRAIL_INTERVENTIONS.name,
                contract.BUDGET_EXHAUSTED.name,
            )
        ],
        width=8,
    )
    feedback = cloudwatch.GraphWidget(
        title=f"{label}: human feedback",
        left=[
            feature.metric(
                contract.FEEDBACK_SCORE.name, statistic="Average", period=ONE_HOUR, label="score (0..1)"
            )
        ],
        right=[
            feature.metric(contract.FEEDBACK_COUNT.name, statistic="Sum", period=ONE_HOUR, label="ratings")
        ],
        left_y_axis=cloudwatch.YAxisProps(min=0, max=1),
        width=8,
    )
    where = f'Team="{feature.team}" Feature="{feature.feature}"'
    sampled = feature.sample_table is not None  # online scores exist only for sampled features
    quality = cloudwatch.GraphWidget(
        title=f"{label}: pass rates: eval gate (per suite), canary" + (", online" if sampled else ""),
        left=[
            expression(gate_search("Minimum", ONE_DAY, where), "eval gate [${PROP('Dim.Suite')}]", ONE_DAY),
            feature.metric(
                contract.CANARY_PASS_RATE.name, statistic="Average", period=ONE_HOUR, label="canary cases"
            ),
            # EvalPassRate is the canary's (the name predates the eval gate's GatePassRate).
            feature.metric(
                contract.EVAL_PASS_RATE.name, statistic="Average", period=ONE_HOUR, label="canary assertions"
            ),
            *(
                feature.metric(name, statistic="Average", period=ONE_HOUR, label=f"online: {name}")
                for name in (ONLINE_SCORE_METRICS if sampled else ())
            ),
        ],
        left_y_axis=cloudwatch.YAxisProps(min=0, max=1),
        left_annotations=[
            cloudwatch.HorizontalAnnotation(value=host.defaults.canary_min_pass_rate, label="alarm")
        ],
        width=8,
    )
    status = cloudwatch.AlarmStatusWidget(title=f"{label}: alarms", alarms=list(alarms), width=24, height=3)
    drift = feature_drift_widgets(feature)
    return [
        [header],
        feature.dashboard_widgets(),
        [latency, tokens, burn],
        [reliability, feedback, quality],
        *([drift] if drift else []),
        [status],
    ]
