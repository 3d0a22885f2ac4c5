"""Pricing and metrics.

Each Bedrock usage counter is priced on its own (cache reads are typically a tenth of input, cache
writes a premium over it); summing tokens first and pricing once is how cost numbers go wrong.
"""

from __future__ import annotations

from collections import Counter
from typing import Protocol

from .config import Prices
from .provider_types import TokenUsage
from .quota import LIMIT_CODES
from .records import FeedbackRecord, UsageRecord


def cost_usd(usage: TokenUsage, prices: Prices) -> float:
    return (
        usage.input * prices.input
        + usage.output * prices.output
        + usage.cache_read * prices.cache_read
        + usage.cache_write * prices.cache_write
    ) / 1_000_000


class MetricsSink(Protocol):
    def emit(self, record: UsageRecord, *, fell_back: bool, breaker_opened: int) -> None: ...


class EmfMetricsSink:
    """CloudWatch metrics through Powertools' Embedded Metric Format: one log line per request with the
    dimension sets (Team, Feature, Model) and (Team, Feature); no PutMetricData call on the hot path."""

    def __init__(self, namespace: str | None = None, service: str | None = None) -> None:
        self._namespace = namespace
        self._service = service

    def emit(self, record: UsageRecord, *, fell_back: bool, breaker_opened: int) -> None:
        from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

        metrics = EphemeralMetrics(namespace=self._namespace, service=self._service)
        team, feature = record.team or "unknown", record.feature or "unknown"
        metrics.add_dimension("Team", team)
        metrics.add_dimension("Feature", feature)
        metrics.add_dimension("Model", record.model_served or record.route or "none")
        # A second dimension set without Model, so per-feature alarms need no metric math over models.
        metrics.add_dimensions(Team=team, Feature=feature)
        metrics.add_metric("Requests", MetricUnit.Count, 1)
        metrics.add_metric(f"Status{record.status // 100}xx", MetricUnit.Count, 1)
        metrics.add_metric("LatencyMs", MetricUnit.Milliseconds, record.latency_ms)
        if record.model_served:
            metrics.add_metric("InputTokens", MetricUnit.Count, record.input_tokens)
            metrics.add_metric("OutputTokens", MetricUnit.Count, record.output_tokens)
            metrics.add_metric("CacheReadTokens", MetricUnit.Count, record.cache_read_tokens)
            metrics.add_metric("CacheWriteTokens", MetricUnit.Count, record.cache_write_tokens)
            metrics.add_metric("CostUSD", MetricUnit.Count, record.cost_usd)
        if fell_back:
            metrics.add_metric("Fallbacks", MetricUnit.Count, 1)
        if breaker_opened:
            metrics.add_metric("CircuitBreakerOpened", MetricUnit.Count, breaker_opened)
        if record.guardrail_action == "INTERVENED":
            metrics.add_metric("GuardrailInterventions", MetricUnit.Count, 1)
        if record.error_type in LIMIT_CODES.values():
            metrics.add_metric("Throttled", MetricUnit.Count, 1)
        metrics.flush_metrics()

    def emit_feedback(self, feedback: FeedbackRecord) -> None:
        """``FeedbackScore`` (0..1; average it) and ``FeedbackCount`` per (Team, Feature)."""
        from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

        metrics = EphemeralMetrics(namespace=self._namespace, service=self._service)
        metrics.add_dimensions(Team=feedback.team, Feature=feedback.feature)
        metrics.add_metric("FeedbackScore", MetricUnit.NoUnit, feedback.score)
        metrics.add_metric("FeedbackCount", MetricUnit.Count, 1)
        metrics.flush_metrics()


class CountingMetricsSink:
    """In-memory counters for local mode and tests."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def emit(self, record: UsageRecord, *, fell_back: bool, breaker_opened: int) -> None:
        self.counts["Requests"] += 1
        self.counts[f"Status{record.status // 100}xx"] += 1
        if fell_back:
            self.counts["Fallbacks"] += 1
        if breaker_opened:
            self.counts["CircuitBreakerOpened"] += breaker_opened
        if record.guardrail_action == "INTERVENED":
            self.counts["GuardrailInterventions"] += 1

    def emit_feedback(self, feedback: FeedbackRecord) -> None:
        self.counts["FeedbackCount"] += 1
