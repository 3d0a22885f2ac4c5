"""What the observability facade is configured with: alarm severities, app-wide thresholds, runbooks."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch

from aif_gateway import contract

RUNBOOKS = (
    "provider-outage",
    "budget-exhausted",
    "guardrail-spike",
    "quality-drift",
    "leaked-key",
    "high-latency",
    "knowledge-base-sync",
    "direct-model-access",
    "online-evaluation",
    "output-drift",
    "usage-recovery",
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
    "KnowledgeBaseSyncFailed": "knowledge-base-sync",
    "DirectModelAccess": "direct-model-access",
    "BreakGlassModelAccess": "direct-model-access",
    "OnlinePiiLeak": "online-evaluation",
    "OnlineQualityDrop": "online-evaluation",
    "InputDrift": "online-evaluation",
    "OnlineSamplesStuck": "online-evaluation",
    # Output drift (ai_factory.constructs.online_alarms): the scorer's refusal rate and the drift job's
    # day-against-baseline changes.
    "OutputRefusalRate": "output-drift",
    "OutputLengthDrop": "output-drift",
    "OutputLengthGrowth": "output-drift",
    "OutputLanguageShift": "output-drift",
    "OutputToolCallShift": "output-drift",
    "OutputGuardrailShift": "output-drift",
}
MAX_DASHBOARD_WIDGETS = 500
"""CloudWatch's limit of widgets in one dashboard body (PutDashboard refuses more)."""
FIVE_MINUTES = Duration.minutes(5)
ONE_HOUR = Duration.hours(1)
ONE_DAY = Duration.days(1)
# Online evaluation scores (0..1, per Team and Feature), shown on the dashboards beside the eval gate's and
# the canary's pass rates: the online scorer's metric names from aif_gateway/contract.py.
ONLINE_SCORE_METRICS: tuple[str, ...] = (
    contract.ONLINE_ASSERTION_PASS_RATE.name,
    contract.ONLINE_JUDGE_SCORE.name,
)


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
    :param features_per_dashboard: feature sections per dashboard (11 widgets each, 14 with drift; a
        dashboard takes fewer when the next section would pass ``MAX_DASHBOARD_WIDGETS``).
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


class AlarmHost(Protocol):
    """What the feature and platform sections need from the facade that holds them (``Observability``):
    its thresholds and dashboard prefix, its alarm factory and its runbook links."""

    defaults: AlarmDefaults
    dashboard_prefix: str

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
    ) -> cloudwatch.Alarm: ...

    def runbook_links(self) -> str: ...
