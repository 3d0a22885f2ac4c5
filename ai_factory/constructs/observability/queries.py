"""CloudWatch metric queries over every feature's series, so dashboards need no change when features
come and go: ``SEARCH`` over the (Team, Feature) dimension set the gateway emits, and math expressions."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch

from ai_factory.constructs.observability.settings import FIVE_MINUTES
from aif_gateway import contract

FEATURE_SCHEMA = f"{{{contract.METRICS_NAMESPACE},{contract.FEATURE},{contract.TEAM}}}"


def search(metric_name: str, statistic: str, period: Duration, where: str = "") -> str:
    """A SEARCH over every feature's (Team, Feature) series of one metric."""
    query = f'{FEATURE_SCHEMA} MetricName="{metric_name}"' + (f" {where}" if where else "")
    return f"SEARCH('{query}', '{statistic}', {int(period.to_seconds())})"


GATE_SCHEMA = f"{{{contract.METRICS_NAMESPACE},{','.join(contract.GATE_DIMENSIONS)}}}"


def gate_search(statistic: str, period: Duration, where: str = "") -> str:
    """A SEARCH over every (Team, Feature, Suite) series of the eval gate's ``GatePassRate``."""
    query = f'{GATE_SCHEMA} MetricName="{contract.GATE_PASS_RATE.name}"' + (f" {where}" if where else "")
    return f"SEARCH('{query}', '{statistic}', {int(period.to_seconds())})"


def team_search(metric_name: str, team: str, period: Duration) -> str:
    """``SUM`` of one metric over every feature of ``team``."""
    return f"SUM({search(metric_name, 'Sum', period, 'Team=' + chr(34) + team + chr(34))})"


def expression(
    expr: str, label: str, period: Duration = FIVE_MINUTES, **metrics: Any
) -> cloudwatch.MathExpression:
    return cloudwatch.MathExpression(expression=expr, using_metrics=metrics, label=label, period=period)
