"""A feature's opt-in sampling of live traffic: the ``OnlineSampling`` props and the sample table.

``AiFeature(online_sampling=OnlineSampling(...))`` validates the props (restricted clearance refused)
and creates the table with ``sample_table``; ``OnlineEvaluation`` (``online_evaluation``) feeds and reads
it. Kept apart from ``online_evaluation`` so ``AiFeature`` can use it without an import cycle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from constructs import Construct

from ai_factory.platform.nag import acknowledge

__all__ = ["MAX_RETENTION_DAYS", "NO_SAMPLING_CLEARANCES", "TTL_ATTRIBUTE", "OnlineSampling", "sample_table"]

NO_SAMPLING_CLEARANCES = ("restricted",)
"""Clearances whose traffic may not be sampled: restricted data is never copied off the request path."""
TTL_ATTRIBUTE = "expires_at"
MAX_RETENTION_DAYS = 365


@dataclass(frozen=True)
class OnlineSampling:
    """A feature's sampling of live requests and answers (``AiFeature(online_sampling=...)``).

    :param rate: share of requests sampled, 0..1 (0 keeps the table but samples nothing).
    :param retention_days: days a sample is kept before DynamoDB's TTL deletes it, 1..365.
    :param enabled: False: no table, no sampling (the prop can stay in code).
    :param judge_rubric: what the judge checks every answer for. Default: the suites' ``llm-judge``
        rubric when all cases share one, else a generic helpfulness and safety rubric.
    :param min_judge_score: the ``OnlineQualityDrop`` alarm's threshold (average over 3 hours).
    :param trace_text: when the scorer records samples as MLflow traces (``OnlineEvaluation(
        tracking_server_arn=...)``), put the question and answer text on them. Default True (the
        clearance already allows keeping copies); False keeps only counts, scores and model names, e.g.
        when the MLflow server's readers should not see the feature's traffic.
    :param max_refusal_rate: the ``OutputRefusalRate`` alarm's threshold (share of refusals over 3 hours).

    Output-drift alarms, one day's samples against the baseline (the daily drift job needs at least
    30 samples in each window; a feature sampling fewer a day publishes no drift data and these stay OK):

    :param min_length_ratio: ``OutputLengthDrop`` fires when the day's mean answer length falls below this
        share of the baseline's, 0 < x < 1. Default 0.5 (answers half as long).
    :param max_length_ratio: ``OutputLengthGrowth`` fires above this multiple, > 1. Default 2.0.
    :param max_language_share_drop: ``OutputLanguageShift`` fires when the share of answers in the
        baseline's main language fell by more than this, 0 < x <= 1. Default 0.2 (e.g. 95 % -> 74 %).
    :param max_tool_call_rate_change: ``OutputToolCallShift`` fires when the share of answers that call a
        tool moved by more than this, either way, 0 < x <= 1. Default 0.2.
    :param max_guardrail_rate_change: ``OutputGuardrailShift`` fires when the share of answers the
        guardrail intervened on moved by more than this, either way, 0 < x <= 1. Default 0.1.
    """

    rate: float
    retention_days: int = 30
    enabled: bool = True
    judge_rubric: str | None = None
    min_judge_score: float = 0.6
    max_refusal_rate: float = 0.2
    trace_text: bool = True
    min_length_ratio: float = 0.5
    max_length_ratio: float = 2.0
    max_language_share_drop: float = 0.2
    max_tool_call_rate_change: float = 0.2
    max_guardrail_rate_change: float = 0.1

    def problems(self) -> list[str]:
        """What is wrong with these settings, field by field (empty when valid)."""
        out = []
        if isinstance(self.rate, bool) or not isinstance(self.rate, int | float) or not 0 <= self.rate <= 1:
            out.append(f"online_sampling.rate: must be a number from 0 to 1, got {self.rate!r}")
        if (
            isinstance(self.retention_days, bool)
            or not isinstance(self.retention_days, int)
            or not 1 <= self.retention_days <= MAX_RETENTION_DAYS
        ):
            out.append(
                f"online_sampling.retention_days: must be a whole number from 1 to {MAX_RETENTION_DAYS}, "
                f"got {self.retention_days!r}"
            )
        for name in ("min_judge_score", "max_refusal_rate"):
            value = getattr(self, name)
            if not _number(value) or not 0 <= value <= 1:
                out.append(f"online_sampling.{name}: must be a number from 0 to 1, got {value!r}")
        if not isinstance(self.trace_text, bool):
            out.append(f"online_sampling.trace_text: must be True or False, got {self.trace_text!r}")
        for name in ("max_language_share_drop", "max_tool_call_rate_change", "max_guardrail_rate_change"):
            value = getattr(self, name)
            if not _number(value) or not 0 < value <= 1:
                out.append(
                    f"online_sampling.{name}: must be a share above 0 and at most 1 (a change of 0 would "
                    f"alarm on noise), got {value!r}"
                )
        low, high = self.min_length_ratio, self.max_length_ratio
        if not _number(low) or not 0 < low < 1:
            out.append(f"online_sampling.min_length_ratio: must be above 0 and below 1, got {low!r}")
        if not _number(high) or not high > 1:
            out.append(f"online_sampling.max_length_ratio: must be a number above 1, got {high!r}")
        return out


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def sample_table(feature: Construct, key: kms.IKey, sampling: OnlineSampling) -> dynamodb.Table:
    """The feature's sample table (in ``feature``): the feature's KMS ``key``, TTL expiry, PITR, a
    stream of new items."""
    table = dynamodb.Table(
        feature,
        "OnlineSamples",
        partition_key=dynamodb.Attribute(name="request_id", type=dynamodb.AttributeType.STRING),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
        encryption_key=key,
        time_to_live_attribute=TTL_ATTRIBUTE,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        stream=dynamodb.StreamViewType.NEW_IMAGE,
        # Samples are a rolling window of expiring copies; nothing pins them across a feature's removal.
        removal_policy=RemovalPolicy.DESTROY,
    )
    reason = (
        f"The table holds copies of live traffic that must expire after {sampling.retention_days} days "
        "(the feature's retention limit); a backup plan would keep them past it. Point-in-time recovery "
        "covers accidental loss within the retention window."
    )
    acknowledge(table, {"NIST.800.53.R5-DynamoDBInBackupPlan": reason})
    return table
