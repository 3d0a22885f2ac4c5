"""The eval gate's result as a CloudWatch metric: ``GatePassRate`` per team, feature and suite.

``ai-factory eval`` (in CI, in the pipeline's eval step, or on a laptop) publishes the pass rate of every
suite it runs, so the dashboards show the gate beside the canary and the online scores
(docs/observability.md, "Three pass rates"). The value is the gate's own pass rate (passed cases / cases,
``gate.verdict``), whatever the verdict. Without AWS credentials (a local run) nothing is sent and the
caller says so; a refused ``PutMetricData`` is reported, never silently dropped.

Which feature a suite belongs to: ``--team`` and ``--feature`` when given; otherwise the team is the
folder the suite lives under (``features/<team>/evals/<suite>.yaml``) and the feature the suite's
registered prompt (the prompt names the feature's behaviour; the suite's own name without one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aif_gateway import contract

__all__ = ["GateDimensions", "PublishError", "dimensions_for", "publish_pass_rate"]


class PublishError(Exception):
    """CloudWatch refused the metric (the message says why)."""


@dataclass(frozen=True)
class GateDimensions:
    team: str
    feature: str
    suite: str

    def as_cloudwatch(self) -> list[dict[str, str]]:
        return [
            {"Name": contract.TEAM, "Value": self.team},
            {"Name": contract.FEATURE, "Value": self.feature},
            {"Name": contract.SUITE, "Value": self.suite},
        ]


def dimensions_for(suite: Any, team: str | None = None, feature: str | None = None) -> GateDimensions:
    """The (Team, Feature, Suite) a suite's result is published under (see the module docstring)."""
    if team is None:
        parts = Path(suite.path).resolve().parts
        team = parts[parts.index("features") + 1] if "features" in parts[:-2] else "shared"
    if feature is None:
        feature = suite.prompt.name if suite.prompt is not None else suite.name
    return GateDimensions(team, feature, suite.name)


def publish_pass_rate(
    dimensions: GateDimensions, pass_rate: float, *, client: Any = None, region: str | None = None
) -> bool:
    """Put ``GatePassRate`` for one suite run. False (nothing sent) when no AWS credentials are found;
    raises ``PublishError`` when CloudWatch refuses it. ``client``: a CloudWatch client (tests)."""
    from botocore.exceptions import BotoCoreError, ClientError

    if client is None:
        import boto3

        session = boto3.Session(region_name=region)
        if session.get_credentials() is None:
            return False
        client = session.client("cloudwatch")
    metric = contract.GATE_PASS_RATE
    try:
        client.put_metric_data(
            Namespace=metric.namespace,
            MetricData=[
                {
                    "MetricName": metric.name,
                    "Dimensions": dimensions.as_cloudwatch(),
                    "Value": round(float(pass_rate), 6),
                    "Unit": metric.unit,
                }
            ],
        )
    except (BotoCoreError, ClientError) as exc:
        raise PublishError(f"CloudWatch refused {metric.name} for suite {dimensions.suite}: {exc}") from exc
    return True
